//! `rampart drill` (ADR 0014).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

pub const HELP: &str = "";

#[derive(Args)]
pub struct DrillArgs {}

pub async fn run(_config: Option<PathBuf>, _args: DrillArgs) -> Result<ExitCode> {
    anyhow::bail!("not yet")
}
