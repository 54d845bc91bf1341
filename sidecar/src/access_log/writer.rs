//! The writer thread's outputs: an access log file (buffered, appended to, reopened on
//! request) or the process's stdout/stderr.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};

use crate::config::LogTarget;

/// Bytes buffered per output before a write is forced between two drains.
const BUFFER_BYTES: usize = 64 * 1024;

/// Why an access log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open access log {target} of listener {listener}: {source}")]
pub struct OpenError {
    /// The listener the log belongs to.
    pub listener: String,
    /// The log's target.
    pub target: String,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// Where one access log's lines go.
pub enum Output {
    /// The process's stdout.
    Stdout(BufWriter<io::Stdout>),
    /// The process's stderr.
    Stderr(BufWriter<io::Stderr>),
    /// A file, appended to.
    File(BufWriter<File>),
}

fn open_file(path: &std::path::Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

impl Output {
    /// Opens `target` (a file is created with its directory).
    ///
    /// # Errors
    /// The OS error when the file cannot be created or opened.
    pub fn open(target: &LogTarget) -> io::Result<Output> {
        Ok(match target {
            LogTarget::Stdout => {
                Output::Stdout(BufWriter::with_capacity(BUFFER_BYTES, io::stdout()))
            }
            LogTarget::Stderr => {
                Output::Stderr(BufWriter::with_capacity(BUFFER_BYTES, io::stderr()))
            }
            LogTarget::File(p) => {
                Output::File(BufWriter::with_capacity(BUFFER_BYTES, open_file(p)?))
            }
        })
    }

    /// Appends one line (buffered).
    ///
    /// # Errors
    /// The OS error of a write the buffer forced.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout(w) => w.write_all(line),
            Output::Stderr(w) => w.write_all(line),
            Output::File(w) => w.write_all(line),
        }
    }

    /// Writes out what is buffered.
    ///
    /// # Errors
    /// The OS error.
    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(w) => w.flush(),
            Output::Stderr(w) => w.flush(),
            Output::File(w) => w.flush(),
        }
    }

    /// For a file: flushes, then opens `target` afresh (after logrotate renamed it, the new
    /// lines go to a new file at the configured path). Streams are left as they are.
    /// Returns whether a file was reopened.
    ///
    /// # Errors
    /// The OS error of the flush or the open; on an open error the old file is kept.
    pub fn reopen(&mut self, target: &LogTarget) -> io::Result<bool> {
        let (Output::File(w), LogTarget::File(path)) = (&mut *self, target) else {
            return Ok(false);
        };
        let flushed = w.flush();
        let file = open_file(path)?;
        *w = BufWriter::with_capacity(BUFFER_BYTES, file);
        flushed.map(|()| true)
    }
}
