//! Payload limits: how deep and how large a write's documents and texts may be.
//!
//! Every write is checked at the edge — by [`PersistenceHandle`](crate::PersistenceHandle)
//! before it is queued, by [`SharedState`](crate::SharedState) before a direct write —
//! so that nothing is acknowledged that Vigil could not read back, and no payload can
//! take the process down:
//!
//! * **JSON depth.** serde_json, which reads every document column, refuses a document
//!   nested 128 levels deep or more ([`READABLE_JSON_DEPTH`] is the most it reads), and
//!   serializing a very deep value recurses until the thread's stack overflows (a
//!   30,000-deep document aborted the process). A document deeper than the limit is
//!   refused; the limit itself may not be raised above [`MAX_JSON_DEPTH`], which leaves
//!   room under the readable depth for a payload quoted inside another (an event that
//!   carries an agent's metrics).
//! * **JSON size**, as serialized (compact): one document is read whole on every
//!   listing that shows it (`get_registered_agents` reads every agent's metrics).
//! * **Free text** the schema does not bound (`TEXT` columns: heartbeat messages, help
//!   queries and answers, messages between agents, LLM prompts and responses, command
//!   outcomes, workflow errors), in UTF-8 bytes.
//!
//! | limit            | default  | ceiling           | applies to |
//! |------------------|----------|-------------------|------------|
//! | `max_json_depth` | 64       | [`MAX_JSON_DEPTH`] (100) | every JSON document: heartbeat metadata and uptime, metric metadata, event data, system-state values, help context, conversation metadata, workflow state |
//! | `max_json_bytes` | 1 MiB    | none              | the same documents, serialized |
//! | `max_text_bytes` | 16 MiB   | none              | `TEXT` columns |
//!
//! Why these defaults: the built-in agents write documents of a few kilobytes nested a
//! few levels, so 64 levels and 1 MiB leave two orders of magnitude of room while
//! keeping any one document cheap for every reader. 16 MiB of text holds an LLM prompt
//! of a million-token context several times over, and stays far below what either
//! database takes in one value (1 GB for PostgreSQL `TEXT`, 255 MB for `JSONB`, 1 GB for
//! an SQLite value by default). Depth is counted in containers: `1` has depth 0, `[]`
//! and `{}` depth 1, `{"a": [1]}` depth 2.
//!
//! A refused write fails with [`StoreError::InvalidInput`] naming the field, what was
//! measured and the limit. The check walks the document with an explicit stack, never
//! recursing, so any document can be measured; [`drop_deep`] frees one the same way
//! (serde_json's own drop recurses). The limits travel with the store's configuration:
//!
//! ```
//! use vigil_persistence::DatabaseConfig;
//! use vigil_persistence::limits::PayloadLimits;
//!
//! let limits = PayloadLimits::default().with_max_json_depth(80).with_max_text_bytes(64 << 20);
//! let config = DatabaseConfig::sqlite_memory().with_payload_limits(limits).unwrap();
//! assert_eq!(config.payload_limits().max_json_depth, 80);
//!
//! // Deeper than anything can read back: refused.
//! let too_deep = PayloadLimits::default().with_max_json_depth(200);
//! assert!(DatabaseConfig::sqlite_memory().with_payload_limits(too_deep).is_err());
//! ```
//!
//! Readers tolerate what the limits keep out: a document column that cannot be parsed
//! (written by hand, or by an older Vigil) reads as a marker (see
//! [`Json::unreadable`](crate::types::Json::unreadable)) and a warning is logged, so one
//! bad row does not fail a listing.

use std::fmt::Write as _;

use serde_json::Value;

use crate::config::DatabaseConfigError;
use crate::error::StoreError;

/// The deepest document serde_json reads back: its parser's recursion limit (128)
/// refuses the 128th level.
pub const READABLE_JSON_DEPTH: usize = 127;

/// The highest `max_json_depth` a configuration may set: [`READABLE_JSON_DEPTH`] less
/// room for a payload quoted inside another document.
pub const MAX_JSON_DEPTH: usize = 100;

/// How deep and how large a write's payloads may be. See the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PayloadLimits {
    /// Deepest nesting of a JSON document (default 64, at most [`MAX_JSON_DEPTH`]).
    pub max_json_depth: usize,
    /// Largest JSON document, serialized compactly, in bytes (default 1 MiB).
    pub max_json_bytes: usize,
    /// Largest free text (`TEXT` column), in UTF-8 bytes (default 16 MiB).
    pub max_text_bytes: usize,
}

impl Default for PayloadLimits {
    fn default() -> Self {
        Self { max_json_depth: 64, max_json_bytes: 1 << 20, max_text_bytes: 16 << 20 }
    }
}

impl PayloadLimits {
    /// The most any valid configuration allows: what the batch writer checks whatever
    /// the configuration, so that nothing unreadable reaches the database even through
    /// [`Store::write_batch`](crate::Store::write_batch).
    pub(crate) const CEILING: PayloadLimits = PayloadLimits {
        max_json_depth: MAX_JSON_DEPTH,
        max_json_bytes: usize::MAX,
        max_text_bytes: usize::MAX,
    };

    /// Sets the deepest nesting of a JSON document.
    #[must_use]
    pub fn with_max_json_depth(mut self, depth: usize) -> Self {
        self.max_json_depth = depth;
        self
    }

    /// Sets the largest JSON document, in bytes.
    #[must_use]
    pub fn with_max_json_bytes(mut self, bytes: usize) -> Self {
        self.max_json_bytes = bytes;
        self
    }

    /// Sets the largest free text, in bytes.
    #[must_use]
    pub fn with_max_text_bytes(mut self, bytes: usize) -> Self {
        self.max_text_bytes = bytes;
        self
    }

    /// Refuses limits that would let through what cannot be read back, or nothing.
    pub fn validate(&self) -> Result<(), DatabaseConfigError> {
        if self.max_json_depth == 0 || self.max_json_depth > MAX_JSON_DEPTH {
            return Err(DatabaseConfigError::InvalidValue {
                name: "max_json_depth",
                reason: format!(
                    "{} is not between 1 and {MAX_JSON_DEPTH} (serde_json reads at most \
                     {READABLE_JSON_DEPTH} levels back; the rest is room for quoting a payload)",
                    self.max_json_depth
                ),
            });
        }
        if self.max_json_bytes == 0 {
            return Err(DatabaseConfigError::InvalidValue {
                name: "max_json_bytes",
                reason: "must be positive".into(),
            });
        }
        if self.max_text_bytes == 0 {
            return Err(DatabaseConfigError::InvalidValue {
                name: "max_text_bytes",
                reason: "must be positive".into(),
            });
        }
        Ok(())
    }

    /// Checks one JSON document; `field` names it in the error.
    pub fn check_json(&self, field: &'static str, value: &Value) -> Result<(), StoreError> {
        let shape = JsonShape::of(value);
        if shape.depth > self.max_json_depth {
            return Err(StoreError::invalid(
                field,
                format!(
                    "JSON nested {} levels deep, at most {} allowed (PayloadLimits::max_json_depth)",
                    shape.depth, self.max_json_depth
                ),
            ));
        }
        if shape.bytes > self.max_json_bytes {
            return Err(StoreError::invalid(
                field,
                format!(
                    "JSON of {} bytes, at most {} allowed (PayloadLimits::max_json_bytes)",
                    shape.bytes, self.max_json_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Checks an optional JSON document.
    pub(crate) fn check_opt_json(
        &self,
        field: &'static str,
        value: Option<&Value>,
    ) -> Result<(), StoreError> {
        value.map_or(Ok(()), |v| self.check_json(field, v))
    }

    /// Checks one free text; `field` names it in the error.
    pub fn check_text(&self, field: &'static str, value: &str) -> Result<(), StoreError> {
        if value.len() > self.max_text_bytes {
            return Err(StoreError::invalid(
                field,
                format!(
                    "text of {} bytes, at most {} allowed (PayloadLimits::max_text_bytes)",
                    value.len(),
                    self.max_text_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Checks an optional free text.
    pub(crate) fn check_opt_text(&self, field: &'static str, value: Option<&str>) -> Result<(), StoreError> {
        value.map_or(Ok(()), |v| self.check_text(field, v))
    }
}

/// The size and depth of a JSON document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct JsonShape {
    /// Bytes of its compact serialization (what `serde_json::to_string` gives).
    pub bytes: usize,
    /// Containers on its deepest path: 0 for a scalar, 1 for `[]` or `{}`.
    pub depth: usize,
}

impl JsonShape {
    /// Measures `value` with an explicit stack: any depth is safe.
    pub fn of(value: &Value) -> JsonShape {
        let mut shape = JsonShape::default();
        let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
        while let Some((value, depth)) = stack.pop() {
            shape.bytes += match value {
                Value::Null => 4,
                Value::Bool(true) => 4,
                Value::Bool(false) => 5,
                Value::Number(n) => {
                    let mut counter = Counter(0);
                    // Writing into a counter cannot fail.
                    let _ = write!(counter, "{n}");
                    counter.0
                }
                Value::String(s) => quoted_len(s),
                Value::Array(items) => {
                    shape.depth = shape.depth.max(depth + 1);
                    stack.extend(items.iter().map(|item| (item, depth + 1)));
                    // Brackets and commas.
                    2 + items.len().saturating_sub(1)
                }
                Value::Object(map) => {
                    shape.depth = shape.depth.max(depth + 1);
                    stack.extend(map.values().map(|item| (item, depth + 1)));
                    // Braces, commas, and each key with its colon.
                    2 + map.len().saturating_sub(1) + map.keys().map(|k| quoted_len(k) + 1).sum::<usize>()
                }
            };
        }
        shape
    }
}

/// Counts the bytes written through `fmt::Write`.
struct Counter(usize);

impl std::fmt::Write for Counter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

/// The length of `s` as a JSON string: quotes, and serde_json's escapes.
fn quoted_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | 0x08 | 0x09 | 0x0a | 0x0c | 0x0d => 2,
            0x00..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// Frees a JSON document with an explicit stack. serde_json's own drop recurses once
/// per level, so dropping a document thousands of levels deep overflows a thread's
/// stack; Vigil frees the documents it refuses with this, and so may callers that
/// get a refused write back ([`EnqueueError::Invalid`](crate::EnqueueError::Invalid)):
/// see [`Write::drop_deep`](crate::Write::drop_deep).
pub fn drop_deep(value: Value) {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            // Each container is emptied onto the stack before it is dropped, so no
            // drop ever recurses more than one level.
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> Value {
        let mut value = Value::from(1);
        for _ in 0..depth {
            value = Value::Array(vec![value]);
        }
        value
    }

    #[test]
    fn shape_is_the_compact_serialization() {
        let docs = [
            serde_json::json!(null),
            serde_json::json!({"a": [1, 2.5, -3, true, false, null], "b\"\\\n\u{1}": "é\t", "c": {}}),
            serde_json::json!([[], {}, [{"x": 1e300}], "", 18446744073709551615u64]),
        ];
        for doc in docs {
            assert_eq!(JsonShape::of(&doc).bytes, serde_json::to_string(&doc).unwrap().len(), "{doc}");
        }
        assert_eq!(JsonShape::of(&serde_json::json!(1)).depth, 0);
        assert_eq!(JsonShape::of(&serde_json::json!({"a": [1]})).depth, 2);
        assert_eq!(JsonShape::of(&nested(7)).depth, 7);
    }

    #[test]
    fn readable_depth_is_serde_jsons() {
        let text = |depth| serde_json::to_string(&nested(depth)).unwrap();
        assert!(serde_json::from_str::<Value>(&text(READABLE_JSON_DEPTH)).is_ok());
        assert!(serde_json::from_str::<Value>(&text(READABLE_JSON_DEPTH + 1)).is_err());
    }

    #[test]
    fn very_deep_documents_are_measured_and_freed_without_recursion() {
        let deep = nested(100_000);
        assert_eq!(JsonShape::of(&deep).depth, 100_000);
        drop_deep(deep);
    }
}
