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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl HeaderMap {
    /// An empty map.
    pub fn new() -> HeaderMap {
        HeaderMap { pairs: Vec::new() }
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True when the map has no pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(k, _)| k.as_slice() == key)
            .map(|(_, v)| v.as_slice())
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
        match self.pairs.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.pairs.push((key, value)),
        }
    }

    /// Appends a pair without looking for an existing key (decoders keep wire order and
    /// duplicates).
    pub fn push(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.pairs.push((key.into(), value.into()));
    }

    /// Removes every pair with `key`; returns whether any was present.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        let before = self.pairs.len();
        self.pairs.retain(|(k, _)| k.as_slice() != key);
        self.pairs.len() != before
    }

    /// The pairs in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> {
        self.pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// Bytes taken by [`HeaderMap::encode_into`]: Σ(8 + |k| + |v|).
    pub fn encoded_len(&self) -> usize {
        self.pairs.iter().map(|(k, v)| 8 + k.len() + v.len()).sum()
    }

    /// Appends the §5.1 encoding: `u32be key_len, key, u32be val_len, val` per pair.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        for (k, v) in &self.pairs {
            out.extend_from_slice(&(k.len() as u32).to_be_bytes());
            out.extend_from_slice(k);
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v);
        }
    }

    /// Parses a whole §5.1 buffer. A length of `0xFFFFFFFF` marks an absent (null) key or
    /// value; such pairs are dropped, as sofa-rpc does. Lengths are checked against the
    /// buffer before anything is allocated.
    ///
    /// # Errors
    /// [`LayoutError::Truncated`] when a length or string runs past the end of `buf`.
    pub fn decode(buf: &[u8]) -> Result<HeaderMap, LayoutError> {
        let mut map = HeaderMap::new();
        let mut at = 0;
        while at < buf.len() {
            let key = read_string(buf, &mut at, "header key")?;
            let value = read_string(buf, &mut at, "header value")?;
            if let (Some(k), Some(v)) = (key, value) {
                map.pairs.push((k.to_vec(), v.to_vec()));
            }
        }
        Ok(map)
    }
}

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
        HeaderMap {
            pairs: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
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
