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
and a collection it creates under drill.rampart.invalid, and afterwards removes them and the blocks on its \
addresses, and resolves the open alerts that are wholly its own. \
Its requests and events are marked as the drill's, so statistics leave them out.\n\
Run it on the server while `rampart serve` runs. Exit status: 0 when every scenario was blocked or alerted, \
3 when one was only logged or missed, 1 when the drill could not run or its clean-up left something (the report \
is printed first).";

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
    /// Where this deployment's `serve` listens, when it was started with
    /// --listen [default: `listen` from the settings]
    #[arg(long)]
    listen: Option<String>,
    /// Another Rampart on this machine to attack: an https:// loopback
    /// address listed in [incident] drill_targets [default: this
    /// deployment]
    #[arg(long)]
    target: Option<String>,
    /// Only these scenarios (repeat, or separate with commas)
    #[arg(long, value_delimiter = ',', value_parser = parse_scenario)]
    scenario: Vec<Scenario>,
    /// Longest wait for detection after each scenario, 1 to 600 seconds
    /// (a whole drill can take about seven times as long)
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    wait_secs: u64,
    /// Print the report as JSON instead of a table
    #[arg(long)]
    json: bool,
    /// Also write the report as a self-contained HTML page with a timeline
    #[arg(long)]
    html: Option<PathBuf>,
}

pub async fn run(config: Option<PathBuf>, args: DrillArgs) -> Result<ExitCode> {
    let overrides = rampart::Overrides {
        listen: args.listen,
        ..common_overrides(&args.common)
    };
    let settings = load(config, &overrides)?;
    let _logs = rampart::logging::init("warn");
    // Refused before anything is created.
    rampart::drill::allowed_target(&settings, args.target.as_deref())?;
    let svc = rampart::cli_services(&settings).await?;
    let opts = rampart::drill::Options {
        target: args.target.clone(),
        scenarios: args.scenario.clone(),
        wait: Duration::from_secs(args.wait_secs),
    };
    let quiet = args.json;
    let result = rampart::drill::run(&settings, &svc, &opts, &|what| {
        if !quiet {
            eprintln!("drill: {what}");
        }
    })
    .await;
    svc.close().await;
    let rampart::drill::Ran { report, left } = result?;
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
    if !left.is_empty() {
        anyhow::bail!("the drill ran, but its clean-up left: {}", left.join("; "));
    }
    Ok(if report.worst() >= Outcome::Alerted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
