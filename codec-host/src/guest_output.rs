//! What a plugin says: `proxy_log` lines and WASI stdout/stderr go to `tracing` target
//! `wasm_guest` with the plugin's name, and the current call's output is kept as the
//! explanation of a trap (a guest panics by printing its reason, then trapping: ABI §4.3).
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use std::sync::Arc;

use codec_abi::LogLevel;

/// Most bytes of a call's output kept as last words (the tail is kept).
const LAST_WORDS_MAX: usize = 1024;

/// One instance's output sink.
pub(crate) struct GuestOutput {
    plugin: Arc<str>,
    /// Everything the guest said during the current call (tail, bounded).
    call_text: String,
}

impl GuestOutput {
    /// A sink for plugin `plugin`.
    pub(crate) fn new(plugin: Arc<str>) -> GuestOutput {
        GuestOutput {
            plugin,
            call_text: String::new(),
        }
    }

    /// The plugin's name.
    pub(crate) fn plugin(&self) -> &str {
        &self.plugin
    }

    /// Forgets the previous call's output.
    pub(crate) fn begin_call(&mut self) {
        self.call_text.clear();
    }

    /// A `proxy_log` message.
    pub(crate) fn log(&mut self, level: LogLevel, text: &[u8]) {
        let text = String::from_utf8_lossy(text);
        let msg = text.trim_end();
        let plugin = &*self.plugin;
        match level {
            LogLevel::Trace => tracing::trace!(target: "wasm_guest", plugin, "{msg}"),
            LogLevel::Debug => tracing::debug!(target: "wasm_guest", plugin, "{msg}"),
            LogLevel::Info => tracing::info!(target: "wasm_guest", plugin, "{msg}"),
            LogLevel::Warn => tracing::warn!(target: "wasm_guest", plugin, "{msg}"),
            LogLevel::Error | LogLevel::Critical | LogLevel::Fatal => {
                tracing::error!(target: "wasm_guest", plugin, "{msg}")
            }
        }
        if !self.call_text.is_empty() && !self.call_text.ends_with('\n') {
            self.call_text.push('\n');
        }
        self.remember(msg);
        self.call_text.push('\n');
    }

    /// Bytes the guest wrote to stdout (fd 1) or stderr (fd 2).
    pub(crate) fn print(&mut self, fd: u32, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let plugin = &*self.plugin;
        for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
            if fd == 2 {
                tracing::warn!(target: "wasm_guest", plugin, stream = "stderr", "{line}");
            } else {
                tracing::info!(target: "wasm_guest", plugin, stream = "stdout", "{line}");
            }
        }
        self.remember(&text);
    }

    /// Appends `text` to the call's output, keeping the tail.
    fn remember(&mut self, text: &str) {
        self.call_text.push_str(text);
        if self.call_text.len() > LAST_WORDS_MAX {
            let mut cut = self.call_text.len() - LAST_WORDS_MAX;
            while !self.call_text.is_char_boundary(cut) {
                cut += 1;
            }
            self.call_text.drain(..cut);
        }
    }

    /// What the guest said during the current call, one line per message, or `None` if
    /// nothing.
    pub(crate) fn last_words(&self) -> Option<String> {
        let lines: Vec<&str> = self
            .call_text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        (!lines.is_empty()).then(|| lines.join(" / "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_calls_output_as_last_words() {
        let mut out = GuestOutput::new("p".into());
        out.print(1, b"panic: ");
        out.print(1, b"boom\r\n");
        assert_eq!(out.last_words().as_deref(), Some("panic: boom"));
        out.begin_call();
        assert_eq!(out.last_words(), None);
        out.log(LogLevel::Fatal, b"codec failed\n");
        out.print(2, b"then this");
        assert_eq!(
            out.last_words().as_deref(),
            Some("codec failed / then this")
        );
    }

    #[test]
    fn bounded_to_the_tail() {
        let mut out = GuestOutput::new("p".into());
        for _ in 0..1000 {
            out.print(2, "é long line of output".as_bytes());
        }
        out.print(2, b"the end");
        let words = out.last_words().unwrap();
        assert!(words.len() <= LAST_WORDS_MAX + 200);
        assert!(words.ends_with("the end"));
    }
}
