//! `listeners[].access_logs[]`: MOSN's `{log_path, log_format}` plus our `log_encoding`
//! (`text` or `json` lines); the format is compiled by [`super::log_format`], so `sidecar
//! check` reports an unknown variable and nothing starts with a log that cannot be written.

use std::path::{Path, PathBuf};

use super::error::{invalid, ConfigError, Invalid, Warnings};
use super::json::Item;
use super::log_format::{LogEncoding, LogFormat, DEFAULT_ACCESS_LOG_FORMAT};

/// One access log of a listener, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// Where lines go.
    pub target: LogTarget,
    /// `log_format` as written (MOSN's default when it was empty).
    pub format_text: String,
    /// The compiled `log_format`.
    pub format: LogFormat,
    /// `text` lines (MOSN's) or JSON lines.
    pub encoding: LogEncoding,
    /// JSON path of this entry, for messages.
    pub json_path: String,
}

/// Where an access log is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// `"stdout"`.
    Stdout,
    /// `"stderr"`.
    Stderr,
    /// A file, appended to (created with its directory); reopened on SIGUSR1.
    File(PathBuf),
}

impl std::fmt::Display for LogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogTarget::Stdout => f.write_str("stdout"),
            LogTarget::Stderr => f.write_str("stderr"),
            LogTarget::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Parses `access_logs` of listener `listener` (absent or empty: none).
pub(crate) fn parse_access_logs(
    items: Vec<Item<'_>>,
    listener: &str,
    work_dir: &Path,
    warnings: &mut Warnings,
) -> Result<Vec<AccessLogConfig>, ConfigError> {
    let mut logs = Vec::new();
    for item in items {
        let mut o = item.obj()?;
        let path = o.required_str("log_path")?;
        let target = match path {
            "stdout" => LogTarget::Stdout,
            "stderr" => LogTarget::Stderr,
            p => LogTarget::File(work_dir.join(p)),
        };
        let encoding = match o.str("log_encoding")? {
            None | Some("") | Some("text") => LogEncoding::Text,
            Some("json") => LogEncoding::Json,
            Some(other) => {
                return Err(invalid(
                    o.child("log_encoding"),
                    Invalid::Unsupported {
                        value: other.to_owned(),
                        supported: "\"text\", \"json\"",
                    },
                ))
            }
        };
        let text = o.str("log_format")?.unwrap_or_default();
        let format = LogFormat::parse(text)
            .and_then(|f| match encoding {
                LogEncoding::Text => Ok(f),
                LogEncoding::Json => f.into_json_fields(),
            })
            .map_err(|source| {
                invalid(
                    o.child("log_format"),
                    Invalid::AccessLogFormat {
                        listener: listener.to_owned(),
                        source,
                    },
                )
            })?;
        let json_path = o.path().to_owned();
        o.finish(warnings);
        logs.push(AccessLogConfig {
            target,
            format_text: if text.is_empty() {
                DEFAULT_ACCESS_LOG_FORMAT.to_owned()
            } else {
                text.to_owned()
            },
            format,
            encoding,
            json_path,
        });
    }
    Ok(logs)
}
