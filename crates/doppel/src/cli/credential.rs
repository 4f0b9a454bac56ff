//! `doppel device credential ...` and `doppel app credential ...`: the MQTT passwords of a device
//! or an application, managed through the hub's HTTP API
//! (`/v1/tenants/{tenant}/{devices|apps}/{name}/credentials`). Each subcommand is one request;
//! the answer is printed for people, or as the server's JSON with `--json` for scripts.

use super::table::Table;
use super::target::{Target, print_outcome, warn_if_new_tenant};
use super::view;
use anyhow::anyhow;
use clap::{Args, Subcommand};
use doppel_model::{AppName, DeviceId, Principal, TenantId};
use reqwest::Method;
use serde_json::{Value, json};
use std::io::BufRead;

/// Shown under a new credential: the hub cannot show the password again.
const SHOWN_ONCE: &str = "The password is shown only now; the hub keeps only a hash of it.";

/// `doppel device ...` and `doppel app ...`: the same commands for either kind of principal.
#[derive(Args, Debug)]
pub struct PrincipalArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: PrincipalCommand,
}

#[derive(Subcommand, Debug)]
enum PrincipalCommand {
    /// Manage its MQTT credentials: the passwords it connects with, under its username.
    #[command(subcommand)]
    Credential(CredentialCommand),
}

/// Whose credentials: the kind comes from the command (`device` or `app`), the name from its
/// argument.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// `doppel device ...`
    Device,
    /// `doppel app ...`
    App,
}

#[derive(Subcommand, Debug)]
enum CredentialCommand {
    /// Create a credential; prints the MQTT username and password (the password only this once).
    Add(AddArgs),
    /// List the credentials, oldest first (ids and creation times; never passwords).
    List(NameArg),
    /// Revoke one credential: clients can no longer connect with it.
    Remove(RemoveArgs),
}

#[derive(Args, Debug)]
struct NameArg {
    /// The device id or application name, e.g. pump-001.
    #[arg(value_name = "name")]
    name: String,
}

#[derive(Args, Debug)]
struct AddArgs {
    #[command(flatten)]
    owner: NameArg,
    /// Use this password (16 to 256 bytes) instead of a generated one; `-` reads it from the first
    /// line of standard input, which keeps it out of the process list.
    #[arg(long, value_name = "PASSWORD")]
    password: Option<String>,
    /// Print only the password, on one line, for a script to capture:
    /// PASSWORD=$(doppel device credential add pump-7 --password-only)
    #[arg(long, conflicts_with = "json")]
    password_only: bool,
}

#[derive(Args, Debug)]
struct RemoveArgs {
    #[command(flatten)]
    owner: NameArg,
    /// The id `add` or `list` printed.
    #[arg(value_name = "credential-id")]
    credential_id: String,
}

impl CredentialCommand {
    fn name(&self) -> &str {
        match self {
            Self::Add(add) => &add.owner.name,
            Self::List(list) => &list.name,
            Self::Remove(remove) => &remove.owner.name,
        }
    }
}

pub fn run(args: PrincipalArgs, kind: Kind) -> anyhow::Result<()> {
    let PrincipalCommand::Credential(command) = args.command;
    let target = args.target;
    print_outcome(execute(target, kind, command))
}

/// Validated here so that a mistyped id fails at once, naming the id, without a round trip.
fn principal(tenant: &str, kind: Kind, name: &str) -> anyhow::Result<Principal> {
    let tenant = TenantId::new(tenant)?;
    Ok(match kind {
        Kind::Device => Principal::device(tenant, DeviceId::new(name)?)?,
        Kind::App => Principal::app(tenant, AppName::new(name)?),
    })
}

/// Sends the one request of a subcommand and returns what to print.
async fn execute(target: Target, kind: Kind, command: CredentialCommand) -> anyhow::Result<String> {
    let hub = target.hub()?;
    let principal = principal(&hub.tenant, kind, command.name())?;
    let username = principal.username();
    let client = hub.client()?;
    let printer = target.printer();
    let path = format!(
        "/v1/tenants/{}/{}/{}/credentials",
        principal.tenant,
        principal.kind.segment(),
        principal.kind.name()
    );

    match command {
        CredentialCommand::Add(add) => {
            let mut request = client.request(Method::POST, &path);
            if let Some(password) = add.password {
                let password = if password == "-" {
                    password_from_stdin()?
                } else {
                    password
                };
                request = request.json(&json!({ "password": password }));
            }
            let answer =
                warn_if_new_tenant(&client, &principal.tenant, client.send(request)).await?;
            if add.password_only {
                return password_line(&answer);
            }
            Ok(printer.show(answer, &created))
        }
        CredentialCommand::List(_) => {
            let answer = client.send(client.request(Method::GET, &path)).await?;
            Ok(printer.show(answer, &|answer| listed(answer, &username)))
        }
        CredentialCommand::Remove(remove) => {
            let id = credential_id(&remove.credential_id)?;
            client
                .send(client.request(Method::DELETE, &format!("{path}/{id}")))
                .await?;
            // The server answers 204 without a body; `--json` still prints one object.
            let answer = json!({ "deleted": true, "credential_id": id, "username": username });
            Ok(printer.show(answer, &|_| {
                format!("removed credential {id} of {username}\n")
            }))
        }
    }
}

/// A credential id as a path segment. Ids the hub makes are lowercase hex; anything that would
/// change the URL's shape is refused here rather than sent.
fn credential_id(text: &str) -> anyhow::Result<&str> {
    if text.is_empty()
        || !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        anyhow::bail!(
            "credential id {text:?} is not one the hub prints (letters, digits, - and _)"
        );
    }
    Ok(text)
}

/// The first line of standard input, without its line ending.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|err| anyhow!("cannot read --password from standard input: {err}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// A scalar field of the answer; `-` when absent, so an older or newer server still prints.
fn field(value: &Value, name: &str) -> String {
    value
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or("-")
        .to_owned()
}

/// `add`: the new credential as a key-value block, then the once-only warning.
fn created(answer: &Value) -> String {
    let mut block = Table::headless();
    for name in ["credential_id", "username", "password", "created_at"] {
        block.row(vec![name.to_owned(), field(answer, name)]);
    }
    format!("{}{SHOWN_ONCE}\n", block.render())
}

/// `add --password-only`: the password alone.
fn password_line(answer: &Value) -> anyhow::Result<String> {
    match answer.get("password").and_then(Value::as_str) {
        Some(password) => Ok(format!("{password}\n")),
        None => anyhow::bail!("the hub's answer holds no password"),
    }
}

/// `list`: one row per credential, or a line saying there are none.
fn listed(answer: &Value, username: &str) -> String {
    let items = view::items(answer);
    if items.is_empty() {
        return format!("{username} has no credentials\n");
    }
    let mut table = Table::new(&["CREDENTIAL", "USERNAME", "CREATED_AT"]);
    for item in items {
        table.row(vec![
            field(item, "credential_id"),
            field(item, "username"),
            field(item, "created_at"),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_ids_cannot_reshape_the_url() {
        assert!(credential_id("0a1b2c3d4e5f6789").is_ok());
        for bad in ["", "a/b", "..%2f", "a b", "?x"] {
            assert!(credential_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn principals_are_checked_before_any_request() {
        assert!(principal("default", Kind::Device, "pump-1").is_ok());
        assert!(principal("default", Kind::App, "dashboard").is_ok());
        assert!(principal("default", Kind::Device, "pump-1/shadows/config").is_err());
        assert!(principal("default", Kind::App, "a.b/c").is_err());
        assert!(principal("bad tenant", Kind::App, "dashboard").is_err());
    }

    #[test]
    fn a_new_credential_is_shown_with_its_warning() {
        let text = created(&json!({
            "credential_id": "0a", "username": "t/devices/d",
            "password": "secret", "created_at": "2026-01-01T00:00:00.000Z"
        }));
        assert_eq!(
            text,
            format!(
                "credential_id  0a\nusername       t/devices/d\npassword       secret\n\
                 created_at     2026-01-01T00:00:00.000Z\n{SHOWN_ONCE}\n"
            )
        );
    }
}
