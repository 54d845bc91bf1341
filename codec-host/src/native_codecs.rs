//! The native codecs this build contains, by the name a configuration gives them (the
//! sidecar's `"type": "native"` codecs), so callers pick one by name without depending on
//! protocol crates. Each is built with the same [`Limits`] a Wasm plugin gets, and told the
//! frame limit the same way ([`NativeCodec::with_limits`]).

use bolt::Bolt;
use dubbo::Dubbo;

use crate::codec::Codec;
use crate::error::CodecError;
use crate::limits::Limits;
use crate::native::NativeCodec;

/// Builds one native codec.
type Constructor = fn(&Limits) -> Result<Box<dyn Codec>, CodecError>;

/// Every native codec: name and constructor.
const NATIVE_CODECS: [(&str, Constructor); 2] = [
    ("bolt", |limits| {
        Ok(Box::new(NativeCodec::with_limits(Bolt::default(), limits)?))
    }),
    ("dubbo", |limits| {
        Ok(Box::new(NativeCodec::with_limits(
            Dubbo::default(),
            limits,
        )?))
    }),
];

/// The names of [`NATIVE_CODECS`], in order.
static NAMES: [&str; NATIVE_CODECS.len()] = {
    let mut names = [""; NATIVE_CODECS.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = NATIVE_CODECS[i].0;
        i += 1;
    }
    names
};

/// A new native codec named `name` (one of [`native_codec_names`]; `bolt` is SOFA Bolt
/// v1/v2 from `protocols/bolt`, protocol `x-bolt`; `dubbo` is Dubbo 2 from
/// `protocols/dubbo`, protocol `dubbo`), enforcing `limits.max_frame_bytes` as a
/// Wasm plugin would. One per worker, like a Wasm codec.
///
/// ```
/// # fn main() -> Result<(), codec_host::CodecError> {
/// let codec = codec_host::native_codec("bolt", &codec_host::Limits::new())?;
/// assert_eq!(codec.protocol(), "x-bolt");
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`CodecError::UnknownNativeCodec`] when this build has no native codec of that name;
/// [`CodecError::Protocol`] when the protocol refuses the limits.
pub fn native_codec(name: &str, limits: &Limits) -> Result<Box<dyn Codec>, CodecError> {
    let (_, make) = NATIVE_CODECS
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| CodecError::UnknownNativeCodec {
            name: name.to_owned(),
            known: native_codec_names(),
        })?;
    make(limits)
}

/// The names [`native_codec`] accepts, e.g. for a configuration check's message.
pub fn native_codec_names() -> &'static [&'static str] {
    &NAMES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_builds_a_codec() {
        assert_eq!(native_codec_names(), ["bolt", "dubbo"]);
        for name in native_codec_names() {
            native_codec(name, &Limits::new()).unwrap();
        }
        assert_eq!(
            native_codec("bolt", &Limits::new()).unwrap().protocol(),
            "x-bolt"
        );
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let err = native_codec("x-bolt", &Limits::new()).err().unwrap();
        assert_eq!(
            err.to_string(),
            "no native codec named \"x-bolt\" (this build has: bolt, dubbo)"
        );
    }

    #[test]
    fn a_limit_the_protocol_refuses_is_an_error() {
        let limits = Limits {
            max_frame_bytes: 10,
            ..Limits::new()
        };
        let err = native_codec("bolt", &limits).err().unwrap();
        assert!(
            matches!(&err, CodecError::Protocol(m) if m.contains("max_frame_bytes")),
            "{err}"
        );
    }
}
