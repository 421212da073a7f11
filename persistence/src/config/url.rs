//! [`DatabaseUrl`]: a PostgreSQL connection URL whose password never leaves this
//! module in clear (its `Debug` and `Display` mask it), with the [`TlsSettings`] its
//! libpq parameters (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) ask for.

use std::borrow::Cow;
use std::fmt;

use super::error::{ConfigSource, DatabaseConfigError};
use super::tls::{TLS_PARAMETERS, TlsSettings};

/// A PostgreSQL connection URL whose password is never shown.
///
/// The TLS settings are not kept beside the URL but read from its query when asked
/// for ([`DatabaseUrl::tls`]): the URL stays the one source of truth, and the type
/// stays small (it is held by value in many places).
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
        TlsSettings::from_url(&url)?.load_files()?;
        Ok(Self(url))
    }

    /// The TLS settings of the URL's `sslmode`, `sslrootcert`, `sslcert` and `sslkey`.
    pub fn tls(&self) -> TlsSettings {
        // `parse` read these parameters already, and nothing changes them since.
        TlsSettings::from_url(&self.0).expect("the TLS parameters were checked by DatabaseUrl::parse")
    }

    /// The URL for tokio-postgres: without the TLS parameters, which it does not
    /// know (`verify-full`, `sslrootcert`) and which [`crate::connect`] applies itself.
    pub(crate) fn driver_url(&self) -> String {
        let mut url = self.0.clone();
        let kept: Vec<(String, String)> = self
            .0
            .query_pairs()
            .filter(|(key, _)| !TLS_PARAMETERS.contains(&key.as_ref()))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.set_query(None);
        if !kept.is_empty() {
            url.query_pairs_mut().extend_pairs(kept);
        }
        url.into()
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

    /// The URL with the password replaced by `***` — the one after the user name and
    /// a libpq `password=` query parameter alike. Other parameters (`sslmode`, the
    /// paths of certificate files) are shown as they are.
    pub fn redacted(&self) -> String {
        let mut url = self.0.clone();
        if url.password().is_some() {
            // Cannot fail: the URL has a host (checked in `parse`).
            let _ = url.set_password(Some("***"));
        }
        if url.query_pairs().any(|(key, _)| key == "password") {
            let masked: Vec<(Cow<'_, str>, Cow<'_, str>)> = self
                .0
                .query_pairs()
                .map(
                    |(key, value)| if key == "password" { (key, Cow::Borrowed("***")) } else { (key, value) },
                )
                .collect();
            url.set_query(None);
            url.query_pairs_mut().extend_pairs(masked);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_gets_no_tls_parameters_and_no_one_sees_a_password() {
        let url = DatabaseUrl::parse(
            "postgres://app:hunter2@db/agents?sslmode=verify-full&application_name=x&sslrootcert=system",
            ConfigSource::Explicit,
        )
        .unwrap();
        assert_eq!(url.driver_url(), "postgres://app:hunter2@db/agents?application_name=x");
        assert_eq!(
            url.redacted(),
            "postgres://app:***@db/agents?sslmode=verify-full&application_name=x&sslrootcert=system"
        );
        let only_tls =
            DatabaseUrl::parse("postgres://db/agents?sslmode=disable", ConfigSource::Explicit).unwrap();
        assert_eq!(only_tls.driver_url(), "postgres://db/agents");
        let in_query = DatabaseUrl::parse(
            "postgres://app@db/agents?password=hunter2&sslmode=require",
            ConfigSource::Explicit,
        )
        .unwrap();
        assert_eq!(in_query.redacted(), "postgres://app@db/agents?password=***&sslmode=require");
    }
}
