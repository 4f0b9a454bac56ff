//! `doppel events`: the tenant's change stream (`GET /v1/tenants/{tenant}/events`, Server-Sent
//! Events). Without `--follow` it prints the events the hub keeps (after `--cursor`) and the
//! cursor to resume from, and exits; with it, every event as it happens, until interrupted.
//! Each line starts with the event's id, so a run that was stopped resumes with
//! `--cursor <the last id printed>`.

use super::sse::Frame;
use super::table::truncate;
use super::target::{Target, block_on, print};
use anyhow::{Context, anyhow, bail};
use clap::Args;
use doppel_engine::stream::EventId;
use doppel_model::TenantId;
use reqwest::Method;
use serde::Serialize;
use serde_json::Value;
use std::ops::ControlFlow;

/// Longest compact event body shown on a line for people: room for a command's summary with
/// a long type, or a small state; the whole event is in `--json`.
const MAX_DETAIL: usize = 160;

/// Width of the type column: the longest type name, `command.acknowledged`.
const TYPE_WIDTH: usize = 20;

/// The fields every event line shows in columns of their own, left out of its detail.
const COLUMNS: [&str; 4] = ["id", "type", "device_id", "at"];

/// The fields of a command event's command that its line shows.
const COMMAND_SUMMARY: [&str; 3] = ["id", "type", "status"];

#[derive(Args, Debug)]
pub struct EventsArgs {
    #[command(flatten)]
    target: Target,
    /// Only these event types or families, comma-separated, e.g. 'twin.*,command.acknowledged'.
    #[arg(long, value_name = "TYPES")]
    types: Option<String>,
    /// Only events of twins that match this fleet query when the event is sent (docs/QUERY.md).
    #[arg(long, value_name = "QUERY")]
    query: Option<String>,
    /// Keep printing events as they happen, until interrupted, instead of stopping after the
    /// last one the hub keeps.
    #[arg(long)]
    follow: bool,
    /// Start after this event: the `next cursor` of an earlier run, or the last id it printed.
    #[arg(long, value_name = "EVENT_ID")]
    cursor: Option<String>,
}

/// The query of the stream request; `None` fields are left out.
#[derive(Serialize)]
struct StreamQuery<'a> {
    types: Option<&'a str>,
    q: Option<&'a str>,
    /// Sent only as `false`: the hub's default is to follow.
    follow: Option<bool>,
}

pub fn run(args: EventsArgs) -> anyhow::Result<()> {
    block_on(execute(args))?
}

async fn execute(args: EventsArgs) -> anyhow::Result<()> {
    let hub = args.target.hub()?;
    let tenant = TenantId::new(&hub.tenant)?;
    if let Some(cursor) = &args.cursor
        && EventId::parse(cursor).is_none()
    {
        bail!("--cursor {cursor:?} is not an event id such as 1796000000000-42");
    }
    let client = hub.stream_client()?;
    let query = StreamQuery {
        types: args.types.as_deref(),
        q: args.query.as_deref(),
        follow: (!args.follow).then_some(false),
    };
    let mut request = client
        .request(Method::GET, &format!("/v1/tenants/{tenant}/events"))
        .query(&query);
    if let Some(cursor) = &args.cursor {
        request = request.header("Last-Event-ID", cursor);
    }
    let mut stream = client.open_stream(request).await?;
    let mut lines = Lines {
        json: args.target.json,
        tenant: tenant.to_string(),
        filtered: args.types.is_some() || args.query.is_some(),
        events: 0,
        resume_after: args.cursor.clone(),
    };
    while let Some(frame) = stream.next().await? {
        let (text, done) = match lines.frame(&frame)? {
            ControlFlow::Continue(text) => (text, false),
            ControlFlow::Break(text) => (text, true),
        };
        if print(text.as_bytes())?.is_break() || done {
            return Ok(());
        }
    }
    Err(lines.closed())
}

/// What `doppel events` prints, frame by frame; pure, so that its lines are tested without a
/// hub.
struct Lines {
    /// Each event as its JSON on one line instead of a line for people.
    json: bool,
    tenant: String,
    /// Whether `--types` or `--query` chose events, so that none printed means none matched.
    filtered: bool,
    /// Events printed so far.
    events: usize,
    /// Where a later run resumes: the newest id printed or named by the hub, else `--cursor`.
    resume_after: Option<String>,
}

impl Lines {
    /// The text for one frame: `Continue` while more may come, `Break` after the hub's `end`
    /// frame. The hub's `error` frame, which ends the stream, is an error naming the cursor.
    fn frame(&mut self, frame: &Frame) -> anyhow::Result<ControlFlow<String, String>> {
        let data: Value = serde_json::from_str(&frame.data)
            .with_context(|| format!("the hub sent a {} event that is not JSON", frame.event))?;
        match frame.event.as_str() {
            "gap" => Ok(ControlFlow::Continue(if self.json {
                json_line(tagged("gap", data))
            } else {
                format!(
                    "gap: {} ({}); resuming at {}\n",
                    text(&data, "message"),
                    text(&data, "code"),
                    text(&data, "resumes_at"),
                )
            })),
            // The code, not the message: the hub's message tells HTTP clients to resume with
            // Last-Event-ID, where this one resumes with --cursor.
            "error" => Err(anyhow!(
                "the hub ended the stream ({}){}",
                text(&data, "code"),
                self.resume_hint()
            )),
            "end" => {
                if let Some(last) = data.get("last_event_id").and_then(Value::as_str) {
                    self.resume_after = Some(last.to_owned());
                }
                Ok(ControlFlow::Break(if self.json {
                    json_line(tagged("end", data))
                } else {
                    self.summary()
                }))
            }
            _ => {
                self.events += 1;
                self.resume_after = frame.id.clone().or(self.resume_after.take());
                Ok(ControlFlow::Continue(if self.json {
                    json_line(data)
                } else {
                    event_line(&data)
                }))
            }
        }
    }

    /// After the kept events: a note when there were none, then the cursor to resume from.
    fn summary(&self) -> String {
        let mut out = String::new();
        if self.events == 0 {
            let matching = if self.filtered { "matching " } else { "" };
            out.push_str(&format!("no {matching}events in tenant {}\n", self.tenant));
        }
        if let Some(cursor) = &self.resume_after {
            out.push_str(&format!("next cursor: {cursor}\n"));
        }
        out
    }

    /// The stream ended without the hub saying why: it stopped, or the path to it broke.
    fn closed(&self) -> anyhow::Error {
        anyhow!("the hub closed the stream{}", self.resume_hint())
    }

    fn resume_hint(&self) -> String {
        match &self.resume_after {
            Some(cursor) => format!("; resume with --cursor {cursor}"),
            None => String::new(),
        }
    }
}

/// `ID  TYPE  DEVICE  AT  {the rest as compact JSON}`.
fn event_line(data: &Value) -> String {
    let mut rest = data.as_object().cloned().unwrap_or_default();
    for column in COLUMNS {
        rest.remove(column);
    }
    // A command event carries the whole command, whose first fields in key order (attempts,
    // created_at, ...) would fill the line: its id, type and status say what happened.
    if let Some(Value::Object(command)) = rest.get_mut("command") {
        command.retain(|name, _| COMMAND_SUMMARY.contains(&name.as_str()));
    }
    let detail = truncate(&Value::Object(rest).to_string(), MAX_DETAIL);
    format!(
        "{}  {:<TYPE_WIDTH$}  {}  {}  {detail}\n",
        text(data, "id"),
        text(data, "type"),
        text(data, "device_id"),
        text(data, "at"),
    )
}

/// The hub's notices as the WebSocket sends them: the body with `"type"` naming the notice.
fn tagged(kind: &str, mut body: Value) -> Value {
    if let Value::Object(fields) = &mut body {
        fields.insert("type".into(), Value::String(kind.into()));
    }
    body
}

fn json_line(value: Value) -> String {
    format!("{value}\n")
}

/// A string field as text; `-` when absent or null.
fn text(value: &Value, name: &str) -> String {
    match value.get(name) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn frame(event: &str, id: Option<&str>, data: Value) -> Frame {
        Frame {
            id: id.map(str::to_owned),
            event: event.to_owned(),
            data: data.to_string(),
        }
    }

    fn lines(json: bool, cursor: Option<&str>) -> Lines {
        Lines {
            json,
            tenant: "default".into(),
            filtered: false,
            events: 0,
            resume_after: cursor.map(str::to_owned),
        }
    }

    fn delta() -> Frame {
        frame(
            "twin.delta",
            Some("9-42"),
            json!({"id": "9-42", "type": "twin.delta", "device_id": "pump-7",
                   "at": "2026-11-30T17:40:02.113Z", "version": 12, "delta": {"speed": 3}}),
        )
    }

    #[test]
    fn events_are_lines_that_start_with_their_id_and_end_with_a_cursor() {
        let mut out = lines(false, None);
        let line = out.frame(&delta()).ok();
        assert_eq!(
            line,
            Some(ControlFlow::Continue(
                "9-42  twin.delta            pump-7  2026-11-30T17:40:02.113Z  {\"delta\":{\"speed\":3},\"version\":12}\n"
                    .to_owned()
            ))
        );
        let end = out.frame(&frame("end", None, json!({"last_event_id": "9-43"})));
        assert_eq!(
            end.ok(),
            Some(ControlFlow::Break("next cursor: 9-43\n".to_owned()))
        );
    }

    #[test]
    fn a_command_event_shows_which_command_and_its_status() {
        let queued = frame(
            "command.queued",
            Some("9-7"),
            json!({"id": "9-7", "type": "command.queued", "device_id": "pump-7",
                   "at": "2026-11-30T17:40:02.113Z",
                   "command": {"attempts": 0, "created_at": "2026-11-30T17:40:02.113Z",
                               "id": "01a25042-28ce-7370-b4f4-fc6e66763fa5", "payload": {"delay_s": 5},
                               "priority": 10, "status": "PENDING", "type": "reboot"}}),
        );
        let line = lines(false, None).frame(&queued).ok();
        assert_eq!(
            line,
            Some(ControlFlow::Continue(
                "9-7  command.queued        pump-7  2026-11-30T17:40:02.113Z  {\"command\":{\"id\":\"01a25042-28ce-7370-b4f4-fc6e66763fa5\",\"status\":\"PENDING\",\"type\":\"reboot\"}}\n"
                    .to_owned()
            ))
        );
    }

    #[test]
    fn nothing_kept_is_said_and_the_given_cursor_still_resumes() {
        let mut out = lines(false, Some("9-5"));
        let end = out.frame(&frame("end", None, json!({"last_event_id": null})));
        assert_eq!(
            end.ok(),
            Some(ControlFlow::Break(
                "no events in tenant default\nnext cursor: 9-5\n".to_owned()
            ))
        );
        let mut fresh = lines(false, None);
        let end = fresh.frame(&frame("end", None, json!({"last_event_id": null})));
        assert_eq!(
            end.ok(),
            Some(ControlFlow::Break(
                "no events in tenant default\n".to_owned()
            ))
        );
        let mut filtered = Lines {
            filtered: true,
            ..lines(false, Some("9-5"))
        };
        let end = filtered.frame(&frame("end", None, json!({"last_event_id": "9-8"})));
        assert_eq!(
            end.ok(),
            Some(ControlFlow::Break(
                "no matching events in tenant default\nnext cursor: 9-8\n".to_owned()
            ))
        );
    }

    #[test]
    fn json_lines_are_the_events_and_the_tagged_notices() {
        let mut out = lines(true, None);
        let Ok(ControlFlow::Continue(line)) = out.frame(&delta()) else {
            panic!("an event line");
        };
        let parsed: Value = serde_json::from_str(&line).expect("the line is JSON");
        assert_eq!(parsed["id"], "9-42");
        assert_eq!(parsed["delta"], json!({"speed": 3}));
        let gap = out.frame(&frame(
            "gap",
            None,
            json!({"code": "restarted", "message": "m", "resumes_at": "9-1"}),
        ));
        assert_eq!(
            gap.ok(),
            Some(ControlFlow::Continue(
                "{\"code\":\"restarted\",\"message\":\"m\",\"resumes_at\":\"9-1\",\"type\":\"gap\"}\n"
                    .to_owned()
            ))
        );
    }

    #[test]
    fn a_stream_the_hub_ends_is_an_error_naming_the_cursor() {
        let mut out = lines(false, None);
        let _ = out.frame(&delta());
        let err = out
            .frame(&frame(
                "error",
                None,
                json!({"code": "shutting_down", "message": "the server is stopping"}),
            ))
            .err()
            .map(|err| err.to_string());
        assert_eq!(
            err.as_deref(),
            Some("the hub ended the stream (shutting_down); resume with --cursor 9-42")
        );
        assert_eq!(
            out.closed().to_string(),
            "the hub closed the stream; resume with --cursor 9-42"
        );
        assert_eq!(
            lines(false, None).closed().to_string(),
            "the hub closed the stream"
        );
    }
}
