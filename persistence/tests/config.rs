//! Configuration priority, bad input, and password hygiene.

use std::path::PathBuf;
use std::time::Duration;

use vigil_persistence::config::{
    ConfigInputs, ConfigSource, DEFAULT_POSTGRES_URL, DatabaseConfig, DatabaseConfigError, SqliteLocation,
};

fn temp_file(contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-cfg-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("postgres_config.json");
    std::fs::write(&path, contents).unwrap();
    path
}

fn url_of(config: &DatabaseConfig) -> (String, ConfigSource) {
    match config {
        DatabaseConfig::Postgres { url, source, .. } => (url.expose().to_owned(), source.clone()),
        other => panic!("expected PostgreSQL, got {other:?}"),
    }
}

#[test]
fn nothing_configured_means_the_embedded_sqlite_file() {
    let config = DatabaseConfig::resolve(&ConfigInputs::default()).unwrap();
    match config {
        DatabaseConfig::Sqlite { location: SqliteLocation::File(path), .. } => {
            assert_eq!(path, PathBuf::from("vigil.db"))
        }
        other => panic!("expected SQLite, got {other:?}"),
    }
}

#[test]
fn environment_string_comes_first() {
    let file = temp_file(r#"{"user":"filer","host":"filehost","database":"fromfile"}"#);
    let inputs = ConfigInputs {
        connection_string: Some("postgresql://env:pw@envhost:6543/fromenv".into()),
        config_file: Some(file),
        ..Default::default()
    };
    let (url, source) = url_of(&DatabaseConfig::resolve(&inputs).unwrap());
    assert_eq!(url, "postgresql://env:pw@envhost:6543/fromenv");
    assert_eq!(source, ConfigSource::Environment);
}

#[test]
fn config_file_is_second_and_carries_pool_settings() {
    let file = temp_file(
        r#"{"user":"app","password":"p@ss word","host":"db.internal","port":6000,"database":"agents",
            "max_connections":12,"min_connections":2,"command_timeout":7.5}"#,
    );
    let inputs = ConfigInputs { config_file: Some(file.clone()), ..Default::default() };
    let config = DatabaseConfig::resolve(&inputs).unwrap();
    let (url, source) = url_of(&config);
    assert_eq!(url, "postgresql://app:p%40ss%20word@db.internal:6000/agents");
    assert_eq!(source, ConfigSource::File(file));
    let pool = config.pool();
    assert_eq!((pool.min_connections, pool.max_connections), (2, 12));
    assert_eq!(pool.command_timeout, Duration::from_millis(7500));
}

#[test]
fn default_url_only_when_postgres_is_forced() {
    let inputs = ConfigInputs { use_postgresql: Some("true".into()), ..Default::default() };
    let config = DatabaseConfig::resolve(&inputs).unwrap();
    let (url, source) = url_of(&config);
    assert_eq!(url, DEFAULT_POSTGRES_URL);
    assert_eq!(source, ConfigSource::Default);
    let pool = config.pool();
    assert_eq!(
        (pool.min_connections, pool.max_connections, pool.command_timeout),
        (5, 20, Duration::from_secs(30))
    );
}

#[test]
fn use_postgresql_false_wins_over_environment_and_file() {
    let inputs = ConfigInputs {
        connection_string: Some("postgresql://a@b/c".into()),
        config_file: Some(temp_file("{}")),
        use_postgresql: Some("false".into()),
        ..Default::default()
    };
    assert!(!DatabaseConfig::resolve(&inputs).unwrap().is_postgres());
}

#[test]
fn explicit_url_wins_over_everything() {
    let inputs = ConfigInputs {
        explicit_url: Some("postgres://x@explicit/db".into()),
        connection_string: Some("postgresql://a@b/c".into()),
        use_postgresql: Some("false".into()),
        ..Default::default()
    };
    let (url, source) = url_of(&DatabaseConfig::resolve(&inputs).unwrap());
    assert_eq!((url.as_str(), source), ("postgres://x@explicit/db", ConfigSource::Explicit));
    let sqlite = ConfigInputs { explicit_url: Some("sqlite:/tmp/x.db".into()), ..Default::default() };
    assert!(!DatabaseConfig::resolve(&sqlite).unwrap().is_postgres());
}

#[test]
fn malformed_files_are_typed_errors_naming_the_file() {
    for (contents, expected) in [
        ("{ not json", "key must be a string"),
        (r#"{"user":"a","colour":"blue"}"#, "unknown field `colour`"),
        (r#"{"port":70000}"#, "invalid value"),
        (r#"{"port":0}"#, "port must be between 1 and 65535"),
        (r#"{"port":"5432"}"#, "invalid type"),
        (r#"{"min_connections":30,"max_connections":10}"#, "min_connections"),
        (r#"{"command_timeout":-1}"#, "command_timeout"),
    ] {
        let file = temp_file(contents);
        let inputs = ConfigInputs { config_file: Some(file.clone()), ..Default::default() };
        let error = DatabaseConfig::resolve(&inputs).unwrap_err();
        let DatabaseConfigError::File { path, reason } = &error else {
            panic!("{contents}: expected a file error, got {error:?}")
        };
        assert_eq!(path, &file);
        assert!(reason.contains(expected), "{contents}: `{reason}` should mention `{expected}`");
        assert!(error.to_string().contains("postgres_config.json"), "{error}");
    }
    let missing =
        ConfigInputs { config_file: Some("/nonexistent/postgres_config.json".into()), ..Default::default() };
    assert!(matches!(DatabaseConfig::resolve(&missing), Err(DatabaseConfigError::File { .. })));
}

#[test]
fn bad_urls_and_flags_are_typed_errors() {
    for raw in
        ["not a url", "mysql://u@h/db", "postgresql:///db", "postgresql://u@h/", "postgresql://u@h:99999/db"]
    {
        let inputs = ConfigInputs { connection_string: Some(raw.into()), ..Default::default() };
        let error = DatabaseConfig::resolve(&inputs).unwrap_err();
        assert!(
            matches!(error, DatabaseConfigError::InvalidUrl { origin: ConfigSource::Environment, .. }),
            "{raw}: {error:?}"
        );
    }
    let inputs = ConfigInputs { use_postgresql: Some("maybe".into()), ..Default::default() };
    assert!(matches!(
        DatabaseConfig::resolve(&inputs),
        Err(DatabaseConfigError::InvalidValue { name: "USE_POSTGRESQL", .. })
    ));
}

#[test]
fn passwords_never_show() {
    let secret = "s3cr3t-Pa55";
    let inputs = ConfigInputs {
        connection_string: Some(format!("postgresql://app:{secret}@db:5432/agents")),
        ..Default::default()
    };
    let config = DatabaseConfig::resolve(&inputs).unwrap();
    let DatabaseConfig::Postgres { url, .. } = &config else { unreachable!() };
    for shown in [format!("{config:?}"), config.describe(), format!("{url}"), format!("{url:?}")] {
        assert!(!shown.contains(secret), "password leaked in `{shown}`");
        assert!(shown.contains("***") || shown.contains("DatabaseUrl"), "{shown}");
    }
    // A bad URL's error does not quote it either.
    let bad = ConfigInputs {
        connection_string: Some(format!("postgresql://app:{secret}@db:99999/x")),
        ..Default::default()
    };
    let error = DatabaseConfig::resolve(&bad).unwrap_err();
    assert!(!format!("{error} {error:?}").contains(secret));
    // Nor a bad file's.
    let file = temp_file(&format!(r#"{{"password":"{secret}","port":"x"}}"#));
    let error = DatabaseConfig::from_file(&file).unwrap_err();
    assert!(!format!("{error} {error:?}").contains(secret));
}

#[tokio::test]
async fn connection_errors_do_not_leak_the_password() {
    let secret = "leak-me-not";
    // Port 1 on loopback: refused at once.
    let config = DatabaseConfig::postgres(&format!("postgresql://app:{secret}@127.0.0.1:1/none")).unwrap();
    let config = config
        .with_pool(
            vigil_persistence::config::PoolConfig::default()
                .with_connections(1, 1)
                .with_connection_timeout(Duration::from_secs(2)),
        )
        .unwrap();
    let error = vigil_persistence::Store::connect(config).await.unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(secret), "{shown}");
    assert!(error.is_transient(), "refused connections are transient: {error:?}");
}

#[test]
fn pool_variables_tune_postgresql_from_any_source_and_win_over_the_file() {
    let pooled = |inputs: ConfigInputs| {
        let pool = DatabaseConfig::resolve(&inputs).unwrap().pool().clone();
        (pool.min_connections, pool.max_connections, pool.command_timeout)
    };
    let tuned = |inputs: ConfigInputs| ConfigInputs {
        max_connections: Some("40".into()),
        min_connections: Some(" 8 ".into()),
        command_timeout: Some("2.5".into()),
        ..inputs
    };
    let env =
        ConfigInputs { connection_string: Some("postgresql://app@db/agents".into()), ..Default::default() };
    assert_eq!(pooled(tuned(env)), (8, 40, Duration::from_millis(2500)));
    let file = temp_file(r#"{"max_connections":12,"min_connections":2,"command_timeout":7.5}"#);
    let from_file = ConfigInputs { config_file: Some(file), ..Default::default() };
    assert_eq!(pooled(tuned(from_file)), (8, 40, Duration::from_millis(2500)));
    let explicit = ConfigInputs { explicit_url: Some("postgresql://db/agents".into()), ..Default::default() };
    assert_eq!(pooled(ConfigInputs { max_connections: Some("7".into()), ..explicit }).1, 7);

    // SQLite keeps its own small pool.
    let sqlite = DatabaseConfig::resolve(&tuned(ConfigInputs::default())).unwrap();
    assert!(!sqlite.is_postgres());
    assert_ne!(sqlite.pool().max_connections, 40);

    // Bad values are typed errors naming the variable.
    for (inputs, name) in [
        (
            ConfigInputs { max_connections: Some("lots".into()), ..Default::default() },
            "POSTGRES_MAX_CONNECTIONS",
        ),
        (
            ConfigInputs { command_timeout: Some("-1".into()), ..Default::default() },
            "POSTGRES_COMMAND_TIMEOUT",
        ),
        (ConfigInputs { min_connections: Some("50".into()), ..Default::default() }, "min_connections"),
    ] {
        let inputs = ConfigInputs { use_postgresql: Some("true".into()), ..inputs };
        let error = DatabaseConfig::resolve(&inputs).unwrap_err();
        assert!(
            matches!(&error, DatabaseConfigError::InvalidValue { name: n, .. } if *n == name),
            "{error:?}"
        );
    }
}

/// A parse error of `postgres_config.json` never quotes a value: the file holds a
/// password, which may be the very value that is malformed.
#[test]
fn config_file_errors_never_show_a_value() {
    let cases = [
        // An unquoted numeric password.
        (r#"{"user":"app","password":98765432123}"#, "98765432123", "`password`"),
        // A password string where a number belongs.
        (r#"{"password":"x","port":"hunter2-secret"}"#, "hunter2-secret", "`port`"),
        (r#"{"password":"x","max_connections":-777001}"#, "777001", "`max_connections`"),
        (r#"{"password":"x","command_timeout":"s3cr3t-value"}"#, "s3cr3t-value", "`command_timeout`"),
        // Broken JSON right after the password.
        (r#"{"password":"topsecret-pw" "user":"x"}"#, "topsecret-pw", "not valid JSON"),
    ];
    for (text, secret, names) in cases {
        let inputs = ConfigInputs { config_file: Some(temp_file(text)), ..Default::default() };
        let error = DatabaseConfig::resolve(&inputs).expect_err(text);
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(secret), "{text}: the value leaked: {shown}");
        assert!(error.to_string().contains(names), "{text}: names the key or the problem: {error}");
        assert!(error.to_string().contains("line 1"), "{text}: says where: {error}");
    }
    // What serde says about keys is kept.
    let inputs = ConfigInputs { config_file: Some(temp_file(r#"{"pasword":"x"}"#)), ..Default::default() };
    let error = DatabaseConfig::resolve(&inputs).expect_err("unknown key");
    assert!(error.to_string().contains("unknown field `pasword`"), "{error}");
}
