//! The header rule of encode (ABI §6.3 step 5): the host's header map is applied to the
//! cached command only when its pair count differs; then every key the command has is updated
//! from the host map or deleted when the host map lacks it. Keys are never added.

use codec_abi::{HeaderMap, LayoutError};

use crate::protocol::Command;

/// Applies the host's §5.1 header section to `command`. Returns whether the command's headers
/// were touched (which makes the next encode rebuild the frame).
///
/// # Errors
/// [`LayoutError`] when the host's header section does not parse.
pub(crate) fn apply<C: Command>(command: &mut C, host_section: &[u8]) -> Result<bool, LayoutError> {
    if count_pairs(host_section)? == command.headers().len() {
        return Ok(false);
    }
    let host = HeaderMap::decode(host_section)?;
    let differs = command
        .headers()
        .iter()
        .any(|(key, value)| host.get(key) != Some(value));
    if !differs {
        // Same keys and values, the host only added keys: nothing the rule would change.
        return Ok(false);
    }
    let updated: HeaderMap = command
        .headers()
        .iter()
        .filter_map(|(key, _)| host.get(key).map(|value| (key.to_vec(), value.to_vec())))
        .collect();
    *command.headers_mut() = updated;
    Ok(true)
}

/// Counts the pairs of a §5.1 section the way [`HeaderMap::decode`] keeps them (pairs with an
/// absent key or value do not count), without allocating.
fn count_pairs(section: &[u8]) -> Result<usize, LayoutError> {
    let mut at = 0;
    let mut count = 0;
    while at < section.len() {
        let key_present = skip_string(section, &mut at)?;
        let value_present = skip_string(section, &mut at)?;
        if key_present && value_present {
            count += 1;
        }
    }
    Ok(count)
}

/// Skips one `u32be len, bytes` string; false for the absent marker `0xFFFFFFFF`.
fn skip_string(section: &[u8], at: &mut usize) -> Result<bool, LayoutError> {
    let have = section.len() - *at;
    let Some(len) = section.get(*at..*at + 4) else {
        return Err(LayoutError::Truncated {
            what: "header length",
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
            what: "header string",
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
    use codec_abi::FrameKind;

    #[derive(Default)]
    struct Cmd {
        headers: HeaderMap,
        touched: bool,
    }

    impl Command for Cmd {
        fn kind(&self) -> FrameKind {
            FrameKind::Request
        }
        fn id(&self) -> u64 {
            0
        }
        fn set_id(&mut self, _: u64) {}
        fn headers(&self) -> &HeaderMap {
            &self.headers
        }
        fn headers_mut(&mut self) -> &mut HeaderMap {
            self.touched = true;
            &mut self.headers
        }
        fn body(&self) -> &[u8] {
            &[]
        }
        fn set_body(&mut self, _: Vec<u8>) {}
        fn timeout_or_status(&self) -> u32 {
            0
        }
    }

    fn cmd(pairs: &[(&str, &str)]) -> Cmd {
        Cmd {
            headers: pairs.iter().copied().collect(),
            touched: false,
        }
    }

    fn section(pairs: &[(&str, &str)]) -> Vec<u8> {
        let map: HeaderMap = pairs.iter().copied().collect();
        let mut out = Vec::new();
        map.encode_into(&mut out);
        out
    }

    #[test]
    fn same_count_ignores_changes() {
        let mut c = cmd(&[("a", "1"), ("b", "2")]);
        assert!(!apply(&mut c, &section(&[("a", "9"), ("c", "3")])).unwrap());
        assert_eq!(c.headers, [("a", "1"), ("b", "2")].into_iter().collect());
        assert!(!c.touched);
    }

    #[test]
    fn different_count_updates_and_deletes_but_never_adds() {
        let mut c = cmd(&[("a", "1"), ("b", "2"), ("c", "3")]);
        assert!(apply(&mut c, &section(&[("a", "9"), ("c", "3")])).unwrap());
        assert_eq!(c.headers, [("a", "9"), ("c", "3")].into_iter().collect());

        let mut c = cmd(&[("a", "1")]);
        assert!(apply(&mut c, &section(&[("a", "2"), ("new", "x")])).unwrap());
        assert_eq!(c.headers, [("a", "2")].into_iter().collect());
    }

    #[test]
    fn added_keys_alone_change_nothing() {
        let mut c = cmd(&[("a", "1")]);
        assert!(!apply(&mut c, &section(&[("a", "1"), ("new", "x")])).unwrap());
        assert!(!c.touched);
    }

    #[test]
    fn empty_host_map_deletes_everything() {
        let mut c = cmd(&[("a", "1"), ("b", "2")]);
        assert!(apply(&mut c, &[]).unwrap());
        assert!(c.headers.is_empty());
    }

    #[test]
    fn absent_pairs_do_not_count_and_bad_sections_fail() {
        let mut s = section(&[("a", "1")]);
        s.extend_from_slice(&u32::MAX.to_be_bytes());
        s.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(count_pairs(&s).unwrap(), 1);
        for cut in 1..s.len() {
            if cut == 10 {
                continue; // one whole pair
            }
            assert!(count_pairs(&s[..cut]).is_err(), "cut {cut}");
        }
        let mut c = cmd(&[]);
        assert!(apply(&mut c, &[0, 0, 0, 9, b'x']).is_err());
    }
}
