//! Descriptors for one request, built from the filter's templates and the request's headers
//! the way Envoy's `rate_limits` actions build them.

use codec_host::HeaderMap;

use super::client::{DescriptorEntry, RateLimitDescriptor};
use crate::config::{DescriptorConfig, EntrySource};

/// The descriptors to send for a request with `headers`, in template order.
///
/// A template whose `header` entry names an absent header produces no descriptor (Envoy's
/// `request_headers` action), unless the entry has `skip_if_absent`, which drops only that
/// entry; a template left with no entries produces none either. Header values that are not
/// UTF-8 are sent with replacement characters (descriptor values are protobuf strings).
pub(crate) fn build(
    templates: &[DescriptorConfig],
    headers: &HeaderMap,
) -> Vec<RateLimitDescriptor> {
    templates
        .iter()
        .filter_map(|template| build_one(template, headers))
        .collect()
}

fn build_one(template: &DescriptorConfig, headers: &HeaderMap) -> Option<RateLimitDescriptor> {
    let mut entries = Vec::with_capacity(template.entries.len());
    for entry in &template.entries {
        let value = match &entry.source {
            EntrySource::Value(v) => v.clone(),
            EntrySource::Header {
                name,
                skip_if_absent,
            } => match headers.get(name.as_bytes()) {
                Some(v) => String::from_utf8_lossy(v).into_owned(),
                None if *skip_if_absent => continue,
                None => return None,
            },
        };
        entries.push(DescriptorEntry {
            key: entry.key.clone(),
            value,
        });
    }
    (!entries.is_empty()).then_some(RateLimitDescriptor { entries })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DescriptorEntryConfig;

    fn header(key: &str, name: &str, skip_if_absent: bool) -> DescriptorEntryConfig {
        DescriptorEntryConfig {
            key: key.into(),
            source: EntrySource::Header {
                name: name.into(),
                skip_if_absent,
            },
        }
    }

    fn value(key: &str, v: &str) -> DescriptorEntryConfig {
        DescriptorEntryConfig {
            key: key.into(),
            source: EntrySource::Value(v.into()),
        }
    }

    fn pairs(descriptors: &[RateLimitDescriptor]) -> Vec<Vec<(&str, &str)>> {
        descriptors
            .iter()
            .map(|d| {
                d.entries
                    .iter()
                    .map(|e| (e.key.as_str(), e.value.as_str()))
                    .collect()
            })
            .collect()
    }

    fn headers(list: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.push(*k, *v);
        }
        h
    }

    #[test]
    fn header_and_fixed_entries_in_template_order() {
        let templates = vec![
            DescriptorConfig {
                entries: vec![header("service", "service", false)],
            },
            DescriptorConfig {
                entries: vec![
                    value("generic_key", "budget"),
                    header("tenant", "x-tenant", false),
                ],
            },
        ];
        let h = headers(&[("service", b"com.example.Svc:1.0"), ("x-tenant", b"acme")]);
        assert_eq!(
            pairs(&build(&templates, &h)),
            vec![
                vec![("service", "com.example.Svc:1.0")],
                vec![("generic_key", "budget"), ("tenant", "acme")],
            ]
        );
    }

    #[test]
    fn a_missing_header_drops_its_descriptor_only() {
        let templates = vec![
            DescriptorConfig {
                entries: vec![header("service", "service", false)],
            },
            DescriptorConfig {
                entries: vec![
                    value("generic_key", "budget"),
                    header("tenant", "x-tenant", false),
                ],
            },
        ];
        let h = headers(&[("service", b"svc")]);
        assert_eq!(
            pairs(&build(&templates, &h)),
            vec![vec![("service", "svc")]]
        );
        assert!(build(&templates, &HeaderMap::new()).is_empty());
    }

    #[test]
    fn skip_if_absent_drops_only_the_entry() {
        let templates = vec![DescriptorConfig {
            entries: vec![
                value("generic_key", "budget"),
                header("tenant", "x-tenant", true),
            ],
        }];
        assert_eq!(
            pairs(&build(&templates, &HeaderMap::new())),
            vec![vec![("generic_key", "budget")]]
        );
        let only_optional = vec![DescriptorConfig {
            entries: vec![header("tenant", "x-tenant", true)],
        }];
        assert!(build(&only_optional, &HeaderMap::new()).is_empty());
    }

    #[test]
    fn header_names_match_exactly_and_values_are_sent_as_text() {
        let templates = vec![DescriptorConfig {
            entries: vec![header("service", "service", false)],
        }];
        assert!(build(&templates, &headers(&[("Service", b"svc")])).is_empty());
        assert_eq!(
            pairs(&build(&templates, &headers(&[("service", b"")]))),
            vec![vec![("service", "")]]
        );
        assert_eq!(
            pairs(&build(&templates, &headers(&[("service", b"a\xffb")]))),
            vec![vec![("service", "a\u{fffd}b")]]
        );
    }
}
