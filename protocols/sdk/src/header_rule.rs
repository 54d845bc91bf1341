//! The header rule of encode (ABI §6.3 step 5), in one place for every codec built from a
//! [`Protocol`](crate::Protocol): when the host's header map differs from the cached
//! command's, the host's map is what gets encoded (values changed, keys removed and keys
//! added alike: a proxy-wasm filter that adds a header must see it on the wire). An unchanged
//! map (the host sends the section exactly as decoded) is recognised by its bytes and costs
//! nothing. The guest dispatcher applies it to the §5.1 section the host sends; a native
//! codec host to the frame's edited map.
//!
//! MOSN's own Go SDK is narrower (it applies edits only when the pair count changes and
//! never adds keys, ABI §8 item 5); plugins built with it keep that behaviour, since the
//! host runs them unmodified.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use codec_abi::{HeaderMap, LayoutError};

use crate::protocol::Command;

/// Applies the edited header map `edited` to `command`: nothing happens when it equals the
/// command's (same pairs in the same order); otherwise the command's headers become
/// `edited`. Returns whether the command's headers were touched (which makes the next encode
/// rebuild the frame).
///
/// The guest SDK applies this to the header map the host sends with every encode; a native
/// host calls it with the frame's edited headers, so both agree.
pub fn apply_header_edits<C: Command>(command: &mut C, edited: &HeaderMap) -> bool {
    if command.headers() == edited {
        return false;
    }
    *command.headers_mut() = edited.clone();
    true
}

/// [`apply_header_edits`] with the host's §5.1 header section. A section byte-equal to the
/// command's own encoding (the usual case: nothing was edited) is recognised without
/// building a map, so it allocates nothing.
///
/// # Errors
/// [`LayoutError`] when the host's header section does not parse.
pub(crate) fn apply_section<C: Command>(
    command: &mut C,
    host_section: &[u8],
) -> Result<bool, LayoutError> {
    if command.encoded_headers() == Some(host_section) {
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
        section: Option<Vec<u8>>,
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
        fn encoded_headers(&self) -> Option<&[u8]> {
            self.section.as_deref()
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
            section: Some(section(pairs)),
            touched: false,
        }
    }

    fn section(pairs: &[(&str, &str)]) -> Vec<u8> {
        let map: HeaderMap = pairs.iter().copied().collect();
        let mut out = Vec::new();
        map.encode_into(&mut out);
        out
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs.iter().copied().collect()
    }

    #[test]
    fn the_section_as_decoded_changes_nothing() {
        let mut c = cmd(&[("a", "1"), ("b", "2")]);
        assert!(!apply_section(&mut c, &section(&[("a", "1"), ("b", "2")])).unwrap());
        assert!(!c.touched);
        // Without the command's own encoding at hand, an equal map still changes nothing.
        c.section = None;
        assert!(!apply_section(&mut c, &section(&[("a", "1"), ("b", "2")])).unwrap());
        assert!(!c.touched);
    }

    #[test]
    fn changed_values_removed_and_added_keys_all_apply() {
        let mut c = cmd(&[("a", "1"), ("b", "2")]);
        assert!(apply_section(&mut c, &section(&[("a", "9"), ("b", "2")])).unwrap());
        assert_eq!(
            c.headers,
            map(&[("a", "9"), ("b", "2")]),
            "same count, new value"
        );
        let mut c = cmd(&[("a", "1"), ("b", "2"), ("c", "3")]);
        assert!(apply_section(&mut c, &section(&[("a", "1"), ("c", "3")])).unwrap());
        assert_eq!(c.headers, map(&[("a", "1"), ("c", "3")]), "removed");
        let mut c = cmd(&[("a", "1")]);
        assert!(apply_section(&mut c, &section(&[("a", "1"), ("new", "x")])).unwrap());
        assert_eq!(c.headers, map(&[("a", "1"), ("new", "x")]), "added");
    }

    #[test]
    fn empty_host_map_deletes_everything() {
        let mut c = cmd(&[("a", "1"), ("b", "2")]);
        assert!(apply_section(&mut c, &[]).unwrap());
        assert!(c.headers.is_empty());
    }

    #[test]
    fn absent_pairs_are_dropped_and_bad_sections_fail() {
        let mut s = section(&[("a", "9")]);
        s.extend_from_slice(&u32::MAX.to_be_bytes());
        s.extend_from_slice(&0u32.to_be_bytes());
        // One present pair, equal to the command's: nothing applies.
        let mut c = cmd(&[("a", "9")]);
        assert!(!apply_section(&mut c, &s).unwrap());
        let mut c = cmd(&[]);
        assert!(apply_section(&mut c, &[0, 0, 0, 9, b'x']).is_err());
    }

    #[test]
    fn edited_maps_follow_the_same_rule() {
        let mut c = cmd(&[("a", "1"), ("b", "2")]);
        assert!(!apply_header_edits(&mut c, &map(&[("a", "1"), ("b", "2")])));
        assert!(!c.touched);
        assert!(apply_header_edits(
            &mut c,
            &map(&[("a", "1"), ("b", "2"), ("new", "x")])
        ));
        assert_eq!(c.headers, map(&[("a", "1"), ("b", "2"), ("new", "x")]));
    }
}
