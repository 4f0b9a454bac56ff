//! `doppel`: the hub (`serve`) and the command line that talks to it. Wiring only: the logic
//! lives in the library crates.

mod bench;
mod cli;
mod config;
mod descriptors;
mod edge;
mod serve;
mod sim;
mod telemetry;

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

/// jemalloc rather than the C library's malloc, whose bins and consolidation took a third of
/// the hub's CPU on the write path (docs/ARCHITECTURE.md, "Decisions").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "doppel", version, about = "A self-hostable digital-twin hub")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub: the embedded store, the engine, the HTTP API and the MQTT broker.
    Serve(Box<config::ServeArgs>),
    /// Run an edge agent: a local replica of some devices' twins that keeps serving them while
    /// the hub is out of reach.
    Edge(Box<edge::EdgeArgs>),
    /// Simulate devices against a hub over MQTT.
    Sim(Box<sim::SimArgs>),
    /// Tools for the benchmark scripts: `seed` fills a data folder with twins, `http` loads a
    /// hub's HTTP API.
    Bench(bench::BenchArgs),
    /// Read and change twins on a running hub.
    Twin(cli::twin::TwinArgs),
    /// Queue, list, show and cancel device commands on a running hub.
    #[command(name = "command")]
    Commands(cli::command::CommandArgs),
    /// Manage devices on a running hub: their MQTT credentials.
    Device(cli::credential::PrincipalArgs),
    /// Manage applications on a running hub: their MQTT credentials.
    App(cli::credential::PrincipalArgs),
    /// Print the tenant's change events: those the hub keeps, or with --follow each as it
    /// happens.
    Events(cli::events::EventsArgs),
    /// Manage the API tokens of a running hub (an admin token's job).
    Token(cli::token::TokenArgs),
    /// Print a shell completion script, e.g. `doppel completions bash > /etc/bash_completion.d/doppel`.
    Completions {
        /// The shell the script is for.
        #[arg(value_name = "shell")]
        shell: clap_complete::Shell,
    },
    /// List the tenants of a running hub that hold twins, credentials or tokens (an operator's
    /// job).
    Tenant(cli::tenant::TenantArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(&args),
        Command::Edge(args) => edge::run(*args),
        Command::Sim(args) => sim::run(*args),
        Command::Bench(args) => bench::run(args),
        Command::Twin(args) => cli::twin::run(args),
        Command::Commands(args) => cli::command::run(args),
        Command::Device(args) => cli::credential::run(args, cli::credential::Kind::Device),
        Command::App(args) => cli::credential::run(args, cli::credential::Kind::App),
        Command::Events(args) => cli::events::run(args),
        Command::Token(args) => cli::token::run(args),
        Command::Completions { shell } => cli::completions::run(shell, Cli::command()),
        Command::Tenant(args) => cli::tenant::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line a person can act on; the chain of causes joined with ": ".
            eprintln!("doppel: {}", format!("{err:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
