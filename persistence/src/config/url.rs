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
/// for ([`DatabaseUrl::tls`]): the URL stays the one source of truth.
///
/// A URL may name several hosts, as libpq and tokio-postgres accept them
/// (`postgresql://h1:5432,h2:5433/db?target_session_attrs=read-write`): the driver
/// tries them in order. The `url` crate knows one host per URL, so the first host is
/// kept in a [`url::Url`] (which every accessor works on) and the others beside it,
/// put back wherever the URL is written out.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    /// The URL with its first host only.
    first: url::Url,
    /// With several hosts: the others as written (`,host2:port2,host3`) and the whole
    /// URL, every host included. Boxed: most URLs name one host, and the type is held
    /// by value in many places.
    more: Option<Box<MoreHosts>>,
}

#[derive(Clone, PartialEq, Eq)]
struct MoreHosts {
    hosts: String,
    full: String,
}

/// Splits the other hosts off `raw`'s authority: (`raw` with its first host only,
/// `,host2,...`). `None` when the authority names one host.
fn split_hosts(raw: &str) -> Option<(String, String)> {
    let start = raw.find("://")? + 3;
    let end = raw[start..].find(['/', '?', '#']).map_or(raw.len(), |i| start + i);
    let authority = &raw[start..end];
    let hosts_from = authority.rfind('@').map_or(0, |at| at + 1);
    let hosts = &authority[hosts_from..];
    let comma = hosts.find(',')?;
    let first = format!("{}{}{}", &raw[..start + hosts_from], &hosts[..comma], &raw[end..]);
    Some((first, hosts[comma..].to_owned()))
}

/// `text` (a URL with one host) with `more_hosts` put back after its host.
fn join_hosts(text: &str, more_hosts: &str) -> String {
    if more_hosts.is_empty() {
        return text.to_owned();
    }
    let start = text.find("://").map_or(0, |i| i + 3);
    let end = text[start..].find(['/', '?', '#']).map_or(text.len(), |i| start + i);
    format!("{}{more_hosts}{}", &text[..end], &text[end..])
}

impl DatabaseUrl {
    /// Parses and checks a `postgres://` or `postgresql://` URL.
    pub fn parse(raw: &str, origin: ConfigSource) -> Result<Self, DatabaseConfigError> {
        let invalid = |reason: String| DatabaseConfigError::InvalidUrl { origin: origin.clone(), reason };
        // url's own messages never echo the input, so they are safe to pass on.
        let (raw, more_hosts) =
            split_hosts(raw.trim()).unwrap_or_else(|| (raw.trim().to_owned(), String::new()));
        for host in more_hosts.split(',').skip(1) {
            // Each further host must be a host (and port) the first position would accept.
            url::Url::parse(&format!("postgres://{host}/db"))
                .ok()
                .filter(|u| u.host_str().is_some_and(|h| !h.is_empty()))
                .ok_or_else(|| invalid("a host of the host list is empty or malformed".into()))?;
        }
        let url = url::Url::parse(&raw).map_err(|e| invalid(e.to_string()))?;
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
        Ok(Self::new(url, more_hosts))
    }

    fn new(first: url::Url, more_hosts: String) -> Self {
        let more = (!more_hosts.is_empty()).then(|| {
            let full = join_hosts(first.as_str(), &more_hosts);
            Box::new(MoreHosts { hosts: more_hosts, full })
        });
        Self { first, more }
    }

    /// `,host2:port2,...` or empty.
    fn more_hosts(&self) -> &str {
        self.more.as_ref().map_or("", |more| &more.hosts)
    }

    /// `host:port` of every host, comma-separated (the port 5432 when none is given).
    pub fn hosts(&self) -> String {
        let host = self.first.host_str().unwrap_or_default();
        format!("{host}:{}{}", self.first.port().unwrap_or(5432), self.more_hosts())
    }

    /// The TLS settings of the URL's `sslmode`, `sslrootcert`, `sslcert` and `sslkey`.
    pub fn tls(&self) -> TlsSettings {
        // `parse` read these parameters already, and nothing changes them since.
        TlsSettings::from_url(&self.first).expect("the TLS parameters were checked by DatabaseUrl::parse")
    }

    /// The URL for tokio-postgres: without the TLS parameters, which it does not
    /// know (`verify-full`, `sslrootcert`) and which [`crate::connect`] applies itself.
    pub(crate) fn driver_url(&self) -> String {
        let mut url = self.first.clone();
        let kept: Vec<(String, String)> = self
            .first
            .query_pairs()
            .filter(|(key, _)| !TLS_PARAMETERS.contains(&key.as_ref()))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.set_query(None);
        if !kept.is_empty() {
            url.query_pairs_mut().extend_pairs(kept);
        }
        join_hosts(url.as_str(), self.more_hosts())
    }

    /// The URL with its password, for the driver only.
    pub fn expose(&self) -> &str {
        self.more.as_ref().map_or(self.first.as_str(), |more| &more.full)
    }

    /// The database name.
    pub fn database(&self) -> &str {
        self.first.path().trim_start_matches('/')
    }

    /// The same server with another database (for admin connections and tests).
    pub fn with_database(&self, database: &str) -> Self {
        let mut url = self.first.clone();
        url.set_path(database);
        Self::new(url, self.more_hosts().to_owned())
    }

    /// The URL with the password replaced by `***` — the one after the user name and
    /// a libpq `password=` query parameter alike. Other parameters (`sslmode`, the
    /// paths of certificate files) are shown as they are.
    pub fn redacted(&self) -> String {
        let mut url = self.first.clone();
        if url.password().is_some() {
            // Cannot fail: the URL has a host (checked in `parse`).
            let _ = url.set_password(Some("***"));
        }
        if url.query_pairs().any(|(key, _)| key == "password") {
            let masked: Vec<(Cow<'_, str>, Cow<'_, str>)> = self
                .first
                .query_pairs()
                .map(
                    |(key, value)| if key == "password" { (key, Cow::Borrowed("***")) } else { (key, value) },
                )
                .collect();
            url.set_query(None);
            url.query_pairs_mut().extend_pairs(masked);
        }
        join_hosts(url.as_str(), self.more_hosts())
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

    #[test]
    fn several_hosts_are_kept_everywhere_the_url_is_written() {
        let raw = "postgresql://app:hunter2@h1:5432,h2:5433,h3/agents?target_session_attrs=read-write&sslmode=require";
        let url = DatabaseUrl::parse(raw, ConfigSource::Explicit).unwrap();
        assert_eq!(url.expose(), raw);
        assert_eq!(url.hosts(), "h1:5432,h2:5433,h3");
        assert_eq!(url.database(), "agents");
        assert_eq!(
            url.redacted(),
            "postgresql://app:***@h1:5432,h2:5433,h3/agents?target_session_attrs=read-write&sslmode=require"
        );
        assert_eq!(
            url.driver_url(),
            "postgresql://app:hunter2@h1:5432,h2:5433,h3/agents?target_session_attrs=read-write"
        );
        assert_eq!(
            url.with_database("other").expose(),
            "postgresql://app:hunter2@h1:5432,h2:5433,h3/other?target_session_attrs=read-write&sslmode=require"
        );
        for bad in ["postgresql://h1,/db", "postgresql://h1,:5/db", "postgresql://h1,h2:port/db"] {
            assert!(DatabaseUrl::parse(bad, ConfigSource::Explicit).is_err(), "{bad}");
        }
    }
}
