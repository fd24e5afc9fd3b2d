//! `rampart accounts …`: administrators' view of accounts from the shell
//! (ADR 0015), for when nobody can sign in to the API, or for scripts.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use rampart_core::lifecycle::{AccountQuery, AccountStatus};
use rampart_core::{Account, Error};

use crate::{account_for_email, cli_meta, common_overrides, load, CommonFlags};

pub const HELP: &str =
    "Safe while the server runs: a disabled account's sessions and API keys stop \
on every node at its next request. Every change is recorded in the audit trail (account.disabled, \
account.enabled) as made by the command line.";

#[derive(Subcommand)]
pub enum AccountsCommand {
    /// List accounts, optionally filtered (address prefix, role, status).
    List(ListArgs),
    /// One account: state, second factors, sessions and recent sign-ins.
    Show(OneArgs),
    /// Stop an account: no sign-in, and its sessions and API keys stop now.
    /// The last administrator in force cannot be disabled.
    Disable(OneArgs),
    /// Let a disabled account sign in again.
    Enable(OneArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Status {
    Active,
    Disabled,
    Unverified,
    Deleting,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    common: CommonFlags,
    /// Only addresses starting with this
    #[arg(long)]
    email: Option<String>,
    /// Only this role (admin or member)
    #[arg(long)]
    role: Option<String>,
    /// Only accounts in this state
    #[arg(long, value_enum)]
    status: Option<Status>,
    /// At most this many (1 to 200)
    #[arg(long, default_value_t = 200)]
    limit: u32,
}

#[derive(Args)]
pub struct OneArgs {
    #[command(flatten)]
    common: CommonFlags,
    /// The account's email address
    #[arg(long)]
    email: String,
}

fn state(a: &Account) -> String {
    let l = &a.lifecycle;
    let mut s = Vec::new();
    if let Some(t) = l.disabled_at {
        s.push(format!("disabled since {}", t.to_rfc3339()));
    }
    if let Some(t) = l.delete_after {
        s.push(format!("deleted after {}", t.to_rfc3339()));
    }
    if l.email_verified_at.is_none() {
        s.push("unverified".to_owned());
    }
    if s.is_empty() {
        "active".to_owned()
    } else {
        s.join(", ")
    }
}

pub async fn run(config: Option<PathBuf>, command: AccountsCommand) -> Result<()> {
    let common = match &command {
        AccountsCommand::List(a) => &a.common,
        AccountsCommand::Show(a) | AccountsCommand::Disable(a) | AccountsCommand::Enable(a) => {
            &a.common
        }
    };
    let settings = load(config, &common_overrides(common))?;
    let _logs = rampart::logging::init("warn");
    let svc = rampart::cli_services(&settings).await?;
    let result = one(&svc, command).await;
    svc.auth.flush_notices().await;
    svc.close().await;
    result
}

async fn one(svc: &rampart::Services, command: AccountsCommand) -> Result<()> {
    let auth = &svc.auth;
    match command {
        AccountsCommand::List(a) => {
            if a.limit == 0 || a.limit > rampart_core::lifecycle::MAX_PAGE {
                bail!("--limit is 1 to {}", rampart_core::lifecycle::MAX_PAGE);
            }
            let role = match a.role.as_deref() {
                None => None,
                Some(r) => Some(
                    rampart_core::Role::parse(r)
                        .ok_or_else(|| anyhow::anyhow!("--role is admin or member"))?,
                ),
            };
            let q = AccountQuery {
                email_prefix: a.email.map(|e| e.to_lowercase()),
                role,
                status: a.status.map(|s| match s {
                    Status::Active => AccountStatus::Active,
                    Status::Disabled => AccountStatus::Disabled,
                    Status::Unverified => AccountStatus::Unverified,
                    Status::Deleting => AccountStatus::Deleting,
                }),
                limit: a.limit,
                ..AccountQuery::default()
            };
            let (rows, more) = auth.search_accounts(&q).await?;
            if rows.is_empty() {
                println!("No accounts match.");
            }
            for a in &rows {
                println!(
                    "{}  {}  {}  mfa: {}  last sign-in: {}  ({})",
                    a.email,
                    a.role.as_str(),
                    a.id.as_str(),
                    if a.has_mfa { "yes" } else { "no" },
                    a.lifecycle
                        .last_sign_in_at
                        .map_or("never".to_owned(), |t| t.to_rfc3339()),
                    state(a)
                );
            }
            if more.is_some() {
                println!("(more: narrow with --email, --role or --status, or raise --limit)");
            }
            Ok(())
        }
        AccountsCommand::Show(a) => {
            let account = account_for_email(auth, &a.email).await?;
            let d = svc.data.account_detail(&account.id).await?;
            let a = &d.account;
            println!("{} ({})", a.email, a.id.as_str());
            println!("  role:          {}", a.role.as_str());
            if !d.roles.is_empty() {
                println!("  custom roles:  {}", d.roles.join(", "));
            }
            println!("  created:       {}", a.created_at.to_rfc3339());
            println!("  state:         {}", state(a));
            let factors: Vec<String> = d
                .factors
                .iter()
                .filter(|f| f.is_confirmed())
                .map(|f| format!("{} ({})", f.kind.as_str(), f.name))
                .collect();
            println!(
                "  factors:       {}",
                if factors.is_empty() {
                    "none".to_owned()
                } else {
                    factors.join(", ")
                }
            );
            println!("  sessions:      {}", d.sessions.len());
            for s in &d.sessions {
                println!(
                    "    {}  from {}  last seen {}",
                    s.id.as_str(),
                    s.ip.as_deref().unwrap_or("?"),
                    s.last_seen_at.to_rfc3339()
                );
            }
            println!("  recent sign-ins:");
            if d.sign_ins.is_empty() {
                println!("    none");
            }
            for e in &d.sign_ins {
                println!(
                    "    {}  {}  {}  {}",
                    e.at.to_rfc3339(),
                    e.action,
                    e.reason.as_deref().unwrap_or("-"),
                    e.source_ip.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
        AccountsCommand::Disable(a) => {
            set_disabled(svc, &account_for_email(auth, &a.email).await?, true).await
        }
        AccountsCommand::Enable(a) => {
            set_disabled(svc, &account_for_email(auth, &a.email).await?, false).await
        }
    }
}

async fn set_disabled(svc: &rampart::Services, account: &Account, disable: bool) -> Result<()> {
    match svc
        .auth
        .set_disabled(&account.id, disable, "command line", &cli_meta())
        .await
    {
        Ok(()) if disable => {
            println!(
                "{} is disabled: it cannot sign in, and its sessions and API keys stopped on every node. \
                 `rampart accounts enable --email {}` undoes it.",
                account.email, account.email
            );
            Ok(())
        }
        Ok(()) => {
            println!("{} is enabled: it may sign in again.", account.email);
            Ok(())
        }
        Err(Error::LastAdmin) => bail!(
            "{} is the last administrator in force; disabling it would leave nobody to administer \
             Rampart. Create another administrator first (`rampart admin create`).",
            account.email
        ),
        Err(e) => bail!("{e}"),
    }
}
