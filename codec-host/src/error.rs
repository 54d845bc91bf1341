//! Error types of the codec host: [`CodecError`] for codec calls, [`LoadError`] for loading a
//! plugin.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use std::path::PathBuf;

use codec_abi::LayoutError;

/// A codec operation that failed. Any error from `decode` means the connection's byte stream
/// can no longer be trusted; errors from the other operations fail only that frame.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The plugin (or native codec) rejected the bytes or the command.
    #[error("{call} rejected by the codec (status {status})")]
    Rejected {
        /// The ABI call (e.g. `proxy_decode_buffer_bytes`).
        call: &'static str,
        /// The status the plugin returned (ABI §0).
        status: u32,
    },
    /// A native codec's own protocol error.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The plugin trapped (a guest panic, `unreachable`, out-of-bounds access, …). The
    /// instance was replaced; `message` carries what the guest printed before trapping.
    #[error("plugin trapped in {call}: {message}")]
    Trap {
        /// The export being called.
        call: &'static str,
        /// The trap and the guest's last words (its panic text), if any.
        message: String,
    },
    /// The call used up its CPU budget (metering) and was stopped; the instance was replaced.
    #[error("plugin exceeded its CPU budget in {call}")]
    CpuExhausted {
        /// The export being called.
        call: &'static str,
    },
    /// The plugin returned success without reporting its result buffer.
    #[error("{call} returned no result")]
    NoResult {
        /// The export being called.
        call: &'static str,
    },
    /// The plugin reported a result that does not parse.
    #[error("{call} reported a malformed result: {source}")]
    BadResult {
        /// The export being called.
        call: &'static str,
        /// What was wrong with the layout.
        #[source]
        source: LayoutError,
    },
    /// The frame's plugin context belonged to an instance that has since been replaced.
    #[error("the frame's plugin context was lost when its instance was replaced")]
    ContextLost,
    /// The operation does not apply to this frame (e.g. replying to a non-heartbeat).
    #[error("{0}")]
    WrongFrame(&'static str),
    /// The frame or an input exceeds a configured size limit.
    #[error("{what} of {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The plugin instance could not be (re)created.
    #[error("plugin instance unavailable: {0}")]
    Instance(String),
    /// [`crate::native_codec`] was asked for a codec this build does not contain.
    #[error("no native codec named {name:?} (this build has: {})", known.join(", "))]
    UnknownNativeCodec {
        /// The name asked for.
        name: String,
        /// The names this build has ([`crate::native_codec_names`]).
        known: &'static [&'static str],
    },
}

/// Why a plugin could not be loaded ([`crate::Plugin::load`]). Every variant names the plugin
/// file or the part of the module that is wrong, so an operator can act on it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The configuration itself is unusable (e.g. `root_id` 0, a malformed `Md5`).
    #[error("plugin {plugin}: bad configuration: {reason}")]
    Config {
        /// The plugin name.
        plugin: String,
        /// What is wrong.
        reason: String,
    },
    /// The `.wasm` file could not be read.
    #[error("plugin {plugin}: cannot read {path}: {source}")]
    Read {
        /// The plugin name.
        plugin: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file's MD5 differs from the configured `Md5`.
    #[error("plugin {plugin}: md5 of {path} is {actual}, the configuration expects {expected}")]
    Md5Mismatch {
        /// The plugin name.
        plugin: String,
        /// The file.
        path: PathBuf,
        /// The configured hex MD5.
        expected: String,
        /// The file's hex MD5.
        actual: String,
    },
    /// The file is not a binary WebAssembly module (no `\0asm` magic): an executable, a
    /// text file, the wrong file.
    #[error("plugin {plugin}: {path} is not a WebAssembly module (it does not start with \\0asm; found {found})")]
    NotWasm {
        /// The plugin name.
        plugin: String,
        /// The file.
        path: PathBuf,
        /// What its first bytes look like.
        found: String,
    },
    /// The bytes are not a valid WebAssembly module (or the compiler refused them).
    #[error("plugin {plugin}: cannot compile: {source}")]
    Compile {
        /// The plugin name.
        plugin: String,
        /// The compiler's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The module lacks the ABI marker export `proxy_abi_mosn_version_0_2_0` (ABI §1).
    #[error("plugin {plugin}: not a MOSN codec plugin: missing ABI marker export {marker}{found}")]
    MissingMarker {
        /// The plugin name.
        plugin: String,
        /// The marker that was looked for.
        marker: &'static str,
        /// Other `proxy_abi*` markers found, formatted for the message (may be empty).
        found: String,
    },
    /// A filter module exports no proxy-wasm ABI version the host speaks.
    #[error("plugin {plugin}: not a proxy-wasm filter this host runs: it exports no {} (found: {found})", crate::filter::AbiVersion::MARKERS)]
    FilterAbi {
        /// The plugin name.
        plugin: String,
        /// The `proxy_abi*` exports it has, or `none`.
        found: String,
    },
    /// A required export (ABI §3) is absent.
    #[error("plugin {plugin}: missing export {name}")]
    MissingExport {
        /// The plugin name.
        plugin: String,
        /// The export's name.
        name: &'static str,
    },
    /// An export or import has a type other than the ABI's.
    #[error("plugin {plugin}: {what} {name} has type {found}, expected {expected}")]
    WrongSignature {
        /// The plugin name.
        plugin: String,
        /// `export` or `import`.
        what: &'static str,
        /// The item (`name` or `module.name`).
        name: String,
        /// What the ABI requires.
        expected: String,
        /// What the module declares.
        found: String,
    },
    /// The module imports something the host does not provide (ABI §4).
    #[error("plugin {plugin}: unknown import {module}.{name}")]
    UnknownImport {
        /// The plugin name.
        plugin: String,
        /// The import's module.
        module: String,
        /// The import's name.
        name: String,
    },
    /// The module needs more memory at start than the configured cap.
    #[error(
        "plugin {plugin}: needs {needed_mib} MiB of memory at start, the limit is {limit_mib} MiB"
    )]
    MemoryLimit {
        /// The plugin name.
        plugin: String,
        /// The module's initial memory.
        needed_mib: u64,
        /// The configured cap.
        limit_mib: u32,
    },
    /// Instantiating the module or running its start-up sequence (ABI §2) failed.
    #[error("plugin {plugin}: start-up failed: {source}")]
    StartUp {
        /// The plugin name.
        plugin: String,
        /// What failed.
        #[source]
        source: CodecError,
    },
}
