//! Config errors (a broken config stops startup) and warnings (accepted but ignored fields).

use std::fmt;
use std::path::PathBuf;

use super::duration::DurationError;

/// A config that cannot be used. Nothing has started when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not JSON.
    #[error("config is not valid JSON: line {line}, column {column}: {source}")]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A field has a wrong value; `path` is its JSON path, e.g.
    /// `servers[0].routers[0].virtual_hosts[0].routers[1].route.cluster_name`.
    #[error("{path}: {reason}")]
    Invalid {
        /// JSON path of the offending field.
        path: String,
        /// What is wrong with it.
        reason: Invalid,
    },
}

impl ConfigError {
    /// The JSON path of an [`ConfigError::Invalid`] error.
    pub fn json_path(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The reason of an [`ConfigError::Invalid`] error.
    pub fn reason(&self) -> Option<&Invalid> {
        match self {
            ConfigError::Invalid { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// Why a field is invalid (one variant per cause).
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    /// The JSON type is wrong.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What the field must be.
        expected: &'static str,
        /// What it is.
        found: &'static str,
    },
    /// A required field is absent, null or empty.
    #[error("required field is missing or empty")]
    Missing,
    /// A number outside the field's range.
    #[error("{value} is out of range ({range})")]
    OutOfRange {
        /// The number as written.
        value: String,
        /// The allowed range.
        range: &'static str,
    },
    /// A duration that does not parse.
    #[error("invalid duration {value:?}: {source}")]
    Duration {
        /// The text as written.
        value: String,
        /// Why it failed.
        #[source]
        source: DurationError,
    },
    /// A socket address that does not parse.
    #[error("invalid address {value:?}: expected ip:port")]
    Address {
        /// The text as written.
        value: String,
    },
    /// A `host:port` that does not parse (IP address or DNS name, and a non-zero port).
    #[error("invalid address {value:?}: expected host:port")]
    HostPort {
        /// The text as written.
        value: String,
    },
    /// A value that is not one of the accepted words.
    #[error("unsupported value {value:?} (supported: {supported})")]
    Unsupported {
        /// The text as written.
        value: String,
        /// What is accepted.
        supported: &'static str,
    },
    /// Only one element of this list is supported.
    #[error("{count} entries given, but exactly one is supported")]
    NotExactlyOne {
        /// How many were given.
        count: usize,
    },
    /// A name used twice where names must be unique.
    #[error("duplicate {what} {name:?} (first defined at {first})")]
    Duplicate {
        /// What kind of name.
        what: &'static str,
        /// The name.
        name: String,
        /// JSON path of the first definition.
        first: String,
    },
    /// A route names a cluster that `cluster_manager.clusters` does not define.
    #[error("unknown cluster {name:?}")]
    UnknownCluster {
        /// The name.
        name: String,
    },
    /// A proxy names a router config that `servers[0].routers` does not define.
    #[error("unknown router config {name:?}")]
    UnknownRouterConfig {
        /// The name.
        name: String,
    },
    /// A codec names a plugin that `wasm_global_plugins` does not define.
    #[error("unknown wasm plugin {name:?}")]
    UnknownPlugin {
        /// The name.
        name: String,
    },
    /// A listener's protocol has no enabled codec.
    #[error("protocol {protocol:?} is not provided by any enabled codec (enabled: {enabled})")]
    UnknownProtocol {
        /// The protocol the listener asks for.
        protocol: String,
        /// The protocols of the enabled codecs, comma separated.
        enabled: String,
    },
    /// The plugin file is missing or unreadable.
    #[error("plugin file {path} cannot be read (relative paths are resolved against the working directory): {source}")]
    PluginFile {
        /// The resolved path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The plugin file's MD5 differs from `vm_config.md5`.
    #[error("plugin file {path} has MD5 {actual}, config expects {expected}")]
    Md5Mismatch {
        /// The resolved path.
        path: PathBuf,
        /// The configured digest.
        expected: String,
        /// The file's digest.
        actual: String,
    },
    /// `md5` is not 32 hex digits.
    #[error("invalid md5 {value:?}: expected 32 hex digits")]
    Md5Format {
        /// The text as written.
        value: String,
    },
    /// A header matcher regex does not compile.
    #[error("invalid regex {pattern:?}: {source}")]
    Regex {
        /// The pattern.
        pattern: String,
        /// The compiler's error.
        #[source]
        source: regex::Error,
    },
    /// A key nobody reads, in a part of the config that is checked strictly.
    #[error("unknown field (stream filter configs are checked strictly, so a misspelt setting cannot silently disable a limit)")]
    UnknownField,
    /// A setting the sidecar understands but does not implement, where ignoring it would
    /// change which requests pass.
    #[error("{value} is not supported: {why}")]
    Refused {
        /// The value as written.
        value: String,
        /// Why, and what to use instead.
        why: &'static str,
    },
    /// A rule the config cannot satisfy, explained in words.
    #[error("{0}")]
    Rule(&'static str),
    /// A value that cannot be used, with the reason (e.g. a file that cannot be read).
    #[error("{0}")]
    Message(String),
    /// An access log `log_format` that does not compile (an unknown variable, …).
    #[error("access log of listener {listener:?}: {source}")]
    AccessLogFormat {
        /// The listener's name.
        listener: String,
        /// Why the format does not compile.
        #[source]
        source: super::log_format::FormatError,
    },
}

/// An accepted field that has no effect here (obsolete, unsupported or unknown). The parser
/// collects these instead of logging; `start` logs each once, `check` prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// JSON path of the field.
    pub path: String,
    /// What happens to it.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Where warnings accumulate during parsing.
#[derive(Debug, Default)]
pub(crate) struct Warnings(pub(crate) Vec<ConfigWarning>);

impl Warnings {
    /// Records one warning.
    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigWarning {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Shorthand for an [`ConfigError::Invalid`].
pub(crate) fn invalid(path: impl Into<String>, reason: Invalid) -> ConfigError {
    ConfigError::Invalid {
        path: path.into(),
        reason,
    }
}
