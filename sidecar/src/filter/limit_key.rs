//! A flow-control filter's limit key: its `limit_key` template rendered over one request's
//! headers. The common single-header template (`{service}`) borrows the header value, so
//! building the key allocates nothing; a composite one allocates one buffer.

use std::borrow::Cow;

use codec_host::HeaderMap;

use crate::config::LimitKeyPart;

/// A compiled `limit_key` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitKey {
    parts: Box<[Part]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Box<[u8]>),
    Header(Box<[u8]>),
}

impl LimitKey {
    /// Compiles validated template parts.
    pub fn new(parts: &[LimitKeyPart]) -> LimitKey {
        LimitKey {
            parts: parts
                .iter()
                .map(|p| match p {
                    LimitKeyPart::Literal(s) => Part::Literal(s.as_bytes().into()),
                    LimitKeyPart::Header(h) => Part::Header(h.as_bytes().into()),
                })
                .collect(),
        }
    }

    /// The key of a request with `headers`. A header the request lacks renders empty, so
    /// leaving a header out cannot dodge a rule on a pattern that still matches.
    pub fn render<'a>(&'a self, headers: &'a HeaderMap) -> Cow<'a, [u8]> {
        let value = |part: &'a Part| -> &'a [u8] {
            match part {
                Part::Literal(text) => text,
                Part::Header(name) => headers.get(name).unwrap_or_default(),
            }
        };
        match &*self.parts {
            [] => Cow::Borrowed(&[]),
            [one] => Cow::Borrowed(value(one)),
            parts => {
                let pieces: Vec<&[u8]> = parts.iter().map(value).collect();
                Cow::Owned(pieces.concat())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, *v);
        }
        h
    }

    #[test]
    fn a_lone_header_is_borrowed() {
        let key = LimitKey::new(&[LimitKeyPart::Header("service".into())]);
        let h = headers(&[("service", "com.foo.Svc:1.0")]);
        let k = key.render(&h);
        assert!(matches!(k, Cow::Borrowed(_)));
        assert_eq!(&*k, b"com.foo.Svc:1.0");
    }

    #[test]
    fn composite_keys_join_headers_and_text_and_missing_headers_are_empty() {
        let key = LimitKey::new(&[
            LimitKeyPart::Header("service".into()),
            LimitKeyPart::Literal("#".into()),
            LimitKeyPart::Header("sofa_head_method_name".into()),
        ]);
        let h = headers(&[("service", "svc"), ("sofa_head_method_name", "echo")]);
        assert_eq!(&*key.render(&h), b"svc#echo");
        assert_eq!(&*key.render(&headers(&[("service", "svc")])), b"svc#");
        assert_eq!(&*key.render(&headers(&[])), b"#");
    }
}
