//! TLS for PostgreSQL connections: the rustls client configuration a
//! [`TlsSettings`] asks for, and the classification of TLS failures.
//!
//! tokio-postgres knows three of libpq's modes (`disable`, `prefer`, `require`) and
//! leaves checking the server's certificate to the TLS connector. So the checking
//! is decided here, in the certificate verifier rustls is given:
//!
//! * `prefer` and `require` — [`Relaxed`] without roots: any certificate is accepted
//!   (the connection is encrypted against a passive eavesdropper, not authenticated),
//!   but the handshake's signatures are still verified, so the session is sound;
//! * `verify-ca` — [`Relaxed`] with roots: the certificate must chain to a trusted
//!   root; the host name is not looked at (a server reached through an address its
//!   certificate does not list);
//! * `verify-full` — rustls's own WebPKI verifier: the chain and the host name.
//!
//! The crypto is rustls's `ring` provider, given explicitly rather than installed as
//! the process default, so nothing else in the process (reqwest's client) is affected.

use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::ConnectFailure;
use crate::config::{SslMode, TlsSettings};

/// The crypto provider of every TLS connection Vigil opens.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

/// The system's root certificates, read once per process (there are hundreds of
/// them, and every pooled connection would otherwise read them again).
fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                let why = found.errors.first().map(|e| format!(": {e}")).unwrap_or_default();
                return Err(format!("no system root certificates found{why}; name a CA with sslrootcert"));
            }
            Ok(Arc::new(roots))
        })
        .clone()
}

/// The rustls configuration for `settings` (whose mode is not `disable`). The error
/// says which file or setting could not be used.
pub(super) fn client_config(settings: &TlsSettings) -> Result<ClientConfig, String> {
    let files = settings.load_files().map_err(|e| e.to_string())?;
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    let roots = || -> Result<Arc<RootCertStore>, String> {
        if files.roots.is_empty() {
            return system_roots();
        }
        let mut roots = RootCertStore::empty();
        for cert in &files.roots {
            roots
                .add(cert.clone())
                .map_err(|e| format!("sslrootcert: a certificate is not usable as a CA: {e}"))?;
        }
        Ok(Arc::new(roots))
    };
    let verifier: Arc<dyn ServerCertVerifier> = match settings.mode {
        SslMode::VerifyFull => WebPkiServerVerifier::builder_with_provider(roots()?, provider.clone())
            .build()
            .map_err(|e| format!("cannot build the certificate verifier: {e}"))?,
        SslMode::VerifyCa => Arc::new(Relaxed { roots: Some(roots()?), algorithms }),
        SslMode::Disable | SslMode::Prefer | SslMode::Require => {
            Arc::new(Relaxed { roots: None, algorithms })
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("no usable TLS version: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match files.client {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("sslcert and sslkey cannot be used together: {e}")),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The verifier of `prefer`, `require` and `verify-ca`: the certificate must chain to
/// `roots` when there are roots (`verify-ca`), and is not checked otherwise (libpq's
/// `prefer`/`require`); the host name is never looked at. The handshake signatures are
/// verified in every case.
#[derive(Debug)]
struct Relaxed {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The TLS failure in a driver error, if it is one, with a hint that says what to
/// check. tokio-postgres reports every TLS failure as "error performing TLS
/// handshake", with the connector's `io::Error` (holding rustls's error) as cause.
pub(super) fn classify(
    error: &tokio_postgres::Error,
    settings: &TlsSettings,
) -> Option<(ConnectFailure, String)> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut is_tls = false;
    while let Some(inner) = cause {
        if inner.to_string() == "server does not support TLS" {
            let hint =
                format!("sslmode={} demands it; use prefer to allow plaintext", settings.mode.as_str());
            return Some((ConnectFailure::TlsRequired, hint));
        }
        is_tls |= inner.to_string().starts_with("error performing TLS handshake");
        // `io::Error::source` skips the error it wraps: look inside with `get_ref`.
        let wrapped = inner.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
        if let Some(tls) = wrapped.and_then(|e| e.downcast_ref::<rustls::Error>()) {
            return Some(classify_rustls(tls, settings));
        }
        cause = inner.source();
    }
    is_tls.then(|| (ConnectFailure::TlsFailed, String::new()))
}

fn classify_rustls(error: &rustls::Error, settings: &TlsSettings) -> (ConnectFailure, String) {
    let trusted = match &settings.root_cert {
        Some(path) => format!("the CA in sslrootcert {}", path.display()),
        None => "the system's root certificates".to_owned(),
    };
    match error {
        rustls::Error::InvalidCertificate(cert) => {
            let hint = match cert {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    format!("the server's certificate is not signed by {trusted}")
                }
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                    "the server's certificate is not issued for the host name connected to: \
                     sslmode=verify-full checks it, verify-ca does not"
                        .to_owned()
                }
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => {
                    "the server's certificate is expired or not yet valid".to_owned()
                }
                _ => format!("the server's certificate does not verify against {trusted}"),
            };
            (ConnectFailure::CertificateRejected, hint)
        }
        rustls::Error::AlertReceived(_) => (
            ConnectFailure::TlsFailed,
            "the server ended the TLS handshake: does it want a client certificate (sslcert, sslkey)?"
                .to_owned(),
        ),
        _ => (ConnectFailure::TlsFailed, String::new()),
    }
}
