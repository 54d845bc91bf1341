//! The one error type of this crate: a byte layout that does not parse.

use core::fmt;

/// A buffer that does not follow the layout it was parsed as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// The buffer ends before a field: `what` needed `need` bytes at `offset`, `have` remain.
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Where the field starts.
        offset: usize,
        /// Bytes the field needs.
        need: usize,
        /// Bytes left in the buffer at `offset`.
        have: usize,
    },
    /// A length or count field is larger than the buffer could possibly hold.
    BadLength {
        /// The field holding the length.
        what: &'static str,
        /// The value read.
        value: u64,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::Truncated {
                what,
                offset,
                need,
                have,
            } => write!(
                f,
                "truncated {what} at offset {offset}: needs {need} bytes, {have} left"
            ),
            LayoutError::BadLength { what, value } => {
                write!(f, "{what} of {value} does not fit in the buffer")
            }
        }
    }
}

impl std::error::Error for LayoutError {}
