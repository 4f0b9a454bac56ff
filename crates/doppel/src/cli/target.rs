//! What every client subcommand shares: which hub and tenant it talks to, how it prints, and
//! running one request to completion.

use super::client::{Client, ClientError, TlsOptions};
use anyhow::Context;
use clap::Args;
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;

/// Where `doppel serve` listens unless told otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// The tenant of a single-tenant installation.
pub const DEFAULT_TENANT: &str = "default";

/// Help heading of the options every subcommand shares.
const HUB_OPTIONS: &str = "Hub options";

/// Options every subcommand takes; `global` lets them stand before or after the subcommand.
#[derive(Args, Debug)]
pub struct Target {
    /// Base URL of the hub's HTTP API: http://... or https://... (the hub's certificate is
    /// verified, against the system's CAs unless --ca-file names others).
    #[arg(long, global = true, help_heading = HUB_OPTIONS, env = "DOPPEL_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// PEM CA certificates to verify an https:// hub against, instead of the system's.
    #[arg(long, global = true, help_heading = HUB_OPTIONS, env = "DOPPEL_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for a hub that asks for one (http.tls.client_ca).
    #[arg(long, global = true, help_heading = HUB_OPTIONS, env = "DOPPEL_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, global = true, help_heading = HUB_OPTIONS, env = "DOPPEL_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Tenant to act in.
    #[arg(long, global = true, help_heading = HUB_OPTIONS, env = "DOPPEL_TENANT", default_value = DEFAULT_TENANT)]
    pub tenant: String,
    /// Print the server's JSON answer, indented, instead of text for people.
    #[arg(long, global = true, help_heading = HUB_OPTIONS)]
    pub json: bool,
}

impl Target {
    /// A client for the hub this subcommand talks to.
    pub fn client(&self) -> Result<Client, ClientError> {
        let tls = TlsOptions {
            ca_file: self.ca_file.clone(),
            client_identity: self.client_cert.clone().zip(self.client_key.clone()),
        };
        Client::new(&self.server, &tls)
    }

    /// How this subcommand prints its answer.
    pub fn printer(&self) -> Printer {
        Printer { json: self.json }
    }
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let output = runtime.block_on(work)?;
    match std::io::stdout().lock().write_all(output.as_bytes()) {
        // The reader went away (`| head`): nothing left to tell anyone.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result.context("cannot write to standard output"),
    }
}
