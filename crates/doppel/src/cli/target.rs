//! What every client subcommand shares: which hub and tenant it talks to, how it prints, and
//! running one request to completion.

use super::client::{Client, ClientError, Patience, TlsOptions};
use anyhow::Context;
use clap::Args;
use doppel_model::TenantId;
use reqwest::Method;
use serde_json::Value;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;

/// Where `doppel serve` listens unless told otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// The tenant of a single-tenant installation.
pub const DEFAULT_TENANT: &str = "default";

/// Help heading of the options every subcommand shares.
const HUB_OPTIONS: &str = "Hub options";

/// Where `doppel serve` keeps the first admin token's secret when run in the same folder with
/// its default data folder; the CLI reads it from there when it has no other token.
pub const LOCAL_ADMIN_TOKEN: &str = "doppel-data/admin.token";

/// Options every subcommand takes; `global` lets them stand before or after the subcommand.
/// Each comes from its flag, else its environment variable, else the profile, else the default.
#[derive(Args, Debug)]
pub struct Target {
    /// Base URL of the hub's HTTP API: http://..., https://... (the hub's certificate is
    /// verified, against the system's CAs unless --ca-file names others), or host:port for
    /// http://host:port [default: http://127.0.0.1:8080]
    #[arg(long, global = true, help_heading = HUB_OPTIONS, env = "DOPPEL_SERVER")]
    server: Option<String>,
    /// PEM CA certificates to verify an https:// hub against, instead of the system's.
    #[arg(long, global = true, help_heading = HUB_OPTIONS, env = "DOPPEL_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for a hub that asks for one (http.tls.client_ca).
    #[arg(long, global = true, help_heading = HUB_OPTIONS, env = "DOPPEL_CLIENT_CERT", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, global = true, help_heading = HUB_OPTIONS, env = "DOPPEL_CLIENT_KEY", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Tenant to act in [default: default]
    #[arg(long, global = true, help_heading = HUB_OPTIONS, env = "DOPPEL_TENANT")]
    tenant: Option<String>,
    /// API token (else the profile's, else ./doppel-data/admin.token when it exists)
    #[arg(long, global = true, help_heading = HUB_OPTIONS, env = "DOPPEL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Profile of the CLI's config file (server, tenant and token), like a kubectl context
    #[arg(long, global = true, help_heading = HUB_OPTIONS, env = "DOPPEL_PROFILE")]
    profile: Option<String>,
    /// Print the server's JSON answer, indented, instead of text for people.
    #[arg(long, global = true, help_heading = HUB_OPTIONS)]
    pub json: bool,
}

/// The hub a subcommand talks to, once flags, environment, profile and defaults are resolved.
#[derive(Clone, Debug)]
pub struct Hub {
    pub server: String,
    pub tenant: String,
    pub token: Option<String>,
    pub tls: TlsOptions,
}

impl Hub {
    /// A client for this hub, sending its token.
    pub fn client(&self) -> Result<Client, ClientError> {
        Client::new(
            &self.server,
            self.token.clone(),
            &self.tls,
            Patience::Request,
        )
    }

    /// A client for this hub's change stream, which stays open as long as it is read.
    pub fn stream_client(&self) -> Result<Client, ClientError> {
        Client::new(
            &self.server,
            self.token.clone(),
            &self.tls,
            Patience::Stream,
        )
    }
}

impl Target {
    /// How this subcommand prints its answer.
    pub fn printer(&self) -> Printer {
        Printer { json: self.json }
    }

    /// The hub, tenant and token to use.
    pub fn hub(&self) -> anyhow::Result<Hub> {
        let profile = super::profile::load(self.profile.as_deref())?;
        let token = match self.token.clone().or(profile.token) {
            Some(token) => Some(token),
            None => local_admin_token()?,
        };
        Ok(Hub {
            server: self
                .server
                .clone()
                .or(profile.server)
                .unwrap_or_else(|| DEFAULT_SERVER.to_owned()),
            tenant: self
                .tenant
                .clone()
                .or(profile.tenant)
                .unwrap_or_else(|| DEFAULT_TENANT.to_owned()),
            token,
            tls: TlsOptions {
                ca_file: self.ca_file.clone(),
                client_identity: self.client_cert.clone().zip(self.client_key.clone()),
            },
        })
    }
}

/// The first admin token of a hub started in this folder, if there is one.
fn local_admin_token() -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(LOCAL_ADMIN_TOKEN) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(anyhow::anyhow!("cannot read {LOCAL_ADMIN_TOKEN}: {err}")),
    }
}

/// Sends `write`, a request that may give `tenant` its first data, and warns on stderr once it
/// succeeded if the tenant held no twin before it: a tenant is made by its first write, so a
/// mistyped `--tenant` would otherwise go unnoticed as a new, empty tenant. The default tenant
/// is never new (a single-tenant hub starts empty). When the check itself fails, nothing is
/// said: the write that follows reports whatever is wrong.
pub async fn warn_if_new_tenant<T>(
    client: &Client,
    tenant: &TenantId,
    write: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    let new = tenant.as_str() != DEFAULT_TENANT && holds_no_twin(client, tenant).await;
    let written = write.await?;
    if new {
        eprintln!(
            "doppel: warning: tenant '{tenant}' is new: it had no twins before this; if that is a typo, check --tenant (`doppel tenant list` shows the tenants that hold something)"
        );
    }
    Ok(written)
}

/// Whether one page of the tenant's twins, the cheapest question any token of the tenant may
/// ask, comes back empty.
async fn holds_no_twin(client: &Client, tenant: &TenantId) -> bool {
    let page = client
        .send(
            client
                .request(Method::GET, &format!("/v1/tenants/{tenant}/twins"))
                .query(&[("limit", "1")]),
        )
        .await;
    page.is_ok_and(|page| {
        page.get("items")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
    })
}

/// Prints an answer as the server's JSON, indented (`--json`), or as the subcommand's text for
/// people.
#[derive(Clone, Copy, Debug)]
pub struct Printer {
    json: bool,
}

impl Printer {
    pub fn show(self, answer: Value, human: &dyn Fn(&Value) -> String) -> String {
        if self.json {
            format!("{}\n", super::view::pretty(&answer))
        } else {
            human(&answer)
        }
    }
}

/// Runs one subcommand's request on a small runtime and prints what it returns.
pub fn print_outcome(
    work: impl std::future::Future<Output = anyhow::Result<String>>,
) -> anyhow::Result<()> {
    let output = block_on(work)??;
    // One write: whether the reader stayed for all of it changes nothing after it.
    print(output.as_bytes()).map(drop)
}

/// Runs `work` to its end on a small runtime: a client subcommand waits on one hub at a time.
pub fn block_on<F: std::future::Future>(work: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(work))
}

/// Writes `output` to standard output and flushes it; `Break` when the reader went away
/// (`| head`), after which there is nothing left to tell anyone.
pub fn print(output: &[u8]) -> anyhow::Result<ControlFlow<()>> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(output).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(ControlFlow::Continue(())),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(ControlFlow::Break(())),
        Err(err) => Err(err).context("cannot write to standard output"),
    }
}
