//! TLS to PostgreSQL against real servers: a private cluster with `ssl = on` and a CA
//! and server certificate made here (rcgen), and one without TLS. Each `sslmode` is
//! checked by what the server says of the connection (`pg_stat_ssl`) or by the error
//! the client gets.

use std::path::{Path, PathBuf};

use diesel::sql_types::{Bool, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use vigil_persistence::DatabaseConfig;
use vigil_persistence::config::{DatabaseConfigError, SslMode};
use vigil_persistence::connect::{ConnectError, ConnectFailure};
use vigil_persistence::testing::{ClusterOptions, PrivateCluster, connect_postgres};
use vigil_persistence::{SharedState, Store};

/// A CA and what it signed, as PEM files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    /// The CA's certificate (also given to the server, so that it asks for a client
    /// certificate).
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("CA certificate");
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(issuer: &Issuer<'static, KeyPair>, names: &[&str], common_name: &str) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
    params.distinguished_name.push(DnType::CommonName, common_name);
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

/// The test CA, a server certificate for `localhost` only, a client certificate, and
/// a second CA that signed nothing the server has.
fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca_pem, ca) = new_ca("Vigil test CA");
    let (server_cert_pem, server_key_pem) = leaf(&ca, &["localhost"], "localhost");
    let (client_cert, client_key) = leaf(&ca, &[], "vigil-client");
    let (other_ca_pem, _) = new_ca("Some other CA");
    for (name, pem) in [
        ("ca.pem", &ca_pem),
        ("other-ca.pem", &other_ca_pem),
        ("client.pem", &client_cert),
        ("client.key", &client_key),
    ] {
        std::fs::write(dir.path().join(name), pem).expect("write PEM");
    }
    Pki { dir, ca_pem, server_cert_pem, server_key_pem }
}

/// A private cluster serving TLS with `pki`'s server certificate.
fn tls_cluster(pki: &Pki) -> Option<PrivateCluster> {
    let options = ClusterOptions::default()
        .file("server.crt", pki.server_cert_pem.clone())
        .file("server.key", pki.server_key_pem.clone())
        .file("ca.crt", pki.ca_pem.clone())
        .setting("ssl = on")
        .setting("ssl_cert_file = 'server.crt'")
        .setting("ssl_key_file = 'server.key'")
        .setting("ssl_ca_file = 'ca.crt'");
    PrivateCluster::start_with(options)
}

/// The cluster's URL at `host`, with a password (trust authentication ignores it) that
/// no message may show, and `query`.
fn url(cluster: &PrivateCluster, host: &str, query: &str) -> String {
    format!("postgres://postgres:hunter2@{host}:{}/postgres?{query}", cluster.port())
}

fn config(url: &str) -> DatabaseConfig {
    DatabaseConfig::postgres(url).expect("a valid configuration")
}

#[derive(diesel::QueryableByName)]
struct SslState {
    #[diesel(sql_type = Bool)]
    ssl: bool,
    #[diesel(sql_type = Nullable<Text>)]
    client_dn: Option<String>,
}

/// What the server says of this connection: encrypted, and the client certificate's
/// subject if one was sent.
async fn ssl_state(conn: &mut AsyncPgConnection) -> SslState {
    diesel::sql_query("SELECT ssl, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result(conn)
        .await
        .expect("read pg_stat_ssl")
}

async fn connected(url: &str) -> SslState {
    let mut conn = connect_postgres(&config(url)).await.unwrap_or_else(|e| panic!("{url}: {e}"));
    ssl_state(&mut conn).await
}

async fn refused(url: &str) -> ConnectError {
    match connect_postgres(&config(url)).await {
        Ok(_) => panic!("{url} connected, and should not have"),
        Err(error) => {
            assert!(!error.to_string().contains("hunter2"), "the password leaked: {error}");
            assert!(!error.kind.is_transient(), "a TLS failure is not worth retrying: {error}");
            error
        }
    }
}

fn param(name: &str, path: &Path) -> String {
    format!("{name}={}", path.display())
}

#[tokio::test]
async fn each_sslmode_against_a_tls_server() {
    let pki = pki();
    let Some(cluster) = tls_cluster(&pki) else { return };
    let ca = param("sslrootcert", &pki.path("ca.pem"));

    // `require`, and `prefer` (the default) when the server offers TLS: encrypted.
    assert!(connected(&url(&cluster, "127.0.0.1", "sslmode=require")).await.ssl);
    assert!(connected(&url(&cluster, "127.0.0.1", "sslmode=prefer")).await.ssl);
    assert!(connected(&url(&cluster, "127.0.0.1", "")).await.ssl, "prefer is the default");
    assert!(!connected(&url(&cluster, "127.0.0.1", "sslmode=disable")).await.ssl);

    // `verify-full` with the right CA and the certificate's host name.
    let full = url(&cluster, "localhost", &format!("sslmode=verify-full&{ca}"));
    assert!(connected(&full).await.ssl);
    // `verify-ca` checks the chain only: an address the certificate does not list is fine.
    assert!(connected(&url(&cluster, "127.0.0.1", &format!("sslmode=verify-ca&{ca}"))).await.ssl);

    // A client certificate, when given, is sent (the server asks: it has ssl_ca_file).
    let client =
        format!("{}&{}", param("sslcert", &pki.path("client.pem")), param("sslkey", &pki.path("client.key")));
    let with_client = connected(&format!("{full}&{client}")).await;
    assert!(with_client.client_dn.is_some_and(|dn| dn.contains("vigil-client")));

    // `verify-full` at an address the certificate is not for.
    let error = refused(&url(&cluster, "127.0.0.1", &format!("sslmode=verify-full&{ca}"))).await;
    assert_eq!(error.kind, ConnectFailure::CertificateRejected, "{error}");
    assert!(error.to_string().contains("not issued for the host name"), "{error}");

    // A CA that did not sign the server's certificate, with either verifying mode;
    // `require` with a CA verifies too, as in libpq.
    let other = param("sslrootcert", &pki.path("other-ca.pem"));
    for mode in ["verify-full", "verify-ca", "require"] {
        let error = refused(&url(&cluster, "localhost", &format!("sslmode={mode}&{other}"))).await;
        assert_eq!(error.kind, ConnectFailure::CertificateRejected, "{mode}: {error}");
        let text = error.to_string();
        assert!(text.contains("not signed by the CA in sslrootcert"), "{mode}: {text}");
        assert!(text.contains("other-ca.pem"), "{mode}: {text}");
    }
}

#[tokio::test]
async fn a_store_writes_and_reads_through_verify_full() {
    let pki = pki();
    let Some(cluster) = tls_cluster(&pki) else { return };
    let ca = param("sslrootcert", &pki.path("ca.pem"));
    let config = config(&url(&cluster, "localhost", &format!("sslmode=verify-full&{ca}")));
    let description = config.describe();
    assert!(description.contains("sslmode=verify-full") && description.contains("ca.pem"), "{description}");
    assert!(!description.contains("hunter2"), "{description}");

    let store = Store::connect(config).await.expect("connect and migrate through verify-full");
    let state = SharedState::direct(store);
    state.register_agent("tls-agent", "Agent over TLS").await.expect("write");
    let agents = state.get_registered_agents().await.expect("read");
    assert_eq!(agents.len(), 1);
    // Every one of the store's connections is encrypted.
    let mut conn = connect_postgres(&cluster.config()).await.expect("an observer");
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let plain: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
         WHERE application_name LIKE 'vigil-%' AND NOT ssl AND pid <> pg_backend_pid()",
    )
    .get_result(&mut conn)
    .await
    .expect("count plaintext connections");
    assert_eq!(plain.n, 0, "a store connection is not encrypted");
}

#[tokio::test]
async fn a_server_without_tls() {
    let Some(cluster) = PrivateCluster::start() else { return };
    // `prefer` falls back to plaintext.
    assert!(!connected(&url(&cluster, "127.0.0.1", "sslmode=prefer")).await.ssl);
    // `require` (and the verifying modes) fail, saying why.
    for mode in ["require", "verify-full"] {
        let error = refused(&url(&cluster, "127.0.0.1", &format!("sslmode={mode}"))).await;
        assert_eq!(error.kind, ConnectFailure::TlsRequired, "{error}");
        assert!(error.to_string().contains("the server does not support TLS"), "{error}");
    }
}

#[test]
fn bad_tls_settings_are_configuration_errors_naming_the_key() {
    let named = |url: &str, key: &str| match DatabaseConfig::postgres(url) {
        Err(error @ DatabaseConfigError::InvalidValue { name, .. }) => {
            assert_eq!(name, key, "{error}");
            assert!(!error.to_string().contains("hunter2"), "{error}");
            error.to_string()
        }
        other => panic!("{url}: expected an error naming {key}, got {other:?}"),
    };
    let base = "postgres://app:hunter2@db.example/agents";
    named(&format!("{base}?sslmode=sometimes"), "sslmode");
    let text = named(&format!("{base}?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem"), "sslrootcert");
    assert!(text.contains("/nonexistent/ca.pem"), "{text}");
    named(&format!("{base}?sslcert=/nonexistent/client.pem"), "sslkey");

    // The same keys in postgres_config.json.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("postgres_config.json");
    std::fs::write(&file, r#"{"password": "hunter2", "sslmode": "sometimes"}"#).unwrap();
    let error = DatabaseConfig::from_file(&file).unwrap_err();
    assert!(error.to_string().contains("sslmode") && !error.to_string().contains("hunter2"), "{error}");
    let pki = pki();
    let json = serde_json::json!({
        "password": "hunter2",
        "host": "db.example",
        "sslmode": "verify-full",
        "sslrootcert": pki.path("ca.pem"),
    });
    std::fs::write(&file, json.to_string()).unwrap();
    let config = DatabaseConfig::from_file(&file).expect("TLS keys in the file");
    let DatabaseConfig::Postgres { url, .. } = &config else { panic!("not PostgreSQL") };
    assert_eq!(url.tls().mode, SslMode::VerifyFull);
    assert_eq!(url.tls().root_cert.as_deref(), Some(pki.path("ca.pem").as_path()));
    assert!(!config.describe().contains("hunter2"));

    // A `password` query parameter is masked too.
    let config = DatabaseConfig::postgres("postgres://app@db.example/agents?password=hunter2").unwrap();
    assert!(!config.describe().contains("hunter2") && !format!("{config:?}").contains("hunter2"));
}
