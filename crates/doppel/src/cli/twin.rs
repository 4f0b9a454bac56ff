//! `doppel twin ...`: read and change twins on a running hub through its HTTP API
//! (`/v1/tenants/{tenant}/twins`). Each subcommand is one request; the answer is printed as a
//! table for people, or as the server's JSON with `--json` for scripts.

use super::target::{Target, print_outcome, warn_if_new_tenant};
use super::view;
use anyhow::anyhow;
use clap::{Args, Subcommand};
use doppel_model::{DeviceId, HistoryKind, TenantId};
use reqwest::Method;
use reqwest::header::IF_MATCH;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::io::Read;

/// Header carrying the free-text reason recorded in history with a change.
const CHANGE_REASON_HEADER: &str = "Doppel-Change-Reason";

#[derive(Args, Debug)]
pub struct TwinArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: TwinCommand,
}

#[derive(Subcommand, Debug)]
enum TwinCommand {
    /// Show one twin: identity, versions, reported, desired and delta.
    Get(GetArgs),
    /// Change the desired state: a JSON merge patch, or the whole document with --replace.
    Desired(DesiredArgs),
    /// Send a state report as the device would; stale reports are ignored, not failed.
    Report(ReportArgs),
    /// List the recorded changes of a twin, oldest first.
    History(HistoryArgs),
    /// List the twins of the tenant in device-id order.
    List(PageArgs),
    /// Find the twins that match a fleet query, e.g. "tags.site = 'berlin' AND reported.temp > 30"
    /// (docs/QUERY.md).
    Query(QueryArgs),
    /// Count the twins that match a fleet query, per group with --group-by.
    Count(CountArgs),
    /// Delete a twin; its history stays until retention drops it.
    Delete(DeleteArgs),
}

/// Query parameters travel as the serialized form of these structs; `None` fields are left out.
#[derive(Args, Debug, Serialize)]
struct GetArgs {
    /// The device id, e.g. pump-001.
    #[arg(value_name = "device")]
    #[serde(skip)]
    device: String,
    /// Show the twin as it was at this instant (RFC 3339, e.g. 2024-05-01T10:00:00Z).
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
}

#[derive(Args, Debug)]
struct DesiredArgs {
    /// The device id, e.g. pump-001.
    #[arg(value_name = "device")]
    device: String,
    /// The desired change as JSON, or `-` to read it from standard input.
    #[arg(value_name = "json")]
    document: String,
    /// Replace the whole desired document instead of merging into it.
    #[arg(long)]
    replace: bool,
    /// Apply only if the twin is at this version (sent as `If-Match: "<version>"`).
    #[arg(long, value_name = "VERSION")]
    if_match: Option<u64>,
    /// Why the change is made; recorded in history.
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// The device id, e.g. pump-001.
    #[arg(value_name = "device")]
    device: String,
    /// The reported state as a JSON object, or `-` to read it from standard input.
    #[arg(value_name = "json-state")]
    state: String,
    /// The device's report sequence number; a report not newer than the twin's is ignored.
    #[arg(long, value_name = "N")]
    version: Option<u64>,
}

#[derive(Args, Debug, Serialize)]
struct HistoryArgs {
    /// The device id, e.g. pump-001.
    #[arg(value_name = "device")]
    #[serde(skip)]
    device: String,
    /// Only entries of this kind: reported, desired, meta or deleted.
    #[arg(long, value_name = "KIND", value_parser = parse_kind)]
    kind: Option<HistoryKind>,
    /// Only entries recorded at or after this instant (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    from: Option<String>,
    /// Only entries recorded at or before this instant (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    to: Option<String>,
    /// Most entries in one page.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Continue after a page: the `next cursor` the previous page printed.
    #[arg(long)]
    cursor: Option<String>,
}

#[derive(Args, Debug, Serialize)]
struct PageArgs {
    /// Most twins in one page.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Continue after a page: the `next cursor` the previous page printed.
    #[arg(long)]
    cursor: Option<String>,
}

#[derive(Args, Debug, Serialize)]
struct QueryArgs {
    /// The query, in the fleet query language.
    #[arg(value_name = "query")]
    q: String,
    /// Sort by this path instead of the device id, e.g. "reported.temp DESC".
    #[arg(long, value_name = "PATH [ASC|DESC]")]
    order_by: Option<String>,
    /// Most twins in one page.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Continue after a page: the `next cursor` the previous page printed.
    #[arg(long)]
    cursor: Option<String>,
}

#[derive(Args, Debug, Serialize)]
struct CountArgs {
    /// The query, in the fleet query language; every twin without one.
    #[arg(value_name = "query")]
    q: Option<String>,
    /// Count per value of this path, e.g. connection.status.
    #[arg(long, value_name = "PATH")]
    group_by: Option<String>,
}

#[derive(Args, Debug)]
struct DeleteArgs {
    /// The device id, e.g. pump-001.
    #[arg(value_name = "device")]
    device: String,
    /// Delete only if the twin is at this version.
    #[arg(long, value_name = "VERSION")]
    if_match: Option<u64>,
}

fn parse_kind(text: &str) -> Result<HistoryKind, String> {
    HistoryKind::parse(text)
        .ok_or_else(|| "expected reported, desired, state, meta, connection or deleted".to_owned())
}

pub fn run(args: TwinArgs) -> anyhow::Result<()> {
    print_outcome(execute(args))
}

/// Sends the one request of a subcommand and returns what to print.
async fn execute(args: TwinArgs) -> anyhow::Result<String> {
    let printer = args.target.printer();
    let hub = args.target.hub()?;
    let tenant = TenantId::new(&hub.tenant)?;
    let client = hub.client()?;
    let twins = format!("/v1/tenants/{tenant}/twins");

    match args.command {
        TwinCommand::Get(get) => {
            let path = format!("{twins}/{}", device_id(&get.device)?);
            let answer = client
                .send(client.request(Method::GET, &path).query(&get))
                .await?;
            Ok(printer.show(answer, &view::twin))
        }
        TwinCommand::Desired(desired) => {
            let path = format!("{twins}/{}/desired", device_id(&desired.device)?);
            let body = json_argument("<json>", &desired.document)?;
            let method = if desired.replace {
                Method::PUT
            } else {
                Method::PATCH
            };
            let mut request = if_match(client.request(method, &path), desired.if_match).json(&body);
            if let Some(reason) = &desired.reason {
                request = request.header(CHANGE_REASON_HEADER, change_reason(reason)?);
            }
            let answer = warn_if_new_tenant(&client, &tenant, client.send(request)).await?;
            Ok(printer.show(answer, &view::desired_written))
        }
        TwinCommand::Report(report) => {
            let device = device_id(&report.device)?;
            let path = format!("{twins}/{device}/reported");
            let mut body = Map::new();
            body.insert(
                "state".into(),
                json_argument("<json-state>", &report.state)?,
            );
            if let Some(version) = report.version {
                body.insert("version".into(), json!(version));
            }
            let request = client.request(Method::PATCH, &path).json(&body);
            let answer = warn_if_new_tenant(&client, &tenant, client.send(request)).await?;
            Ok(printer.show(answer, &|answer| {
                view::report_outcome(answer, device.as_str(), report.version)
            }))
        }
        TwinCommand::History(history) => {
            let path = format!("{twins}/{}/history", device_id(&history.device)?);
            let answer = client
                .send(client.request(Method::GET, &path).query(&history))
                .await?;
            Ok(printer.show(answer, &view::history_page))
        }
        TwinCommand::List(page) => {
            let answer = client
                .send(client.request(Method::GET, &twins).query(&page))
                .await?;
            Ok(printer.show(answer, &|answer| view::list_page(answer, tenant.as_str())))
        }
        TwinCommand::Query(query) => {
            let answer = client
                .send(client.request(Method::GET, &twins).query(&query))
                .await?;
            Ok(printer.show(answer, &|answer| view::list_page(answer, tenant.as_str())))
        }
        TwinCommand::Count(count) => {
            let answer = client
                .send(
                    client
                        .request(Method::GET, &format!("{twins}/count"))
                        .query(&count),
                )
                .await?;
            Ok(printer.show(answer, &view::count))
        }
        TwinCommand::Delete(delete) => {
            let device = device_id(&delete.device)?;
            client
                .send(if_match(
                    client.request(Method::DELETE, &format!("{twins}/{device}")),
                    delete.if_match,
                ))
                .await?;
            // The server answers 204 without a body; `--json` still prints one object.
            let answer =
                json!({ "deleted": true, "tenant": tenant.as_str(), "device_id": device.as_str() });
            Ok(printer.show(answer, &|_| {
                format!("deleted twin {device} in tenant {tenant}\n")
            }))
        }
    }
}

/// Validated here so that a mistyped id fails at once, naming the id, without a round trip.
fn device_id(text: &str) -> anyhow::Result<DeviceId> {
    Ok(DeviceId::new(text)?)
}

fn if_match(request: reqwest::RequestBuilder, version: Option<u64>) -> reqwest::RequestBuilder {
    match version {
        Some(version) => request.header(IF_MATCH, format!("\"{version}\"")),
        None => request,
    }
}

/// The reason as a header value: printable ASCII only, which is what the server records.
fn change_reason(reason: &str) -> anyhow::Result<&str> {
    if reason.is_empty()
        || !reason
            .chars()
            .all(|c| c.is_ascii() && !c.is_ascii_control())
    {
        anyhow::bail!("--reason must be non-empty printable ASCII, got {reason:?}");
    }
    Ok(reason)
}

/// Parses the JSON argument `name`; `-` reads it from standard input. Errors name the argument
/// and the position, on one line.
fn json_argument(name: &str, text: &str) -> anyhow::Result<Value> {
    if text == "-" {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .map_err(|err| anyhow!("cannot read {name} from standard input: {err}"))?;
        return serde_json::from_str(&input)
            .map_err(|err| anyhow!("invalid JSON in {name} (read from standard input): {err}"));
    }
    serde_json::from_str(text).map_err(|err| anyhow!("invalid JSON in {name}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_name_the_argument_and_the_position() {
        let err = json_argument("<json>", "{\"led\": }")
            .err()
            .map(|err| err.to_string());
        assert_eq!(
            err.as_deref(),
            Some("invalid JSON in <json>: expected value at line 1 column 9")
        );
        assert_eq!(
            json_argument("<json>", "{\"a\": [1]}").ok(),
            Some(json!({"a": [1]}))
        );
    }

    #[test]
    fn reasons_must_fit_in_a_header() {
        assert!(change_reason("rollout 42").is_ok());
        assert!(change_reason("line\nbreak").is_err());
        assert!(change_reason("café").is_err());
        assert!(change_reason("").is_err());
    }
}
