//! The header rule of encode (ABI §6.3 step 5), in one place for every codec built from a
//! [`Protocol`](crate::Protocol): the host's header map is applied to the cached command only
//! when its pair count differs; then every key the command has is updated from the host map
//! or deleted when the host map lacks it. Keys are never added. The guest dispatcher applies
//! it to the §5.1 section the host sends; a native codec host to the frame's edited map.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use codec_abi::{HeaderMap, LayoutError};

use crate::header_section;
use crate::protocol::Command;

/// Applies the edited header map `edited` to `command` by the encode header rule: nothing
/// happens when `edited` has as many pairs as the command; otherwise each key the command
/// has takes its value from `edited`, or is removed when `edited` lacks it, and keys only
/// `edited` has are ignored. Returns whether the command's headers were touched (which makes
/// the next encode rebuild the frame).
///
/// The guest SDK applies this to the header map the host sends with every encode; a native
/// host calls it with the frame's edited headers, so both agree.
pub fn apply_header_edits<C: Command>(command: &mut C, edited: &HeaderMap) -> bool {
    if edited.len() == command.header_count() {
        return false;
    }
    let differs = command
        .headers()
        .iter()
        .any(|(key, value)| edited.get(key) != Some(value));
    if !differs {
        // Same keys and values, the host only added keys: nothing the rule would change.
        return false;
    }
    let updated: HeaderMap = command
        .headers()
        .iter()
        .filter_map(|(key, _)| edited.get(key).map(|value| (key.to_vec(), value.to_vec())))
        .collect();
    *command.headers_mut() = updated;
    true
}

/// [`apply_header_edits`] with the host's §5.1 header section. The pairs are counted without
/// building the map, so the usual case (an unchanged count) allocates nothing.
///
/// # Errors
/// [`LayoutError`] when the host's header section does not parse.
pub(crate) fn apply_section<C: Command>(
    command: &mut C,
    host_section: &[u8],
) -> Result<bool, LayoutError> {
    if header_section::scan(host_section)?.pairs == command.header_count() {
        return Ok(false);
    }
    Ok(apply_header_edits(
        command,
        &HeaderMap::decode(host_section)?,
    ))
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
        assert!(!apply_section(&mut c, &section(&[("a", "9"), ("c", "3")])).unwrap());
        assert_eq!(c.headers, [("a", "1"), ("b", "2")].into_iter().collect());
        assert!(!c.touched);
    }

    #[test]
    fn different_count_updates_and_deletes_but_never_adds() {
        let mut c = cmd(&[("a", "1"), ("b", "2"), ("c", "3")]);
        assert!(apply_section(&mut c, &section(&[("a", "9"), ("c", "3")])).unwrap());
        assert_eq!(c.headers, [("a", "9"), ("c", "3")].into_iter().collect());

        let mut c = cmd(&[("a", "1")]);
        assert!(apply_section(&mut c, &section(&[("a", "2"), ("new", "x")])).unwrap());
        assert_eq!(c.headers, [("a", "2")].into_iter().collect());
    }

    #[test]
    fn added_keys_alone_change_nothing() {
        let mut c = cmd(&[("a", "1")]);
        assert!(!apply_section(&mut c, &section(&[("a", "1"), ("new", "x")])).unwrap());
        assert!(!c.touched);
    }

    #[test]
    fn empty_host_map_deletes_everything() {
        let mut c = cmd(&[("a", "1"), ("b", "2")]);
        assert!(apply_section(&mut c, &[]).unwrap());
        assert!(c.headers.is_empty());
    }

    #[test]
    fn absent_pairs_do_not_count_and_bad_sections_fail() {
        let mut s = section(&[("a", "1")]);
        s.extend_from_slice(&u32::MAX.to_be_bytes());
        s.extend_from_slice(&0u32.to_be_bytes());
        // One present pair, as the command has: nothing applies.
        let mut c = cmd(&[("a", "9")]);
        assert!(!apply_section(&mut c, &s).unwrap());
        let mut c = cmd(&[]);
        assert!(apply_section(&mut c, &[0, 0, 0, 9, b'x']).is_err());
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs.iter().copied().collect()
    }

    #[test]
    fn edited_maps_follow_the_same_rule() {
        // Same count: edits are ignored.
        let mut c = cmd(&[("a", "1"), ("b", "2")]);
        assert!(!apply_header_edits(&mut c, &map(&[("a", "9"), ("c", "3")])));
        assert_eq!(c.headers, map(&[("a", "1"), ("b", "2")]));
        assert!(!c.touched);
        // Different count: update and delete, never add.
        let mut c = cmd(&[("a", "1"), ("b", "2"), ("c", "3")]);
        assert!(apply_header_edits(
            &mut c,
            &map(&[("a", "9"), ("new", "x")])
        ));
        assert_eq!(c.headers, map(&[("a", "9")]));
        // Only added keys: untouched.
        let mut c = cmd(&[("a", "1")]);
        assert!(!apply_header_edits(
            &mut c,
            &map(&[("a", "1"), ("new", "x")])
        ));
        assert!(!c.touched);
    }
}
