//! The ordered header map and its big-endian "EncodeHeader" layout (§5.1), which is also
//! Bolt's header section encoding.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use crate::error::LayoutError;

/// Length value meaning "absent" (Java null) in a header map (§5.1).
const ABSENT: u32 = u32::MAX;

/// An ordered map of header pairs. Keys and values are bytes (SOFA writes UTF-8, but the map
/// never rejects other bytes); lookups are case-sensitive linear scans, as in MOSN. Insertion
/// order is kept, so an unchanged map re-encodes byte for byte.
///
/// The map is stored as its own §5.1 encoding (one buffer, no absent markers): decoding a
/// section is one validation pass and one copy, encoding it is one copy, and a map with n
/// pairs costs one allocation instead of 1 + 2n. Edits (`insert`, `remove`) rewrite the
/// buffer; they are rare next to decodes, encodes and lookups.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    /// `u32be key_len, key, u32be val_len, val` per pair, in order.
    encoded: Vec<u8>,
    /// Number of pairs in `encoded`.
    pairs: usize,
}

impl HeaderMap {
    /// An empty map.
    pub fn new() -> HeaderMap {
        HeaderMap {
            encoded: Vec::new(),
            pairs: 0,
        }
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.pairs
    }

    /// True when the map has no pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs == 0
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The value of `key` as text; `None` when absent or not UTF-8.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key.as_bytes())
            .and_then(|v| core::str::from_utf8(v).ok())
    }

    /// Sets `key` to `value`: replaces the first pair with that key in place, else appends.
    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        let key = key.into();
        let value = value.into();
        match self.locate(&key) {
            Some(value_at) => {
                // The value and its length prefix are replaced; the key stays where it is.
                let prefix = (value.len() as u32).to_be_bytes();
                self.encoded.splice(
                    value_at.start - 4..value_at.end,
                    prefix.into_iter().chain(value.iter().copied()),
                );
            }
            None => self.push(key, value),
        }
    }

    /// Appends a pair without looking for an existing key (decoders keep wire order and
    /// duplicates).
    pub fn push(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.push_slices(&key.into(), &value.into());
    }

    /// Appends a pair from borrowed bytes (no intermediate allocation).
    pub fn push_slices(&mut self, key: &[u8], value: &[u8]) {
        push_encoded(&mut self.encoded, key, value);
        self.pairs += 1;
    }

    /// Removes every pair with `key`; returns whether any was present.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        if self.locate(key).is_none() {
            return false;
        }
        let mut kept = HeaderMap::new();
        for (k, v) in self.iter().filter(|(k, _)| *k != key) {
            kept.push_slices(k, v);
        }
        *self = kept;
        true
    }

    /// The pairs in order.
    pub fn iter(&self) -> Pairs<'_> {
        Pairs {
            buf: &self.encoded,
            left: self.pairs,
        }
    }

    /// Bytes taken by [`HeaderMap::encode_into`]: Σ(8 + |k| + |v|).
    pub fn encoded_len(&self) -> usize {
        self.encoded.len()
    }

    /// Appends the §5.1 encoding: `u32be key_len, key, u32be val_len, val` per pair.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.encoded);
    }

    /// Parses a whole §5.1 buffer. A length of `0xFFFFFFFF` marks an absent (null) key or
    /// value; such pairs are dropped, as sofa-rpc does. Lengths are checked against the
    /// buffer before anything is allocated.
    ///
    /// # Errors
    /// [`LayoutError::Truncated`] when a length or string runs past the end of `buf`.
    pub fn decode(buf: &[u8]) -> Result<HeaderMap, LayoutError> {
        let mut pairs = 0;
        let mut absent = false;
        let mut at = 0;
        while at < buf.len() {
            let key = read_string(buf, &mut at, "header key")?;
            let value = read_string(buf, &mut at, "header value")?;
            match (key, value) {
                (Some(_), Some(_)) => pairs += 1,
                _ => absent = true,
            }
        }
        if !absent {
            // The common case: the section is already the map's encoding.
            return Ok(HeaderMap {
                encoded: buf.to_vec(),
                pairs,
            });
        }
        let mut map = HeaderMap::new();
        let mut at = 0;
        while at < buf.len() {
            let key = read_string(buf, &mut at, "header key")?;
            let value = read_string(buf, &mut at, "header value")?;
            if let (Some(k), Some(v)) = (key, value) {
                map.push_slices(k, v);
            }
        }
        Ok(map)
    }

    /// Where the value of the first pair with `key` lies in `encoded` (its length prefix is
    /// the 4 bytes before).
    fn locate(&self, key: &[u8]) -> Option<core::ops::Range<usize>> {
        let mut at = 0;
        for _ in 0..self.pairs {
            let (k, next) = split_string(&self.encoded, at);
            let (_, end) = split_string(&self.encoded, next);
            if self.encoded[k] == *key {
                return Some(next + 4..end);
            }
            at = end;
        }
        None
    }
}

impl core::fmt::Debug for HeaderMap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(k, v)| (shown(k), shown(v))))
            .finish()
    }
}

/// A byte string shown as text where it is UTF-8, else as its bytes.
fn shown(bytes: &[u8]) -> impl core::fmt::Debug + '_ {
    struct Shown<'a>(&'a [u8]);
    impl core::fmt::Debug for Shown<'_> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match core::str::from_utf8(self.0) {
                Ok(s) => s.fmt(f),
                Err(_) => self.0.fmt(f),
            }
        }
    }
    Shown(bytes)
}

/// The string whose length prefix starts at `at` in a valid encoding, and where the next
/// length prefix starts.
fn split_string(buf: &[u8], at: usize) -> (core::ops::Range<usize>, usize) {
    let len = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
    (at + 4..at + 4 + len, at + 4 + len)
}

/// Appends one pair's §5.1 encoding.
fn push_encoded(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.reserve(8 + key.len() + value.len());
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value);
}

/// The pairs of a [`HeaderMap`], in order.
#[derive(Clone)]
pub struct Pairs<'a> {
    /// The encoding of the pairs not yet yielded.
    buf: &'a [u8],
    /// How many they are.
    left: usize,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let (k, next) = split_string(self.buf, 0);
        let (v, end) = split_string(self.buf, next);
        let buf = self.buf;
        self.buf = &buf[end..];
        self.left -= 1;
        Some((&buf[k], &buf[v]))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Pairs<'_> {}

/// Reads one `u32be len, bytes` string at `*at`; `None` for the absent marker.
fn read_string<'a>(
    buf: &'a [u8],
    at: &mut usize,
    what: &'static str,
) -> Result<Option<&'a [u8]>, LayoutError> {
    let len_bytes = buf.get(*at..*at + 4).ok_or(LayoutError::Truncated {
        what,
        offset: *at,
        need: 4,
        have: buf.len() - *at,
    })?;
    let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
    *at += 4;
    if len == ABSENT {
        return Ok(None);
    }
    let len = len as usize;
    let have = buf.len() - *at;
    if len > have {
        return Err(LayoutError::Truncated {
            what,
            offset: *at,
            need: len,
            have,
        });
    }
    let s = &buf[*at..*at + len];
    *at += len;
    Ok(Some(s))
}

impl<K: Into<Vec<u8>>, V: Into<Vec<u8>>> FromIterator<(K, V)> for HeaderMap {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = HeaderMap::new();
        for (k, v) in iter {
            map.push(k, v);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_spec_test_vector() {
        let map: HeaderMap = [("k", "v")].into_iter().collect();
        let mut out = Vec::new();
        map.encode_into(&mut out);
        assert_eq!(out, [0, 0, 0, 1, b'k', 0, 0, 0, 1, b'v']);
        assert_eq!(map.encoded_len(), out.len());
        assert_eq!(HeaderMap::decode(&out).unwrap(), map);
    }

    #[test]
    fn keeps_order_and_replaces_in_place() {
        let mut map = HeaderMap::new();
        map.insert("b", "1");
        map.insert("a", "2");
        map.insert("b", "3");
        let pairs: Vec<_> = map.iter().collect();
        assert_eq!(pairs, [(&b"b"[..], &b"3"[..]), (&b"a"[..], &b"2"[..])]);
        assert!(map.remove(b"b"));
        assert!(!map.remove(b"b"));
        assert_eq!(map.get_str("a"), Some("2"));
    }

    #[test]
    fn replacing_a_value_of_another_length_keeps_the_encoding_valid() {
        let mut map: HeaderMap = [("a", "1"), ("service", "x"), ("z", "26")]
            .into_iter()
            .collect();
        map.insert("service", "com.foo.Bar:1.0");
        map.insert("a", "");
        let mut expected = HeaderMap::new();
        expected.push("a", "");
        expected.push("service", "com.foo.Bar:1.0");
        expected.push("z", "26");
        assert_eq!(map, expected);
        assert_eq!(map.len(), 3);
        let mut out = Vec::new();
        map.encode_into(&mut out);
        assert_eq!(HeaderMap::decode(&out).unwrap(), map);
        assert_eq!(map.iter().len(), 3);
        assert_eq!(
            format!("{map:?}"),
            r#"{"a": "", "service": "com.foo.Bar:1.0", "z": "26"}"#
        );
    }

    #[test]
    fn absent_pairs_are_dropped_between_present_ones() {
        let mut buf = Vec::new();
        push_encoded(&mut buf, b"k1", b"v1");
        buf.extend_from_slice(&u32::MAX.to_be_bytes());
        buf.extend_from_slice(&1u32.to_be_bytes());
        buf.push(b'x');
        push_encoded(&mut buf, b"k2", b"v2");
        let map = HeaderMap::decode(&buf).unwrap();
        let pairs: Vec<_> = map.iter().collect();
        assert_eq!(pairs, [(&b"k1"[..], &b"v1"[..]), (&b"k2"[..], &b"v2"[..])]);
        assert_eq!(map.encoded_len(), 2 * (8 + 4));
    }

    #[test]
    fn absent_strings_drop_the_pair() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&u32::MAX.to_be_bytes());
        buf.extend_from_slice(&1u32.to_be_bytes());
        buf.push(b'x');
        buf.extend_from_slice(&1u32.to_be_bytes());
        buf.push(b'k');
        buf.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(HeaderMap::decode(&buf).unwrap().is_empty());
    }

    #[test]
    fn truncation_is_an_error_at_every_cut() {
        let map: HeaderMap = [("service", "com.foo:1.0"), ("k", "")]
            .into_iter()
            .collect();
        let mut out = Vec::new();
        map.encode_into(&mut out);
        for cut in 1..out.len() {
            if cut == 4 + 7 + 4 + 11 {
                continue; // a whole pair: valid on its own
            }
            assert!(HeaderMap::decode(&out[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn huge_lengths_do_not_allocate() {
        let buf = [0x7f, 0xff, 0xff, 0xfe, b'a'];
        assert!(matches!(
            HeaderMap::decode(&buf),
            Err(LayoutError::Truncated {
                need: 0x7fff_fffe,
                ..
            })
        ));
    }
}
