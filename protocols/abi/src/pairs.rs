//! The proxy-wasm pairs serialisation (§5.2), little-endian: used for the VM and plugin
//! configuration buffers.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use crate::error::LayoutError;

/// One borrowed `(key, value)` pair.
pub type Pair<'a> = (&'a [u8], &'a [u8]);

/// Size of the §5.2 encoding of `pairs`: 4 + Σ(10 + |k| + |v|); 0 for no pairs.
pub fn pairs_len<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> usize {
    if pairs.is_empty() {
        return 0;
    }
    4 + pairs
        .iter()
        .map(|(k, v)| 10 + k.as_ref().len() + v.as_ref().len())
        .sum::<usize>()
}

/// Encodes pairs as §5.2: `u32le N`, N × (`u32le key_len`, `u32le val_len`), then each
/// `key, 0, val, 0`. No pairs encode as zero bytes (an empty map).
pub fn encode_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pairs_len(pairs));
    if pairs.is_empty() {
        return out;
    }
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.as_ref().len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.as_ref().len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

/// Parses a §5.2 buffer into borrowed pairs. The terminator bytes are skipped unchecked, as
/// the Go SDK does. The pair count is checked against the buffer size before allocating.
///
/// # Errors
/// [`LayoutError`] when the count or a length runs past the end of `buf`.
pub fn decode_pairs(buf: &[u8]) -> Result<Vec<Pair<'_>>, LayoutError> {
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    let count = read_u32le(buf, 0, "pair count")? as usize;
    // Each pair needs at least 8 bytes of sizes and 2 terminators.
    if count > (buf.len() - 4) / 10 {
        return Err(LayoutError::BadLength {
            what: "pair count",
            value: count as u64,
        });
    }
    let mut sizes_at = 4;
    let mut data_at = 4 + count * 8;
    let mut pairs = Vec::with_capacity(count);
    for _ in 0..count {
        let klen = read_u32le(buf, sizes_at, "pair key size")? as usize;
        let vlen = read_u32le(buf, sizes_at + 4, "pair value size")? as usize;
        sizes_at += 8;
        let key = slice(buf, data_at, klen, "pair key")?;
        data_at += klen + 1;
        let value = slice(buf, data_at, vlen, "pair value")?;
        data_at += vlen + 1;
        if data_at > buf.len() {
            return Err(LayoutError::Truncated {
                what: "pair terminator",
                offset: data_at - 1,
                need: 1,
                have: 0,
            });
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

fn read_u32le(buf: &[u8], at: usize, what: &'static str) -> Result<u32, LayoutError> {
    let b = slice(buf, at, 4, what)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn slice<'a>(
    buf: &'a [u8],
    at: usize,
    len: usize,
    what: &'static str,
) -> Result<&'a [u8], LayoutError> {
    let have = buf.len().saturating_sub(at);
    if at > buf.len() || len > have {
        return Err(LayoutError::Truncated {
            what,
            offset: at,
            need: len,
            have,
        });
    }
    Ok(&buf[at..at + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_spec_example() {
        let out = encode_pairs(&[("protocol", "x")]);
        let mut want = vec![1, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0];
        want.extend_from_slice(b"protocol\0x\0");
        assert_eq!(out, want);
        assert_eq!(pairs_len(&[("protocol", "x")]), out.len());
        assert_eq!(
            decode_pairs(&out).unwrap(),
            vec![(&b"protocol"[..], &b"x"[..])]
        );
    }

    #[test]
    fn empty_map_is_zero_bytes() {
        let none: [(&str, &str); 0] = [];
        assert!(encode_pairs(&none).is_empty());
        assert!(decode_pairs(&[]).unwrap().is_empty());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let out = encode_pairs(&[("Engine", "wasmer"), ("Path", "")]);
        for cut in 1..out.len() {
            assert!(decode_pairs(&out[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn absurd_counts_are_refused_before_allocating() {
        let buf = [0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0];
        assert!(matches!(
            decode_pairs(&buf),
            Err(LayoutError::BadLength { .. })
        ));
    }
}
