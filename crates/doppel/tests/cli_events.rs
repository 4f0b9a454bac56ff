//! `doppel events` end to end: the events the hub keeps with the cursor to resume from, and
//! `--follow` as a child process that prints changes as they happen.

mod common;

use common::http::HttpClient;
use common::process::Running;
use common::{Cli, doppel_command};
use serde_json::{Value, json};
use std::time::Duration;

/// Longest wait for the hub to number a change it has answered.
const WAIT: Duration = Duration::from_secs(10);

/// `doppel events --server <base> <args...>`.
fn events_with_server(base: &str, args: &[&str]) -> Vec<String> {
    ["events", "--server", base]
        .iter()
        .chain(args)
        .map(|arg| arg.to_string())
        .collect()
}

/// The event lines of a run's output: those that start with an event id (not the `next
/// cursor` line, nor `no events ...`).
fn event_lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|line| line.starts_with(|c: char| c.is_ascii_digit()))
        .collect()
}

fn cursor_of(out: &str) -> String {
    out.lines()
        .find_map(|line| line.strip_prefix("next cursor: "))
        .unwrap_or_else(|| panic!("no cursor in {out}"))
        .to_owned()
}

/// `doppel events <args>` again until it prints `count` event lines: the hub numbers a change
/// just after it answers the write.
async fn kept(cli: &Cli, args: &[&str], count: usize) -> String {
    let out = std::cell::RefCell::new(String::new());
    let read = &out;
    common::eventually(&format!("{count} events kept"), WAIT, || async move {
        let text = cli.ok(args);
        let done = event_lines(&text).len() == count;
        *read.borrow_mut() = text;
        done
    })
    .await;
    out.into_inner()
}

#[tokio::test]
async fn events_are_listed_with_a_cursor_and_followed_from_it() {
    let mut cli = Cli::start(events_with_server);
    let http = HttpClient::new(&cli.server);
    // The hub keeps a tenant's events from its first reader on.
    assert_eq!(cli.ok(&[]), "no events in tenant default\n");

    http.patch_desired("pump-1", &json!({"speed": 3})).await;
    let listed = kept(&cli, &[], 2).await;
    let lines = event_lines(&listed);
    let columns: Vec<Vec<&str>> = lines
        .iter()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(columns[0][1..3], ["twin.desired", "pump-1"], "{listed}");
    assert_eq!(columns[1][1..3], ["twin.delta", "pump-1"], "{listed}");
    assert!(
        lines[1].ends_with(r#"{"delta":{"speed":3},"version":1}"#),
        "{listed}"
    );
    let cursor = cursor_of(&listed);
    assert_eq!(cursor, columns[1][0], "the cursor is the newest event's id");
    assert_eq!(
        cli.ok(&["--cursor", &cursor]),
        format!("no events in tenant default\nnext cursor: {cursor}\n"),
        "nothing after the newest"
    );

    let mut follow = Running::spawn(
        "doppel events --follow",
        tokio::process::Command::from({
            let mut command = doppel_command();
            command.args(events_with_server(
                &cli.server.base,
                &["--follow", "--cursor", &cursor],
            ));
            command
        }),
    );
    let (_, queued) = http
        .queue_command("pump-1", &json!({"type": "reboot"}))
        .await;
    let line = follow
        .line_where(
            |line| line.contains(" command.queued "),
            "the command.queued line",
        )
        .await;
    let followed_id = line.split_whitespace().next().expect("an id").to_owned();
    assert!(line.contains(" pump-1 "), "{line}");

    // What --follow printed is what a later run resumes from, and types filter it.
    let commands = kept(&cli, &["--cursor", &cursor, "--types", "command.*"], 1).await;
    assert!(
        event_lines(&commands)[0].starts_with(&format!("{followed_id}  command.queued ")),
        "{commands}"
    );
    assert_eq!(cursor_of(&commands), followed_id);
    let json_lines =
        common::process::json_lines(cli.ok(&["--cursor", &cursor, "--json"]).as_bytes());
    let queued_event = json_lines
        .iter()
        .find(|event| event["type"] == "command.queued")
        .expect("the command event");
    assert_eq!(queued_event["command"]["id"], queued["id"]);
    assert_eq!(
        json_lines.last(),
        Some(&json!({"type": "end", "last_event_id": followed_id}))
    );

    // A hub that stops ends the stream: one line, with where to resume.
    assert!(cli.server.stop(), "a clean exit");
    let (output, _) = follow.finish().await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "doppel: the hub ended the stream (shutting_down); resume with --cursor {followed_id}"
        )
    );
}

#[test]
fn bad_cursors_and_types_fail_with_one_line() {
    let cli = Cli::start(events_with_server);
    assert_eq!(
        cli.fails(&["--cursor", "yesterday"]),
        r#"--cursor "yesterday" is not an event id such as 1796000000000-42"#
    );
    let err = cli.fails(&["--types", "twin.everything"]);
    assert!(
        err.starts_with(r#"invalid_query: unknown event type "twin.everything""#),
        "{err}"
    );
    let answer: Value = serde_json::from_str(&cli.ok(&["--json"])).expect("one JSON line");
    assert_eq!(answer, json!({"type": "end", "last_event_id": null}));
}
