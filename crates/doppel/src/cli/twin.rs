//! `doppel twin ...`: placeholder replaced by the CLI client.

use clap::Args;

#[derive(Args, Debug)]
pub struct TwinArgs {}

pub fn run(_args: TwinArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet implemented")
}
