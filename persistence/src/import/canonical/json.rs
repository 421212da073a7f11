//! The JSON half of the canonical form: a reader of RFC 8259 documents that writes
//! their canonical text as it goes (keys sorted, strings unescaped and escaped one way,
//! numbers as their exact decimal value), and the [`JsonFault`] it reports for a
//! document that is not JSON.
//!
//! It never parses a number into a float: see the parent module for why.

use std::fmt::Write as _;

/// Deepest nesting of objects and arrays the canonical form follows (a document nested
/// deeper is refused, by name, rather than overflowing a stack). Far above what Vigil
/// writes ([`crate::limits::MAX_JSON_DEPTH`]).
pub(super) const MAX_DEPTH: usize = 1_000;

/// Why a stored document is not JSON: where, and what was expected (never the content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::import) struct JsonFault {
    /// Byte offset in the document.
    pub(in crate::import) offset: usize,
    /// What is wrong there.
    pub(in crate::import) problem: &'static str,
}

impl std::fmt::Display for JsonFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.problem, self.offset)
    }
}

/// Writes the canonical form of the JSON document `text` (see the module docs).
pub(in crate::import) fn canonical_json(text: &str, out: &mut String) -> Result<(), JsonFault> {
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
