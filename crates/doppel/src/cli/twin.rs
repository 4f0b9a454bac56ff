//! `doppel twin ...`: read and change twins on a running hub through its HTTP API
//! (`/v1/tenants/{tenant}/twins`). Each subcommand is one request; the answer is printed as a
//! table for people, or as the server's JSON with `--json` for scripts.

use super::paging::Paging;
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
    /// Change the descriptive fields: tags, device type and firmware version; the rest stays.
    Meta(MetaArgs),
    /// List the recorded changes of a twin, oldest first.
    History(HistoryArgs),
    /// List the twins of the tenant in device-id order.
    List(Paging),
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

#[derive(Args, Debug)]
struct MetaArgs {
    /// The device id, e.g. pump-001.
    #[arg(value_name = "device")]
    device: String,
    /// Set a tag, e.g. site=berlin; repeatable.
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
    /// Remove a tag; repeatable.
    #[arg(long = "remove-tag", value_name = "KEY")]
    removed_tags: Vec<String>,
    /// Set the device type, e.g. pump; it picks the type's activity interval and conflict rules.
    #[arg(long = "type", value_name = "TYPE")]
    device_type: Option<String>,
    /// Clear the device type.
    #[arg(long, conflicts_with = "device_type")]
    clear_type: bool,
    /// Set the firmware version, e.g. 1.2.3.
    #[arg(long, value_name = "VERSION")]
    firmware: Option<String>,
    /// Clear the firmware version.
    #[arg(long, conflicts_with = "firmware")]
    clear_firmware: bool,
    /// Apply only if the twin is at this version (sent as `If-Match: "<version>"`).
    #[arg(long, value_name = "VERSION")]
    if_match: Option<u64>,
    /// Why the change is made; recorded in history.
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
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
    #[command(flatten)]
    #[serde(skip)]
    paging: Paging,
}

#[derive(Args, Debug, Serialize)]
struct QueryArgs {
    /// The query, in the fleet query language.
    #[arg(value_name = "query")]
    q: String,
    /// Sort by this path instead of the device id, e.g. "reported.temp DESC".
    #[arg(long, value_name = "PATH [ASC|DESC]")]
    order_by: Option<String>,
    #[command(flatten)]
    #[serde(skip)]
    paging: Paging,
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

fn parse_tag(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err("expected KEY=VALUE, e.g. site=berlin".to_owned()),
    }
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
            let request = if_match(client.request(method, &path), desired.if_match).json(&body);
            let request = with_reason(request, desired.reason.as_deref())?;
            let answer = warn_if_new_tenant(&client, &tenant, client.send(request)).await?;
            Ok(printer.show(answer, &view::desired_written))
        }
        TwinCommand::Meta(meta) => {
            let path = format!("{twins}/{}", device_id(&meta.device)?);
            let body = meta_patch(&meta)?;
            let request = if_match(client.request(Method::PATCH, &path), meta.if_match).json(&body);
            let request = with_reason(request, meta.reason.as_deref())?;
            Ok(printer.show(client.send(request).await?, &view::twin))
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
            let answer = history
                .paging
                .fetch(&client, || {
                    client.request(Method::GET, &path).query(&history)
                })
                .await?;
            Ok(printer.show(answer, &view::history_page))
        }
        TwinCommand::List(paging) => {
            let answer = paging
                .fetch(&client, || client.request(Method::GET, &twins))
                .await?;
            let empty = format!("no twins in tenant {tenant}");
            Ok(printer.show(answer, &|answer| view::list_page(answer, &empty)))
        }
        TwinCommand::Query(query) => {
            let answer = query
                .paging
                .fetch(&client, || {
                    client.request(Method::GET, &twins).query(&query)
                })
                .await?;
            let empty = format!("no twins match the query in tenant {tenant}");
            Ok(printer.show(answer, &|answer| view::list_page(answer, &empty)))
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

/// The meta merge patch the options describe: tags to set, tags to remove (`null`), and the
/// device type and firmware version to set or clear.
fn meta_patch(meta: &MetaArgs) -> anyhow::Result<Value> {
    let mut tags = Map::new();
    for (key, value) in &meta.tags {
        tags.insert(key.clone(), json!(value));
    }
    for key in &meta.removed_tags {
        if tags.contains_key(key) {
            anyhow::bail!("--tag {key}=... and --remove-tag {key} contradict each other");
        }
        tags.insert(key.clone(), Value::Null);
    }
    let mut body = Map::new();
    if !tags.is_empty() {
        body.insert("tags".into(), Value::Object(tags));
    }
    for (name, value, clear) in [
        ("device_type", &meta.device_type, meta.clear_type),
        ("firmware_version", &meta.firmware, meta.clear_firmware),
    ] {
        if let Some(value) = value {
            body.insert(name.into(), json!(value));
        } else if clear {
            body.insert(name.into(), Value::Null);
        }
    }
    if body.is_empty() {
        anyhow::bail!(
            "nothing to change: give --tag, --remove-tag, --type, --clear-type, --firmware or --clear-firmware"
        );
    }
    Ok(Value::Object(body))
}

fn with_reason(
    request: reqwest::RequestBuilder,
    reason: Option<&str>,
) -> anyhow::Result<reqwest::RequestBuilder> {
    Ok(match reason {
        Some(reason) => request.header(CHANGE_REASON_HEADER, change_reason(reason)?),
        None => request,
    })
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

    fn meta_args(args: &[&str]) -> MetaArgs {
        #[derive(clap::Parser)]
        struct Meta {
            #[command(flatten)]
            meta: MetaArgs,
        }
        let argv = std::iter::once("meta").chain(args.iter().copied());
        <Meta as clap::Parser>::try_parse_from(argv)
            .map(|parsed| parsed.meta)
            .unwrap_or_else(|err| panic!("{args:?}: {err}"))
    }

    #[test]
    fn a_meta_patch_sets_removes_and_clears_only_what_was_given() {
        let patch = meta_patch(&meta_args(&[
            "pump-1",
            "--tag",
            "site=berlin",
            "--tag",
            "floor=2",
            "--remove-tag",
            "old",
            "--type",
            "pump",
            "--clear-firmware",
        ]));
        assert_eq!(
            patch.ok(),
            Some(json!({
                "tags": {"site": "berlin", "floor": "2", "old": null},
                "device_type": "pump",
                "firmware_version": null
            }))
        );
        assert_eq!(
            meta_patch(&meta_args(&["pump-1", "--firmware", "1.2.3"])).ok(),
            Some(json!({"firmware_version": "1.2.3"}))
        );
        let contradiction = meta_patch(&meta_args(&[
            "pump-1",
            "--tag",
            "site=x",
            "--remove-tag",
            "site",
        ]))
        .err()
        .map(|err| err.to_string());
        assert_eq!(
            contradiction.as_deref(),
            Some("--tag site=... and --remove-tag site contradict each other")
        );
        assert!(meta_patch(&meta_args(&["pump-1"])).is_err());
        assert_eq!(parse_tag("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_tag("=x").is_err());
        assert!(parse_tag("site").is_err());
    }

    #[test]
    fn reasons_must_fit_in_a_header() {
        assert!(change_reason("rollout 42").is_ok());
        assert!(change_reason("line\nbreak").is_err());
        assert!(change_reason("café").is_err());
        assert!(change_reason("").is_err());
    }
}
