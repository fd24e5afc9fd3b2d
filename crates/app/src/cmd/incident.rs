//! `rampart incident …`: lockdown and lift, status, the forensic bundle
//! and the response plan (ADR 0014).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use rampart::Settings;
use rampart_core::incident::{Incidents, LockdownOrder, LockdownReport, Selection};

use crate::{cli_meta, common_overrides, load, public_key, rfc3339, CommonFlags, TermProgress};

pub const HELP: &str = "What to do in the first hour is in the README (\"When you are attacked\") and in \
your response plan (`rampart incident plan init`).\n\
Everything here is safe while the server runs: every node sees a lockdown or a lift within a request.\n\
Exit status: 0 on success; verify-bundle exits 3 when the bundle is not good; 1 when a command could not run.";

#[derive(Subcommand)]
pub enum IncidentCommand {
    /// End every session and API key but the break-glass administrator's,
    /// let only administrators sign in, freeze administrative changes,
    /// rotate the data keys; or, with --accounts, shut out only those
    /// accounts. Try it first with --dry-run.
    Lockdown(LockdownArgs),
    /// End the deployment lockdown (or the incident named).
    Lift(LiftArgs),
    /// The incidents in force, with their signed records checked.
    Status(StatusArgs),
    /// Write a forensic bundle of a period: events with inclusion proofs,
    /// alerts, blocks, incidents, redacted settings, key ids, all under a
    /// manifest signed with the audit key.
    Export(ExportArgs),
    /// Check a bundle offline with the audit public key only; exit status
    /// 3 when anything in it was changed, added or removed.
    VerifyBundle(VerifyBundleArgs),
    /// The response plan: who to call, first steps, evidence, notification
    /// duties.
    Plan {
        #[command(subcommand)]
        command: PlanCommand,
    },
}

#[derive(Subcommand)]
pub enum PlanCommand {
    /// Write the plan template to <data_dir>/incident-plan.md, to fill in.
    Init(PlanInitArgs),
    /// Print the plan.
    Show(PlanShowArgs),
}

#[derive(Args)]
pub struct PlanInitArgs {
    #[command(flatten)]
    common: CommonFlags,
    /// Replace an existing plan with the template
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct PlanShowArgs {
    #[command(flatten)]
    common: CommonFlags,
}

fn parse_selection(s: &str) -> std::result::Result<Selection, String> {
    match s.trim() {
        "all" => Ok(Selection::All),
        "none" => Ok(Selection::None),
        "" => Err("give `all`, `none` or email addresses separated by commas".into()),
        list => Ok(Selection::Only(
            list.split(',').map(|e| e.trim().to_owned()).collect(),
        )),
    }
}

#[derive(Args)]
pub struct LockdownArgs {
    #[command(flatten)]
    common: CommonFlags,
    /// Why, in one line (it goes into the signed record)
    #[arg(long)]
    reason: String,
    /// Only these accounts (emails, separated by commas): their sessions
    /// and keys end and their sign-in is refused; nobody else notices
    #[arg(long, value_delimiter = ',')]
    accounts: Vec<String>,
    /// The administrator (email) whose sessions and API keys survive a
    /// deployment lockdown, and who alone may act on the incident through
    /// the API (lift it, block, work alerts) [default: none: every session
    /// ends, and only this command line acts]
    #[arg(long)]
    break_glass: Option<String>,
    /// Turn off passwords now and mail each owner a code (72 hours) to
    /// choose a new one: `all` (every account in the scope, administrators
    /// too, but the break-glass one), `none`, or emails separated by
    /// commas. Needs email delivery ([smtp]; with notifier = "log" the
    /// codes land in outbox.log)
    #[arg(long, value_parser = parse_selection)]
    reset_passwords: Option<Selection>,
    /// Remove second factors, to be set up again: `all`, `none` or emails
    /// (an administrator's password is reset with them)
    #[arg(long, value_parser = parse_selection)]
    reenrol_mfa: Option<Selection>,
    /// Only show what would happen; change nothing
    #[arg(long)]
    dry_run: bool,
    /// Print the outcome as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct LiftArgs {
    #[command(flatten)]
    common: CommonFlags,
    /// The incident to lift [default: the deployment lockdown]
    id: Option<String>,
}

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    common: CommonFlags,
    /// Print the incidents as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    common: CommonFlags,
    /// RFC 3339: the period's start (e.g. 2026-12-01T00:00:00Z)
    #[arg(long)]
    since: String,
    /// RFC 3339: the period's end [default: now]
    #[arg(long)]
    until: Option<String>,
    /// The directory the bundle's own directory is made in (a disk to
    /// take away from the server)
    #[arg(long, short, default_value = ".")]
    out: PathBuf,
}

#[derive(Args)]
pub struct VerifyBundleArgs {
    /// The bundle's directory
    bundle: PathBuf,
    /// The audit public key: a file holding it, or the key itself
    /// (`rampart-audit+…`). Use a copy kept away from the server (e.g.
    /// printed by `rampart audit key` when it was set up) [default:
    /// ./rampart-data/audit.pub, the server's own]
    #[arg(long)]
    key: Option<String>,
}

fn print_report(r: &LockdownReport) {
    let head = if r.dry_run {
        "Dry run: nothing was changed. A lockdown now would:".to_owned()
    } else {
        format!("Locked down ({}):", r.incident_id)
    };
    println!("{head}");
    println!("  scope                 {}", r.scope.as_str());
    if !r.accounts.is_empty() {
        println!("  accounts              {}", r.accounts.join(", "));
    }
    println!(
        "  break-glass           {}",
        r.break_glass.as_deref().unwrap_or("none")
    );
    println!("  sessions ended        {}", r.ended.sessions);
    println!("  API keys revoked      {}", r.ended.api_keys);
    println!("  pending sign-ins      {}", r.ended.pending_sign_ins);
    println!("  sign-in               {}", r.sign_in);
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            format!("{} ({})", v.len(), v.join(", "))
        }
    };
    println!("  password resets       {}", list(&r.password_resets));
    println!("  second factors reset  {}", list(&r.mfa_resets));
    println!("  data keys rotated     {}", list(&r.keys_rotated));
    for p in &r.problems {
        println!("  NOT DONE              {p}");
    }
    println!(
        "  admin changes         {}",
        if r.admin_writes_frozen {
            "frozen (but the incident's own)"
        } else {
            "not frozen"
        }
    );
}

pub async fn run(config: Option<PathBuf>, command: IncidentCommand) -> Result<ExitCode> {
    let common = match &command {
        // Offline: the public key and the bundle, nothing of a deployment.
        IncidentCommand::VerifyBundle(args) => return verify_bundle(args),
        IncidentCommand::Lockdown(a) => &a.common,
        IncidentCommand::Lift(a) => &a.common,
        IncidentCommand::Status(a) => &a.common,
        IncidentCommand::Export(a) => &a.common,
        IncidentCommand::Plan {
            command: PlanCommand::Init(a),
        } => &a.common,
        IncidentCommand::Plan {
            command: PlanCommand::Show(a),
        } => &a.common,
    };
    let settings = load(config, &common_overrides(common))?;
    let _logs = rampart::logging::init("warn");
    match command {
        IncidentCommand::Plan {
            command: PlanCommand::Init(a),
        } => {
            let path = rampart::incident::plan_init(&settings, a.force)?;
            println!(
                "Wrote the response plan template to {}.\nFill in every FILL IN, print it, and keep a copy off this server; administrators read it at GET /api/v1/admin/incident/plan.",
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        IncidentCommand::Plan {
            command: PlanCommand::Show(_),
        } => {
            let path = rampart::incident::plan_path(&settings);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "no plan at {}: write one with `rampart incident plan init`",
                    path.display()
                )
            })?;
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        command => with_services(&settings, command).await,
    }
}

async fn with_services(settings: &Settings, command: IncidentCommand) -> Result<ExitCode> {
    let svc = rampart::cli_services(settings).await?;
    let incidents = Incidents::new(svc.auth.clone(), svc.data.clone(), svc.audit_keys.clone());
    let result = async {
        match command {
            IncidentCommand::Lockdown(a) => {
                let order = LockdownOrder {
                    accounts: a.accounts,
                    reason: a.reason,
                    break_glass: a.break_glass,
                    reset_passwords: a.reset_passwords.unwrap_or_default(),
                    reenrol_mfa: a.reenrol_mfa.unwrap_or_default(),
                    dry_run: a.dry_run,
                };
                let report = incidents
                    .begin(&order, "cli", &cli_meta())
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                if !report.dry_run && !report.keys_rotated.is_empty() {
                    eprintln!("re-encrypting sensitive values under the new keys…");
                    let n = svc
                        .data
                        .reseal(&|c, done| eprintln!("  {c}: {done} record(s) re-encrypted"))
                        .await
                        .map_err(|e| {
                            anyhow::anyhow!("{e}; the lockdown holds: run `rampart keys rotate` to finish re-encrypting")
                        })?;
                    eprintln!("{n} record(s) re-encrypted");
                }
                if a.json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    print_report(&report);
                    if !report.dry_run {
                        println!("\nEvery node enforces it from its next request. Next: keep the evidence \
                                  (`rampart incident export --since …`), then `rampart incident lift` when it is over.");
                    }
                }
            }
            IncidentCommand::Lift(a) => {
                let lifted = incidents
                    .lift(a.id.as_deref(), "cli", &cli_meta())
                    .await
                    .map_err(|e| match e {
                        rampart_core::Error::NotFound => anyhow::anyhow!(
                            "no such incident is in force (see `rampart incident status`)"
                        ),
                        e => anyhow::anyhow!("{e}"),
                    })?;
                let back = match lifted.scope {
                    rampart_core::incident::Scope::Deployment => {
                        "sign-in, registration and administrative changes are back"
                    }
                    rampart_core::incident::Scope::Accounts => "those accounts can sign in again",
                };
                println!(
                    "Lifted {} ({}, began {}): {back}. Sessions and keys it ended stay ended.",
                    lifted.id,
                    lifted.scope.as_str(),
                    lifted.started_at.to_rfc3339()
                );
            }
            IncidentCommand::Status(a) => {
                let key = svc.audit_keys.verifier_key();
                let in_force = incidents.in_force().await?;
                if a.json {
                    let v: Vec<_> = in_force
                        .iter()
                        .map(|i| {
                            serde_json::json!({
                                "id": i.id, "scope": i.scope.as_str(), "reason": i.reason,
                                "started_at": i.started_at.to_rfc3339(), "started_by": i.started_by,
                                "accounts": i.accounts.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
                                "record_verified": rampart_core::incident::check_record(&i.record, &key).is_ok(),
                            })
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else if in_force.is_empty() {
                    println!("No incident is in force.");
                } else {
                    for i in &in_force {
                        let ok = match rampart_core::incident::check_record(&i.record, &key) {
                            Ok(_) => "record signed and checked".to_owned(),
                            Err(e) => format!("RECORD DOES NOT CHECK: {e}"),
                        };
                        println!(
                            "{}  {:<10} since {}  by {}  {}\n    {}",
                            i.id,
                            i.scope.as_str(),
                            i.started_at.to_rfc3339(),
                            i.started_by,
                            ok,
                            i.reason
                        );
                    }
                }
            }
            IncidentCommand::Export(a) => {
                let since = rfc3339("since", &a.since)?;
                let until = match &a.until {
                    Some(u) => rfc3339("until", u)?,
                    None => svc.auth.clock().now(),
                };
                let bar = TermProgress {
                    on: std::io::IsTerminal::is_terminal(&std::io::stderr()),
                };
                let out = rampart::incident::bundle::export(
                    settings, &svc, since, until, &a.out, &bar,
                )
                .await?;
                if bar.on {
                    eprintln!();
                }
                svc.auth
                    .record_security(
                        rampart_core::audit::Event::new(
                            svc.auth.clock().now(),
                            rampart_core::incident::actions::EXPORTED,
                            rampart_core::audit::Category::Process,
                            rampart_core::audit::SUCCESS,
                        )
                        .meta(&cli_meta())
                        .object(&out.dir.display().to_string())
                        .field("incident.events", out.events),
                    )
                    .await;
                println!(
                    "Wrote {}: {} event(s) ({} with inclusion proofs, the rest newer than their chain's last checkpoint), {} alert(s).\n\
                     Copy it and the audit public key (`rampart audit key`) off this server; check it with \
                     `rampart incident verify-bundle {} --key audit.pub`.",
                    out.dir.display(),
                    out.events,
                    out.proven,
                    out.alerts,
                    out.dir.display()
                );
            }
            IncidentCommand::VerifyBundle(_) | IncidentCommand::Plan { .. } => {
                unreachable!("answered without services")
            }
        }
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    }
    .await;
    // Reset codes and notices go out before the process ends.
    svc.auth.flush_notices().await;
    svc.close().await;
    result
}

fn verify_bundle(args: &VerifyBundleArgs) -> Result<ExitCode> {
    let key = public_key(args.key.as_deref())?;
    if !args.bundle.is_dir() {
        bail!("{} is not a bundle directory", args.bundle.display());
    }
    let bar = TermProgress {
        on: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    match rampart::incident::bundle::verify(&args.bundle, &key, &bar) {
        Ok(c) => {
            if bar.on {
                eprintln!();
            }
            println!(
                "OK: the bundle of {} to {} is as it was signed: {} file(s) match the manifest, {} event(s), \
                 {} inclusion proof(s) and {} incident record(s) check against the key.",
                c.manifest.since,
                c.manifest.until,
                c.manifest.files.len(),
                c.manifest.events,
                c.manifest.proven,
                c.records
            );
            if c.unproven > 0 {
                println!(
                    "NOTE: the newest {} event(s) came after their chain's last signed checkpoint: they have no \
                     inclusion proof, and rest on the manifest's signature alone.",
                    c.unproven
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if bar.on {
                eprintln!();
            }
            println!("NOT GOOD: {e:#}");
            Ok(ExitCode::from(3))
        }
    }
}
