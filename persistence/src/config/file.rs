//! Parsing `postgres_config.json` ([`DatabaseConfig::from_file`]): the keys it may
//! hold, and errors that name a key and a position but never a value (the file holds
//! a password).

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::database::DatabaseConfig;
use super::error::{ConfigSource, DatabaseConfigError};
use super::pool::PoolConfig;
use super::url::DatabaseUrl;

/// The keys of `postgres_config.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    user: Option<String>,
    password: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    database: Option<String>,
    max_connections: Option<u32>,
    min_connections: Option<u32>,
    /// Seconds.
    command_timeout: Option<f64>,
    /// libpq's TLS keys, as in a URL (see [`super::TlsSettings`]).
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    sslcert: Option<String>,
    sslkey: Option<String>,
}

/// A parse error of `postgres_config.json` that names the key and the position but no
/// value: the file holds a password, and serde's messages quote the offending value
/// ("invalid type: integer `12345`, expected a string"). Only what serde says about
/// keys (unknown, missing, duplicate) and what it expected is kept.
fn describe_without_values(error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let inner = error.inner();
    let at = format!("line {} column {}", inner.line(), inner.column());
    let message = inner.to_string();
    // serde_json appends " at line L column C" to its messages.
    let message = message.split(" at line ").next().unwrap_or_default();
    let path = error.path().to_string();
    let key = if path == "." { String::new() } else { format!("`{path}`: ") };
    match inner.classify() {
        serde_json::error::Category::Data => {
            let about_keys = ["unknown field", "missing field", "duplicate field"];
            if about_keys.iter().any(|prefix| message.starts_with(prefix)) {
                format!("{key}{message} ({at})")
            } else {
                // "invalid type: integer `12345`, expected ..." keeps "invalid type" and
                // what was expected.
                let kind =
                    message.split(':').next().filter(|k| k.starts_with("invalid")).unwrap_or("invalid value");
                match message.split_once(", expected ") {
                    Some((_, expected)) => {
                        format!("{key}{kind}, expected {expected} (the value is not shown) ({at})")
                    }
                    None => format!("{key}{kind} (the value is not shown) ({at})"),
                }
            }
        }
        // Syntax errors and a cut-off file say what was expected, never a value.
        _ => format!("not valid JSON: {message} ({at})"),
    }
}

impl DatabaseConfig {
    /// Reads PostgreSQL settings from a `postgres_config.json`-style file.
    pub fn from_file(path: &Path) -> Result<Self, DatabaseConfigError> {
        let file_error = |reason: String| DatabaseConfigError::File { path: path.to_owned(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        let file: ConfigFile =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(&text))
                .map_err(|e| file_error(describe_without_values(&e)))?;
        if file.port == Some(0) {
            return Err(file_error("port must be between 1 and 65535".into()));
        }
        let mut url = url::Url::parse("postgresql://localhost/background_agents").expect("static URL parses");
        let origin = ConfigSource::File(path.to_owned());
        let bad = |what: &str| file_error(format!("invalid {what}"));
        url.set_host(Some(file.host.as_deref().unwrap_or("localhost"))).map_err(|_| bad("host"))?;
        url.set_port(Some(file.port.unwrap_or(5432))).map_err(|_| bad("port"))?;
        url.set_username(file.user.as_deref().unwrap_or("postgres")).map_err(|_| bad("user"))?;
        if let Some(password) = &file.password {
            url.set_password(Some(password)).map_err(|_| bad("password"))?;
        }
        url.set_path(file.database.as_deref().unwrap_or("background_agents"));
        // The TLS keys travel as the URL's libpq parameters, so a file and a URL are
        // read (and checked, naming the key) by the same code.
        let tls = [
            ("sslmode", &file.sslmode),
            ("sslrootcert", &file.sslrootcert),
            ("sslcert", &file.sslcert),
            ("sslkey", &file.sslkey),
        ];
        for (key, value) in tls {
            if let Some(value) = value {
                url.query_pairs_mut().append_pair(key, value);
            }
        }
        // A bad TLS key comes back naming the key; say which file it is in too.
        let url = DatabaseUrl::parse(url.as_str(), origin.clone()).map_err(|e| match e {
            DatabaseConfigError::InvalidValue { .. } => file_error(e.to_string()),
            other => other,
        })?;
        let mut pool = PoolConfig::default();
        if let Some(max) = file.max_connections {
            pool.max_connections = max;
        }
        if let Some(min) = file.min_connections {
            pool.min_connections = min;
        }
        if let Some(seconds) = file.command_timeout {
            if !(seconds.is_finite() && seconds > 0.0) {
                return Err(file_error("command_timeout must be a positive number of seconds".into()));
            }
            pool.command_timeout = Duration::from_secs_f64(seconds);
        }
        pool.validate().map_err(|e| file_error(e.to_string()))?;
        Ok(Self::postgres_with(url, origin, pool))
    }
}
