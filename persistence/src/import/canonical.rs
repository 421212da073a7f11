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

mod json;

pub(super) use json::JsonFault;
use json::canonical_json;

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

#[cfg(test)]
mod tests {
    use super::json::MAX_DEPTH;
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
