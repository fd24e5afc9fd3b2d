//! `rampart drill` (ADR 0014).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use rampart_drill::{Outcome, Scenario};

use crate::{common_overrides, load, CommonFlags};

pub const HELP: &str = "Scenarios: brute-force, credential-stuffing, password-spraying, injection, sensitive-files, \
session-reuse, bulk-read (default: all). Each is scored BLOCKED (stopped), ALERTED (an alert was raised), \
LOGGED (in the trail, nobody told) or MISSED, with the time to detection and to the alert.\n\
Safe: it aims only at this deployment or a loopback address in [incident] drill_targets, attacks only accounts \
and a collection it creates under drill.rampart.invalid, and removes them, its blocks and its alerts afterwards. \
Its requests and events are marked as the drill's, so statistics leave them out.\n\
Run it on the server while `rampart serve` runs. Exit status: 0 when every scenario was blocked or alerted, \
3 when one was only logged or missed, 1 when the drill could not run.";

fn parse_scenario(s: &str) -> std::result::Result<Scenario, String> {
    Scenario::parse(s).ok_or_else(|| {
        format!(
            "unknown scenario; one of {}",
            Scenario::ALL.map(|s| s.name()).join(", ")
        )
    })
}

#[derive(Args)]
pub struct DrillArgs {
    #[command(flatten)]
    common: CommonFlags,
    /// The Rampart to attack [default: this deployment's listen address]
    #[arg(long)]
    target: Option<String>,
    /// Only these scenarios (repeat, or separate with commas)
    #[arg(long, value_delimiter = ',', value_parser = parse_scenario)]
    scenario: Vec<Scenario>,
    /// Longest wait for detection after each scenario, in seconds
    #[arg(long, default_value_t = 20)]
    wait_secs: u64,
    /// Print the report as JSON instead of a table
    #[arg(long)]
    json: bool,
    /// Also write the report as a self-contained HTML page with a timeline
    #[arg(long)]
    html: Option<PathBuf>,
}

pub async fn run(config: Option<PathBuf>, args: DrillArgs) -> Result<ExitCode> {
    let settings = load(config, &common_overrides(&args.common))?;
    let _logs = rampart::logging::init("warn");
    // Refused before anything is created.
    rampart::drill::allowed_target(&settings, args.target.as_deref())?;
    let svc = rampart::cli_services(&settings).await?;
    let opts = rampart::drill::Options {
        target: args.target.clone(),
        scenarios: args.scenario.clone(),
        wait: Duration::from_secs(args.wait_secs.clamp(1, 600)),
    };
    let quiet = args.json;
    let result = rampart::drill::run(&settings, &svc, &opts, &|what| {
        if !quiet {
            eprintln!("drill: {what}");
        }
    })
    .await;
    svc.close().await;
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", rampart_drill::terminal(&report));
    }
    if let Some(path) = &args.html {
        std::fs::write(path, rampart_drill::html(&report))
            .with_context(|| format!("cannot write {}", path.display()))?;
        if !args.json {
            println!("HTML report: {}", path.display());
        }
    }
    Ok(if report.worst() >= Outcome::Alerted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
