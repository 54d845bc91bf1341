//! Process logging: a `tracing` subscriber writing to stdout, stderr or a file per
//! `default_log_path`, at the config's level (or the command line's), changeable at run
//! time through a [`LogHandle`] (the admin API's `update_loglevel`).

use std::fs::{File, OpenOptions};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;

use tracing::warn;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, Registry};

use crate::config::{ConfigWarning, LogLevel, LogPath, LogSettings};

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The log file (or its directory) could not be created or opened.
    #[error("cannot open log file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A global subscriber was already installed.
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
    /// The level could not be changed (the subscriber is gone).
    #[error("cannot change the log level: {0}")]
    Reload(#[from] reload::Error),
}

/// Changes the level of the installed subscriber.
#[derive(Debug, Clone)]
pub struct LogHandle {
    handle: reload::Handle<LevelFilter, Registry>,
}

impl LogHandle {
    /// Sets the minimum level from now on.
    ///
    /// # Errors
    /// [`LoggingError::Reload`] when the subscriber no longer exists.
    pub fn set_level(&self, level: LogLevel) -> Result<(), LoggingError> {
        self.handle.modify(|f| *f = level_filter(level))?;
        Ok(())
    }

    /// The current minimum level.
    ///
    /// # Errors
    /// [`LoggingError::Reload`] when the subscriber no longer exists.
    pub fn level(&self) -> Result<LogLevel, LoggingError> {
        let filter = self
            .handle
            .with_current(|f| *f)
            .map_err(LoggingError::Reload)?;
        Ok(from_filter(filter))
    }
}

/// Installs the global subscriber for `settings`; `level_override` (the `--log-level`
/// flag) wins over the config's level.
///
/// # Errors
/// [`LoggingError`] when the log file cannot be opened or a subscriber is already set.
pub fn init(
    settings: &LogSettings,
    level_override: Option<LogLevel>,
) -> Result<LogHandle, LoggingError> {
    let level = level_override.unwrap_or(settings.level);
    let (filter, handle) = reload::Layer::new(level_filter(level));
    let fmt = tracing_subscriber::fmt::layer().with_target(true);
    let fmt = match &settings.path {
        // Colours only on a terminal: piped logs stay plain text.
        LogPath::Stdout => fmt
            .with_ansi(std::io::stdout().is_terminal())
            .with_writer(BoxMakeWriter::new(std::io::stdout)),
        LogPath::Stderr => fmt
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(BoxMakeWriter::new(std::io::stderr)),
        LogPath::File(path) => fmt
            .with_ansi(false)
            .with_writer(BoxMakeWriter::new(Mutex::new(open_log_file(path)?))),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .map_err(|_| LoggingError::AlreadyInstalled)?;
    Ok(LogHandle { handle })
}

/// Logs each config warning once, at WARN.
pub fn report_warnings(warnings: &[ConfigWarning]) {
    for w in warnings {
        warn!(target: "sidecar::config", path = %w.path, "{}", w.message);
    }
}

fn open_log_file(path: &PathBuf) -> Result<File, LoggingError> {
    let file_error = |source| LoggingError::File {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(file_error)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(file_error)
}

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Trace => LevelFilter::TRACE,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    }
}

fn from_filter(filter: LevelFilter) -> LogLevel {
    match filter {
        LevelFilter::TRACE => LogLevel::Trace,
        LevelFilter::DEBUG => LogLevel::Debug,
        LevelFilter::INFO => LogLevel::Info,
        LevelFilter::WARN => LogLevel::Warn,
        _ => LogLevel::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_trip_through_filters() {
        for level in [
            LogLevel::Trace,
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warn,
            LogLevel::Error,
        ] {
            assert_eq!(from_filter(level_filter(level)), level);
        }
    }

    #[test]
    fn log_file_directory_is_created() {
        let dir = std::env::temp_dir().join(format!("sidecar-logging-{}", std::process::id()));
        let path = dir.join("logs").join("mosn.log");
        let file = open_log_file(&path);
        assert!(file.is_ok(), "{file:?}");
        assert!(path.is_file());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unwritable_log_file_is_an_error() {
        let err = open_log_file(&PathBuf::from("/proc/definitely/not/here.log"));
        assert!(matches!(err, Err(LoggingError::File { .. })), "{err:?}");
    }
}
