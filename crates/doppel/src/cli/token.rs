//! `doppel token create|list|revoke`: the hub's API tokens (`/v1/tokens`), which applications
//! and operators send as `Authorization: Bearer <token>`. Only an admin token may manage them.

use super::table::Table;
use super::target::{Target, print_outcome};
use super::view;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// Shown under a new token: the hub cannot show it again.
const SHOWN_ONCE: &str = "The token is shown only now; the hub keeps only a hash of it.";

#[derive(Args, Debug)]
pub struct TokenArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Create a token; prints its id and secret (the secret only this once).
    Create(CreateArgs),
    /// List the tokens (ids, names, roles, tenants, expiry; never secrets).
    List,
    /// Revoke a token: it stops working at once, on open streams too.
    Revoke {
        /// The id `create` or `list` printed.
        #[arg(value_name = "id")]
        id: String,
    },
}

#[derive(Args, Debug)]
struct CreateArgs {
    /// A name for people and for history's `changed_by` (`token:NAME`).
    #[arg(long)]
    name: String,
    /// A role, repeatable: admin, operator, app-write, app-read.
    #[arg(long = "role", value_name = "ROLE", required = true)]
    roles: Vec<String>,
    /// The tenant it acts in (else --tenant's); `*` for every tenant (an admin of all only).
    #[arg(long = "for-tenant", value_name = "TENANT")]
    for_tenant: Option<String>,
    /// Lifetime, e.g. 30d or 12h; without it the token lasts until revoked.
    #[arg(long, value_parser = humantime::parse_duration)]
    expires_in: Option<Duration>,
}

pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    print_outcome(execute(args))
}

async fn execute(args: TokenArgs) -> anyhow::Result<String> {
    let printer = args.target.printer();
    let hub = args.target.hub()?;
    let client = hub.client()?;
    match args.command {
        TokenCommand::Create(create) => {
            let body = json!({
                "name": create.name,
                "roles": create.roles,
                "tenant": create.for_tenant.unwrap_or(hub.tenant),
                "expires_in_seconds": create.expires_in.map(|lifetime| lifetime.as_secs().max(1)),
            });
            let answer = client
                .send(client.request(Method::POST, "/v1/tokens").json(&body))
                .await?;
            Ok(printer.show(answer, &created))
        }
        TokenCommand::List => {
            let answer = client
                .send(client.request(Method::GET, "/v1/tokens"))
                .await?;
            Ok(printer.show(answer, &listed))
        }
        TokenCommand::Revoke { id } => {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                anyhow::bail!("token id {id:?} is not one the hub prints (letters and digits)");
            }
            client
                .send(client.request(Method::DELETE, &format!("/v1/tokens/{id}")))
                .await?;
            let answer = json!({ "revoked": true, "id": id });
            Ok(printer.show(answer, &|_| format!("revoked token {id}\n")))
        }
    }
}

/// A scalar field of the answer as text; `-` when absent or null.
fn field(value: &Value, name: &str) -> String {
    match value.get(name) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        _ => "-".to_owned(),
    }
}

fn created(answer: &Value) -> String {
    let mut block = Table::headless();
    for name in ["id", "name", "roles", "tenant", "expires_at", "token"] {
        block.row(vec![name.to_owned(), field(answer, name)]);
    }
    format!("{}{SHOWN_ONCE}\n", block.render())
}

fn listed(answer: &Value) -> String {
    let items = view::items(answer);
    if items.is_empty() {
        return "no tokens\n".to_owned();
    }
    let mut table = Table::new(&["ID", "NAME", "ROLES", "TENANT", "CREATED", "EXPIRES"]);
    for item in items {
        table.row(
            ["id", "name", "roles", "tenant", "created_at", "expires_at"]
                .iter()
                .map(|name| field(item, name))
                .collect(),
        );
    }
    table.render()
}
