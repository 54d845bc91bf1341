//! The error a protocol reports: a cheap, displayable reason.

use std::borrow::Cow;

/// A protocol error: the bytes are not this protocol, the stream is corrupt, or a command
/// cannot be encoded. Cheap to build from a `&'static str`; the message is shown to the host
/// (logged by the dispatcher) and to native callers.
///
/// ```
/// # use codec_sdk::ProtocolError;
/// let err = ProtocolError::new("bad protocol byte 0x07");
/// assert_eq!(err.to_string(), "bad protocol byte 0x07");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProtocolError {
    message: Cow<'static, str>,
}

impl ProtocolError {
    /// An error with `msg` as its reason.
    pub fn new(msg: impl Into<Cow<'static, str>>) -> Self {
        ProtocolError {
            message: msg.into(),
        }
    }

    /// The reason.
    pub fn message(&self) -> &str {
        &self.message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_static_and_owned_messages() {
        assert_eq!(ProtocolError::new("static").message(), "static");
        let owned = ProtocolError::new(format!("length {}", 7));
        assert_eq!(owned.to_string(), "length 7");
        assert_eq!(owned.clone(), owned);
    }
}
