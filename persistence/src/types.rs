//! Column types that let one `schema.rs` and one set of models serve both backends.
//!
//! The specification stores timestamps as `TIMESTAMPTZ` and documents as `JSONB`.
//! SQLite has neither, so those columns are `TEXT` there. Diesel ties a Rust type to
//! one SQL type per backend, so we declare two SQL types of our own whose wire format
//! delegates per backend:
//!
//! | SQL type      | PostgreSQL     | SQLite                              | Rust type     |
//! |---------------|----------------|-------------------------------------|---------------|
//! | [`sql_types::TsTz`]    | `TIMESTAMPTZ`  | `TEXT` `YYYY-MM-DD HH:MM:SS.ffffff+00:00` | [`Ts`]   |
//! | [`sql_types::JsonDoc`] | `JSONB`        | `TEXT` (JSON)                        | [`Json`]      |
//!
//! Timestamps are [`DateTime<Utc>`] truncated to microseconds, PostgreSQL's precision,
//! so a value reads back equal to what was written on either backend (and a SQLite
//! database copies into PostgreSQL without loss). SQLite text is written with a fixed
//! six-digit fraction so that comparing the text compares the instants.
//!
//! A document column that cannot be parsed — nested deeper than serde_json reads, or
//! not JSON at all, written by hand or by an older Vigil — does not fail the read: it
//! reads as the marker `{"vigil_unreadable": "<reason>"}` ([`Json::unreadable`]) and a
//! warning is logged (without the document), so one bad row does not hide every other
//! row of a listing. The write side keeps such documents out (see [`crate::limits`]).

use chrono::{DateTime, SubsecRound, Utc};
use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sqlite::Sqlite;
use serde::{Deserialize, Serialize};

/// The custom SQL types used in [`crate::schema`].
pub mod sql_types {
    /// `TIMESTAMPTZ` on PostgreSQL (oid 1184), `TEXT` on SQLite.
    #[derive(diesel::sql_types::SqlType, diesel::query_builder::QueryId, Debug, Clone, Copy, Default)]
    #[diesel(postgres_type(oid = 1184, array_oid = 1185))]
    #[diesel(sqlite_type(name = "Text"))]
    pub struct TsTz;

    /// `JSONB` on PostgreSQL (oid 3802), JSON text on SQLite.
    #[derive(diesel::sql_types::SqlType, diesel::query_builder::QueryId, Debug, Clone, Copy, Default)]
    #[diesel(postgres_type(oid = 3802, array_oid = 3807))]
    #[diesel(sqlite_type(name = "Text"))]
    pub struct JsonDoc;
}
use sql_types::{JsonDoc, TsTz};

/// The SQLite text form of a timestamp: fixed width, so text order is time order.
const SQLITE_TS_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f+00:00";

/// A UTC instant with microsecond precision, stored as `TIMESTAMPTZ` / `TEXT`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, AsExpression, FromSqlRow, Serialize, Deserialize,
)]
#[diesel(sql_type = TsTz)]
#[serde(transparent)]
pub struct Ts(DateTime<Utc>);

impl Ts {
    /// The current instant, truncated to microseconds.
    pub fn now() -> Self {
        Self::from(Utc::now())
    }

    /// The instant as a chrono value.
    pub fn get(self) -> DateTime<Utc> {
        self.0
    }
}

impl From<DateTime<Utc>> for Ts {
    fn from(value: DateTime<Utc>) -> Self {
        Self(value.trunc_subsecs(6))
    }
}

impl From<Ts> for DateTime<Utc> {
    fn from(value: Ts) -> Self {
        value.0
    }
}

impl std::fmt::Display for Ts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    }
}

impl ToSql<TsTz, Pg> for Ts {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <DateTime<Utc> as ToSql<diesel::sql_types::Timestamptz, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<TsTz, Pg> for Ts {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        <DateTime<Utc> as FromSql<diesel::sql_types::Timestamptz, Pg>>::from_sql(value).map(Ts)
    }
}

impl ToSql<TsTz, Sqlite> for Ts {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.format(SQLITE_TS_FORMAT).to_string());
        Ok(IsNull::No)
    }
}

impl FromSql<TsTz, Sqlite> for Ts {
    fn from_sql(value: <Sqlite as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        <DateTime<Utc> as FromSql<diesel::sql_types::TimestamptzSqlite, Sqlite>>::from_sql(value)
            .map(Ts::from)
    }
}

/// A JSON document, stored as `JSONB` / JSON text.
#[derive(Debug, Clone, PartialEq, AsExpression, FromSqlRow, Serialize, Deserialize)]
#[diesel(sql_type = JsonDoc)]
#[serde(transparent)]
pub struct Json(pub serde_json::Value);

impl Json {
    /// The key of the marker an unreadable stored document reads as.
    pub const UNREADABLE_KEY: &'static str = "vigil_unreadable";

    /// The marker for a stored document that could not be read: an object with the
    /// single key [`Json::UNREADABLE_KEY`] whose value says why.
    pub fn unreadable(reason: impl Into<String>) -> Self {
        let mut marker = serde_json::Map::new();
        marker.insert(Self::UNREADABLE_KEY.to_owned(), serde_json::Value::String(reason.into()));
        Self(serde_json::Value::Object(marker))
    }

    /// Why the stored document could not be read, if this is the marker.
    pub fn unreadable_reason(&self) -> Option<&str> {
        match &self.0 {
            serde_json::Value::Object(map) if map.len() == 1 => map.get(Self::UNREADABLE_KEY)?.as_str(),
            _ => None,
        }
    }

    /// Parses a stored document; what cannot be parsed becomes the marker.
    fn parse_stored(bytes: &[u8]) -> Self {
        // serde_json's default recursion limit stops a deep document at 128 levels,
        // before the parser's own recursion could overflow the stack.
        match serde_json::from_slice(bytes) {
            Ok(value) => Json(value),
            Err(error) => {
                // The error names a position, never the content.
                tracing::warn!(%error, bytes = bytes.len(), "stored JSON document cannot be read; read as a marker");
                Json::unreadable(format!("stored JSON cannot be read: {error}"))
            }
        }
    }
}

impl From<serde_json::Value> for Json {
    fn from(value: serde_json::Value) -> Self {
        Self(value)
    }
}

impl ToSql<JsonDoc, Pg> for Json {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <serde_json::Value as ToSql<diesel::sql_types::Jsonb, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<JsonDoc, Pg> for Json {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        // JSONB's binary format: a version byte (1), then the document as text.
        match value.as_bytes() {
            [1, text @ ..] => Ok(Json::parse_stored(text)),
            _ => Err("unsupported JSONB encoding version".into()),
        }
    }
}

impl ToSql<JsonDoc, Sqlite> for Json {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        <serde_json::Value as ToSql<diesel::sql_types::Json, Sqlite>>::to_sql(&self.0, out)
    }
}

impl FromSql<JsonDoc, Sqlite> for Json {
    fn from_sql(value: <Sqlite as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<diesel::sql_types::Text, Sqlite>>::from_sql(value)?;
        Ok(Json::parse_stored(text.as_bytes()))
    }
}
