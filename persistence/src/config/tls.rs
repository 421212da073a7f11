//! [`TlsSettings`]: whether and how a PostgreSQL connection is encrypted, read from the
//! libpq parameters of the connection URL (`?sslmode=verify-full&sslrootcert=ca.pem`)
//! or from the same keys of `postgres_config.json`.
//!
//! The meanings, and where the files are read, are documented on [`TlsSettings`]
//! (the type is public; this module is not).

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::error::DatabaseConfigError;

/// The URL parameters read here, and stripped before the URL reaches the driver.
pub(crate) const TLS_PARAMETERS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// libpq's `sslmode`: whether TLS is used, and what is checked of the server (see
/// [`TlsSettings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// Never encrypt.
    Disable,
    /// Encrypt when the server offers TLS, without checking its certificate; plaintext
    /// when it does not (the default, as in libpq).
    #[default]
    Prefer,
    /// Always encrypt; the server's certificate is not checked.
    Require,
    /// Always encrypt; the server's certificate must chain to a trusted CA.
    VerifyCa,
    /// Always encrypt; the certificate must chain to a trusted CA and name the host.
    VerifyFull,
}

impl SslMode {
    /// Parses a libpq `sslmode` value (`disable`, `prefer`, `require`, `verify-ca`,
    /// `verify-full`; any case).
    pub fn parse(text: &str) -> Result<Self, DatabaseConfigError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(DatabaseConfigError::InvalidValue {
                name: "sslmode",
                reason: format!("`{other}` is not disable, prefer, require, verify-ca or verify-full"),
            }),
        }
    }

    /// The libpq spelling (`verify-full`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether the connection fails rather than fall back to plaintext.
    pub fn requires_tls(self) -> bool {
        matches!(self, SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// The TLS settings of a PostgreSQL connection.
///
/// The meanings are libpq's, so a URL that works with `psql` works here:
///
/// | `sslmode`     | encrypted                       | server certificate checked        |
/// |---------------|---------------------------------|-----------------------------------|
/// | `disable`     | never                           | —                                 |
/// | `prefer` (default) | when the server offers TLS | no                                |
/// | `require`     | always (fails without TLS)      | no — unless `sslrootcert` is given: then as `verify-ca` |
/// | `verify-ca`   | always                          | signed by a trusted CA            |
/// | `verify-full` | always                          | signed by a trusted CA, and issued for the host connected to |
///
/// The trusted CAs are the PEM file `sslrootcert`, or the system's roots when it is
/// absent or `system` (libpq's `system` demands `verify-full`, and is its default
/// then). Unlike libpq, `~/.postgresql/root.crt` is not looked at: a CA is named, or
/// the system's roots are used. `sslcert` and `sslkey` (PEM, both or neither) are a
/// client certificate, sent when the server asks for one.
///
/// These four keys are Vigil's, not the driver's: they are taken out of the URL
/// before it reaches tokio-postgres (see [`crate::connect`]). A bad value or a file
/// that cannot be read is a [`DatabaseConfigError::InvalidValue`] naming the key, found
/// when the configuration is made rather than at the first connection. File paths
/// may be shown (in [`DatabaseUrl::redacted`](super::DatabaseUrl::redacted)); they are
/// not secrets, the key file's content is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TlsSettings {
    /// The mode in force: `require` with an `sslrootcert` is already
    /// [`SslMode::VerifyCa`] here, as libpq treats it.
    pub mode: SslMode,
    /// The CA file (PEM) the server's certificate must chain to; `None` for the
    /// system's roots.
    pub root_cert: Option<PathBuf>,
    /// The client certificate chain (PEM) and its private key, if the client has one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl TlsSettings {
    /// Reads the settings from a URL's query (the files they name are read by
    /// [`TlsSettings::load_files`]).
    pub(crate) fn from_url(url: &url::Url) -> Result<Self, DatabaseConfigError> {
        let mut given: [Option<String>; 4] = Default::default();
        for (key, value) in url.query_pairs() {
            // The last occurrence wins, as in libpq; an empty value means "not set".
            if let Some(slot) = TLS_PARAMETERS.iter().position(|k| *k == key) {
                given[slot] = Some(value.into_owned()).filter(|v| !v.trim().is_empty());
            }
        }
        let [mode, root, cert, key] = given;
        let requested = mode.as_deref().map(SslMode::parse).transpose()?;
        let (mode, root_cert) = match root.as_deref().map(str::trim) {
            Some("system") => match requested {
                None | Some(SslMode::VerifyFull) => (SslMode::VerifyFull, None),
                Some(weaker) => {
                    return Err(DatabaseConfigError::InvalidValue {
                        name: "sslrootcert",
                        reason: format!(
                            "`system` needs sslmode=verify-full, not {} (as in libpq)",
                            weaker.as_str()
                        ),
                    });
                }
            },
            Some(path) => {
                let mode = match requested.unwrap_or_default() {
                    SslMode::Require => SslMode::VerifyCa,
                    other => other,
                };
                (mode, Some(PathBuf::from(path)))
            }
            None => (requested.unwrap_or_default(), None),
        };
        let client_cert = match (cert, key) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (None, None) => None,
            (Some(_), None) => return Err(missing("sslkey", "sslcert")),
            (None, Some(_)) => return Err(missing("sslcert", "sslkey")),
        };
        Ok(TlsSettings { mode, root_cert, client_cert })
    }

    /// Reads the files the settings name: the CA certificates (empty for the system's
    /// roots) and the client certificate with its key. Done when the configuration is
    /// made (to refuse a bad one early) and again at each connect (so a renewed
    /// certificate is picked up without a restart).
    pub(crate) fn load_files(&self) -> Result<LoadedFiles, DatabaseConfigError> {
        let roots = match &self.root_cert {
            Some(path) => read_certs("sslrootcert", path)?,
            None => Vec::new(),
        };
        let client = match &self.client_cert {
            Some((cert, key)) => {
                let chain = read_certs("sslcert", cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| unreadable("sslkey", key, &e))?;
                Some((chain, key))
            }
            None => None,
        };
        Ok(LoadedFiles { roots, client })
    }
}

/// The certificates and key [`TlsSettings::load_files`] read.
#[derive(Debug)]
pub(crate) struct LoadedFiles {
    /// The CA certificates of `sslrootcert`; empty for the system's roots.
    pub(crate) roots: Vec<CertificateDer<'static>>,
    /// The client certificate chain and its key.
    pub(crate) client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

fn read_certs(name: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, DatabaseConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| unreadable(name, path, &e))?;
    if certs.is_empty() {
        return Err(DatabaseConfigError::InvalidValue {
            name,
            reason: format!("{} holds no PEM certificate", path.display()),
        });
    }
    Ok(certs)
}

/// A file that cannot be read or parsed. The message of a PEM error names the
/// problem (a missing file, no key, a bad section), never the file's content.
fn unreadable(name: &'static str, path: &Path, error: &rustls::pki_types::pem::Error) -> DatabaseConfigError {
    use rustls::pki_types::pem::Error;
    let reason = match error {
        Error::Io(io) => format!("cannot read {}: {io}", path.display()),
        Error::NoItemsFound => format!("{} holds no PEM {}", path.display(), what(name)),
        _ => format!("{} is not a valid PEM {}", path.display(), what(name)),
    };
    DatabaseConfigError::InvalidValue { name, reason }
}

fn what(name: &str) -> &'static str {
    if name == "sslkey" { "private key" } else { "certificate" }
}

fn missing(absent: &'static str, present: &str) -> DatabaseConfigError {
    DatabaseConfigError::InvalidValue {
        name: absent,
        reason: format!("{present} is set without {absent}: a client certificate needs both"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(query: &str) -> Result<TlsSettings, DatabaseConfigError> {
        let settings = TlsSettings::from_url(&url::Url::parse(&format!("postgres://h/db?{query}")).unwrap())?;
        settings.load_files()?;
        Ok(settings)
    }

    #[test]
    fn modes_follow_libpq() {
        assert_eq!(settings("").unwrap(), TlsSettings::default());
        assert_eq!(settings("").unwrap().mode, SslMode::Prefer);
        assert_eq!(settings("sslmode=VERIFY-FULL").unwrap().mode, SslMode::VerifyFull);
        assert_eq!(settings("sslmode=disable&sslmode=require").unwrap().mode, SslMode::Require);
        let system = settings("sslrootcert=system").unwrap();
        assert_eq!((system.mode, system.root_cert), (SslMode::VerifyFull, None));
        let error = settings("sslmode=require&sslrootcert=system").unwrap_err();
        assert!(error.to_string().contains("sslrootcert"), "{error}");
        let error = settings("sslmode=allow").unwrap_err();
        assert!(error.to_string().starts_with("invalid value for sslmode"), "{error}");
    }

    #[test]
    fn files_are_checked_and_named() {
        let error = settings("sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("sslrootcert") && text.contains("/nonexistent/ca.pem"), "{text}");
        let error = settings("sslcert=/nonexistent/c.pem").unwrap_err();
        assert!(error.to_string().contains("sslkey"), "{error}");
        let not_pem = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(not_pem.path(), "not a certificate").unwrap();
        let error = settings(&format!("sslrootcert={}", not_pem.path().display())).unwrap_err();
        assert!(error.to_string().contains("holds no PEM certificate"), "{error}");
    }
}
