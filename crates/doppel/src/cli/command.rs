//! `doppel command ...`: queue, list, read and cancel a device's commands on a running hub through
//! its HTTP API (`/v1/tenants/{tenant}/twins/{device}/commands`). Each subcommand is one request;
//! the answer is printed for people, or as the server's JSON with `--json` for scripts.

use super::paging::Paging;
use super::table::Table;
use super::target::{Target, print_outcome, warn_if_new_tenant};
use super::view;
use anyhow::anyhow;
use clap::{Args, Subcommand};
use doppel_model::{DeviceId, TenantId};
use reqwest::Method;
use serde::Serialize;
use serde_json::{Map, Value, json};

/// Longest command id sent: the hub's ids are UUIDs (36 characters).
const MAX_COMMAND_ID_LEN: usize = 64;

/// Shown for an absent or null field.
const NONE: &str = "-";

#[derive(Args, Debug)]
pub struct CommandArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    action: CommandAction,
}

#[derive(Subcommand, Debug)]
enum CommandAction {
    /// Queue a command for a device; it is delivered when the device is reachable.
    Queue(QueueArgs),
    /// List a device's commands, oldest first.
    List(ListArgs),
    /// Show one command with every step of its life.
    Get(IdArgs),
    /// Cancel a command that is not final yet (PENDING or DELIVERED).
    Cancel(IdArgs),
}

#[derive(Args, Debug)]
struct QueueArgs {
    /// The device id, e.g. pump-001.
    #[arg(value_name = "device")]
    device: String,
    /// The operation, e.g. reboot or diagnostics.run.
    #[arg(value_name = "type")]
    kind: String,
    /// The command's parameters as JSON [default: {}].
    #[arg(long, value_name = "JSON")]
    payload: Option<String>,
    /// Higher goes first, from -1000 to 1000 [default: 0].
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    priority: Option<i64>,
    /// Seconds until the command expires undelivered [default: the hub's commands.default_ttl].
    #[arg(long, value_name = "SECONDS")]
    ttl: Option<u64>,
    /// Queue at most once: a repeat with the same key returns the command queued first.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
}

/// Query parameters travel as the serialized form of this struct; `None` fields are left out.
#[derive(Args, Debug, Serialize)]
struct ListArgs {
    /// The device id, e.g. pump-001.
    #[arg(value_name = "device")]
    #[serde(skip)]
    device: String,
    /// Only commands in this status: pending, delivered, acknowledged, expired, canceled or
    /// failed.
    #[arg(long, value_name = "STATUS")]
    status: Option<String>,
    #[command(flatten)]
    #[serde(skip)]
    paging: Paging,
}

#[derive(Args, Debug)]
struct IdArgs {
    /// The device id, e.g. pump-001.
    #[arg(value_name = "device")]
    device: String,
    /// The command id `queue` or `list` printed.
    #[arg(value_name = "id")]
    id: String,
}

impl CommandAction {
    fn device(&self) -> &str {
        match self {
            Self::Queue(queue) => &queue.device,
            Self::List(list) => &list.device,
            Self::Get(get) | Self::Cancel(get) => &get.device,
        }
    }
}

pub fn run(args: CommandArgs) -> anyhow::Result<()> {
    print_outcome(execute(args))
}

/// Sends the one request of a subcommand and returns what to print.
async fn execute(args: CommandArgs) -> anyhow::Result<String> {
    let printer = args.target.printer();
    let hub = args.target.hub()?;
    let tenant = TenantId::new(&hub.tenant)?;
    let device = device_id(args.action.device())?;
    let client = hub.client()?;
    let commands = format!("/v1/tenants/{tenant}/twins/{device}/commands");

    match args.action {
        CommandAction::Queue(queue) => {
            let body = queue_body(queue)?;
            let request = client.request(Method::POST, &commands).json(&body);
            let answer = warn_if_new_tenant(&client, &tenant, client.send(request)).await?;
            Ok(printer.show(answer, &command))
        }
        CommandAction::List(list) => {
            let answer = list
                .paging
                .fetch(&client, || {
                    client.request(Method::GET, &commands).query(&list)
                })
                .await?;
            Ok(printer.show(answer, &|page| {
                listed(page, device.as_str(), list.status.as_deref())
            }))
        }
        CommandAction::Get(get) => {
            let path = format!("{commands}/{}", command_id(&get.id)?);
            let answer = client.send(client.request(Method::GET, &path)).await?;
            Ok(printer.show(answer, &command))
        }
        CommandAction::Cancel(cancel) => {
            let path = format!("{commands}/{}", command_id(&cancel.id)?);
            let answer = client.send(client.request(Method::DELETE, &path)).await?;
            Ok(printer.show(answer, &command))
        }
    }
}

/// Validated here so that a mistyped id fails at once, naming the id, without a round trip.
/// Commands go to a device, so a named shadow's id is refused too.
fn device_id(text: &str) -> anyhow::Result<DeviceId> {
    let device = DeviceId::new(text)?;
    if device.shadow_name().is_some() {
        anyhow::bail!(
            "{text:?} names a shadow; commands go to a device such as {:?}",
            device.thing()
        );
    }
    Ok(device)
}

/// A command id as a path segment; anything that would change the URL's shape is refused here
/// rather than sent.
fn command_id(text: &str) -> anyhow::Result<&str> {
    let valid = !text.is_empty()
        && text.len() <= MAX_COMMAND_ID_LEN
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !valid {
        anyhow::bail!("command id {text:?} is not one the hub prints (letters, digits and -)");
    }
    Ok(text)
}

/// The request body of `queue`: only what was given, so the hub's defaults apply to the rest.
fn queue_body(queue: QueueArgs) -> anyhow::Result<Value> {
    let mut body = Map::new();
    body.insert("type".into(), json!(queue.kind));
    if let Some(payload) = &queue.payload {
        let payload: Value = serde_json::from_str(payload)
            .map_err(|err| anyhow!("invalid JSON in --payload: {err}"))?;
        body.insert("payload".into(), payload);
    }
    if let Some(priority) = queue.priority {
        body.insert("priority".into(), json!(priority));
    }
    if let Some(ttl) = queue.ttl {
        body.insert("ttl_seconds".into(), json!(ttl));
    }
    if let Some(key) = queue.idempotency_key {
        body.insert("idempotency_key".into(), json!(key));
    }
    Ok(Value::Object(body))
}

/// A scalar field as text: strings unquoted, numbers as written, `-` when absent or null.
fn field(value: &Value, name: &str) -> String {
    match value.get(name) {
        None | Some(Value::Null) => NONE.to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

/// `queue`, `get` and `cancel`: the command's fields, its payload (and response) as indented
/// JSON, then every step of its life.
fn command(answer: &Value) -> String {
    let mut block = Table::headless();
    for name in [
        "id",
        "type",
        "status",
        "priority",
        "attempts",
        "created_at",
        "expires_at",
        "delivered_at",
        "idempotency_key",
        "result",
    ] {
        block.row(vec![name.to_owned(), field(answer, name)]);
    }
    let mut out = block.render();
    out.push_str(&format!(
        "\npayload:\n{}\n",
        view::pretty(answer.get("payload").unwrap_or(&Value::Null))
    ));
    if let Some(response) = answer.get("response").filter(|r| !r.is_null()) {
        out.push_str(&format!("\nresponse:\n{}\n", view::pretty(response)));
    }
    let steps = answer
        .get("transitions")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if !steps.is_empty() {
        let mut table = Table::new(&["STATUS", "AT", "ATTEMPT"]);
        for step in steps {
            table.row(vec![
                field(step, "status"),
                field(step, "at"),
                field(step, "attempt"),
            ]);
        }
        out.push('\n');
        out.push_str(&table.render());
    }
    out
}

/// `list`: one row per command, then the cursor of the next page when there may be more;
/// `status` is the filter asked for, named when nothing matched.
fn listed(page: &Value, device: &str, status: Option<&str>) -> String {
    let empty = match status {
        Some(status) => format!("{device} has no {} commands", status.to_uppercase()),
        None => format!("{device} has no commands"),
    };
    let columns = ["id", "type", "status", "priority", "attempts", "created_at"];
    let header = ["ID", "TYPE", "STATUS", "PRIORITY", "ATTEMPTS", "CREATED_AT"];
    view::page_table(page, &header, &empty, |command| {
        columns.iter().map(|name| field(command, name)).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_before_any_request() {
        assert!(device_id("pump-1").is_ok());
        assert!(device_id("pump-1/shadows/config").is_err());
        assert!(device_id("a b").is_err());
        assert!(command_id("0193a7c2-8e1f-7b3a-9c4d-5e6f7a8b9c0d").is_ok());
        for bad in ["", "a/b", "..", "a b", "?x", "next%2F"] {
            assert!(command_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_queue_body_holds_only_what_was_given() {
        let args = |payload: Option<&str>| QueueArgs {
            device: "pump-1".into(),
            kind: "reboot".into(),
            payload: payload.map(str::to_owned),
            priority: Some(-5),
            ttl: None,
            idempotency_key: Some("k1".into()),
        };
        assert_eq!(
            queue_body(args(Some(r#"{"delay": 3}"#))).ok(),
            Some(
                json!({"type": "reboot", "payload": {"delay": 3}, "priority": -5, "idempotency_key": "k1"})
            )
        );
        let err = queue_body(args(Some("{"))).err().map(|err| err.to_string());
        assert_eq!(
            err.as_deref(),
            Some("invalid JSON in --payload: EOF while parsing an object at line 1 column 1")
        );
    }

    #[test]
    fn a_list_shows_one_row_per_command_and_the_cursor() {
        let page = json!({
            "items": [{"id": "c1", "type": "reboot", "status": "PENDING", "priority": 0,
                          "attempts": 0, "created_at": "2026-11-22T10:00:00.000Z"}],
            "next_cursor": "c1"
        });
        assert_eq!(
            listed(&page, "pump-1", None),
            "ID  TYPE    STATUS   PRIORITY  ATTEMPTS  CREATED_AT\n\
             c1  reboot  PENDING  0         0         2026-11-22T10:00:00.000Z\n\
             next cursor: c1\n"
        );
        assert_eq!(
            listed(
                &json!({"items": [], "next_cursor": null}),
                "pump-1",
                Some("pending")
            ),
            "pump-1 has no PENDING commands\n"
        );
    }
}
