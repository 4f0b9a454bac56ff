//! `doppel device credential ...` and `doppel app credential ...` end to end: the real binary as
//! a client of a real server on port 0.

mod common;

use common::{Cli, doppel_command};
use serde_json::Value;

const SUPPLIED: &str = "a supplied password, long enough";

/// `doppel <args...> --server <base>`: the hub option after the subcommand.
fn with_server_last(base: &str, args: &[&str]) -> Vec<String> {
    args.iter()
        .chain(&["--server", base])
        .map(|arg| arg.to_string())
        .collect()
}

impl Cli {
    /// Runs a command that must succeed with `--json` and returns its answer.
    fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(&[args, &["--json"]].concat());
        serde_json::from_str(&text).unwrap_or_else(|err| panic!("{args:?} --json: {err}: {text}"))
    }
}

/// The value of `name` in a key-value block such as `add` prints.
fn block_value<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[test]
fn a_device_credential_is_added_listed_and_removed() {
    let cli = Cli::start(with_server_last);
    let added = cli.ok(&["device", "credential", "add", "pump-1"]);
    assert!(
        added.ends_with("The password is shown only now; the hub keeps only a hash of it.\n"),
        "{added}"
    );
    assert_eq!(block_value(&added, "username"), "default/devices/pump-1");
    let password = block_value(&added, "password");
    assert_eq!(password.len(), 43, "{added}");
    let id = block_value(&added, "credential_id").to_owned();

    let listed = cli.ok(&["device", "credential", "list", "pump-1"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(lines[0].starts_with("CREDENTIAL"), "{listed}");
    assert!(
        lines[1].starts_with(&format!("{id}  default/devices/pump-1  20")),
        "{listed}"
    );
    assert!(!listed.contains(password), "{listed}");

    let removed = cli.ok(&["device", "credential", "remove", "pump-1", &id]);
    assert_eq!(
        removed,
        format!("removed credential {id} of default/devices/pump-1\n")
    );
    assert_eq!(
        cli.ok(&["device", "credential", "list", "pump-1"]),
        "default/devices/pump-1 has no credentials\n"
    );
    assert_eq!(
        cli.fails(&["device", "credential", "remove", "pump-1", &id]),
        "credential_not_found: no credential with this id belongs to this device or application"
    );
}

#[test]
fn an_app_credential_takes_a_supplied_password_and_speaks_json() {
    let cli = Cli::start(with_server_last);
    let added = cli.json(&[
        "app",
        "credential",
        "add",
        "dashboard",
        "--password",
        SUPPLIED,
        "--tenant",
        "acme",
    ]);
    assert_eq!(added["password"], SUPPLIED);
    assert_eq!(added["username"], "acme/apps/dashboard");

    // `--password -` reads the first line of standard input.
    let output = cli.run(
        &[
            "app",
            "credential",
            "add",
            "dashboard",
            "--password",
            "-",
            "--tenant",
            "acme",
            "--json",
        ],
        Some("another password from stdin\n"),
    );
    let from_stdin: Value =
        serde_json::from_str(&common::cli_succeeded(output, &["add --password -"])).expect("JSON");
    assert_eq!(from_stdin["password"], "another password from stdin");

    let listed = cli.json(&["app", "credential", "list", "dashboard", "--tenant", "acme"]);
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{listed}");
    assert!(items.iter().all(|item| item.get("password").is_none()));
    assert!(
        cli.json(&["app", "credential", "list", "dashboard"])["items"]
            .as_array()
            .expect("items")
            .is_empty(),
        "the default tenant is another tenant"
    );

    let id = added["credential_id"].as_str().expect("id");
    let removed = cli.json(&[
        "app",
        "credential",
        "remove",
        "dashboard",
        id,
        "--tenant",
        "acme",
    ]);
    assert_eq!(removed["deleted"], true);
    assert_eq!(removed["credential_id"], id);
    assert_eq!(removed["username"], "acme/apps/dashboard");
}

#[test]
fn mistakes_fail_with_one_line_naming_them() {
    let cli = Cli::start(with_server_last);
    assert_eq!(
        cli.fails(&[
            "device",
            "credential",
            "add",
            "pump-1",
            "--password",
            "short"
        ]),
        "invalid_password: the password is 5 bytes long; it must be 16 to 256 bytes, or left out to have one generated"
    );
    assert!(
        cli.fails(&["device", "credential", "list", "pump 1"])
            .starts_with("invalid device id \"pump 1\""),
    );
    assert!(
        cli.fails(&["device", "credential", "add", "pump-1/shadows/config"])
            .starts_with("invalid device id \"pump-1/shadows/config\""),
    );
    assert!(
        cli.fails(&["app", "credential", "remove", "dashboard", "../x"])
            .starts_with("credential id \"../x\" is not one the hub prints"),
    );
    let unreachable = Cli::start(with_server_last);
    let base = unreachable.server.base.clone();
    drop(unreachable);
    let output = doppel_command()
        .args(["device", "credential", "list", "pump-1", "--server", &base])
        .output()
        .expect("run doppel");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.starts_with(&format!("doppel: cannot reach {base}: ")),
        "{stderr}"
    );
}

#[test]
fn password_only_prints_the_password_alone_and_it_logs_in() {
    let cli = Cli::start(with_server_last);
    let out = cli.ok(&["device", "credential", "add", "pump-7", "--password-only"]);
    let password = out.strip_suffix('\n').expect("one line");
    assert_eq!(password.len(), 43, "only the password: {out:?}");
    assert!(!password.contains(char::is_whitespace), "{out:?}");
    assert_eq!(
        cli.ok(&[
            "device",
            "credential",
            "add",
            "pump-8",
            "--password",
            SUPPLIED,
            "--password-only"
        ]),
        format!("{SUPPLIED}\n")
    );
    // What a script captured logs the device in.
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        common::mqtt::login(
            cli.server.mqtt,
            "pump-7",
            "default/devices/pump-7",
            password,
        )
        .await
        .disconnect()
        .await;
    });
}
