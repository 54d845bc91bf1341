//! Logging for plugin authors: through the host's `proxy_log` inside Wasm, through `tracing`
//! (target `codec_sdk`) natively.

pub use codec_abi::LogLevel;

/// Logs `message` at `level`.
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        // A failed log line has nowhere else to go.
        let _ = crate::hostcalls::log(level, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    match level {
        LogLevel::Trace => tracing::trace!(target: "codec_sdk", "{message}"),
        LogLevel::Debug => tracing::debug!(target: "codec_sdk", "{message}"),
        LogLevel::Info => tracing::info!(target: "codec_sdk", "{message}"),
        LogLevel::Warn => tracing::warn!(target: "codec_sdk", "{message}"),
        LogLevel::Error | LogLevel::Critical | LogLevel::Fatal => {
            tracing::error!(target: "codec_sdk", level = ?level, "{message}")
        }
    }
}

/// Logs at trace level.
pub fn trace(message: &str) {
    log(LogLevel::Trace, message);
}

/// Logs at debug level.
pub fn debug(message: &str) {
    log(LogLevel::Debug, message);
}

/// Logs at info level.
pub fn info(message: &str) {
    log(LogLevel::Info, message);
}

/// Logs at warn level.
pub fn warn(message: &str) {
    log(LogLevel::Warn, message);
}

/// Logs at error level.
pub fn error(message: &str) {
    log(LogLevel::Error, message);
}

/// Logs at critical level.
pub fn critical(message: &str) {
    log(LogLevel::Critical, message);
}
