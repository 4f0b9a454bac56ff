//! `doppel tenant list`: the tenants that hold something on a running hub (`/v1/tenants`), with
//! how many twins, credentials and tokens each has. A tenant is made by its first write, so
//! this is where a mistyped `--tenant` shows up. An operator's command; a tenant's token sees
//! its own tenant only.

use super::table::Table;
use super::target::{Target, print_outcome};
use super::view;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

#[derive(Args, Debug)]
pub struct TenantArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: TenantCommand,
}

#[derive(Subcommand, Debug)]
enum TenantCommand {
    /// List the tenants that hold twins, credentials or tokens, in id order.
    List,
}

pub fn run(args: TenantArgs) -> anyhow::Result<()> {
    print_outcome(execute(args))
}

async fn execute(args: TenantArgs) -> anyhow::Result<String> {
    let printer = args.target.printer();
    let client = args.target.hub()?.client()?;
    match args.command {
        TenantCommand::List => {
            let answer = client
                .send(client.request(Method::GET, "/v1/tenants"))
                .await?;
            Ok(printer.show(answer, &listed))
        }
    }
}

/// One row per tenant, or a line saying there is none.
fn listed(answer: &Value) -> String {
    let items = view::items(answer);
    if items.is_empty() {
        return "no tenant holds anything yet\n".to_owned();
    }
    let mut table = Table::new(&["TENANT", "TWINS", "CREDENTIALS", "TOKENS"]);
    for item in items {
        table.row(
            ["tenant", "twins", "credentials", "tokens"]
                .iter()
                .map(|name| match item.get(*name) {
                    Some(Value::String(text)) => text.clone(),
                    Some(Value::Number(number)) => number.to_string(),
                    _ => "-".to_owned(),
                })
                .collect(),
        );
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_list_shows_one_row_per_tenant() {
        let answer = json!({"items": [
            {"tenant": "acme", "twins": 12, "credentials": 3, "tokens": 1},
            {"tenant": "default", "twins": 0, "credentials": 0, "tokens": 2},
        ]});
        assert_eq!(
            listed(&answer),
            "TENANT   TWINS  CREDENTIALS  TOKENS\n\
             acme     12     3            1\n\
             default  0      0            2\n"
        );
        assert_eq!(
            listed(&json!({"items": []})),
            "no tenant holds anything yet\n"
        );
    }
}
