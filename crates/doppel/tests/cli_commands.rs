//! `doppel command ...` end to end: the real binary as a client of a real server on port 0.

mod common;

use common::Cli;
use serde_json::{Value, json};

/// `doppel command --server <base> <args...>`: the hub option between `command` and its
/// subcommand.
fn command_with_server(base: &str, args: &[&str]) -> Vec<String> {
    ["command", "--server", base]
        .iter()
        .chain(args)
        .map(|arg| arg.to_string())
        .collect()
}

/// Runs a command with `--json` and parses its output.
fn json_of(cli: &Cli, args: &[&str]) -> Value {
    let args: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
    let text = cli.ok(&args);
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("--json is not JSON ({err}): {text}"))
}

/// The value of `name` in a key-value block such as `queue` prints.
fn value_of<'a>(block: &'a str, name: &str) -> &'a str {
    block
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim())
        })
        .unwrap_or_else(|| panic!("no {name} line in:\n{block}"))
}

/// The cells of each data line of the `list` table.
fn rows(table: &str) -> Vec<Vec<&str>> {
    common::rows(table)
        .into_iter()
        .map(|line| line.split_whitespace().collect())
        .collect()
}

#[test]
fn queue_prints_the_command_and_an_idempotency_key_returns_it_again() {
    let cli = Cli::start(command_with_server);
    let out = cli.ok(&[
        "queue",
        "pump-1",
        "reboot",
        "--payload",
        r#"{"delay": 3}"#,
        "--priority",
        "-5",
        "--ttl",
        "600",
        "--idempotency-key",
        "k1",
    ]);
    let id = value_of(&out, "id");
    assert_eq!(value_of(&out, "type"), "reboot");
    assert_eq!(value_of(&out, "status"), "PENDING");
    assert_eq!(value_of(&out, "priority"), "-5");
    assert_eq!(value_of(&out, "idempotency_key"), "k1");
    assert_eq!(value_of(&out, "delivered_at"), "-");
    assert!(
        out.contains("\npayload:\n{\n  \"delay\": 3\n}\n"),
        "the payload as indented JSON: {out}"
    );
    assert!(
        out.contains("\nSTATUS   AT  ") && out.contains("\nPENDING  20"),
        "the life so far: {out}"
    );

    let again = json_of(
        &cli,
        &["queue", "pump-1", "reboot", "--idempotency-key", "k1"],
    );
    assert_eq!(again["id"], id);
    assert_eq!(again["payload"], json!({"delay": 3}), "the first command");
}

#[test]
fn list_get_and_cancel() {
    let cli = Cli::start(command_with_server);
    assert_eq!(cli.ok(&["list", "fan-2"]), "fan-2 has no commands\n");
    let first = json_of(&cli, &["queue", "fan-2", "spin-up"]);
    let second = json_of(&cli, &["queue", "fan-2", "spin-down", "--priority", "7"]);
    let (first, second) = (
        first["id"].as_str().unwrap(),
        second["id"].as_str().unwrap(),
    );

    let all = cli.ok(&["list", "fan-2"]);
    let header: Vec<&str> = all
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["ID", "TYPE", "STATUS", "PRIORITY", "ATTEMPTS", "CREATED_AT"],
        "{all}"
    );
    let table = rows(&all);
    assert_eq!(table.len(), 2, "{all}");
    assert_eq!(
        table[0][..5],
        [first, "spin-up", "PENDING", "0", "0"],
        "{all}"
    );
    assert_eq!(
        table[1][..4],
        [second, "spin-down", "PENDING", "7"],
        "{all}"
    );
    assert!(!all.contains("next cursor"), "{all}");
    let page = cli.ok(&["list", "fan-2", "--limit", "1"]);
    assert!(page.ends_with(&format!("next cursor: {first}\n")), "{page}");
    let rest = cli.ok(&["list", "fan-2", "--limit", "1", "--cursor", first]);
    assert_eq!(rows(&rest)[0][0], second, "{rest}");

    let shown = cli.ok(&["get", "fan-2", first]);
    assert_eq!(value_of(&shown, "id"), first);
    assert_eq!(value_of(&shown, "type"), "spin-up");

    let canceled = cli.ok(&["cancel", "fan-2", first]);
    assert_eq!(value_of(&canceled, "status"), "CANCELED");
    assert!(canceled.contains("\nCANCELED  20"), "{canceled}");
    let pending = cli.ok(&["list", "fan-2", "--status", "pending"]);
    assert_eq!(rows(&pending).len(), 1, "{pending}");
    assert_eq!(rows(&pending)[0][0], second, "{pending}");
    assert_eq!(
        cli.ok(&["list", "fan-2", "--status", "expired"]),
        "fan-2 has no EXPIRED commands\n"
    );
    assert_eq!(
        json_of(&cli, &["get", "fan-2", first])["status"],
        "CANCELED"
    );
}

#[test]
fn failures_are_one_line() {
    let cli = Cli::start(command_with_server);
    let command = json_of(&cli, &["queue", "pump-1", "reboot"]);
    let id = command["id"].as_str().expect("an id");
    cli.ok(&["cancel", "pump-1", id]);
    assert_eq!(
        cli.fails(&["cancel", "pump-1", id]),
        "command_final: a CANCELED command cannot be canceled"
    );
    let missing = "0190a0c0-0000-7000-8000-000000000000";
    assert_eq!(
        cli.fails(&["get", "pump-1", missing]),
        format!("command_not_found: no command {missing} is queued for this device")
    );
    assert!(
        cli.fails(&["queue", "pump-1", "reboot", "--ttl", "604801"])
            .starts_with("ttl_too_long: "),
    );
    assert_eq!(
        cli.fails(&["list", "pump-1", "--status", "done"])
            .split(':')
            .next(),
        Some("invalid_query")
    );
    // Checked before any request.
    assert_eq!(
        cli.fails(&["get", "pump-1", "../twins"]),
        "command id \"../twins\" is not one the hub prints (letters, digits and -)"
    );
    assert!(
        cli.fails(&["queue", "pump-1", "reboot", "--payload", "{"])
            .starts_with("invalid JSON in --payload: "),
    );
    assert!(
        cli.fails(&["queue", "pump-1/shadows/cfg", "reboot"])
            .contains("names a shadow"),
    );
}

#[test]
fn list_all_fetches_every_page() {
    let cli = Cli::start(command_with_server);
    let ids: Vec<String> = (0..3)
        .map(|n| {
            let queued = json_of(&cli, &["queue", "pump-1", &format!("op.{n}")]);
            queued["id"].as_str().expect("an id").to_owned()
        })
        .collect();
    let page = cli.ok(&["list", "pump-1", "--limit", "2"]);
    assert_eq!(rows(&page).len(), 2, "{page}");
    assert!(page.contains("next cursor: "), "{page}");
    let all = cli.ok(&["list", "pump-1", "--limit", "2", "--all"]);
    let listed: Vec<&str> = rows(&all).iter().map(|row| row[0]).collect();
    assert_eq!(listed, ids, "{all}");
    assert!(!all.contains("next cursor"), "{all}");
}
