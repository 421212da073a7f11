//! What an import reports: the [`ImportReport`] with one [`TableImport`] per table and
//! their [`Checksum`]s, the [`VERIFICATION`] it performed, and the [`ImportProgress`]
//! its callback sees on the way.

use std::time::Duration;

use serde::Serialize;

/// A 64-bit FNV-1a checksum, shown and serialized as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Checksum(pub u64);

impl std::fmt::Display for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Serialize for Checksum {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The verified copy of one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableImport {
    /// Table name.
    pub table: &'static str,
    /// Rows read from the source (and copied).
    pub rows: u64,
    /// Imported rows found again in the target.
    pub rows_target: u64,
    /// Checksum of the source rows, in key order.
    pub checksum_source: Checksum,
    /// Checksum of the imported rows read back from the target, in key order.
    pub checksum_target: Checksum,
    /// Whether counts and checksums are equal (always true in a returned report: a
    /// mismatch fails the import with [`ImportError::ChecksumMismatch`](crate::import::ImportError::ChecksumMismatch)).
    pub matches: bool,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportReport {
    /// The source, password-free (`sqlite:vigil.db`).
    pub source: String,
    /// The target, password hidden.
    pub target: String,
    /// Whether rows were appended to a non-empty target.
    pub append: bool,
    /// The nine tables, in the order they were copied.
    pub tables: Vec<TableImport>,
    /// Rows copied, all tables.
    pub total_rows: u64,
    /// Wall time of the whole import, verification included.
    #[serde(serialize_with = "seconds")]
    pub elapsed: Duration,
    /// What the verification compared, in one sentence ([`VERIFICATION`]).
    pub verification: &'static str,
}

/// What the verification of each table compares, as the report states it.
pub const VERIFICATION: &str = "per table, the row count and a 64-bit FNV-1a checksum of every column of every \
     row, in key order, read from the source and read back from the target inside the import's transaction; \
     values are compared exactly: text byte for byte, timestamps to the microsecond, REAL by its bits, JSON \
     by value with every number as its exact decimal value (JSONB's key order and whitespace aside)";

fn seconds<S: serde::Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(value.as_secs_f64())
}

/// Where an import is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ImportStage {
    /// The source row counts are known; nothing is copied yet.
    Started,
    /// A batch of the table was inserted.
    Copying,
    /// The table was copied and read back; its counts and checksums agree.
    Verified,
}

/// One progress report, given to the [`Importer::on_progress`](crate::import::Importer::on_progress) callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportProgress {
    /// The table (for [`ImportStage::Started`], the first one).
    pub table: &'static str,
    /// What just happened.
    pub stage: ImportStage,
    /// Rows of this table copied so far.
    pub rows_copied: u64,
    /// Rows of this table in the source.
    pub rows_total: u64,
    /// Rows copied so far, all tables.
    pub all_copied: u64,
    /// Rows in the source, all tables.
    pub all_total: u64,
}

pub(super) type ProgressFn = Box<dyn FnMut(&ImportProgress) + Send>;
