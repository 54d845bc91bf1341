//! The plugin's panic hook: the panic text goes to `proxy_log` (critical) and, like TinyGo,
//! as `panic: <msg>\r\n` to standard output (ABI §4.3), so the host can show why the trap
//! that follows (panic = abort) happened. It allocates nothing: it also runs when memory is
//! exhausted.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use std::fmt::{self, Write};
use std::panic::PanicHookInfo;

use codec_abi::LogLevel;

use crate::hostcalls;

/// Installs the hook (idempotent: the last install wins, and all are the same).
pub(crate) fn install() {
    std::panic::set_hook(Box::new(report));
}

fn report(info: &PanicHookInfo<'_>) {
    let message = info
        .payload_as_str()
        .unwrap_or("(non-string panic payload)");
    let mut line = StackLine::<512>::new();
    let _ = write!(line, "panic: {message}");
    let mut stdout = line.clone();
    let _ = stdout.write_str("\r\n");
    let _ = hostcalls::write_stdout(stdout.as_str().as_bytes());
    if let Some(at) = info.location() {
        let _ = write!(line, " (at {}:{})", at.file(), at.line());
    }
    let _ = hostcalls::log(LogLevel::Critical, line.as_str());
}

/// A fixed-size text buffer that silently truncates (at a char boundary).
#[derive(Clone)]
struct StackLine<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackLine<N> {
    fn new() -> Self {
        StackLine {
            buf: [0; N],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        // Only whole chars are ever copied in.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("panic")
    }
}

impl<const N: usize> Write for StackLine<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = N - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}
