//! `doppel twin ...` end to end: the real binary as a client of a real server on port 0.

mod common;

use common::{Cli, doppel_command, rows, run_cli};
use serde_json::{Value, json};

/// `doppel twin --server <base> <args...>`: the hub option between `twin` and its subcommand.
fn twin_with_server(base: &str, args: &[&str]) -> Vec<String> {
    ["twin", "--server", base]
        .iter()
        .chain(args)
        .map(|arg| arg.to_string())
        .collect()
}

impl Cli {
    /// `get --json`, parsed.
    fn twin(&self, device: &str) -> Value {
        let text = self.ok(&["get", device, "--json"]);
        serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("get --json is not JSON ({err}): {text}"))
    }
}

#[test]
fn desired_then_get_as_a_table_and_as_json() {
    let cli = Cli::start(twin_with_server);
    let out = cli.ok(&[
        "desired",
        "pump-1",
        r#"{"led": "on", "fan": {"speed": 3}}"#,
        "--reason",
        "night mode",
    ]);
    assert!(
        out.starts_with("desired state of pump-1 updated: twin version 1, desired version 1\n"),
        "{out}"
    );

    let table = cli.ok(&["get", "pump-1"]);
    assert!(
        table.starts_with(
            "device_id          pump-1\ntenant             default\nversion            1\n"
        ),
        "{table}"
    );
    assert!(
        table.contains("\ndesired (version 1, updated 20"),
        "{table}"
    );
    assert!(
        table.contains("\n  \"led\": \"on\"\n"),
        "desired is shown as indented JSON: {table}"
    );
    assert!(
        table.contains("\nreported (version 0, updated -):\n{}\n"),
        "{table}"
    );
    assert!(
        table.contains("\ndelta (desired values the device has not reported yet):\n"),
        "{table}"
    );

    let twin = cli.twin("pump-1");
    assert_eq!(twin["device_id"], "pump-1");
    assert_eq!(twin["version"], 1);
    assert_eq!(
        twin["desired"]["state"],
        json!({"led": "on", "fan": {"speed": 3}})
    );
    assert_eq!(twin["delta"], json!({"led": "on", "fan": {"speed": 3}}));

    // A merge patch keeps what it does not name; --replace does not; `-` reads standard input.
    cli.ok(&["desired", "pump-1", r#"{"fan": {"speed": 1}}"#]);
    assert_eq!(
        cli.twin("pump-1")["desired"]["state"],
        json!({"led": "on", "fan": {"speed": 1}})
    );
    common::cli_succeeded(
        cli.run(
            &["desired", "pump-1", "-", "--replace"],
            Some(r#"{"fan": {"speed": 2}}"#),
        ),
        &["desired -"],
    );
    let twin = cli.twin("pump-1");
    assert_eq!(twin["desired"]["state"], json!({"fan": {"speed": 2}}));
    assert_eq!(twin["version"], 3);
}

#[test]
fn reports_are_applied_or_ignored_as_stale() {
    let cli = Cli::start(twin_with_server);
    cli.ok(&["desired", "valve-9", r#"{"open": true}"#]);
    let applied = cli.ok(&[
        "report",
        "valve-9",
        r#"{"open": true, "temp": 20}"#,
        "--version",
        "5",
    ]);
    assert_eq!(
        applied,
        "applied: valve-9 is at twin version 2, reported version 5\n"
    );
    let stale = cli.ok(&["report", "valve-9", r#"{"open": false}"#, "--version", "4"]);
    assert_eq!(
        stale,
        "ignored as stale: the report (version 4) is not newer than valve-9's reported version 5\n"
    );

    let twin = cli.twin("valve-9");
    assert_eq!(
        twin["reported"]["state"],
        json!({"open": true, "temp": 20}),
        "the stale report changed nothing"
    );
    assert_eq!(twin["version"], 2);
    assert_eq!(twin["delta"], json!({}));

    let answer: Value = serde_json::from_str(&cli.ok(&[
        "report",
        "valve-9",
        r#"{"open": false}"#,
        "--version",
        "3",
        "--json",
    ]))
    .expect("JSON");
    assert_eq!(answer["applied"], false);
    assert_eq!(answer["reason"], "stale");
}

#[test]
fn history_lists_one_row_per_change_and_filters_by_kind() {
    let cli = Cli::start(twin_with_server);
    cli.ok(&["desired", "fan-2", r#"{"speed": 1}"#, "--reason", "first"]);
    cli.ok(&["report", "fan-2", r#"{"speed": 1}"#, "--version", "1"]);
    cli.ok(&["desired", "fan-2", r#"{"speed": 2}"#, "--reason", "faster"]);

    let all = cli.ok(&["history", "fan-2"]);
    let lines: Vec<&str> = all.lines().collect();
    assert!(
        lines[0].starts_with("VERSION  KIND      RECORDED_AT"),
        "{all}"
    );
    assert_eq!(rows(&all).len(), 3, "{all}");
    let columns: Vec<Vec<&str>> = rows(&all)
        .iter()
        .map(|row| row.split_whitespace().collect())
        .collect();
    assert_eq!(columns[0][..2], ["1", "DESIRED"], "{all}");
    assert_eq!(columns[1][..2], ["2", "REPORTED"], "{all}");
    assert_eq!(columns[2][..2], ["3", "DESIRED"], "{all}");
    assert_eq!(
        columns[2][3..],
        ["token:admin", "faster", r#"{"speed":2}"#],
        "{all}"
    );
    assert!(!all.contains("next cursor"), "{all}");

    let reported = cli.ok(&["history", "fan-2", "--kind", "reported"]);
    assert_eq!(rows(&reported).len(), 1, "{reported}");
    assert!(
        rows(&reported)[0].starts_with("2        REPORTED  "),
        "{reported}"
    );

    let first = cli.ok(&["history", "fan-2", "--limit", "1"]);
    assert!(rows(&first)[0].starts_with("1 "), "{first}");
    assert!(first.ends_with("next cursor: 1\n"), "{first}");
    let second = cli.ok(&["history", "fan-2", "--limit", "1", "--cursor", "1"]);
    assert!(rows(&second)[0].starts_with("2 "), "{second}");

    let created_at = cli.twin("fan-2")["created_at"]
        .as_str()
        .expect("created_at")
        .to_owned();
    let before = cli.fails(&["get", "fan-2", "--at", "2000-01-01T00:00:00Z"]);
    assert_eq!(
        before,
        format!(
            "twin_not_yet_created: the twin did not exist yet at 2000-01-01T00:00:00.000Z: its first version was recorded at {created_at}"
        )
    );
}

#[test]
fn list_pages_follow_the_cursor() {
    let cli = Cli::start(twin_with_server);
    cli.ok(&["desired", "dev-a", r#"{"x": 1}"#]);
    cli.ok(&["report", "dev-b", r#"{"x": 1}"#]);

    let all = cli.ok(&["list"]);
    assert_eq!(
        all.lines().next(),
        Some("DEVICE_ID  VERSION  CONNECTION  DELTA    UPDATED_AT"),
        "{all}"
    );
    let cells: Vec<Vec<&str>> = rows(&all)
        .iter()
        .map(|row| row.split_whitespace().take(4).collect())
        .collect();
    assert_eq!(
        cells,
        [
            vec!["dev-a", "1", "UNKNOWN", "1"],
            vec!["dev-b", "1", "UNKNOWN", "in"]
        ],
        "{all}"
    );

    let first = cli.ok(&["list", "--limit", "1"]);
    assert_eq!(rows(&first).len(), 1, "{first}");
    assert!(rows(&first)[0].starts_with("dev-a "), "{first}");
    assert!(first.ends_with("next cursor: dev-a\n"), "{first}");
    let second = cli.ok(&["list", "--limit", "1", "--cursor", "dev-a"]);
    assert!(rows(&second)[0].starts_with("dev-b "), "{second}");

    // Tenants are separate, and the options also work from the environment.
    let other = doppel_command()
        .args(["twin", "list"])
        .env("DOPPEL_SERVER", &cli.server.base)
        .env("DOPPEL_TENANT", "acme")
        .output()
        .expect("run doppel");
    assert_eq!(
        common::cli_succeeded(other, &["list"]),
        "no twins in tenant acme\n"
    );
}

#[test]
fn a_write_to_a_new_tenant_warns_and_tenant_list_names_it() {
    let cli = Cli::start(twin_with_server);
    let stderr =
        |output: &std::process::Output| String::from_utf8_lossy(&output.stderr).into_owned();
    let write = |device: &str, tenant: &str| {
        let output = cli.run(
            &["desired", device, r#"{"on": true}"#, "--tenant", tenant],
            None,
        );
        assert!(output.status.success(), "{}", stderr(&output));
        stderr(&output)
    };
    assert_eq!(
        write("pump-1", "default"),
        "",
        "the default tenant is never new"
    );
    assert_eq!(
        write("pump-1", "defualt"),
        "doppel: warning: tenant 'defualt' is new: it had no twins before this; if that is a \
         typo, check --tenant (`doppel tenant list` shows the tenants that hold something)\n"
    );
    assert_eq!(
        write("pump-2", "defualt"),
        "",
        "only the first twin is news"
    );
    // A write that fails says only why, on its one line.
    let refused = cli.fails(&[
        "desired",
        "pump-1",
        r#"{"on": true}"#,
        "--tenant",
        "acme",
        "--if-match",
        "3",
    ]);
    assert!(refused.starts_with("version_mismatch: "), "{refused}");

    let listed = run_cli(
        &["tenant", "list", "--server", &cli.server.base].map(str::to_owned),
        None,
    );
    assert_eq!(
        common::cli_succeeded(listed, &["tenant", "list"]),
        "TENANT   TWINS  CREDENTIALS  TOKENS\n\
         default  1      0            0\n\
         defualt  2      0            0\n"
    );
}

#[test]
fn a_deleted_twin_is_gone_and_if_match_guards_writes() {
    let cli = Cli::start(twin_with_server);
    cli.ok(&["desired", "door-3", r#"{"locked": true}"#]);

    let mismatch = cli.fails(&[
        "desired",
        "door-3",
        r#"{"locked": false}"#,
        "--if-match",
        "9",
    ]);
    assert_eq!(
        mismatch,
        "version_mismatch: the twin is at version 1 but the request expected version 9"
    );
    let mismatch = cli.fails(&["delete", "door-3", "--if-match", "9"]);
    assert!(mismatch.starts_with("version_mismatch: "), "{mismatch}");
    assert_eq!(
        cli.twin("door-3")["desired"]["state"],
        json!({"locked": true})
    );

    cli.ok(&[
        "desired",
        "door-3",
        r#"{"locked": false}"#,
        "--if-match",
        "1",
    ]);
    assert_eq!(
        cli.ok(&["delete", "door-3", "--if-match", "2"]),
        "deleted twin door-3 in tenant default\n"
    );
    let gone = cli.fails(&["get", "door-3"]);
    assert!(gone.starts_with("twin_not_found: "), "{gone}");
}

#[test]
fn invalid_json_arguments_fail_before_any_request() {
    let cli = Cli::start(twin_with_server);
    cli.ok(&["desired", "lamp-4", r#"{"on": true}"#]);

    let err = cli.fails(&["desired", "lamp-4", r#"{"on": }"#]);
    assert_eq!(
        err,
        "invalid JSON in <json>: expected value at line 1 column 8"
    );
    let err = common::cli_failed(
        cli.run(&["desired", "lamp-4", "-"], Some("{\n  \"on\": yes\n}")),
        &["desired -"],
    );
    assert!(
        err.starts_with("invalid JSON in <json> (read from standard input): "),
        "{err}"
    );
    assert!(
        err.ends_with(": expected value at line 2 column 9"),
        "{err}"
    );
    let err = cli.fails(&["report", "lamp-4", "{on}"]);
    assert_eq!(
        err,
        "invalid JSON in <json-state>: key must be a string at line 1 column 2"
    );

    let twin = cli.twin("lamp-4");
    assert_eq!(twin["version"], 1, "nothing changed");
    assert_eq!(twin["desired"]["state"], json!({"on": true}));
    assert_eq!(twin["reported"]["version"], 0);
}

/// `doppel twin --server 127.0.0.1:<port> <args...>`: the address as `http.addr` names it.
fn twin_with_bare_address(base: &str, args: &[&str]) -> Vec<String> {
    let address = base
        .strip_prefix("http://")
        .expect("a plain http:// server");
    twin_with_server(address, args)
}

#[test]
fn a_server_named_by_host_and_port_is_reached_over_http() {
    let cli = Cli::start(twin_with_bare_address);
    let out = cli.ok(&["desired", "pump-9", r#"{"led": "on"}"#]);
    assert!(
        out.starts_with("desired state of pump-9 updated: twin version 1"),
        "{out}"
    );
    assert_eq!(cli.twin("pump-9")["desired"]["state"], json!({"led": "on"}));
}

#[test]
fn an_unreachable_server_or_a_bad_id_is_one_line() {
    // Port 1 (tcpmux) needs privileges to listen on and nothing uses it, so nothing answers;
    // unlike a port freed by this test, no concurrently started test server can take it.
    let server = "http://127.0.0.1:1";

    let err = common::cli_failed(
        run_cli(&twin_with_server(server, &["get", "pump-1"]), None),
        &["get"],
    );
    assert_eq!(err, format!("cannot reach {server}: connection refused"));
    let err = common::cli_failed(
        run_cli(&twin_with_server(server, &["list", "--json"]), None),
        &["list"],
    );
    assert_eq!(err, format!("cannot reach {server}: connection refused"));

    // Checked locally, so the unreachable server is never asked.
    let err = common::cli_failed(
        run_cli(&twin_with_server(server, &["get", "bad id"]), None),
        &["get"],
    );
    assert_eq!(
        err,
        r#"invalid device id "bad id": ids are 1 to 128 characters of A-Z a-z 0-9 : _ . -"#
    );
}

#[test]
fn meta_sets_and_removes_tags_type_and_firmware() {
    let cli = Cli::start(twin_with_server);
    let out = cli.ok(&[
        "meta",
        "pump-7",
        "--tag",
        "site=berlin",
        "--tag",
        "floor=2",
        "--type",
        "pump",
        "--firmware",
        "1.2.3",
        "--reason",
        "installed",
    ]);
    assert!(out.starts_with("device_id          pump-7\n"), "{out}");
    assert!(out.contains("\ndevice_type        pump\n"), "{out}");
    assert!(out.contains("\nfirmware_version   1.2.3\n"), "{out}");
    assert!(
        out.contains("\ntags               floor=2, site=berlin\n"),
        "{out}"
    );

    let twin: Value = serde_json::from_str(&cli.ok(&[
        "meta",
        "pump-7",
        "--remove-tag",
        "site",
        "--clear-firmware",
        "--if-match",
        "1",
        "--json",
    ]))
    .expect("JSON");
    assert_eq!(twin["tags"], json!({"floor": "2"}));
    assert_eq!(twin["device_type"], "pump", "what is not named stays");
    assert_eq!(twin["firmware_version"], Value::Null);
    assert_eq!(twin["version"], 2);

    let history = cli.ok(&["history", "pump-7", "--kind", "meta"]);
    assert_eq!(rows(&history).len(), 2, "{history}");
    assert!(rows(&history)[0].contains(" installed "), "{history}");

    // The fleet query finds the twin by its meta.
    let found = cli.ok(&["query", "tags.floor = '2' AND device_type = 'pump'"]);
    assert!(rows(&found)[0].starts_with("pump-7 "), "{found}");

    assert_eq!(
        cli.fails(&["meta", "pump-7", "--if-match", "1", "--type", "fan"]),
        "version_mismatch: the twin is at version 2 but the request expected version 1"
    );
    assert_eq!(
        cli.fails(&["meta", "pump-7"]),
        "nothing to change: give --tag, --remove-tag, --type, --clear-type, --firmware or --clear-firmware"
    );
}

#[test]
fn a_query_without_a_match_says_so() {
    let cli = Cli::start(twin_with_server);
    assert_eq!(cli.ok(&["list"]), "no twins in tenant default\n");
    cli.ok(&["meta", "pump-1", "--tag", "site=berlin"]);
    assert_eq!(
        cli.ok(&["query", "tags.site = 'lyon'"]),
        "no twins match the query in tenant default\n"
    );
    assert!(
        rows(&cli.ok(&["query", "tags.site = 'berlin'"]))[0].starts_with("pump-1 "),
        "the same query with a match lists the twin"
    );
}

#[test]
fn all_follows_the_cursor_to_the_last_page() {
    let cli = Cli::start(twin_with_server);
    let devices: Vec<String> = (1..=5).map(|n| format!("dev-{n}")).collect();
    for device in &devices {
        cli.ok(&["meta", device, "--tag", "batch=a"]);
    }
    cli.ok(&["desired", "dev-1", r#"{"x": 1}"#]);
    cli.ok(&["desired", "dev-1", r#"{"x": 2}"#]);

    let first_column = |table: &str| -> Vec<String> {
        rows(table)
            .iter()
            .map(|row| row.split_whitespace().next().unwrap_or_default().to_owned())
            .collect()
    };
    let one_page = cli.ok(&["list", "--limit", "2"]);
    assert_eq!(first_column(&one_page), ["dev-1", "dev-2"], "{one_page}");
    assert!(one_page.ends_with("next cursor: dev-2\n"), "{one_page}");

    let all = cli.ok(&["list", "--limit", "2", "--all"]);
    assert_eq!(first_column(&all), devices, "{all}");
    assert!(!all.contains("next cursor"), "{all}");
    let from = cli.ok(&["list", "--limit", "2", "--all", "--cursor", "dev-2"]);
    assert_eq!(first_column(&from), devices[2..], "{from}");

    let queried: Value = serde_json::from_str(&cli.ok(&[
        "query",
        "tags.batch = 'a'",
        "--limit",
        "2",
        "--all",
        "--json",
    ]))
    .expect("JSON");
    let ids: Vec<&str> = queried["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|twin| twin["device_id"].as_str())
        .collect();
    assert_eq!(ids, devices, "{queried}");
    assert_eq!(queried["next_cursor"], Value::Null);

    let history = cli.ok(&["history", "dev-1", "--limit", "1", "--all"]);
    assert_eq!(first_column(&history), ["1", "2", "3"], "{history}");
}
