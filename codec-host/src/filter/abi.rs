//! The proxy-wasm ABI as the SDKs speak it: the versions the host accepts (each module says
//! which it speaks by exporting an empty `proxy_abi_version_*` function), and the numbers
//! the hostcalls exchange (status, map, buffer and stream types, actions, metric kinds, log
//! levels). The values are those of the spec and of the Rust `proxy-wasm` crate's `types.rs`.

/// A proxy-wasm ABI version the host speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AbiVersion {
    /// `proxy_abi_version_0_1_0` (MOSN's sample filters): header callbacks take
    /// `(context_id, num_headers)`, streams continue with `proxy_continue_request` /
    /// `proxy_continue_response`, configuration comes from `proxy_get_configuration`.
    V0_1_0,
    /// `proxy_abi_version_0_2_0`.
    V0_2_0,
    /// `proxy_abi_version_0_2_1` (the Rust `proxy-wasm` crate 0.2, the Go SDKs).
    V0_2_1,
}

impl AbiVersion {
    /// Every version with its marker export, newest first.
    pub const ALL: [(&'static str, AbiVersion); 3] = [
        ("proxy_abi_version_0_2_1", AbiVersion::V0_2_1),
        ("proxy_abi_version_0_2_0", AbiVersion::V0_2_0),
        ("proxy_abi_version_0_1_0", AbiVersion::V0_1_0),
    ];

    /// The markers the host accepts, for messages.
    pub const MARKERS: &'static str =
        "proxy_abi_version_0_2_1, proxy_abi_version_0_2_0 or proxy_abi_version_0_1_0";

    /// The version whose marker is `export`, if the host speaks it.
    pub fn from_marker(export: &str) -> Option<AbiVersion> {
        AbiVersion::ALL
            .iter()
            .find(|(m, _)| *m == export)
            .map(|(_, v)| *v)
    }

    /// The version as the spec writes it (`0.2.1`).
    pub fn as_str(self) -> &'static str {
        match self {
            AbiVersion::V0_1_0 => "0.1.0",
            AbiVersion::V0_2_0 => "0.2.0",
            AbiVersion::V0_2_1 => "0.2.1",
        }
    }

    /// Whether the header callbacks take an `end_of_stream` argument (0.2.x).
    pub(crate) fn headers_have_end_of_stream(self) -> bool {
        self != AbiVersion::V0_1_0
    }
}

/// Status values a hostcall returns.
pub(crate) mod status {
    pub(crate) const OK: i32 = 0;
    pub(crate) const NOT_FOUND: i32 = 1;
    pub(crate) const BAD_ARGUMENT: i32 = 2;
    pub(crate) const INVALID_MEMORY_ACCESS: i32 = 6;
    pub(crate) const EMPTY: i32 = 7;
    pub(crate) const CAS_MISMATCH: i32 = 8;
    pub(crate) const INTERNAL_FAILURE: i32 = 10;
    pub(crate) const UNIMPLEMENTED: i32 = 12;
}

/// Header map types (`MapType`).
pub(crate) mod map_type {
    pub(crate) const REQUEST_HEADERS: i32 = 0;
    pub(crate) const RESPONSE_HEADERS: i32 = 2;
}

/// Buffer types (`BufferType`).
pub(crate) mod buffer_type {
    pub(crate) const REQUEST_BODY: i32 = 0;
    pub(crate) const RESPONSE_BODY: i32 = 1;
    pub(crate) const VM_CONFIGURATION: i32 = 6;
    pub(crate) const PLUGIN_CONFIGURATION: i32 = 7;
}

/// Stream types (`StreamType`) of `proxy_continue_stream` / `proxy_close_stream`.
pub(crate) mod stream_type {
    pub(crate) const REQUEST: i32 = 0;
    pub(crate) const RESPONSE: i32 = 1;
}

/// What a stream callback answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Go on with the call.
    Continue,
    /// Hold the call until the filter continues it (`proxy_continue_stream`), answers it
    /// (`proxy_send_local_response`) or its deadline passes.
    Pause,
}

impl Action {
    /// The callback's return value: 0 continues, anything else pauses (Envoy reads every
    /// non-zero value as a stop).
    pub(crate) fn from_raw(raw: u32) -> Action {
        if raw == 0 {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

/// The kind of a metric a filter defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (`proxy_increment_metric`).
    Counter,
    /// Set or moved either way (`proxy_record_metric`, `proxy_increment_metric`).
    Gauge,
    /// Observations (`proxy_record_metric`): exported as count and sum.
    Histogram,
}

impl MetricKind {
    /// The kind of `MetricType` value `raw`.
    pub(crate) fn from_raw(raw: i32) -> Option<MetricKind> {
        match raw {
            0 => Some(MetricKind::Counter),
            1 => Some(MetricKind::Gauge),
            2 => Some(MetricKind::Histogram),
            _ => None,
        }
    }
}

/// Serializes header pairs the proxy-wasm way: `u32le count`, then `u32le key_len, u32le
/// value_len` per pair, then each key and value followed by a NUL.
pub fn serialize_pairs<'a>(pairs: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
    let pairs: Vec<(&[u8], &[u8])> = pairs.collect();
    let size: usize = 4 + pairs
        .iter()
        .map(|(k, v)| 10 + k.len() + v.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in &pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Parses the proxy-wasm pair serialization ([`serialize_pairs`]); `None` when it is
/// malformed (lengths past the end, a missing NUL). Lengths are checked before anything is
/// allocated.
pub(crate) fn parse_pairs(buf: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    if buf.is_empty() {
        return Some(Vec::new());
    }
    let u32_at = |at: usize| -> Option<usize> {
        let b = buf.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = u32_at(0)?;
    let mut sizes_at = 4usize;
    let mut data_at = 4usize.checked_add(count.checked_mul(8)?)?;
    if data_at > buf.len() {
        return None;
    }
    let mut pairs = Vec::with_capacity(count);
    for _ in 0..count {
        let (klen, vlen) = (u32_at(sizes_at)?, u32_at(sizes_at + 4)?);
        sizes_at += 8;
        let key = buf.get(data_at..data_at.checked_add(klen)?)?;
        data_at += klen;
        if buf.get(data_at) != Some(&0) {
            return None;
        }
        data_at += 1;
        let value = buf.get(data_at..data_at.checked_add(vlen)?)?;
        data_at += vlen;
        if buf.get(data_at) != Some(&0) {
            return None;
        }
        data_at += 1;
        pairs.push((key.to_vec(), value.to_vec()));
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_name_their_versions() {
        assert_eq!(
            AbiVersion::from_marker("proxy_abi_version_0_1_0"),
            Some(AbiVersion::V0_1_0)
        );
        assert_eq!(
            AbiVersion::from_marker("proxy_abi_version_0_2_1").map(AbiVersion::as_str),
            Some("0.2.1")
        );
        assert_eq!(AbiVersion::from_marker("proxy_abi_version_0_3_0"), None);
    }

    #[test]
    fn pairs_round_trip_as_the_sdk_serializes_them() {
        let pairs: Vec<(&[u8], &[u8])> = vec![(b"service", b"com.a.B:1.0"), (b"k", b"")];
        let bytes = serialize_pairs(pairs.iter().copied());
        // The Rust SDK's `utils::serialize_map` layout, by hand.
        let mut expected = vec![2, 0, 0, 0, 7, 0, 0, 0, 11, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(b"service\0com.a.B:1.0\0k\0\0");
        assert_eq!(bytes, expected);
        let parsed = parse_pairs(&bytes).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0], (b"service".to_vec(), b"com.a.B:1.0".to_vec()));
        assert_eq!(parsed[1], (b"k".to_vec(), Vec::new()));
    }

    #[test]
    fn malformed_pairs_are_refused_without_allocating_their_claims() {
        assert_eq!(parse_pairs(&[]), Some(Vec::new()));
        assert_eq!(parse_pairs(&[0xff, 0xff, 0xff, 0xff]), None, "huge count");
        let mut bytes = serialize_pairs([(&b"a"[..], &b"b"[..])].into_iter());
        let last = bytes.len() - 1;
        bytes[last] = b'x';
        assert_eq!(parse_pairs(&bytes), None, "missing NUL");
        assert_eq!(parse_pairs(&bytes[..6]), None, "truncated");
    }
}
