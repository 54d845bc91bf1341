//! A path-tracking reader over `serde_json::Value`: typed getters that name the JSON path in
//! every error, and a record of the keys read so every other key becomes one warning.

use std::time::Duration;

use serde_json::{Map, Value};

use super::duration::parse_go_duration;
use super::error::{invalid, ConfigError, Invalid, Warnings};

/// A JSON value and where it sits in the document.
#[derive(Clone, Copy)]
pub(crate) struct Node<'a> {
    pub(crate) value: &'a Value,
    path: &'a str,
}

/// A value with an owned path (array elements and object members).
pub(crate) struct Item<'a> {
    pub(crate) value: &'a Value,
    pub(crate) path: String,
}

impl<'a> Item<'a> {
    /// Borrows as a [`Node`].
    pub(crate) fn node(&self) -> Node<'_> {
        Node {
            value: self.value,
            path: &self.path,
        }
    }

    /// Reads this item as an object.
    pub(crate) fn obj(&self) -> Result<Obj<'a>, ConfigError> {
        Obj::new(self.value, self.path.clone())
    }
}

/// The JSON type name used in messages.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Node<'_> {
    fn wrong(&self, expected: &'static str) -> ConfigError {
        invalid(
            self.path,
            Invalid::WrongType {
                expected,
                found: type_name(self.value),
            },
        )
    }

    pub(crate) fn as_str(&self) -> Result<&str, ConfigError> {
        self.value.as_str().ok_or_else(|| self.wrong("a string"))
    }

    pub(crate) fn as_bool(&self) -> Result<bool, ConfigError> {
        self.value.as_bool().ok_or_else(|| self.wrong("a boolean"))
    }

    /// An integer (JSON numbers with no fraction).
    pub(crate) fn as_i64(&self) -> Result<i64, ConfigError> {
        match self.value {
            Value::Number(n) => n.as_i64().ok_or_else(|| {
                invalid(
                    self.path,
                    Invalid::OutOfRange {
                        value: n.to_string(),
                        range: "a whole number of at most 63 bits",
                    },
                )
            }),
            _ => Err(self.wrong("a number")),
        }
    }

    /// An integer in `0..=u32::MAX`.
    pub(crate) fn as_u32(&self) -> Result<u32, ConfigError> {
        let n = self.as_i64()?;
        u32::try_from(n).map_err(|_| {
            invalid(
                self.path,
                Invalid::OutOfRange {
                    value: n.to_string(),
                    range: "0..=4294967295",
                },
            )
        })
    }

    /// A finite number `>= 0` (integer or fraction).
    pub(crate) fn as_non_negative_f64(&self) -> Result<f64, ConfigError> {
        match self.value {
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.is_finite() && f >= 0.0 => Ok(f),
                _ => Err(invalid(
                    self.path,
                    Invalid::OutOfRange {
                        value: n.to_string(),
                        range: "a finite number >= 0",
                    },
                )),
            },
            _ => Err(self.wrong("a number")),
        }
    }

    /// A Go duration string, or a number of nanoseconds (MOSN's `DurationConfig`).
    pub(crate) fn as_duration(&self) -> Result<Duration, ConfigError> {
        match self.value {
            Value::String(s) => parse_go_duration(s).map_err(|source| {
                invalid(
                    self.path,
                    Invalid::Duration {
                        value: s.clone(),
                        source,
                    },
                )
            }),
            Value::Number(n) => n.as_u64().map(Duration::from_nanos).ok_or_else(|| {
                invalid(
                    self.path,
                    Invalid::OutOfRange {
                        value: n.to_string(),
                        range: "a non-negative whole number of nanoseconds",
                    },
                )
            }),
            _ => Err(self.wrong("a duration string such as \"3s\"")),
        }
    }
}

/// An object being read. Each getter marks its key as known; [`Obj::finish`] turns every
/// key nobody asked for into one "unknown field" warning.
pub(crate) struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
    seen: Vec<&'a str>,
}

impl<'a> Obj<'a> {
    /// Reads `value` (at `path`) as an object.
    pub(crate) fn new(value: &'a Value, path: String) -> Result<Obj<'a>, ConfigError> {
        match value {
            Value::Object(map) => Ok(Obj {
                map,
                path,
                seen: Vec::new(),
            }),
            other => Err(invalid(
                path,
                Invalid::WrongType {
                    expected: "an object",
                    found: type_name(other),
                },
            )),
        }
    }

    /// The object's own path.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The path of member `key`.
    pub(crate) fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Member `key`, marked as read; `None` when absent or null.
    pub(crate) fn get(&mut self, key: &str) -> Option<Item<'a>> {
        let (k, value) = self.map.get_key_value(key)?;
        self.seen.push(k.as_str());
        if value.is_null() {
            return None;
        }
        Some(Item {
            value,
            path: self.child(key),
        })
    }

    /// Every member whose key was not read yet, marked as read.
    pub(crate) fn rest(&mut self) -> Vec<(&'a str, Item<'a>)> {
        let mut out = Vec::new();
        for (k, value) in self.map {
            if !self.seen.contains(&k.as_str()) {
                out.push((
                    k.as_str(),
                    Item {
                        value,
                        path: self.child(k),
                    },
                ));
            }
        }
        self.seen.extend(out.iter().map(|(k, _)| *k));
        out
    }

    /// A string member; `None` when absent or null.
    pub(crate) fn str(&mut self, key: &str) -> Result<Option<&'a str>, ConfigError> {
        match self.get(key) {
            Some(item) => item
                .value
                .as_str()
                .map(Some)
                .ok_or_else(|| item.node().wrong("a string")),
            None => Ok(None),
        }
    }

    /// A required, non-empty string member.
    pub(crate) fn required_str(&mut self, key: &str) -> Result<&'a str, ConfigError> {
        match self.str(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(invalid(self.child(key), Invalid::Missing)),
        }
    }

    /// A boolean member.
    pub(crate) fn bool(&mut self, key: &str) -> Result<Option<bool>, ConfigError> {
        self.get(key).map(|i| i.node().as_bool()).transpose()
    }

    /// An integer member.
    pub(crate) fn i64(&mut self, key: &str) -> Result<Option<i64>, ConfigError> {
        self.get(key).map(|i| i.node().as_i64()).transpose()
    }

    /// A `u32` member.
    pub(crate) fn u32(&mut self, key: &str) -> Result<Option<u32>, ConfigError> {
        self.get(key).map(|i| i.node().as_u32()).transpose()
    }

    /// A finite, non-negative number member.
    pub(crate) fn non_negative_f64(&mut self, key: &str) -> Result<Option<f64>, ConfigError> {
        self.get(key)
            .map(|i| i.node().as_non_negative_f64())
            .transpose()
    }

    /// A duration member.
    pub(crate) fn duration(&mut self, key: &str) -> Result<Option<Duration>, ConfigError> {
        self.get(key).map(|i| i.node().as_duration()).transpose()
    }

    /// An object member.
    pub(crate) fn obj(&mut self, key: &str) -> Result<Option<Obj<'a>>, ConfigError> {
        self.get(key).map(|i| i.obj()).transpose()
    }

    /// An array member's elements; empty when absent or null.
    pub(crate) fn items(&mut self, key: &str) -> Result<Vec<Item<'a>>, ConfigError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(item) => {
                let arr = item
                    .value
                    .as_array()
                    .ok_or_else(|| item.node().wrong("an array"))?;
                Ok(arr
                    .iter()
                    .enumerate()
                    .map(|(i, value)| Item {
                        value,
                        path: format!("{}[{i}]", item.path),
                    })
                    .collect())
            }
        }
    }

    /// Marks `key` as read and, when it is present and "set" (not null, false, 0, "", []
    /// or {}), records one warning with `message`.
    pub(crate) fn warn_if_set(&mut self, key: &str, message: &str, warnings: &mut Warnings) {
        if let Some(item) = self.get(key) {
            if is_set(item.value) {
                warnings.push(item.path, message);
            }
        }
    }

    /// Marks `key` as read without any warning (accepted fields with no effect).
    pub(crate) fn accept(&mut self, key: &str) {
        let _ = self.get(key);
    }

    /// Warns once for every key that was never read.
    pub(crate) fn finish(mut self, warnings: &mut Warnings) {
        for (_, item) in self.rest() {
            warnings.push(item.path, "unknown field, ignored");
        }
    }
}

impl Obj<'_> {
    /// Fails on the first key that was never read: for configs where a misspelt field must
    /// not pass silently (stream filters: a typo would disable a limit).
    ///
    /// # Errors
    /// [`Invalid::UnknownField`] at the unknown key's path.
    pub(crate) fn finish_strict(mut self) -> Result<(), ConfigError> {
        match self.rest().into_iter().next() {
            Some((_, item)) => Err(invalid(item.path, Invalid::UnknownField)),
            None => Ok(()),
        }
    }
}

/// Whether a value carries a setting (anything but null, false, 0, "", [] and {}).
pub(crate) fn is_set(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_keys_warn_once_each_with_paths() {
        let v = json!({"a": "x", "b": 1, "c": true});
        let mut w = Warnings::default();
        let mut o = Obj::new(&v, "root".into()).unwrap();
        assert_eq!(o.str("a").unwrap(), Some("x"));
        o.finish(&mut w);
        let paths: Vec<_> = w.0.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(paths, ["root.b", "root.c"]);
    }

    #[test]
    fn type_errors_name_the_path() {
        let v = json!({"n": "3"});
        let mut o = Obj::new(&v, "x[0]".into()).unwrap();
        let e = o.u32("n").unwrap_err();
        assert_eq!(e.json_path(), Some("x[0].n"));
        assert!(
            e.to_string().contains("expected a number, found a string"),
            "{e}"
        );
    }

    #[test]
    fn null_counts_as_absent() {
        let v = json!({"n": null});
        let mut o = Obj::new(&v, String::new()).unwrap();
        assert_eq!(o.u32("n").unwrap(), None);
        let e = o.required_str("n").unwrap_err();
        assert_eq!(e.json_path(), Some("n"));
    }

    #[test]
    fn durations_accept_strings_and_nanoseconds() {
        let v = json!({"a": "1m30s", "b": 1_000_000, "c": -1, "d": "soon"});
        let mut o = Obj::new(&v, String::new()).unwrap();
        assert_eq!(o.duration("a").unwrap(), Some(Duration::from_secs(90)));
        assert_eq!(o.duration("b").unwrap(), Some(Duration::from_millis(1)));
        assert!(o.duration("c").is_err());
        assert!(o
            .duration("d")
            .unwrap_err()
            .to_string()
            .contains("\"soon\""));
    }

    #[test]
    fn strict_objects_refuse_unknown_keys_with_their_path() {
        let v = json!({"rate": 1, "rtae": 2});
        let mut o = Obj::new(&v, "f.config".into()).unwrap();
        assert_eq!(o.u32("rate").unwrap(), Some(1));
        let e = o.finish_strict().unwrap_err();
        assert_eq!(e.json_path(), Some("f.config.rtae"));
        assert!(matches!(e.reason(), Some(Invalid::UnknownField)));
        let v = json!({"rate": 1});
        let mut o = Obj::new(&v, String::new()).unwrap();
        o.accept("rate");
        assert!(o.finish_strict().is_ok());
    }

    #[test]
    fn non_negative_numbers_take_fractions_and_refuse_negatives() {
        let v = json!({"a": 2.5, "b": 3, "c": -0.5, "d": "1"});
        let mut o = Obj::new(&v, String::new()).unwrap();
        assert_eq!(o.non_negative_f64("a").unwrap(), Some(2.5));
        assert_eq!(o.non_negative_f64("b").unwrap(), Some(3.0));
        let e = o.non_negative_f64("c").unwrap_err();
        assert_eq!(e.json_path(), Some("c"));
        assert!(e.to_string().contains(">= 0"), "{e}");
        assert!(o.non_negative_f64("d").is_err());
    }

    #[test]
    fn u32_rejects_negative_and_huge() {
        let v = json!({"a": -1, "b": 5_000_000_000_u64, "c": 1.5});
        let mut o = Obj::new(&v, String::new()).unwrap();
        assert!(o.u32("a").is_err());
        assert!(o.u32("b").is_err());
        assert!(o.u32("c").is_err());
    }
}
