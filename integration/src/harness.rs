//! Process harness for end-to-end tests and benchmarks: runs the real `sidecar` binary, the
//! `bolt-echo` binary and Envoy's rate limit service as child processes, builds MOSN-format
//! configs, finds free ports.
//!
//! Everything here is synchronous (std::process): it blocks the calling thread while it waits,
//! so async tests should use a multi-thread runtime (or `spawn_blocking`) when an in-process
//! server must keep running meanwhile.

mod child;
mod counters;
mod echo_process;
mod mosn_config;
mod ratelimit_process;
mod sidecar;
mod wait;

pub use child::KEEP_LOGS_ENV;
pub use counters::{cluster_counter, counted_client, host_counter};
pub use echo_process::{EchoProcess, RelayProcess, BOLT_ECHO_BIN_ENV, TCP_RELAY_BIN_ENV};
pub use mosn_config::{
    find_named, mosn_config, patch, ClusterSpec, CodecChoice, ListenerSpec, MosnConfig,
    DEFAULT_PLUGIN_PATH,
};
pub use ratelimit_process::{
    RateLimitEnv, RateLimitProcess, RATELIMIT_ADDR_ENV, RATELIMIT_BIN_ENV, RATELIMIT_REDIS_URL_ENV,
};
pub use sidecar::{
    admin_get, admin_request, AdminAnswer, CheckOutput, Sidecar, SidecarOptions, SIDECAR_BIN_ENV,
};
pub use wait::eventually;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use crate::error::HarnessError;

/// The last 40 lines of a log file (empty if unreadable).
pub fn log_tail(path: &Path) -> String {
    child::tail(path, 40)
}

/// First and one-past-last port [`free_port`] hands out: below the kernel's ephemeral range
/// (32768-60999 by default), so no outgoing connection of a peer, a service or another test
/// can be given the same port as a local address between the check and the bind, and below
/// the 20000-60000 `tools/services.sh` draws from.
const TEST_PORTS: std::ops::Range<u16> = 10_000..20_000;

/// A loopback port free right now and never handed out before by this process: drawn in turn
/// from [`TEST_PORTS`] (from an offset taken from the process id, so two test processes start
/// apart), skipping any port something listens on. A port taken from the ephemeral range
/// instead (bind to port 0, then release) could be reused as the local port of another
/// test's outgoing connection before the sidecar binds it ("Address already in use").
///
/// # Errors
/// When every port of the range is taken.
pub fn free_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = TEST_PORTS.start + n as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free loopback port in 10000-19999",
    ))
}

/// `127.0.0.1:<free port>`.
///
/// # Errors
/// When no socket can be bound.
pub fn free_addr() -> std::io::Result<SocketAddr> {
    Ok(SocketAddr::from(([127, 0, 0, 1], free_port()?)))
}

/// The workspace root (the parent of this crate's directory). Sidecars run with it as their
/// working directory, so relative plugin paths in configs resolve as they do for `make run`.
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Finds a binary of this workspace: `$<env_var>` if set, else next to the running executable
/// (`target/<profile>/` for binaries, `target/<profile>/deps/..` for tests), else
/// `<repo>/target/<profile>/`.
///
/// # Errors
/// [`HarnessError::BinaryMissing`] listing the paths tried, with `hint`.
pub fn find_binary(
    name: &'static str,
    env_var: &str,
    hint: &'static str,
) -> Result<PathBuf, HarnessError> {
    let mut tried = Vec::new();
    if let Some(path) = std::env::var_os(env_var) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        tried.push(path);
    }
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            dirs.push(dir.to_path_buf());
            if let Some(up) = dir.parent() {
                dirs.push(up.to_path_buf());
            }
        }
    }
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    dirs.push(repo_root().join("target").join(profile));
    for dir in dirs {
        let path = dir.join(name);
        if path.is_file() {
            return Ok(path);
        }
        tried.push(path);
    }
    Err(HarnessError::BinaryMissing { name, tried, hint })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_bind() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        TcpListener::bind(("127.0.0.1", port)).expect("port was free");
        assert!(free_addr().unwrap().ip().is_loopback());
    }

    #[test]
    fn free_ports_are_never_handed_out_twice_and_stay_out_of_the_ephemeral_range() {
        let ports: Vec<u16> = (0..500).map(|_| free_port().unwrap()).collect();
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len());
        assert!(ports.iter().all(|p| TEST_PORTS.contains(p)));
    }

    #[test]
    fn repo_root_holds_the_workspace() {
        assert!(repo_root().join("Cargo.toml").is_file());
        assert!(repo_root().join("integration").is_dir());
    }

    #[test]
    fn missing_binary_error_says_how_to_build_it() {
        let err = find_binary(
            "no-such-binary-here",
            "INTEGRATION_TEST_UNSET_VARIABLE",
            "build it with `cargo build -p nothing`",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("no-such-binary-here binary not found"),
            "{msg}"
        );
        assert!(msg.contains("cargo build -p nothing"), "{msg}");
        assert!(msg.contains("target"), "lists the paths tried: {msg}");
    }
}
