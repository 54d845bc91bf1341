//! Zero-copy parts of a decoded frame: a codec reports the payload and the header section as
//! separate bytes, but in most protocols they are the tail of the raw frame (bolt: class,
//! header section, content). Found there, they become slices of `raw` instead of copies.

use bytes::Bytes;

/// The payload and header section as `Bytes`: slices of `raw` when the payload is `raw`'s
/// tail and the header section sits right before it, copies otherwise.
pub(crate) fn payload_and_headers(raw: &Bytes, payload: &[u8], headers: &[u8]) -> (Bytes, Bytes) {
    let payload_at = raw
        .len()
        .checked_sub(payload.len())
        .filter(|&at| raw[at..] == *payload);
    let payload_bytes = match payload_at {
        Some(at) => raw.slice(at..),
        None => Bytes::copy_from_slice(payload),
    };
    let headers_at = payload_at
        .and_then(|end| Some((end.checked_sub(headers.len())?, end)))
        .filter(|&(at, end)| raw[at..end] == *headers);
    let header_bytes = match headers_at {
        Some((at, end)) => raw.slice(at..end),
        None => Bytes::copy_from_slice(headers),
    };
    (payload_bytes, header_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_when_laid_out_as_a_tail() {
        let raw = Bytes::from_static(b"fixed|HDRS|body");
        let (p, h) = payload_and_headers(&raw, b"body", b"HDRS|");
        assert_eq!((&p[..], &h[..]), (&b"body"[..], &b"HDRS|"[..]));
        assert_eq!(p.as_ptr() as usize, raw.as_ptr() as usize + 11);
        assert_eq!(h.as_ptr() as usize, raw.as_ptr() as usize + 6);
    }

    #[test]
    fn copies_otherwise() {
        let raw = Bytes::from_static(b"fixed|body");
        let (p, h) = payload_and_headers(&raw, b"other", b"elsewhere");
        assert_eq!((&p[..], &h[..]), (&b"other"[..], &b"elsewhere"[..]));
        let (p, h) = payload_and_headers(&raw, b"a much longer payload than raw", b"");
        assert_eq!(&p[..], b"a much longer payload than raw");
        assert!(h.is_empty());
        let (p, h) = payload_and_headers(&raw, b"body", b"not before it");
        assert_eq!(p.as_ptr() as usize, raw.as_ptr() as usize + 6);
        assert_eq!(&h[..], b"not before it");
    }
}
