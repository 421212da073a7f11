//! Property tests of the `vigil` argument parser and of the vigil.json parser, in
//! process (through `vigil::cli::check_args` and `PlatformConfig::load`, as the binary
//! uses them): whatever the input, no panic, a refusal is exit code 2 (0 only for help
//! and the version), and no secret of the input — a URL's password, a value under
//! `api_key`/`password`/`token` — appears in what is printed.

use std::ffi::OsString;

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value, json};
use vigil::cli::run::PlatformConfig;
use vigil_persistence::config::ConfigInputs;

/// Cases per property: a few thousand in CI, within seconds in a debug build.
const CASES: u32 = 2_000;

fn config() -> Config {
    Config { cases: CASES, failure_persistence: None, ..Config::default() }
}

/// A password that cannot be mistaken for anything else in a message.
fn secret() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{6,12}".prop_map(|tail| format!("Pw{tail}"))
}

/// A URL with `secret` as its password, well or badly formed.
fn url_with(secret: String) -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["postgresql", "postgres", "mysql", "http", "sqlite", ""]),
        prop::sample::select(vec!["db", "127.0.0.1", "[::1", "[::1]", "", "h st", "db.example"]),
        prop::option::of(any::<u32>()),
        prop::sample::select(vec!["/agents", "", "/", "/a b", "?sslmode=x", "/db#frag"]),
    )
        .prop_map(move |(scheme, host, port, path)| {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            format!("{scheme}://app:{secret}@{host}{port}{path}")
        })
}

/// One word of a command line.
fn token(secret: String) -> impl Strategy<Value = String> {
    let words = prop::sample::select(vec![
        "migrate",
        "health",
        "slow-queries",
        "run",
        "status",
        "events",
        "metrics",
        "workflows",
        "agent",
        "restart",
        "stop",
        "fix",
        "standby",
        "ask",
        "help",
        "cleanup",
        "import",
        "frobnicate",
        "--database-url",
        "--days",
        "--since",
        "--limit",
        "--for",
        "--timeout",
        "--json",
        "--watch",
        "--follow",
        "-f",
        "--agent",
        "--severity",
        "--type",
        "--name",
        "--status",
        "--min-ms",
        "--from",
        "--to",
        "--append",
        "--config",
        "--no-status",
        "--log-format",
        "--force",
        "-h",
        "--help",
        "-V",
        "--",
        "-",
        "",
        " ",
        "json",
        "error",
        "pending",
        "sqlite:",
        "sqlite:vigil.db",
        "sqlite::memory:",
    ])
    .prop_map(str::to_owned);
    let number = any::<i64>().prop_map(|n| n.to_string());
    let float = any::<f64>().prop_map(|n| n.to_string());
    let duration = (any::<i64>(), prop::sample::select(vec!["", "ms", "s", "m", "h", "d", "w", "µs"]))
        .prop_map(|(n, unit)| format!("{n}{unit}"));
    let small =
        (-3i64..40, prop::sample::select(vec!["", "s", "m", "d"])).prop_map(|(n, u)| format!("{n}{u}"));
    let url = url_with(secret.clone());
    let assigned = (
        prop::sample::select(vec!["--database-url", "--from", "--to", "--since", "--config"]),
        url_with(secret),
    )
        .prop_map(|(flag, url)| format!("{flag}={url}"));
    prop_oneof![
        6 => words,
        2 => number,
        1 => float,
        2 => duration,
        2 => small,
        3 => url,
        1 => assigned,
        1 => "\\PC{0,12}",
    ]
}

/// A command line (program name first) and the secret it may hold.
fn command_line() -> impl Strategy<Value = (Vec<String>, String, Option<String>)> {
    secret().prop_flat_map(|secret| {
        let env = prop::option::of(prop_oneof![url_with(secret.clone()), Just(String::new())]);
        (prop::collection::vec(token(secret.clone()), 0..8), Just(secret), env)
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_argument_parser_never_panics_exits_2_and_never_shows_a_password(
        (words, secret, env_url) in command_line(),
        use_postgresql in prop::option::of(prop::sample::select(vec!["true", "false", "maybe"])),
    ) {
        let mut args = vec![OsString::from("vigil")];
        args.extend(words.iter().map(OsString::from));
        let inputs = ConfigInputs {
            connection_string: env_url.filter(|u| !u.trim().is_empty()),
            use_postgresql: use_postgresql.map(str::to_owned),
            ..ConfigInputs::default()
        };
        match vigil::cli::check_args(&args, inputs) {
            Ok(_) => {}
            Err(early) => {
                // Help and the version: exit 0 on stdout. Anything else refused: 2.
                if early.stdout {
                    prop_assert_eq!(early.code, 0, "{:?}: {}", words, early.message);
                } else {
                    prop_assert_eq!(early.code, 2, "{:?}: {}", words, early.message);
                }
                prop_assert!(!early.message.contains(&secret), "{:?} leaked the password: {}", words, early.message);
                prop_assert!(!early.message.contains("panicked"), "{}", early.message);
            }
        }
    }
}

// ------------------------------------------------------------------ vigil.json

/// A value for any field: right or wrong type, in or out of range.
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        prop::sample::select(vec!["0s", "-5s", "5m", "250ms", "1.5h", "x", "", "4294967295", "99999999999h"])
            .prop_map(Value::from),
        "\\PC{0,10}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The fields the configuration knows, by section, and some it does not.
const FIELDS: &[(&str, &[&str])] = &[
    ("monitoring", &["coordinator", "performance", "heartbeat_health", "restart_manager", "monitors"]),
    ("ai_help", &["batch_size", "claim_timeout", "stale_after", "openai", "batch_sise"]),
    ("langsmith", &["endpoint", "api_key", "project", "batch_size", "timeout", "retry", "failure_cooldown"]),
    ("langgraph", &["runs_per_cycle", "graphs", "nope"]),
    ("retention", &["days", "interval"]),
    ("retentoin", &["days"]),
];

/// Fields of an `ai_help.openai` section.
const OPENAI: &[&str] =
    &["base_url", "api_key", "model", "timeout", "retry", "system_prompt", "ground_with_platform_facts"];

/// A configuration document holding `secret` in secret fields, and perhaps elsewhere.
fn config_document() -> impl Strategy<Value = (String, String, u64)> {
    (secret(), 1_000_000_000u64..u64::MAX).prop_flat_map(|(secret, number)| {
        let secret_value = prop_oneof![
            3 => Just(Value::from(secret.clone())),
            // A secret of the wrong type (a numeric key) is a secret all the same.
            1 => Just(Value::from(number)),
            1 => Just(json!([secret.clone()])),
        ];
        let section = |fields: &'static [&'static str]| {
            prop::collection::vec((prop::sample::select(fields), any_value()), 0..4)
        };
        let sections = prop::collection::vec(
            (0..FIELDS.len()).prop_flat_map(move |i| (Just(FIELDS[i].0), section(FIELDS[i].1))),
            0..4,
        );
        let openai = prop::option::of(section(OPENAI));
        (
            sections,
            openai,
            secret_value.clone(),
            secret_value,
            any::<bool>(),
            prop::sample::select(vec!["timeout", "model", "batch_size", "project", "days"]),
            any::<u8>(),
            Just(secret),
            Just(number),
        )
            .prop_map(
                |(
                    sections,
                    openai,
                    key_in_openai,
                    key_in_langsmith,
                    copy,
                    copy_to,
                    shape,
                    secret,
                    number,
                )| {
                    let mut doc = Map::new();
                    for (name, fields) in sections {
                        let section = doc.entry(name).or_insert_with(|| json!({}));
                        if let Value::Object(section) = section {
                            for (field, value) in fields {
                                section.insert(field.to_owned(), value);
                            }
                        }
                    }
                    if let Some(fields) = openai {
                        let mut openai: Map<String, Value> =
                            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                        openai.insert("api_key".into(), key_in_openai);
                        if copy {
                            openai.insert(copy_to.into(), Value::from(secret.clone()));
                        }
                        doc.insert("ai_help".into(), json!({ "openai": openai }));
                    }
                    let langsmith = doc.entry("langsmith").or_insert_with(|| json!({}));
                    if let Value::Object(langsmith) = langsmith {
                        langsmith.insert("api_key".into(), key_in_langsmith);
                        if shape % 3 == 0 {
                            langsmith.insert(
                                "endpoint".into(),
                                Value::from(format!("https://u:{secret}@traces.example")),
                            );
                        }
                        if copy && shape % 2 == 0 {
                            langsmith.insert(copy_to.into(), Value::from(secret.clone()));
                        }
                    }
                    let text = if shape % 7 == 0 {
                        // Broken JSON: syntax errors say where, never what.
                        let full = Value::Object(doc).to_string();
                        let keep = full.chars().count() * usize::from(shape % 5 + 1) / 6;
                        full.chars().take(keep).collect()
                    } else {
                        Value::Object(doc).to_string()
                    };
                    (text, secret, number)
                },
            )
    })
}

/// Where the generated configuration files are written, one after another.
fn config_path() -> &'static std::path::Path {
    static PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| crate::cli::temp_dir().join("vigil.json"))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_config_parser_never_panics_exits_2_and_never_shows_a_secret((text, secret, number) in config_document()) {
        std::fs::write(config_path(), &text).unwrap();
        if let Err(error) = PlatformConfig::load(config_path(), true) {
            let message = error.to_string();
            prop_assert_eq!(error.exit_code(), 2, "{}: {}", text, message);
            let leaked = message.contains(&secret) || message.contains(&number.to_string());
            prop_assert!(!leaked, "{} leaked a secret: {}", text, message);
        }
    }
}
