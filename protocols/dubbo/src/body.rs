//! What a proxy reads from a Hessian2 request body (Dubbo's `DubboCodec.encodeRequestData`):
//! dubbo version, service path, service version, method name, the parameter-types
//! descriptor, the arguments (skipped by length, never deserialised) and the attachments map,
//! which comes after the arguments. And the reverse: a body rebuilt with edited fields and
//! attachments around the original descriptor and argument bytes.

use std::ops::Range;

use crate::error::HessianError;
use crate::hessian::{write_string, Reader};

/// The routing facts of one request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// The Dubbo protocol version (e.g. `2.0.2`).
    pub dubbo_version: String,
    /// The service path (usually the interface name).
    pub service: String,
    /// The service version (`0.0.0` or empty when none).
    pub version: String,
    /// The method name.
    pub method: String,
    /// Number of arguments, from the descriptor.
    pub arg_count: usize,
    /// The attachments whose key and value are strings, in wire order.
    pub attachments: Vec<(String, String)>,
    /// Bytes of the body from the descriptor to the end of the arguments.
    pub args: Range<usize>,
}

/// Counts the parameters of a JVM parameter-types descriptor such as
/// `Ljava/lang/String;I[J[[Ljava/util/Map;`.
///
/// # Errors
/// [`HessianError::BadDescriptor`] for anything else.
pub fn count_params(desc: &str) -> Result<usize, HessianError> {
    let bad = || HessianError::BadDescriptor(desc.to_owned());
    let bytes = desc.as_bytes();
    let mut i = 0;
    let mut count = 0;
    while i < bytes.len() {
        while bytes.get(i) == Some(&b'[') {
            i += 1;
        }
        match bytes.get(i) {
            Some(b'Z' | b'B' | b'C' | b'D' | b'F' | b'I' | b'J' | b'S') => i += 1,
            Some(b'L') => {
                let end = bytes[i..].iter().position(|&b| b == b';').ok_or_else(bad)?;
                if end < 2 {
                    return Err(bad());
                }
                i += end + 1;
            }
            _ => return Err(bad()),
        }
        count += 1;
    }
    Ok(count)
}

/// Reads a Hessian2 request body.
///
/// # Errors
/// When the body does not parse as Dubbo's request layout.
pub fn parse_request(body: &[u8]) -> Result<RequestInfo, HessianError> {
    let mut r = Reader::new(body);
    let dubbo_version = r.read_string()?;
    let service = r.read_string()?;
    let version = r.read_string_or_null()?.unwrap_or_default();
    let method = r.read_string()?;
    let args_start = r.position();
    let desc = r.read_string_or_null()?.unwrap_or_default();
    let arg_count = count_params(&desc)?;
    for _ in 0..arg_count {
        r.skip_value()?;
    }
    let args = args_start..r.position();
    let attachments = if r.at_end() {
        Vec::new()
    } else {
        r.read_string_map()?
    };
    if !r.at_end() {
        return Err(HessianError::TrailingBytes(body.len() - r.position()));
    }
    Ok(RequestInfo {
        dubbo_version,
        service,
        version,
        method,
        arg_count,
        attachments,
        args,
    })
}

/// Writes a request body: the four leading strings, `args` (descriptor and arguments, as
/// read), then `attachments` as an untyped map.
pub fn write_request<'a>(
    out: &mut Vec<u8>,
    dubbo_version: &str,
    service: &str,
    version: &str,
    method: &str,
    args: &[u8],
    attachments: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    for s in [dubbo_version, service, version, method] {
        write_string(out, s);
    }
    out.extend_from_slice(args);
    out.push(b'H');
    for (k, v) in attachments {
        write_string(out, k);
        write_string(out, v);
    }
    out.push(b'Z');
}

/// The response types of a Hessian2 OK response body (Dubbo's `DecodeableRpcResult`); the
/// `*_WITH_ATTACHMENTS` forms are these plus [`WITH_ATTACHMENTS`].
const RESPONSE_WITH_EXCEPTION: i32 = 0;
const RESPONSE_VALUE: i32 = 1;
const RESPONSE_NULL_VALUE: i32 = 2;
const WITH_ATTACHMENTS: i32 = 3;

/// An OK response body (Hessian2) with `extra` attachments added: its response type becomes
/// the `*_WITH_ATTACHMENTS` form if it had none; its value or exception and every attachment
/// it had are kept byte for byte, and `extra` is appended to the map (a key it already had is
/// written again, and Dubbo's map keeps the last value).
///
/// # Errors
/// When the body does not parse as a response.
pub fn response_with_attachments<'a>(
    body: &[u8],
    extra: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Vec<u8>, HessianError> {
    let mut r = Reader::new(body);
    let kind = r.read_int()?;
    let value_start = r.position();
    let base = if kind >= WITH_ATTACHMENTS {
        kind - WITH_ATTACHMENTS
    } else {
        kind
    };
    match base {
        RESPONSE_WITH_EXCEPTION | RESPONSE_VALUE => r.skip_value()?,
        RESPONSE_NULL_VALUE => {}
        _ => {
            return Err(HessianError::Unexpected {
                at: 0,
                code: body.first().copied().unwrap_or_default(),
                wanted: "a response type 0..=5",
            })
        }
    }
    let value_end = r.position();
    // The entries of the map the body already has (between its opening and its `Z`).
    let entries = if kind >= WITH_ATTACHMENTS && !r.at_end() {
        let map_start = r.position();
        r.skip_value()?;
        let map_end = r.position();
        match body[map_start] {
            b'N' => map_end..map_end,
            b'H' => map_start + 1..map_end - 1,
            _ => {
                // `M` type: the type follows the code.
                let mut t = Reader::new(&body[map_start + 1..map_end]);
                t.skip_value()?;
                map_start + 1 + t.position()..map_end - 1
            }
        }
    } else {
        0..0
    };
    let mut out = Vec::with_capacity(body.len() + 64);
    // Compact int: 0x90 + n for 0..=47.
    out.push(0x90 + (base + WITH_ATTACHMENTS) as u8);
    out.extend_from_slice(&body[value_start..value_end]);
    out.push(b'H');
    out.extend_from_slice(&body[entries]);
    for (k, v) in extra {
        write_string(&mut out, k);
        write_string(&mut out, v);
    }
    out.push(b'Z');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_attachments_are_added_keeping_the_value_and_the_old_ones() {
        // RESPONSE_VALUE "hi", no attachments.
        let mut plain = vec![0x91];
        write_string(&mut plain, "hi");
        let with = response_with_attachments(&plain, [("x", "y")]).unwrap();
        let mut r = Reader::new(&with);
        assert_eq!(r.read_int().unwrap(), 4);
        assert_eq!(r.read_string().unwrap(), "hi");
        assert_eq!(
            r.read_string_map().unwrap(),
            vec![("x".to_owned(), "y".to_owned())]
        );
        assert!(r.at_end());
        // Already with attachments (as Dubbo 3 sends): kept, the new one appended.
        let again = response_with_attachments(&with, [("k", "v")]).unwrap();
        let mut r = Reader::new(&again);
        assert_eq!(r.read_int().unwrap(), 4);
        assert_eq!(r.read_string().unwrap(), "hi");
        let map = r.read_string_map().unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(map[1], ("k".to_owned(), "v".to_owned()));
        // A null value and an exception keep their shape; garbage is an error.
        assert_eq!(
            response_with_attachments(&[0x92], []).unwrap(),
            [0x95, b'H', b'Z']
        );
        assert!(response_with_attachments(&[0x99], []).is_err());
        assert!(
            response_with_attachments(&[0x91], []).is_err(),
            "a value is missing"
        );
    }

    #[test]
    fn descriptors_count_parameters() {
        for (desc, n) in [
            ("", 0),
            ("I", 1),
            ("Ljava/lang/String;", 1),
            ("IJDZLjava/util/Date;[BLjava/util/List;", 7),
            ("[[Ljava/lang/Object;S", 2),
        ] {
            assert_eq!(count_params(desc), Ok(n), "{desc}");
        }
        for bad in ["Q", "L", "Ljava", "L;", "[", "I["] {
            assert!(count_params(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_written_body_reads_back() {
        let mut args = Vec::new();
        write_string(&mut args, "Ljava/lang/String;I");
        write_string(&mut args, "hi");
        args.push(0x95);
        let mut body = Vec::new();
        let attachments = [("group", "blue"), ("path", "a.B")];
        write_request(&mut body, "2.0.2", "a.B", "1.0", "m", &args, attachments);
        let info = parse_request(&body).unwrap();
        assert_eq!(
            (info.dubbo_version.as_str(), info.service.as_str()),
            ("2.0.2", "a.B")
        );
        assert_eq!((info.version.as_str(), info.method.as_str()), ("1.0", "m"));
        assert_eq!(info.arg_count, 2);
        assert_eq!(&body[info.args.clone()], &args[..]);
        assert_eq!(info.attachments.len(), 2);
        assert!(matches!(
            parse_request(&body[..body.len() - 1]),
            Err(HessianError::Truncated { .. })
        ));
        let mut trailing = body.clone();
        trailing.push(0x90);
        assert_eq!(
            parse_request(&trailing),
            Err(HessianError::TrailingBytes(1))
        );
    }
}
