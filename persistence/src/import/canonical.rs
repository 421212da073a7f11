//! The canonical text form the import hashes, one value at a time, on both sides.
//!
//! The verification is only as good as the form it hashes: if a value is changed by
//! reading it (a JSON float parsed into an `f64` and printed again), and both sides go
//! through the same change, their checksums agree on a copy that is wrong. So nothing
//! is hashed through a lossy type. In particular a JSON document is never parsed into
//! numbers: the importer reads it from SQLite as the text that was written
//! ([`JsonText`]), sends that text to PostgreSQL, which parses it itself, and reads back
//! the text JSONB prints. Both texts are brought to the same canonical form here:
//!
//! | JSON            | canonical form                                                  |
//! |-----------------|-----------------------------------------------------------------|
//! | object          | keys sorted by their bytes; of a key given twice the last value (as JSONB keeps it) |
//! | string          | unescaped (`"\u00e9"` is `"é"`, as JSONB stores it), then escaped one way |
//! | number          | its exact decimal value, as digits and a power of ten: `98.33333333333333` is `9833333333333333e-14`, `1e400` and the 401 digits JSONB prints for it are both `1e400`, `-0.0` is `0` |
//! | whitespace      | none                                                            |
//!
//! So what JSONB normalises (whitespace, key order, duplicate keys, escapes, the
//! spelling of a number) does not count as a difference, and anything else — one digit
//! of one number, one character of one string — does.

use std::fmt::Write as _;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sqlite::Sqlite;

use crate::lifecycle::State;
use crate::types::Ts;
use crate::types::sql_types::JsonDoc;

/// Deepest nesting of objects and arrays the canonical form follows (a document nested
/// deeper is refused, by name, rather than overflowing a stack). Far above what Vigil
/// writes ([`crate::limits::MAX_JSON_DEPTH`]).
const MAX_DEPTH: usize = 1_000;

/// FNV-1a, 64 bits: small, dependency-free, and plenty to detect a changed row.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fnv(pub(super) u64);

impl Fnv {
    pub(super) fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub(super) fn update(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// The FNV-1a hash of one byte string.
pub(super) fn fnv(bytes: &[u8]) -> u64 {
    let mut hash = Fnv::new();
    hash.update(bytes);
    hash.0
}

/// A JSON document column as text, exactly as stored: read from SQLite as written, sent
/// to PostgreSQL as JSONB's binary input (a version byte, then this text, which the
/// server parses itself), and read back as the text JSONB prints. It is never parsed
/// into numbers on the way, so `98.33333333333333` and `12345678901234567890` arrive as
/// they left.
#[derive(Debug, Clone, AsExpression, FromSqlRow)]
#[diesel(sql_type = JsonDoc)]
pub(super) struct JsonText(pub(super) String);

impl FromSql<JsonDoc, Sqlite> for JsonText {
    fn from_sql(value: <Sqlite as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        <String as FromSql<diesel::sql_types::Text, Sqlite>>::from_sql(value).map(JsonText)
    }
}

impl ToSql<JsonDoc, Pg> for JsonText {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        use std::io::Write as _;
        // JSONB's binary input format: version 1, then the document as text.
        out.write_all(&[1])?;
        out.write_all(self.0.as_bytes())?;
        Ok(IsNull::No)
    }
}

impl FromSql<JsonDoc, Pg> for JsonText {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        match value.as_bytes() {
            [1, text @ ..] => Ok(JsonText(String::from_utf8(text.to_vec())?)),
            _ => Err("unsupported JSONB encoding version".into()),
        }
    }
}

/// Why a stored document is not JSON: where, and what was expected (never the content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct JsonFault {
    /// Byte offset in the document.
    pub(super) offset: usize,
    /// What is wrong there.
    pub(super) problem: &'static str,
}

impl std::fmt::Display for JsonFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.problem, self.offset)
    }
}

/// Appends a value's canonical text to a row's. Only a JSON document can fail (it is
/// not JSON); it then still appends a form of its own, which equals no valid document's.
pub(super) trait Canonical {
    fn canonical(&self, out: &mut String) -> Result<(), JsonFault>;
}

/// Length-prefixed, so no content can imitate a field boundary or a NULL.
fn canonical_text(text: &str, out: &mut String) {
    let _ = write!(out, "s{}:{text};", text.len());
}

impl Canonical for i32 {
    fn canonical(&self, out: &mut String) -> Result<(), JsonFault> {
        let _ = write!(out, "i{self};");
        Ok(())
    }
}

impl Canonical for f32 {
    fn canonical(&self, out: &mut String) -> Result<(), JsonFault> {
        // Bit for bit: both columns are single precision (`REAL`).
        let _ = write!(out, "f{:08x};", self.to_bits());
        Ok(())
    }
}

impl Canonical for String {
    fn canonical(&self, out: &mut String) -> Result<(), JsonFault> {
        canonical_text(self, out);
        Ok(())
    }
}

impl Canonical for State {
    fn canonical(&self, out: &mut String) -> Result<(), JsonFault> {
        // As stored: the lowercase name, so the checksum matches the text column's.
        canonical_text(self.as_str(), out);
        Ok(())
    }
}

impl Canonical for Ts {
    fn canonical(&self, out: &mut String) -> Result<(), JsonFault> {
        // `Ts` displays as UTC RFC 3339 with six fraction digits.
        canonical_text(&self.to_string(), out);
        Ok(())
    }
}

impl Canonical for JsonText {
    fn canonical(&self, out: &mut String) -> Result<(), JsonFault> {
        let mut text = String::new();
        match canonical_json(&self.0, &mut text) {
            Ok(()) => {
                out.push('j');
                canonical_text(&text, out);
                Ok(())
            }
            Err(fault) => {
                out.push('x');
                canonical_text(&self.0, out);
                Err(fault)
            }
        }
    }
}

impl<T: Canonical> Canonical for Option<T> {
    fn canonical(&self, out: &mut String) -> Result<(), JsonFault> {
        match self {
            Some(value) => value.canonical(out),
            None => {
                out.push_str("N;");
                Ok(())
            }
        }
    }
}

/// Writes the canonical form of the JSON document `text` (see the module docs).
pub(super) fn canonical_json(text: &str, out: &mut String) -> Result<(), JsonFault> {
    let mut parser = Parser { text, pos: 0 };
    parser.whitespace();
    parser.value(out, 0)?;
    parser.whitespace();
    if parser.pos < text.len() {
        return Err(parser.fault("characters after the document"));
    }
    Ok(())
}

/// A JSON reader (RFC 8259) that writes the canonical form as it goes.
struct Parser<'t> {
    text: &'t str,
    pos: usize,
}

impl Parser<'_> {
    fn fault(&self, problem: &'static str) -> JsonFault {
        JsonFault { offset: self.pos, problem }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8, problem: &'static str) -> Result<(), JsonFault> {
        if self.peek() != Some(byte) {
            return Err(self.fault(problem));
        }
        self.pos += 1;
        Ok(())
    }

    fn value(&mut self, out: &mut String, depth: usize) -> Result<(), JsonFault> {
        match self.peek() {
            Some(b'{') => self.object(out, depth + 1),
            Some(b'[') => self.array(out, depth + 1),
            Some(b'"') => {
                let string = self.string()?;
                escaped(&string, out);
                Ok(())
            }
            Some(b'-' | b'0'..=b'9') => self.number(out),
            _ => {
                for literal in ["true", "false", "null"] {
                    if self.text[self.pos..].starts_with(literal) {
                        self.pos += literal.len();
                        out.push_str(literal);
                        return Ok(());
                    }
                }
                Err(self.fault("expected a value"))
            }
        }
    }

    fn object(&mut self, out: &mut String, depth: usize) -> Result<(), JsonFault> {
        if depth > MAX_DEPTH {
            return Err(self.fault("nested deeper than 1000 levels"));
        }
        self.pos += 1; // `{`
        let mut members: Vec<(String, String)> = Vec::new();
        self.whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                self.whitespace();
                if self.peek() != Some(b'"') {
                    return Err(self.fault("expected a key"));
                }
                let key = self.string()?;
                self.whitespace();
                self.expect(b':', "expected `:`")?;
                self.whitespace();
                let mut value = String::new();
                self.value(&mut value, depth)?;
                members.push((key, value));
                self.whitespace();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(self.fault("expected `,` or `}`")),
                }
            }
        }
        // Stable: of equal keys, the last one given stays last, and is the one kept.
        members.sort_by(|a, b| a.0.cmp(&b.0));
        out.push('{');
        let mut first = true;
        for (i, (key, value)) in members.iter().enumerate() {
            if members.get(i + 1).is_some_and(|next| next.0 == *key) {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            escaped(key, out);
            out.push(':');
            out.push_str(value);
        }
        out.push('}');
        Ok(())
    }

    fn array(&mut self, out: &mut String, depth: usize) -> Result<(), JsonFault> {
        if depth > MAX_DEPTH {
            return Err(self.fault("nested deeper than 1000 levels"));
        }
        self.pos += 1; // `[`
        out.push('[');
        self.whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
        } else {
            loop {
                self.whitespace();
                self.value(out, depth)?;
                self.whitespace();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        out.push(',');
                    }
                    Some(b']') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(self.fault("expected `,` or `]`")),
                }
            }
        }
        out.push(']');
        Ok(())
    }

    /// A string, unescaped; the parser stands on its opening quote.
    fn string(&mut self) -> Result<String, JsonFault> {
        self.pos += 1; // `"`
        let mut value = String::new();
        loop {
            let run = self.text[self.pos..].find(|c: char| c == '"' || c == '\\' || c < ' ');
            let Some(run) = run else { return Err(self.fault("unterminated string")) };
            value.push_str(&self.text[self.pos..self.pos + run]);
            self.pos += run;
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(value);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escape = self.peek().ok_or_else(|| self.fault("unterminated string"))?;
                    self.pos += 1;
                    match escape {
                        b'"' => value.push('"'),
                        b'\\' => value.push('\\'),
                        b'/' => value.push('/'),
                        b'b' => value.push('\u{8}'),
                        b'f' => value.push('\u{c}'),
                        b'n' => value.push('\n'),
                        b'r' => value.push('\r'),
                        b't' => value.push('\t'),
                        b'u' => value.push(self.unicode_escape()?),
                        _ => return Err(self.fault("unknown escape")),
                    }
                }
                _ => return Err(self.fault("control character in a string")),
            }
        }
    }

    /// The character of a `\uXXXX` escape (a surrogate pair takes two).
    fn unicode_escape(&mut self) -> Result<char, JsonFault> {
        let high = self.hex4()?;
        let code = match high {
            0xD800..=0xDBFF => {
                if !self.text[self.pos..].starts_with("\\u") {
                    return Err(self.fault("lone surrogate in a \\u escape"));
                }
                self.pos += 2;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(self.fault("lone surrogate in a \\u escape"));
                }
                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.fault("lone surrogate in a \\u escape")),
            code => code,
        };
        char::from_u32(code).ok_or_else(|| self.fault("invalid \\u escape"))
    }

    fn hex4(&mut self) -> Result<u32, JsonFault> {
        let digits = self.text.get(self.pos..self.pos + 4).ok_or_else(|| self.fault("short \\u escape"))?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.fault("invalid \\u escape"));
        }
        self.pos += 4;
        // Four hex digits: always a valid u32.
        Ok(u32::from_str_radix(digits, 16).unwrap_or_default())
    }

    /// A number, written as its exact value: `[-]DIGITSeEXP` with no leading or trailing
    /// zero in DIGITS, or `0`.
    fn number(&mut self, out: &mut String) -> Result<(), JsonFault> {
        let bytes = self.text.as_bytes();
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let digits_in = |pos: usize| bytes[pos..].iter().take_while(|b| b.is_ascii_digit()).count();
        let int_start = self.pos;
        let int_len = match self.peek() {
            Some(b'0') => 1,
            Some(b'1'..=b'9') => digits_in(self.pos),
            _ => return Err(self.fault("expected a digit")),
        };
        self.pos += int_len;
        let mut digits = String::from(&self.text[int_start..self.pos]);
        let mut exponent: i64 = 0;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            let frac_len = digits_in(self.pos);
            if frac_len == 0 {
                return Err(self.fault("expected a digit after `.`"));
            }
            digits.push_str(&self.text[self.pos..self.pos + frac_len]);
            self.pos += frac_len;
            exponent = -i64::try_from(frac_len).map_err(|_| self.fault("number too long"))?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            let sign: i64 = match self.peek() {
                Some(b'-') => {
                    self.pos += 1;
                    -1
                }
                Some(b'+') => {
                    self.pos += 1;
                    1
                }
                _ => 1,
            };
            let exp_len = digits_in(self.pos);
            if exp_len == 0 {
                return Err(self.fault("expected a digit in the exponent"));
            }
            let written = self.text[self.pos..self.pos + exp_len].trim_start_matches('0');
            // Beyond any number PostgreSQL (or anything else) stores.
            let value: i64 = if written.len() > 15 { None } else { Some(written.parse().unwrap_or(0)) }
                .ok_or_else(|| self.fault("exponent out of range"))?;
            self.pos += exp_len;
            exponent += sign * value;
        }
        let significant = digits.trim_start_matches('0');
        let trimmed = significant.trim_end_matches('0');
        if trimmed.is_empty() {
            out.push('0'); // every zero, `-0.0` included: JSONB has no negative zero
            return Ok(());
        }
        let trailing = i64::try_from(significant.len() - trimmed.len()).unwrap_or(i64::MAX);
        let _ = write!(out, "{}{trimmed}e{}", if negative { "-" } else { "" }, exponent + trailing);
        Ok(())
    }
}

/// A string, escaped one fixed way.
fn escaped(value: &str, out: &mut String) {
    // Serializing a `&str` cannot fail.
    out.push_str(&serde_json::to_string(value).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(text: &str) -> String {
        let mut out = String::new();
        canonical_json(text, &mut out).unwrap_or_else(|e| panic!("{text}: {e}"));
        out
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn keys_are_sorted_at_every_depth_and_the_last_duplicate_wins() {
        assert_eq!(
            canonical(r#" { "b" : 1, "a": {"y": [1, {"d": 2, "c": 3}], "x": null}, "b": 2 } "#),
            r#"{"a":{"x":null,"y":[1e0,{"c":3e0,"d":2e0}]},"b":2e0}"#
        );
    }

    #[test]
    fn numbers_are_exact_decimal_values() {
        assert_eq!(canonical("98.33333333333333"), "9833333333333333e-14");
        assert_ne!(canonical("98.33333333333333"), canonical("98.33333333333331"));
        assert_eq!(canonical("12345678901234567890"), "1234567890123456789e1");
        assert_ne!(canonical("12345678901234567890"), canonical("12345678901234567891"));
        // What JSONB prints for the same values.
        assert_eq!(canonical("1e400"), canonical(&format!("1{}", "0".repeat(400))));
        assert_eq!(canonical("1.0E+2"), canonical("100"));
        assert_eq!(canonical("2.50"), canonical("2.5"));
        assert_eq!(canonical("-0.0"), "0");
        assert_eq!(canonical("0"), "0");
        assert_eq!(canonical("-1.5e-3"), "-15e-4");
    }

    #[test]
    fn strings_compare_unescaped() {
        assert_eq!(canonical(r#""é \u00e9 \ud83d\ude80 \/""#), canonical(r#""é é 🚀 /""#));
        assert_ne!(canonical(r#""abc""#), canonical(r#""abd""#));
    }

    #[test]
    fn what_is_not_json_is_refused_with_a_position() {
        for (text, offset) in [
            ("{\"a\":1,}", 7),
            ("[1 2]", 3),
            ("01", 1),
            ("1.", 2),
            ("\"\\ud800\"", 7),
            ("nul", 0),
            ("{} x", 3),
            ("\"a\nb\"", 2),
        ] {
            let error = canonical_json(text, &mut String::new()).expect_err(text);
            assert_eq!(error.offset, offset, "{text}: {error}");
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(canonical_json(&deep, &mut String::new()).is_err());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(canonical_json(&deep, &mut String::new()).is_ok());
    }

    #[test]
    fn canonical_rows_tell_null_from_empty_and_fields_apart() {
        let mut a = String::new();
        let _ = Some(String::new()).canonical(&mut a);
        let mut b = String::new();
        let _ = None::<String>.canonical(&mut b);
        assert_ne!(a, b);
        let (mut c, mut d) = (String::new(), String::new());
        for field in ["ab", "c"] {
            let _ = field.to_owned().canonical(&mut c);
        }
        for field in ["a", "bc"] {
            let _ = field.to_owned().canonical(&mut d);
        }
        assert_ne!(c, d);
    }
}
