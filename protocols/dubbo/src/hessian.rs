//! A Hessian 2.0 reader that reads strings, ints and string maps and skips any other value by
//! its encoded length, never building objects (Hessian 2.0 serialization protocol, "Grammar").
//!
//! A proxy needs only a Dubbo request's leading strings and its trailing attachments map; the
//! arguments in between are skipped exactly: every value of the grammar (ints, longs,
//! doubles, dates, strings incl. chunked ones, binary incl. chunked, lists, maps, objects with
//! their class definitions, references, null, booleans) is recognised by its first byte and
//! stepped over. Class definitions are remembered (an object's field count comes from its
//! class), as Hessian does per message.

use crate::error::HessianError;

/// How deep lists, maps and objects may nest before the reader refuses (a guard against
/// stack exhaustion, far above what real payloads use).
pub const MAX_DEPTH: usize = 128;

/// A cursor over one Hessian 2.0 message (one Dubbo body).
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Field count of every class definition seen so far, by definition index.
    classes: Vec<usize>,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Reader {
            data,
            pos: 0,
            classes: Vec::new(),
        }
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// True when every byte has been read.
    pub fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next byte without taking it.
    pub fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    fn byte(&mut self) -> Result<u8, HessianError> {
        let b = self
            .peek()
            .ok_or(HessianError::Truncated { at: self.pos })?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], HessianError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or(HessianError::Truncated { at: self.pos })?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn skip(&mut self, n: usize) -> Result<(), HessianError> {
        self.take(n).map(|_| ())
    }

    fn u16(&mut self) -> Result<usize, HessianError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    /// Reads an `int` (compact one-, two- and three-byte forms or `I` + 4 bytes).
    ///
    /// # Errors
    /// When the next value is not an int or is cut short.
    pub fn read_int(&mut self) -> Result<i32, HessianError> {
        let at = self.pos;
        let code = self.byte()?;
        let value = match code {
            0x80..=0xbf => i32::from(code) - 0x90,
            0xc0..=0xcf => ((i32::from(code) - 0xc8) << 8) | i32::from(self.byte()?),
            0xd0..=0xd7 => {
                let b = self.take(2)?;
                ((i32::from(code) - 0xd4) << 16) | (i32::from(b[0]) << 8) | i32::from(b[1])
            }
            b'I' => {
                let b = self.take(4)?;
                i32::from_be_bytes([b[0], b[1], b[2], b[3]])
            }
            _ => {
                return Err(HessianError::Unexpected {
                    at,
                    code,
                    wanted: "an int",
                })
            }
        };
        Ok(value)
    }

    /// A non-negative int used as a length or an index.
    fn read_count(&mut self, what: &'static str) -> Result<usize, HessianError> {
        let at = self.pos;
        let n = self.read_int()?;
        usize::try_from(n).map_err(|_| HessianError::Negative { at, what, value: n })
    }

    /// Reads a string (all chunks), or `None` for null.
    ///
    /// # Errors
    /// When the next value is neither a string nor null, is cut short or is not UTF-8.
    pub fn read_string_or_null(&mut self) -> Result<Option<String>, HessianError> {
        if self.peek() == Some(b'N') {
            self.pos += 1;
            return Ok(None);
        }
        let start = self.pos;
        let mut out = Vec::new();
        loop {
            let at = self.pos;
            let code = self.byte()?;
            let (chars, last) = match code {
                0x00..=0x1f => (usize::from(code), true),
                0x30..=0x33 => (
                    (usize::from(code - 0x30) << 8) | usize::from(self.byte()?),
                    true,
                ),
                b'S' => (self.u16()?, true),
                b'R' => (self.u16()?, false),
                _ => {
                    let wanted = if at == start {
                        "a string"
                    } else {
                        "a string chunk"
                    };
                    return Err(HessianError::Unexpected { at, code, wanted });
                }
            };
            let bytes_at = self.pos;
            let len = self.utf8_len(chars)?;
            out.extend_from_slice(&self.data[bytes_at..bytes_at + len]);
            self.pos = bytes_at + len;
            if last {
                break;
            }
        }
        String::from_utf8(out)
            .map(Some)
            .map_err(|_| HessianError::BadUtf8 { at: start })
    }

    /// Reads a string; null is an error.
    ///
    /// # Errors
    /// As [`Reader::read_string_or_null`], and for null.
    pub fn read_string(&mut self) -> Result<String, HessianError> {
        let at = self.pos;
        self.read_string_or_null()?.ok_or(HessianError::Unexpected {
            at,
            code: b'N',
            wanted: "a string",
        })
    }

    /// The byte length of the next `chars` UTF-16 code units of UTF-8 text (Hessian counts
    /// a string's length in 16-bit characters: a four-byte sequence is two of them, Java's
    /// surrogates written as three bytes each are one each). Does not move the cursor.
    fn utf8_len(&self, chars: usize) -> Result<usize, HessianError> {
        let mut at = self.pos;
        let mut left = chars;
        while left > 0 {
            let b = *self.data.get(at).ok_or(HessianError::Truncated { at })?;
            let (len, units) = match b {
                0x00..=0x7f => (1, 1),
                0xc0..=0xdf => (2, 1),
                0xe0..=0xef => (3, 1),
                0xf0..=0xf7 => (4, 2),
                _ => return Err(HessianError::BadUtf8 { at }),
            };
            if units > left {
                return Err(HessianError::BadUtf8 { at });
            }
            at += len;
            left -= units;
        }
        if at > self.data.len() {
            return Err(HessianError::Truncated {
                at: self.data.len(),
            });
        }
        Ok(at - self.pos)
    }

    /// Steps over a string's chunks after its first code byte was read.
    fn skip_string_from(&mut self, code: u8) -> Result<(), HessianError> {
        let mut code = code;
        loop {
            let (chars, last) = match code {
                0x00..=0x1f => (usize::from(code), true),
                0x30..=0x33 => (
                    (usize::from(code - 0x30) << 8) | usize::from(self.byte()?),
                    true,
                ),
                b'S' => (self.u16()?, true),
                b'R' => (self.u16()?, false),
                _ => {
                    let at = self.pos - 1;
                    return Err(HessianError::Unexpected {
                        at,
                        code,
                        wanted: "a string chunk",
                    });
                }
            };
            let len = self.utf8_len(chars)?;
            self.skip(len)?;
            if last {
                return Ok(());
            }
            code = self.byte()?;
        }
    }

    /// Steps over binary chunks after the first code byte was read.
    fn skip_binary_from(&mut self, code: u8) -> Result<(), HessianError> {
        let mut code = code;
        loop {
            let (len, last) = match code {
                0x20..=0x2f => (usize::from(code - 0x20), true),
                0x34..=0x37 => (
                    (usize::from(code - 0x34) << 8) | usize::from(self.byte()?),
                    true,
                ),
                b'B' => (self.u16()?, true),
                b'A' => (self.u16()?, false),
                _ => {
                    let at = self.pos - 1;
                    return Err(HessianError::Unexpected {
                        at,
                        code,
                        wanted: "a binary chunk",
                    });
                }
            };
            self.skip(len)?;
            if last {
                return Ok(());
            }
            code = self.byte()?;
        }
    }

    /// A list's or map's type: a type name (string) or a reference to an earlier one (int).
    fn skip_type(&mut self) -> Result<(), HessianError> {
        match self.peek() {
            Some(0x00..=0x1f | 0x30..=0x33 | b'S' | b'R') => {
                let code = self.byte()?;
                self.skip_string_from(code)
            }
            _ => self.read_int().map(|_| ()),
        }
    }

    /// Steps over values until the `Z` that ends a variable-length list or a map (`pairs`:
    /// two values per entry).
    fn skip_until_end(&mut self, pairs: bool, depth: usize) -> Result<(), HessianError> {
        while self.peek() != Some(b'Z') {
            self.skip_at(depth)?;
            if pairs {
                self.skip_at(depth)?;
            }
        }
        self.pos += 1;
        Ok(())
    }

    fn skip_n(&mut self, n: usize, depth: usize) -> Result<(), HessianError> {
        for _ in 0..n {
            self.skip_at(depth)?;
        }
        Ok(())
    }

    /// `C`: a class definition (name, field count, field names), remembered for objects.
    fn read_class_def(&mut self) -> Result<(), HessianError> {
        self.read_string()?;
        let fields = self.read_count("class field count")?;
        for _ in 0..fields {
            self.read_string()?;
        }
        self.classes.push(fields);
        Ok(())
    }

    fn skip_object(&mut self, class: usize, at: usize, depth: usize) -> Result<(), HessianError> {
        let fields = *self
            .classes
            .get(class)
            .ok_or(HessianError::UnknownClass { at, class })?;
        self.skip_n(fields, depth)
    }

    /// Steps over the next value, whatever its type.
    ///
    /// # Errors
    /// When the bytes are not a Hessian 2.0 value, are cut short, or nest deeper than
    /// [`MAX_DEPTH`].
    pub fn skip_value(&mut self) -> Result<(), HessianError> {
        self.skip_at(0)
    }

    fn skip_at(&mut self, depth: usize) -> Result<(), HessianError> {
        let at = self.pos;
        if depth >= MAX_DEPTH {
            return Err(HessianError::TooDeep { at });
        }
        let inner = depth + 1;
        let code = self.byte()?;
        match code {
            // Strings: compact, medium, final and non-final chunks.
            0x00..=0x1f | 0x30..=0x33 | b'S' | b'R' => self.skip_string_from(code),
            // Binary: compact, medium, final and non-final chunks.
            0x20..=0x2f | 0x34..=0x37 | b'B' | b'A' => self.skip_binary_from(code),
            // Longs: three-byte, one-byte, two-byte; 'Y' 32-bit; 'L' 64-bit.
            0x38..=0x3f => self.skip(2),
            0xd8..=0xef => Ok(()),
            0xf0..=0xff => self.skip(1),
            b'Y' => self.skip(4),
            b'L' => self.skip(8),
            // Ints: one-, two-, three-byte; 'I' 32-bit.
            0x80..=0xbf => Ok(()),
            0xc0..=0xcf => self.skip(1),
            0xd0..=0xd7 => self.skip(2),
            b'I' => self.skip(4),
            // Doubles: 0.0, 1.0, byte, short, float, 64-bit.
            0x5b | 0x5c => Ok(()),
            0x5d => self.skip(1),
            0x5e => self.skip(2),
            0x5f => self.skip(4),
            b'D' => self.skip(8),
            // Dates: milliseconds (64-bit), minutes (32-bit).
            b'J' => self.skip(8),
            b'K' => self.skip(4),
            b'N' | b'T' | b'F' => Ok(()),
            // A reference to an earlier list, map or object.
            b'Q' => self.read_int().map(|_| ()),
            // Lists: variable typed/untyped until 'Z', fixed typed/untyped with a length,
            // compact fixed typed/untyped of 0 to 7 elements.
            b'U' => {
                self.skip_type()?;
                self.skip_until_end(false, inner)
            }
            b'W' => self.skip_until_end(false, inner),
            b'V' => {
                self.skip_type()?;
                let n = self.read_count("list length")?;
                self.skip_n(n, inner)
            }
            b'X' => {
                let n = self.read_count("list length")?;
                self.skip_n(n, inner)
            }
            0x70..=0x77 => {
                self.skip_type()?;
                self.skip_n(usize::from(code - 0x70), inner)
            }
            0x78..=0x7f => self.skip_n(usize::from(code - 0x78), inner),
            // Maps: untyped 'H', typed 'M'; key/value pairs until 'Z'.
            b'H' => self.skip_until_end(true, inner),
            b'M' => {
                self.skip_type()?;
                self.skip_until_end(true, inner)
            }
            // A class definition precedes the value that uses it.
            b'C' => {
                self.read_class_def()?;
                self.skip_at(depth)
            }
            // Objects: 'O' + class index, or 0x60..0x6f with the index in the code.
            b'O' => {
                let class = self.read_count("class index")?;
                self.skip_object(class, at, inner)
            }
            0x60..=0x6f => self.skip_object(usize::from(code - 0x60), at, inner),
            _ => Err(HessianError::Unexpected {
                at,
                code,
                wanted: "a value",
            }),
        }
    }

    /// Reads a map whose string-valued entries are wanted (Dubbo's attachments): `H` or `M`
    /// (its type skipped), up to `Z`. Entries with a non-string key or value are stepped over
    /// and left out; `N` (no map) gives an empty list.
    ///
    /// # Errors
    /// When the next value is not a map or null, or does not parse.
    pub fn read_string_map(&mut self) -> Result<Vec<(String, String)>, HessianError> {
        let at = self.pos;
        let code = self.byte()?;
        match code {
            b'N' => return Ok(Vec::new()),
            b'H' => {}
            b'M' => self.skip_type()?,
            _ => {
                return Err(HessianError::Unexpected {
                    at,
                    code,
                    wanted: "a map",
                })
            }
        }
        let mut entries = Vec::new();
        while self.peek() != Some(b'Z') {
            let key = self.string_or_skip()?;
            let value = self.string_or_skip()?;
            if let (Some(key), Some(value)) = (key, value) {
                entries.push((key, value));
            }
        }
        self.pos += 1;
        Ok(entries)
    }

    /// The next value if it is a string; any other value is skipped (`None`).
    fn string_or_skip(&mut self) -> Result<Option<String>, HessianError> {
        match self.peek() {
            Some(0x00..=0x1f | 0x30..=0x33 | b'S' | b'R') => self.read_string().map(Some),
            _ => self.skip_at(1).map(|_| None),
        }
    }
}

/// Appends `s` as a Hessian 2.0 string (compact, medium or `S`/`R` chunks), its length
/// counted in UTF-16 code units as Hessian does.
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    /// Longest chunk: the `S`/`R` length field is 16 bits.
    const CHUNK: usize = 0xffff;
    let mut rest = s;
    loop {
        // Take whole chars up to CHUNK UTF-16 units.
        let mut units = 0usize;
        let mut end = 0usize;
        for (i, c) in rest.char_indices() {
            if units + c.len_utf16() > CHUNK {
                break;
            }
            units += c.len_utf16();
            end = i + c.len_utf8();
        }
        let last = end == rest.len();
        let (chunk, tail) = rest.split_at(end);
        if last && units <= 0x1f {
            out.push(units as u8);
        } else if last && units <= 0x3ff {
            out.push(0x30 + (units >> 8) as u8);
            out.push(units as u8);
        } else {
            out.push(if last { b'S' } else { b'R' });
            out.extend_from_slice(&(units as u16).to_be_bytes());
        }
        out.extend_from_slice(chunk.as_bytes());
        if last {
            return;
        }
        rest = tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip_all(bytes: &[u8]) -> Result<usize, HessianError> {
        let mut r = Reader::new(bytes);
        r.skip_value()?;
        Ok(r.position())
    }

    #[test]
    fn ints_of_every_width() {
        for (bytes, value) in [
            (&[0x90][..], 0),
            (&[0x80], -16),
            (&[0xbf], 47),
            (&[0xc8, 0x30], 48),
            (&[0xc0, 0x00], -2048),
            (&[0xd4, 0x08, 0x00], 2048),
            (&[0xd0, 0x00, 0x00], -262144),
            (&[b'I', 0x7f, 0xff, 0xff, 0xff], i32::MAX),
        ] {
            assert_eq!(Reader::new(bytes).read_int(), Ok(value), "{bytes:x?}");
            assert_eq!(skip_all(bytes), Ok(bytes.len()), "{bytes:x?}");
        }
    }

    #[test]
    fn every_scalar_is_skipped_by_its_length() {
        let cases: [&[u8]; 22] = [
            b"N",
            b"T",
            b"F",
            &[0xe0],
            &[0xf8, 0x00],
            &[0x3c, 0x00, 0x00],
            &[b'Y', 0, 0, 0, 1],
            &[b'L', 0, 0, 0, 0, 0, 0, 0, 1],
            &[0x5b],
            &[0x5c],
            &[0x5d, 0x80],
            &[0x5e, 0x03, 0xe8],
            &[0x5f, 0, 0, 0, 0xfa],
            &[b'D', 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18],
            &[b'J', 0, 0, 1, 0x8b, 0xcf, 0xe5, 0x68, 0x7b],
            &[b'K', 0x01, 0xb0, 0x55, 0x16],
            &[0x23, 1, 2, 3],
            &[0x34, 0x02, 1, 2],
            &[b'A', 0, 1, 9, b'B', 0, 2, 7, 8],
            &[b'A', 0, 1, 9, 0x21, 7],
            &[0x03, b'a', 0xc3, 0xa9, b'c'],
            &[b'R', 0, 1, b'a', b'S', 0, 1, b'b'],
        ];
        for bytes in cases {
            let mut with_tail = bytes.to_vec();
            with_tail.push(b'N');
            assert_eq!(skip_all(&with_tail), Ok(bytes.len()), "{bytes:x?}");
            if bytes.len() > 1 {
                let cut = &bytes[..bytes.len() - 1];
                assert!(
                    matches!(skip_all(cut), Err(HessianError::Truncated { .. })),
                    "{bytes:x?}"
                );
            }
        }
    }

    #[test]
    fn strings_count_utf16_units() {
        // "é" is one unit in two bytes; U+1F600 is two units in four bytes; Java writes a
        // surrogate as three bytes, one unit each.
        let cases: [(&[u8], &str); 3] = [
            (&[0x01, 0xc3, 0xa9], "é"),
            (&[0x02, 0xf0, 0x9f, 0x98, 0x80], "😀"),
            (&[0x03, b'a', 0xe4, 0xb8, 0x96, b'b'], "a世b"),
        ];
        for (bytes, text) in cases {
            assert_eq!(Reader::new(bytes).read_string().unwrap(), text);
        }
        let java_surrogates = [0x02, 0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80, b'N'];
        assert_eq!(skip_all(&java_surrogates), Ok(7));
        assert!(matches!(
            Reader::new(&[0x01, 0xff]).read_string(),
            Err(HessianError::BadUtf8 { .. })
        ));
    }

    #[test]
    fn written_strings_read_back() {
        let long: String = "ab\u{e9}\u{1f600}".repeat(20_000);
        for s in [
            "",
            "x",
            &"y".repeat(31),
            &"z".repeat(32),
            &"w".repeat(1024),
            &long,
        ] {
            let mut out = Vec::new();
            write_string(&mut out, s);
            let mut r = Reader::new(&out);
            assert_eq!(r.read_string().unwrap(), s);
            assert!(r.at_end());
            assert_eq!(skip_all(&out), Ok(out.len()));
        }
    }

    #[test]
    fn containers_objects_and_refs() {
        // C "P" 2 fields "a" "b", then object 0x60 with fields 1 and "x", then Q 0.
        let object = [
            b'C', 0x01, b'P', 0x92, 0x01, b'a', 0x01, b'b', 0x60, 0x91, 0x01, b'x',
        ];
        assert_eq!(skip_all(&object), Ok(object.len()));
        let bytes = [&object[..], &[b'O', 0x90, 0x92, 0x93, b'Q', 0x90]].concat();
        let mut r = Reader::new(&bytes);
        r.skip_value().unwrap();
        r.skip_value().unwrap();
        r.skip_value().unwrap();
        assert!(r.at_end());
        let lists: [&[u8]; 6] = [
            &[b'U', 0x01, b'L', 0x91, 0x92, b'Z'],
            &[b'W', 0x91, b'N', b'Z'],
            &[b'V', 0x04, b'[', b'i', b'n', b't', 0x92, 0x91, 0x92],
            &[b'X', 0x91, 0x91],
            &[0x72, 0x90, 0x91, 0x92],
            &[0x79, b'T'],
        ];
        for bytes in lists {
            assert_eq!(skip_all(bytes), Ok(bytes.len()), "{bytes:x?}");
        }
        let map = [b'M', 0x01, b'm', 0x01, b'k', 0x91, 0x90, b'N', b'Z'];
        assert_eq!(skip_all(&map), Ok(map.len()));
        let mut r = Reader::new(&map);
        assert_eq!(r.read_string_map().unwrap(), vec![]);
        let attachments = [b'H', 0x01, b'k', 0x01, b'v', 0x01, b'n', 0x91, b'Z'];
        assert_eq!(
            Reader::new(&attachments).read_string_map().unwrap(),
            vec![("k".to_owned(), "v".to_owned())]
        );
    }

    #[test]
    fn malformed_values_are_errors() {
        assert!(matches!(
            skip_all(&[0x40]),
            Err(HessianError::Unexpected { code: 0x40, .. })
        ));
        assert!(matches!(
            skip_all(b"Z"),
            Err(HessianError::Unexpected { .. })
        ));
        assert!(matches!(
            skip_all(&[0x61]),
            Err(HessianError::UnknownClass { class: 1, .. })
        ));
        assert!(matches!(
            skip_all(&[b'X', 0x8f]),
            Err(HessianError::Negative { value: -1, .. })
        ));
        assert!(matches!(
            skip_all(&[b'W', 0x91]),
            Err(HessianError::Truncated { .. })
        ));
        let deep = vec![b'W'; MAX_DEPTH + 1];
        assert!(matches!(skip_all(&deep), Err(HessianError::TooDeep { .. })));
        assert!(matches!(
            skip_all(&[]),
            Err(HessianError::Truncated { at: 0 })
        ));
        assert!(matches!(
            skip_all(&[b'R', 0, 1, b'a', 0x91]),
            Err(HessianError::Unexpected { .. })
        ));
    }
}
