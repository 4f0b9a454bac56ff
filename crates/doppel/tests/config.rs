//! Configuration of `doppel serve`: files, environment variables, flags and their validation.

mod common;

use common::{Server, Serving, doppel_command, serve_fails};
use serde_json::json;

#[test]
fn hosts_and_origins_that_cannot_be_matched_fail_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    for (env, flag, value) in [
        ("DOPPEL_HTTP_CORS_ORIGINS", "--http-cors-origins", "*"),
        (
            "DOPPEL_HTTP_CORS_ORIGINS",
            "--http-cors-origins",
            "https://app.example/",
        ),
        (
            "DOPPEL_HTTP_ALLOWED_HOSTS",
            "--http-allowed-hosts",
            "doppel.lan:8080",
        ),
        (
            "DOPPEL_HTTP_ALLOWED_HOSTS",
            "--http-allowed-hosts",
            "ok.lan,http://doppel.lan",
        ),
    ] {
        let key = env
            .trim_start_matches("DOPPEL_")
            .to_lowercase()
            .replacen('_', ".", 1);
        let by_flag = serve_fails(&[], &["--data-dir", data, flag, value]);
        let by_env = serve_fails(&[(env, value)], &["--data-dir", data]);
        for err in [by_flag, by_env] {
            assert!(err.contains(&key), "{flag} {value}: {err}");
        }
    }
}

#[test]
fn invalid_settings_fail_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let err = serve_fails(&[("DOPPEL_LIMITS_MAX_DEPTH", "0")], &["--data-dir", data]);
    assert!(
        err.contains("limits.max_depth must be 1 to 100, got 0"),
        "{err}"
    );
    let err = serve_fails(
        &[],
        &[
            "--data-dir",
            data,
            "--history-retention",
            "1h",
            "--history-bucket",
            "1d",
        ],
    );
    assert!(
        err.contains("history.retention (1h) must be at least history.bucket (1day)"),
        "{err}"
    );
    let config = dir.path().join("doppel.toml");
    std::fs::write(&config, "[http]\nport = 80\n").unwrap();
    let err = serve_fails(&[], &["--config", config.to_str().unwrap()]);
    assert!(err.contains("unknown field `port`"), "{err}");
    // A value that does not parse is clap's usage error: its first line names the flag.
    let output = doppel_command()
        .env("DOPPEL_HTTP_ADDR", "not-an-address")
        .args(["serve", "--data-dir", data])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let first_line = String::from_utf8(output.stderr)
        .unwrap()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(
        first_line.contains("invalid value 'not-an-address' for '--http-addr"),
        "{first_line}"
    );
}

#[test]
fn invalid_mqtt_settings_fail_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let config = dir.path().join("doppel.toml");
    std::fs::write(
        &config,
        "[[mqtt.acl]]\npermission = \"deny\"\ntopic = \"a/#/b\"\n",
    )
    .unwrap();
    let err = serve_fails(
        &[],
        &["--data-dir", data, "--config", config.to_str().unwrap()],
    );
    assert!(
        err.contains("mqtt.acl[0]: ACL rule topic \"a/#/b\" misplaces a wildcard"),
        "{err}"
    );
    let err = serve_fails(
        &[("DOPPEL_MQTT_TLS_ADDR", "127.0.0.1:0")],
        &["--data-dir", data],
    );
    assert!(
        err.contains("mqtt.tls needs addr, cert and key together"),
        "{err}"
    );
    let err = serve_fails(
        &[("DOPPEL_MQTT_MAX_PACKET_BYTES", "10")],
        &["--data-dir", data],
    );
    assert!(
        err.contains("mqtt.max_packet_bytes must be at least 1024, got 10"),
        "{err}"
    );
    // A port in use: one line naming the address, and nothing left running.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = serve_fails(
        &[("DOPPEL_LOG_LEVEL", "warn")],
        &[
            "--data-dir",
            data,
            "--http-addr",
            "127.0.0.1:0",
            "--mqtt-addr",
            &addr,
        ],
    );
    assert!(
        err.contains(&format!("cannot listen for MQTT on {addr}")),
        "{err}"
    );
}

#[test]
fn invalid_command_stream_and_query_settings_fail_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    for (variable, value, expected) in [
        (
            "DOPPEL_COMMANDS_ACK_TIMEOUT",
            "10ms",
            "commands.ack_timeout must be at least 100ms, got 10ms",
        ),
        (
            "DOPPEL_COMMANDS_MAX_OPEN",
            "0",
            "commands.max_attempts and commands.max_open must be at least 1",
        ),
        (
            "DOPPEL_STREAMS_RETENTION",
            "0",
            "streams.retention and streams.subscriber_buffer must be at least 1",
        ),
        (
            "DOPPEL_STREAMS_RETENTION_BYTES",
            "100",
            "streams.retention_bytes must be at least 4096, got 100",
        ),
        (
            "DOPPEL_STREAMS_IDLE_RELEASE",
            "10ms",
            "streams.idle_release must be at least 1s, got 10ms",
        ),
        (
            "DOPPEL_QUERY_INDEX",
            "reported.temp,tags.site",
            "query.index: \"tags.site\" is always indexed or cannot be",
        ),
        (
            "DOPPEL_QUERY_INDEX",
            "reported.",
            "query.index: \"reported.\": at position 9",
        ),
    ] {
        let err = serve_fails(&[(variable, value)], &["--data-dir", data]);
        assert!(err.contains(expected), "{variable}={value}: {err}");
    }
}

#[test]
fn anonymous_mqtt_is_announced_on_stderr_whatever_the_log_level() {
    let dir = tempfile::tempdir().unwrap();
    let serving = Serving::spawn(
        dir.path(),
        &[
            ("DOPPEL_MQTT_ALLOW_ANONYMOUS", "true"),
            ("DOPPEL_LOG_LEVEL", "error"),
        ],
    );
    let warning = serving.stderr.recv_timeout(common::START_TIMEOUT);
    drop(serving);
    let warning = warning.expect("a line on stderr");
    assert!(
        warning.contains("WARNING: mqtt.allow_anonymous is on"),
        "{warning}"
    );
}

#[test]
fn logs_written_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let serving = Serving::spawn(dir.path(), &[("DOPPEL_LOG_LEVEL", "info")]);
    // The first start logs where it wrote the admin token, at info.
    let mut seen = Vec::new();
    while let Ok(line) = serving.stderr.recv_timeout(common::START_TIMEOUT) {
        let done = line.contains("created the first admin token");
        seen.push(line);
        if done {
            break;
        }
    }
    drop(serving);
    assert!(
        seen.iter()
            .any(|line| line.contains("created the first admin token")),
        "{seen:?}"
    );
    for line in &seen {
        assert!(!line.contains('\u{1b}'), "a colour code in {line:?}");
    }
}

/// The keys docs/OPERATIONS.md says live in the file only, or have no flag.
const FILE_ONLY_KEYS: [&str; 2] = ["`mqtt.acl`", "`replication.default`"];
const NO_FLAG_KEYS: [&str; 1] = ["`http.bootstrap_token`"];

#[test]
fn every_documented_key_has_its_environment_variable_and_flag_in_serve_help() {
    let output = doppel_command().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    let operations = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/OPERATIONS.md"
    ))
    .unwrap();
    let table = operations
        .split("## Configuration")
        .nth(1)
        .and_then(|section| section.split("\n## ").next())
        .expect("a Configuration section");
    let mut rows = 0;
    for row in table.lines().filter(|line| line.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (key, variables, flags) = (cells[1], cells[2], cells[3]);
        let named = |cell: &str, prefix: &str| -> Vec<String> {
            cell.split(|c: char| c == '`' || c == ',' || c.is_whitespace())
                .filter(|word| word.starts_with(prefix))
                .map(str::to_owned)
                .collect()
        };
        let (variables, flags) = (named(variables, "DOPPEL_"), named(flags, "--"));
        if FILE_ONLY_KEYS.iter().any(|k| key.starts_with(k)) {
            assert!(variables.is_empty() && flags.is_empty(), "{key}");
            continue;
        }
        assert!(!variables.is_empty(), "{key} has no environment variable");
        assert_eq!(
            flags.is_empty(),
            NO_FLAG_KEYS.contains(&key),
            "{key}: flags {flags:?}"
        );
        // A secret's variable is read apart from the flags, so help does not list it.
        if NO_FLAG_KEYS.contains(&key) {
            continue;
        }
        for name in variables.iter().chain(&flags) {
            assert!(
                help.contains(name.as_str()),
                "{name} ({key}) missing from serve --help"
            );
        }
        rows += 1;
    }
    assert!(rows > 50, "only {rows} keys found in docs/OPERATIONS.md");
}

/// Each key `doppel serve --help` lists (a description that starts with its path), with the
/// default it shows, if any.
fn keys_in_serve_help() -> Vec<(String, Option<String>)> {
    let output = doppel_command()
        .args(["serve", "--help"])
        .output()
        .expect("doppel serve --help runs");
    let help = String::from_utf8(output.stdout).expect("the help is UTF-8");
    let lines: Vec<&str> = help.lines().map(str::trim).collect();
    let mut keys = Vec::new();
    for pair in lines.windows(2) {
        let (flag, description) = (pair[0], pair[1]);
        let Some((path, _)) = description.split_once(": ") else {
            continue;
        };
        if !flag.starts_with("--")
            || path.is_empty()
            || !path
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
        {
            continue;
        }
        // The flag and the variable are both named after the path.
        let named = path.replace('.', "_");
        assert!(
            flag.starts_with(&format!("--{} ", named.replace('_', "-"))),
            "{path}: {flag}"
        );
        assert!(
            description.contains(&format!("[env: DOPPEL_{}=", named.to_uppercase())),
            "{path}: {description}"
        );
        let default = description
            .split_once("[default: ")
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(default, _)| default.to_owned());
        keys.push((path.to_owned(), default));
    }
    keys
}

/// A TOML value as it is typed after a flag: lists comma-separated, an empty one `none`.
fn typed(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => text.clone(),
        toml::Value::Array(items) if items.is_empty() => "none".to_owned(),
        toml::Value::Table(table) if table.is_empty() => "none".to_owned(),
        toml::Value::Array(items) => items.iter().map(typed).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

#[test]
fn serve_help_shows_the_defaults_the_hub_runs_with() {
    let output = doppel_command()
        .args(["serve", "--check"])
        .output()
        .expect("doppel serve --check runs");
    assert!(output.status.success(), "{output:?}");
    let effective: toml::Value =
        toml::from_str(std::str::from_utf8(&output.stdout).expect("the configuration is UTF-8"))
            .expect("the effective configuration is TOML");
    let keys = keys_in_serve_help();
    let mut compared = 0;
    for (path, default) in &keys {
        let value = path
            .split('.')
            .try_fold(&effective, |value, segment| value.get(segment));
        // A key the defaults leave unset (an optional one, or one of a section that is off)
        // has nothing to compare with.
        if let Some(value) = value {
            assert_eq!(default.as_deref(), Some(typed(value).as_str()), "{path}");
            compared += 1;
        }
    }
    assert!(keys.len() > 60, "only {} keys in serve --help", keys.len());
    assert!(compared > 45, "only {compared} defaults compared");
}

#[test]
fn documented_defaults_are_those_serve_help_shows() {
    let operations = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/OPERATIONS.md"
    ))
    .expect("docs/OPERATIONS.md is readable");
    let keys = keys_in_serve_help();
    let mut compared = 0;
    for row in operations.lines().filter(|line| line.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (key, documented) = (cells[1].trim_matches('`'), cells[4]);
        // Rows of several keys, and defaults told in words ("off", "a random secret"), are
        // left to the reader.
        let Some(documented) = documented
            .strip_prefix('`')
            .and_then(|rest| rest.split_once('`'))
            .map(|(value, _)| value)
        else {
            continue;
        };
        let Some((_, shown)) = keys.iter().find(|(path, _)| path == key) else {
            continue;
        };
        let shown = shown
            .as_deref()
            .unwrap_or_else(|| panic!("{key}: no default in serve --help"));
        // `24h` and `1d` are the same duration.
        let same = documented == shown
            || humantime::parse_duration(documented)
                .is_ok_and(|duration| humantime::parse_duration(shown).ok() == Some(duration));
        assert!(same, "{key}: documented {documented}, --help shows {shown}");
        compared += 1;
    }
    assert!(
        compared > 45,
        "only {compared} documented defaults compared"
    );
}

#[tokio::test]
async fn file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("doppel.toml");
    std::fs::write(
        &config,
        "[limits]\nmax_depth = 2\nmax_document_bytes = 100\n",
    )
    .unwrap();
    // The file says depth 2, the environment 3, the flag 4: the flag wins. The file's document
    // limit stands because nothing overrides it.
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_in_with_env(
        data.path(),
        &[("DOPPEL_LIMITS_MAX_DEPTH", "3")],
        &[
            "--config",
            config.to_str().unwrap(),
            "--limits-max-depth",
            "4",
        ],
    );
    let http = common::http_client();
    let patch = |body: serde_json::Value| {
        http.patch(server.url("/v1/tenants/default/twins/d/desired"))
            .json(&body)
            .send()
    };
    // The state object counts as level 1, so this is 4 levels deep: accepted only under the flag.
    assert_eq!(
        patch(json!({"a": {"b": {"c": {"d": 1}}}}))
            .await
            .unwrap()
            .status(),
        200
    );
    let too_deep: serde_json::Value = patch(json!({"a": {"b": {"c": {"d": {"e": 1}}}}}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (too_deep["code"].clone(), too_deep["limit"].clone()),
        (json!("too_deep"), json!(4))
    );
    let too_large = patch(json!({"x": "y".repeat(200)})).await.unwrap();
    assert_eq!(too_large.status(), 413);
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused() {
    let first = Server::start();
    let err = serve_fails(
        &[],
        &[
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
            first.data_dir.to_str().unwrap(),
        ],
    );
    assert!(err.contains("cannot open the store"), "{err}");
}

#[test]
fn check_prints_the_effective_configuration_without_binding_or_opening_anything() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let data_dir = dir.path().join("never-created");
    // Held for the whole check: a serve would fail to bind it, a check does not try.
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = held.local_addr().expect("its address").port();
    let addr = format!("127.0.0.1:{port}");
    let output = doppel_command()
        .env("DOPPEL_HISTORY_RETENTION", "45d")
        .args([
            "serve",
            "--check",
            "--http-addr",
            &addr,
            "--mqtt-addr",
            &addr,
        ])
        .arg("--data-dir")
        .arg(&data_dir)
        .output()
        .expect("doppel runs");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.is_empty(), "nothing on stderr: {stderr}");
    assert!(
        stdout.contains(&format!("\n[http]\naddr = \"{addr}\"\n")),
        "{stdout}"
    );
    assert!(stdout.contains("\nretention = \"45d\"\n"), "{stdout}");
    // The harness sets DOPPEL_HTTP_BOOTSTRAP_TOKEN: only that it is set shows.
    assert!(
        stdout.contains("\nbootstrap_token = \"<hidden>\"\n"),
        "{stdout}"
    );
    assert!(!stdout.contains(common::ADMIN_TOKEN), "{stdout}");
    assert!(!data_dir.exists(), "the data folder was not created");
    drop(held);

    // What it printed is a configuration file serve reads.
    let file = dir.path().join("effective.toml");
    std::fs::write(&file, &stdout).expect("the file is written");
    let again = doppel_command()
        .args(["serve", "--check", "--config"])
        .arg(&file)
        .output()
        .expect("doppel runs");
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        String::from_utf8(again.stdout).expect("UTF-8 output"),
        stdout
    );
}

#[test]
fn check_fails_a_bad_configuration_with_one_line() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let data = dir.path().to_str().expect("a UTF-8 path");
    let err = serve_fails(
        &[("DOPPEL_LIMITS_MAX_DEPTH", "0")],
        &["--check", "--data-dir", data],
    );
    assert_eq!(
        err,
        "doppel: invalid configuration: limits.max_depth must be 1 to 100, got 0\n"
    );
    // Files a serve reads before it starts are read too.
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().expect("a UTF-8 path");
    let err = serve_fails(
        &[],
        &[
            "--check",
            "--http-tls-cert",
            missing,
            "--http-tls-key",
            missing,
        ],
    );
    assert!(
        err.starts_with("doppel: invalid configuration: http.tls: "),
        "{err}"
    );
    assert!(err.contains(missing), "{err}");
    let err = serve_fails(&[("DOPPEL_HTTP_BOOTSTRAP_TOKEN", "short")], &["--check"]);
    assert!(
        err.starts_with("doppel: invalid configuration: http.bootstrap_token: "),
        "{err}"
    );
    let err = serve_fails(&[], &["--check", "--log-level", "info,=x=y"]);
    assert!(
        err.starts_with(
            "doppel: invalid configuration: log.level \"info,=x=y\" is not a valid filter"
        ),
        "{err}"
    );
}
