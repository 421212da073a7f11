//! [`DatabaseUrl`]: a PostgreSQL connection URL whose password never leaves this
//! module in clear (its `Debug` and `Display` mask it).

use std::fmt;

use super::error::{ConfigSource, DatabaseConfigError};

/// A PostgreSQL connection URL whose password is never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(url::Url);

impl DatabaseUrl {
    /// Parses and checks a `postgres://` or `postgresql://` URL.
    pub fn parse(raw: &str, origin: ConfigSource) -> Result<Self, DatabaseConfigError> {
        let invalid = |reason: String| DatabaseConfigError::InvalidUrl { origin: origin.clone(), reason };
        // url's own messages never echo the input, so they are safe to pass on.
        let url = url::Url::parse(raw.trim()).map_err(|e| invalid(e.to_string()))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(invalid(format!("scheme `{}` is not postgres:// or postgresql://", url.scheme())));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host".into()));
        }
        if url.path().trim_start_matches('/').is_empty() {
            return Err(invalid("no database name".into()));
        }
        Ok(Self(url))
    }

    /// The URL with its password, for the driver only.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// The database name.
    pub fn database(&self) -> &str {
        self.0.path().trim_start_matches('/')
    }

    /// The same server with another database (for admin connections and tests).
    pub fn with_database(&self, database: &str) -> Self {
        let mut url = self.0.clone();
        url.set_path(database);
        Self(url)
    }

    /// The URL with the password replaced by `***`.
    pub fn redacted(&self) -> String {
        let mut url = self.0.clone();
        if url.password().is_some() {
            // Cannot fail: the URL has a host (checked in `parse`).
            let _ = url.set_password(Some("***"));
        }
        url.to_string()
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl").field(&self.redacted()).finish()
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}
