//! Reading a §5.1 header section without building a map: how many pairs it holds and whether
//! it parses. For protocols whose wire format uses the same encoding (Bolt does), so a decoder
//! can validate and count headers without allocating, and build the map only when asked.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use codec_abi::LayoutError;

/// What [`scan`] found in a header section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionScan {
    /// Pairs with both key and value present: the pairs [`codec_abi::HeaderMap::decode`]
    /// keeps.
    pub pairs: usize,
    /// Pairs dropped because the key or value is absent (length `0xFFFFFFFF`).
    pub absent: usize,
}

impl SectionScan {
    /// True when re-encoding the decoded map gives back exactly the scanned bytes (no absent
    /// pairs were dropped).
    pub fn is_canonical(&self) -> bool {
        self.absent == 0
    }
}

/// Walks a §5.1 section exactly as [`codec_abi::HeaderMap::decode`] does (same errors), without
/// allocating.
///
/// # Errors
/// [`LayoutError::Truncated`] when a length or string runs past the end of `section`.
pub fn scan(section: &[u8]) -> Result<SectionScan, LayoutError> {
    let mut at = 0;
    let mut found = SectionScan {
        pairs: 0,
        absent: 0,
    };
    while at < section.len() {
        let key = skip_string(section, &mut at, "header key")?;
        let value = skip_string(section, &mut at, "header value")?;
        if key && value {
            found.pairs += 1;
        } else {
            found.absent += 1;
        }
    }
    Ok(found)
}

/// Skips one `u32be len, bytes` string; false for the absent marker `0xFFFFFFFF`.
fn skip_string(section: &[u8], at: &mut usize, what: &'static str) -> Result<bool, LayoutError> {
    let have = section.len() - *at;
    let Some(len) = section.get(*at..*at + 4) else {
        return Err(LayoutError::Truncated {
            what,
            offset: *at,
            need: 4,
            have,
        });
    };
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
    *at += 4;
    if len == u32::MAX {
        return Ok(false);
    }
    let have = section.len() - *at;
    if len as usize > have {
        return Err(LayoutError::Truncated {
            what,
            offset: *at,
            need: len as usize,
            have,
        });
    }
    *at += len as usize;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use codec_abi::HeaderMap;

    fn section(pairs: &[(&str, &str)]) -> Vec<u8> {
        let map: HeaderMap = pairs.iter().copied().collect();
        let mut out = Vec::new();
        map.encode_into(&mut out);
        out
    }

    #[test]
    fn counts_like_the_map_decoder() {
        let mut s = section(&[("a", "1"), ("a", "2"), ("service", "")]);
        assert_eq!(
            scan(&s),
            Ok(SectionScan {
                pairs: 3,
                absent: 0
            })
        );
        s.extend_from_slice(&u32::MAX.to_be_bytes());
        s.extend_from_slice(&0u32.to_be_bytes());
        let found = scan(&s).unwrap();
        assert_eq!((found.pairs, found.absent), (3, 1));
        assert!(!found.is_canonical());
        assert_eq!(HeaderMap::decode(&s).unwrap().len(), found.pairs);
        assert_eq!(
            scan(&[]),
            Ok(SectionScan {
                pairs: 0,
                absent: 0
            })
        );
    }

    #[test]
    fn fails_exactly_where_the_map_decoder_fails() {
        let mut s = section(&[("service", "com.foo:1.0"), ("k", "")]);
        s.extend_from_slice(&u32::MAX.to_be_bytes());
        s.extend_from_slice(&[0, 0, 0, 1, b'v']);
        for cut in 0..=s.len() {
            assert_eq!(
                scan(&s[..cut]).err(),
                HeaderMap::decode(&s[..cut]).err(),
                "cut {cut}"
            );
        }
        assert!(scan(&[0x7f, 0xff, 0xff, 0xfe, b'a']).is_err());
    }
}
