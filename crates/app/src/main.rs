//! `rampart`: a secure back end for small businesses, in one binary.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

mod cmd;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use rampart::{Deps, Overrides, Settings};
use rampart_crypto::SecretString;

#[derive(Parser)]
#[command(
    name = "rampart",
    version,
    about = "A secure back end for small businesses: accounts, sessions and security events over HTTPS."
)]
struct Cli {
    /// Settings file (TOML). Default: ./rampart.toml when it exists.
    #[arg(long, global = true, env = "RAMPART_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone, Default)]
struct CommonFlags {
    /// Directory for the database, TLS files and master key [default: ./rampart-data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Database URL: sqlite://FILE or postgres://… [default: SQLite in the data dir]
    #[arg(long)]
    database_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTPS server (creates ./rampart-data on first start).
    Serve(ServeArgs),
    /// Manage administrators.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// List and look at accounts; disable and enable them (safe while the
    /// server runs).
    #[command(after_help = cmd::accounts::HELP)]
    Accounts {
        #[command(subcommand)]
        command: cmd::accounts::AccountsCommand,
    },
    /// Check the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print the OpenAPI document of the HTTP API.
    Openapi,
    /// Define data collections from a schema file (safe while the server runs).
    Collections {
        #[command(subcommand)]
        command: CollectionsCommand,
    },
    /// Rotate and inspect the encryption keys (safe while the server runs).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Block addresses for a while, list and lift blocks (safe while the
    /// server runs: every node picks a change up within a second).
    Block {
        #[command(subcommand)]
        command: BlockCommand,
    },
    /// Scan this deployment, any HTTPS server, or a Rust project's
    /// dependencies, and report what to fix.
    #[command(after_help = SCAN_HELP)]
    Scan {
        #[command(subcommand)]
        command: ScanCommand,
    },
    /// Check the tamper-evident event trail, and print its public key
    /// (safe while the server runs).
    #[command(after_help = AUDIT_HELP)]
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// List the detection rules in force, and try a rule on exported
    /// events before turning it on.
    #[command(after_help = RULES_HELP)]
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Encrypted backups, each one restored and checked: keygen, create,
    /// verify, restore (create and verify are safe while the server runs).
    #[command(after_help = BACKUP_HELP)]
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Breach response: lock down the deployment or some accounts, lift
    /// it, write and check a signed forensic bundle, the response plan.
    #[command(after_help = cmd::incident::HELP)]
    Incident {
        #[command(subcommand)]
        command: cmd::incident::IncidentCommand,
    },
    /// Run safe, simulated attacks against this deployment and score what
    /// it did about each: blocked, alerted, logged or missed.
    #[command(after_help = cmd::drill::HELP)]
    Drill(cmd::drill::DrillArgs),
    /// Install Rampart as a service: a hardened systemd unit.
    #[command(after_help = cmd::install::HELP)]
    Install {
        #[command(subcommand)]
        command: cmd::install::InstallCommand,
    },
}

const BACKUP_HELP: &str = "A backup is sealed with age to the [backup] recipients (and to Rampart's own \
check key, kept in the database under the master key, so the server can restore and check every backup \
without your identity), or to [backup] passphrase_file. The master key is never inside a backup: keep \
the age identity, the master key and the backups in three different places.\n\
Exit status: 0 when the backup is good; 3 when one made by `create` or checked by `verify` did not pass \
its check; 1 when the command could not run (a `restore` refused a backup that did not pass, changing \
nothing).";

#[derive(Subcommand)]
enum BackupCommand {
    /// Print a new age identity (keep it off this server) and its
    /// recipient (put it in [backup] recipients).
    Keygen(BackupKeygenArgs),
    /// Take a consistent snapshot while the server serves, seal it, write
    /// it to --to or [backup] dir (never into the data directory), restore
    /// it into scratch space and check it, and only then upload it to
    /// [backup.s3]; exit status 3 when it did not pass.
    Create(BackupCreateArgs),
    /// Decrypt a backup into private scratch space, restore it there, and
    /// check it whole (nothing touches the live data); exit status 3 when
    /// it is not good.
    Verify(BackupOpenArgs),
    /// Check a backup, then put it in place: a stopped or new data
    /// directory, or an empty PostgreSQL database (--database-url).
    Restore(BackupRestoreArgs),
}

#[derive(Args)]
struct BackupKeygenArgs {
    /// Write the identity to this file (0600, must not exist) instead of
    /// standard output
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct BackupCreateArgs {
    #[command(flatten)]
    common: CommonFlags,
    /// Directory to write to [default: [backup] dir]
    #[arg(long)]
    to: Option<PathBuf>,
}

#[derive(Args)]
struct BackupOpenArgs {
    #[command(flatten)]
    common: CommonFlags,
    /// The backup file
    file: PathBuf,
    /// An age identity file (AGE-SECRET-KEY-1…) of one of the recipients
    /// [default: Rampart's own check key, from this data directory]
    #[arg(long)]
    identity: Option<PathBuf>,
    /// A file holding the passphrase the backup was sealed to [default:
    /// [backup] passphrase_file]
    #[arg(long, conflicts_with = "identity")]
    passphrase_file: Option<PathBuf>,
}

#[derive(Args)]
struct BackupRestoreArgs {
    #[command(flatten)]
    open: BackupOpenArgs,
    /// Replace the database of a stopped data directory (it is kept
    /// beside the restored one)
    #[arg(long)]
    force: bool,
}

const RULES_HELP: &str = "Rules are Sigma YAML over the trail's ECS events (as `rampart audit export` \
writes them). Rampart's own rules are built in; yours go in <data_dir>/rules/*.yml ([detect] rules_dir) \
and are re-read while the server runs. Tune or turn off a rule with [detect.rules.<id>] in the \
configuration (enabled, threshold, timespan, respond, block_for_secs).";

#[derive(Subcommand)]
enum RulesCommand {
    /// Every rule: id, kind, threshold and window, responses, and whether
    /// it is on.
    List(RulesListArgs),
    /// Replays an `audit export` file (ECS JSON lines) through the rules
    /// and prints every time RULE fires, with its evidence.
    Test(RulesTestArgs),
}

/// The rules commands read settings and files only, never the database.
#[derive(Args)]
struct RulesFlags {
    /// Data directory whose rules/ holds your rule files [default: ./rampart-data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl RulesFlags {
    fn common(&self) -> CommonFlags {
        CommonFlags {
            data_dir: self.data_dir.clone(),
            ..CommonFlags::default()
        }
    }
}

#[derive(Args)]
struct RulesListArgs {
    #[command(flatten)]
    flags: RulesFlags,
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
#[command(
    after_help = "Changes nothing: it only reads the file and the rules. Exit status 0 \
whether or not the rule fired; 1 when the rules or the file cannot be read."
)]
struct RulesTestArgs {
    #[command(flatten)]
    flags: RulesFlags,
    /// The rule's id (or name), as `rampart rules list` shows it
    rule: String,
    /// Events, as `rampart audit export --format ecs` wrote them (one JSON document a line)
    #[arg(long, value_name = "FILE")]
    events: PathBuf,
    /// A rule file to try before it goes into the rules directory
    #[arg(long = "rules", value_name = "FILE")]
    extra: Option<PathBuf>,
}

const AUDIT_HELP: &str = "Every event is linked to the one before with a key only the master key \
unlocks, and every ten seconds a checkpoint of all events is signed and appended to the witness \
directory ([audit] witness_dir, by default <data_dir>-witness). Keep a copy of the witness where \
whoever can write the database cannot.\n\
Exit status of verify: 0 when the trail is intact, 3 when it was changed, 1 when it could not be checked; \
of check-proof: 0 when the event is proven, 3 when it is not.\n\
verify records that it ran in the trail (chain <node>-cli) and, like every command here but check-proof, opens the database \
for writing: to examine a seized database, run it on a copy.";

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every event's link and tree hashes, every checkpoint's
    /// signature and root, the sequence for gaps, and the witness; name the
    /// first break.
    Verify(AuditVerifyArgs),
    /// Print the public key that checks checkpoints and proofs (C2SP
    /// signed-note verifier key); also in <data_dir>/audit.pub.
    Key(AuditKeyArgs),
    /// Write events to a file: ECS JSON lines, or RFC 5424 syslog lines
    /// (for a SIEM's file input, or an investigation).
    Export(AuditExportArgs),
    /// Print the proof (JSON) that one event is in the newest signed
    /// checkpoint: give it to anyone who holds the public key.
    Proof(AuditProofArgs),
    /// Check a proof offline, with only the public key: no database, no
    /// secret.
    CheckProof(AuditCheckProofArgs),
}

#[derive(Args)]
struct AuditProofArgs {
    #[command(flatten)]
    common: CommonFlags,
    /// The event's sequence number in its chain (`seq` in the API)
    seq: u64,
    /// The chain [default: this node's, from <data_dir>/audit-node]
    #[arg(long)]
    node: Option<String>,
}

#[derive(Args)]
struct AuditCheckProofArgs {
    /// The proof file `rampart audit proof` wrote (`-` for standard input)
    proof: PathBuf,
    /// The public key: a file holding it, or the key itself (`rampart-audit+…`)
    /// [default: ./rampart-data/audit.pub]
    #[arg(long)]
    key: Option<String>,
}

#[derive(Args)]
struct AuditExportArgs {
    #[command(flatten)]
    common: CommonFlags,
    /// RFC 3339: events at or after [default: the first]
    #[arg(long)]
    since: Option<String>,
    /// RFC 3339: events before [default: no end]
    #[arg(long)]
    until: Option<String>,
    /// `ecs` (JSON lines) or `syslog` (RFC 5424)
    #[arg(long, default_value = "ecs", value_parser = ["ecs", "syslog"])]
    format: String,
    /// The file to write (created; never overwritten) [default: standard output]
    #[arg(long, short)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct AuditVerifyArgs {
    #[command(flatten)]
    common: CommonFlags,
    /// A witness file or directory to compare with [default: the
    /// configured witness directory, when it exists]
    #[arg(long)]
    witness: Option<PathBuf>,
}

#[derive(Args)]
struct AuditKeyArgs {
    #[command(flatten)]
    common: CommonFlags,
}

const SCAN_HELP: &str = "Exit status: 0 when no finding is at or above --fail-on, 3 when one is, 1 when the scan could not run.\n\
`rampart serve` also scans on its own ([scan] settings): itself daily, [scan] urls weekly; \
the reports are at GET /api/v1/admin/scans.";

#[derive(Subcommand)]
enum ScanCommand {
    /// This deployment: settings, file permissions and ownership, the
    /// certificate, administrators, API keys, and Rampart's own
    /// dependencies against the RustSec advisory database.
    #[command(name = "self")]
    SelfScan(ScanSelfArgs),
    /// Any HTTPS server: protocol versions, cipher suites and certificate
    /// (graded by the SSL Labs method), security headers and cookies
    /// (scored by the MDN HTTP Observatory method), the redirect from plain
    /// HTTP, and a polite check of well-known sensitive paths.
    Url(ScanUrlArgs),
    /// A Rust project's Cargo.lock against the RustSec advisory database.
    Deps(ScanDepsArgs),
}

#[derive(Args)]
struct ReportFlags {
    /// terminal, json, sarif or html
    #[arg(long, default_value = "terminal", value_parser = parse_format)]
    format: rampart_scan::render::Format,
    /// Write the report to FILE instead of standard output
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Exit with status 3 when a finding is at or above this severity:
    /// info, warning, error, critical, or never
    #[arg(long, default_value = "error", value_parser = parse_fail_on)]
    fail_on: FailOn,
}

#[derive(Clone, Copy)]
struct FailOn(Option<rampart_scan::Severity>);

fn parse_format(s: &str) -> std::result::Result<rampart_scan::render::Format, String> {
    rampart_scan::render::Format::parse(s)
        .ok_or_else(|| format!("{s:?} is not a format: use terminal, json, sarif or html"))
}

fn parse_fail_on(s: &str) -> std::result::Result<FailOn, String> {
    if s == "never" {
        return Ok(FailOn(None));
    }
    rampart_scan::Severity::parse(s)
        .map(|v| FailOn(Some(v)))
        .ok_or_else(|| {
            format!("{s:?} is not a severity: use info, warning, error, critical or never")
        })
}

#[derive(Args)]
struct ScanSelfArgs {
    #[command(flatten)]
    common: CommonFlags,
    #[command(flatten)]
    report: ReportFlags,
    /// A RustSec advisory-db checkout [default: the snapshot built into rampart]
    #[arg(long)]
    advisory_db: Option<PathBuf>,
}

#[derive(Args)]
struct ScanUrlArgs {
    /// https://host[:port][/path]
    url: String,
    #[command(flatten)]
    report: ReportFlags,
    /// Also trust these CA certificates (PEM), e.g. an internal CA or a
    /// self-signed certificate you issued
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Port of the plain-HTTP redirect check
    #[arg(long, default_value_t = 80)]
    http_port: u16,
    /// Skip the check of well-known sensitive paths
    #[arg(long)]
    no_exposure: bool,
    /// Seconds to wait for each connection
    #[arg(long, default_value_t = 5)]
    timeout_secs: u64,
}

#[derive(Args)]
struct ScanDepsArgs {
    /// The lock file to check
    #[arg(long, default_value = "Cargo.lock")]
    lockfile: PathBuf,
    #[command(flatten)]
    report: ReportFlags,
    /// A RustSec advisory-db checkout [default: the snapshot built into rampart]
    #[arg(long)]
    advisory_db: Option<PathBuf>,
}

#[derive(Subcommand)]
enum BlockCommand {
    /// Block an address or CIDR range (IPv4 or IPv6).
    Add(BlockAddArgs),
    /// List the blocks in force.
    List(BlockListArgs),
    /// Lift a block before it expires.
    Remove(BlockRemoveArgs),
}

#[derive(Args)]
struct BlockAddArgs {
    #[command(flatten)]
    common: CommonFlags,
    /// An address (203.0.113.7, 2001:db8::7) or range (203.0.113.0/24)
    network: String,
    /// How long, e.g. 30m, 12h, 7d [default: 15m, doubling for each further
    /// block of the same network within 30 days, up to 1d]
    #[arg(long = "for", value_parser = parse_length)]
    length: Option<std::time::Duration>,
    /// Why, for the next administrator
    #[arg(long, default_value = "")]
    reason: String,
}

#[derive(Args)]
struct BlockListArgs {
    #[command(flatten)]
    common: CommonFlags,
}

#[derive(Args)]
struct BlockRemoveArgs {
    #[command(flatten)]
    common: CommonFlags,
    /// The block id shown by `rampart block list` (blk_…)
    id: String,
}

/// `90s`, `30m`, `12h`, `7d`.
fn parse_length(s: &str) -> std::result::Result<std::time::Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}`: give a number and a unit, e.g. 30m, 12h, 7d"))?;
    let unit = match unit {
        "s" => 1,
        "m" | "" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{s}`: the unit is s, m, h or d")),
    };
    let secs = n
        .checked_mul(unit)
        .ok_or_else(|| format!("`{s}` is too long"))?;
    Ok(std::time::Duration::from_secs(secs))
}

#[derive(Subcommand)]
enum CollectionsCommand {
    /// Create or update every collection in a TOML schema file. A change
    /// that stored records violate is refused with their count; the other
    /// collections in the file are still applied.
    Apply(CollectionsApplyArgs),
}

#[derive(Args)]
struct CollectionsApplyArgs {
    #[command(flatten)]
    common: CommonFlags,
    /// The schema file: [collections.<name>] tables with `fields` and `access`
    file: PathBuf,
    /// Only check the file; change nothing
    #[arg(long)]
    check: bool,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Give every collection a new data key and re-encrypt its sensitive
    /// values in batches, with progress. Reads keep working throughout; an
    /// interrupted run resumes when run again (or when the server starts).
    Rotate(KeysRotateArgs),
    /// Show every data key: its scope, age and how many records it protects.
    Status(KeysStatusArgs),
}

#[derive(Args)]
struct KeysRotateArgs {
    #[command(flatten)]
    common: CommonFlags,
    /// Rotate the master key instead: write a new key file and re-wrap
    /// every data key with it, in one transaction (values are untouched)
    #[arg(long)]
    master: bool,
}

#[derive(Args)]
struct KeysStatusArgs {
    #[command(flatten)]
    common: CommonFlags,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    common: CommonFlags,
    /// HTTPS listen address [default: 127.0.0.1:8443]
    #[arg(long)]
    listen: Option<String>,
    /// Plain-HTTP redirect listener, or `off` [default: 127.0.0.1:8080]
    #[arg(long)]
    http_listen: Option<String>,
    /// TLS certificate chain (PEM); reloaded when the file changes or on SIGHUP
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Refuse to start when key or data files are readable by other users
    #[arg(long)]
    strict: bool,
    /// Read a master passphrase (16+ characters, one line) from standard
    /// input and derive the master key from it with Argon2id, in place of
    /// the key file (also: RAMPART_MASTER_PASSPHRASE)
    #[arg(long)]
    master_passphrase_stdin: bool,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an administrator account.
    Create(AdminCreateArgs),
    /// Lift a brute-force delay or lock from an account, for when no
    /// administrator can log in (safe while the server runs).
    Unlock(AdminUnlockArgs),
    /// Remove every second factor and recovery code of an account that
    /// lost them all, and end its sessions (recorded; the owner is emailed).
    /// For when no other administrator can do it (safe while the server runs).
    ResetMfa(AdminUnlockArgs),
}

#[derive(Args)]
struct AdminUnlockArgs {
    #[command(flatten)]
    common: CommonFlags,
    /// The account's email address
    #[arg(long)]
    email: String,
}

#[derive(Args)]
struct AdminCreateArgs {
    #[command(flatten)]
    common: CommonFlags,
    /// The administrator's email address
    #[arg(long)]
    email: String,
    /// Read the password from standard input (one line; the line ending is not part of it)
    #[arg(long, required = true)]
    password_stdin: bool,
    /// Optional display name
    #[arg(long)]
    display_name: Option<String>,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate settings and the data directory without starting.
    Check(ConfigCheckArgs),
}

#[derive(Args)]
struct ConfigCheckArgs {
    #[command(flatten)]
    common: CommonFlags,
    /// Treat permission warnings as errors
    #[arg(long)]
    strict: bool,
}

fn load(config: Option<PathBuf>, overrides: &Overrides) -> Result<Settings> {
    let file = config.or_else(|| {
        let default = PathBuf::from("rampart.toml");
        default.exists().then_some(default)
    });
    Settings::load(file.as_deref(), std::env::vars(), overrides)
}

fn common_overrides(c: &CommonFlags) -> Overrides {
    Overrides {
        data_dir: c.data_dir.clone(),
        database_url: c.database_url.clone(),
        ..Overrides::default()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // SAFETY: umask only sets this process's file-creation mask; it has no
    // memory-safety preconditions. Everything Rampart creates (database,
    // WAL, keys, certificates) is then private to its owner.
    unsafe {
        libc::umask(0o077);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let Cli { config, command } = cli;
    match command {
        Command::Scan { command } => scan(config, command).await,
        Command::Audit { command } => audit(config, command).await,
        Command::Backup { command } => backup(config, command).await,
        Command::Incident { command } => cmd::incident::run(config, command).await,
        Command::Drill(args) => cmd::drill::run(config, args).await,
        command => run(Cli { config, command })
            .await
            .map(|()| ExitCode::SUCCESS),
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        // Handled by `dispatch`, which owns the exit status.
        Command::Scan { .. }
        | Command::Audit { .. }
        | Command::Backup { .. }
        | Command::Incident { .. }
        | Command::Drill(_) => Ok(()),
        Command::Accounts { command } => cmd::accounts::run(cli.config, command).await,
        Command::Install { command } => cmd::install::run(cli.config, command).await,
        Command::Serve(args) => {
            if args.master_passphrase_stdin {
                if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                    eprint!("Master passphrase: ");
                }
                rampart::set_master_passphrase(read_secret_line()?);
            }
            let overrides = Overrides {
                listen: args.listen,
                http_listen: args.http_listen,
                tls_cert: args.tls_cert,
                tls_key: args.tls_key,
                strict: args.strict,
                ..common_overrides(&args.common)
            };
            let settings = load(cli.config, &overrides)?;
            let _logs = rampart::logging::init(&settings.log.level);
            serve(settings).await
        }
        Command::Admin {
            command: AdminCommand::Create(args),
        } => {
            let settings = load(cli.config, &common_overrides(&args.common))?;
            let _logs = rampart::logging::init("warn");
            admin_create(settings, args).await
        }
        Command::Admin {
            command: AdminCommand::Unlock(args),
        } => {
            let settings = load(cli.config, &common_overrides(&args.common))?;
            let _logs = rampart::logging::init("warn");
            admin_unlock(settings, args).await
        }
        Command::Admin {
            command: AdminCommand::ResetMfa(args),
        } => {
            let settings = load(cli.config, &common_overrides(&args.common))?;
            let _logs = rampart::logging::init("warn");
            admin_reset_mfa(settings, args).await
        }
        Command::Config {
            command: ConfigCommand::Check(args),
        } => {
            let overrides = Overrides {
                strict: args.strict,
                ..common_overrides(&args.common)
            };
            let settings = load(cli.config, &overrides)?;
            config_check(&settings)
        }
        Command::Openapi => {
            print!("{}", rampart_http::openapi::document());
            Ok(())
        }
        Command::Collections {
            command: CollectionsCommand::Apply(args),
        } => {
            let settings = load(cli.config, &common_overrides(&args.common))?;
            let _logs = rampart::logging::init("warn");
            collections_apply(settings, args).await
        }
        Command::Keys {
            command: KeysCommand::Rotate(args),
        } => {
            let settings = load(cli.config, &common_overrides(&args.common))?;
            let _logs = rampart::logging::init("warn");
            if args.master {
                keys_rotate_master(settings).await
            } else {
                keys_rotate(settings).await
            }
        }
        Command::Keys {
            command: KeysCommand::Status(args),
        } => {
            let settings = load(cli.config, &common_overrides(&args.common))?;
            let _logs = rampart::logging::init("warn");
            keys_status(settings).await
        }
        Command::Rules { command } => {
            let flags = match &command {
                RulesCommand::List(a) => &a.flags,
                RulesCommand::Test(a) => &a.flags,
            };
            let settings = load(cli.config, &common_overrides(&flags.common()))?;
            match command {
                RulesCommand::List(a) => rampart::detect::list_command(&settings, a.json),
                RulesCommand::Test(a) => {
                    rampart::detect::test_command(&settings, &a.rule, &a.events, a.extra.as_deref())
                }
            }
        }
        Command::Block { command } => {
            let common = match &command {
                BlockCommand::Add(a) => &a.common,
                BlockCommand::List(a) => &a.common,
                BlockCommand::Remove(a) => &a.common,
            };
            let settings = load(cli.config, &common_overrides(common))?;
            let _logs = rampart::logging::init("warn");
            block(settings, command).await
        }
    }
}

async fn audit(config: Option<PathBuf>, command: AuditCommand) -> Result<ExitCode> {
    match command {
        AuditCommand::Verify(args) => {
            let settings = load(config, &common_overrides(&args.common))?;
            let _logs = rampart::logging::init("warn");
            let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let bar = TermProgress { on: tty };
            let started = std::time::Instant::now();
            let verified =
                rampart::audit::verify_command(&settings, args.witness, &|done, total| {
                    rampart_scan::Progress::step(&bar, "events verified", done, total)
                })
                .await?;
            if tty {
                eprintln!();
            }
            print!("{}", verified.render());
            eprintln!("took {:.1} s", started.elapsed().as_secs_f64());
            Ok(if verified.report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        AuditCommand::Export(args) => {
            let settings = load(config, &common_overrides(&args.common))?;
            let _logs = rampart::logging::init("warn");
            let time =
                |name: &str, v: &Option<String>| v.as_deref().map(|s| rfc3339(name, s)).transpose();
            let (since, until) = (time("since", &args.since)?, time("until", &args.until)?);
            let format = if args.format == "syslog" {
                rampart::audit::ExportFormat::Syslog
            } else {
                rampart::audit::ExportFormat::Ecs
            };
            let mut out: Box<dyn std::io::Write + Send> = match &args.out {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(p)
                        .with_context(|| {
                            format!("cannot create {} (it must not exist yet)", p.display())
                        })?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout())),
            };
            let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let bar = TermProgress { on: tty };
            let n = rampart::audit::export(
                &settings,
                since,
                until,
                format,
                out.as_mut(),
                &|done, total| rampart_scan::Progress::step(&bar, "events read", done, total),
            )
            .await?;
            if tty {
                eprintln!();
            }
            eprintln!(
                "{n} events written{}",
                args.out
                    .as_ref()
                    .map(|p| format!(" to {}", p.display()))
                    .unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Proof(args) => {
            let settings = load(config, &common_overrides(&args.common))?;
            let _logs = rampart::logging::init("warn");
            let node = match args.node {
                Some(n) => n,
                None => rampart::audit::node_name(&settings, &rampart_crypto::OsEntropy)?,
            };
            let store = rampart::open_store(&settings).await?;
            let proof = rampart_core::audit::proof::prove(store.as_ref(), &node, args.seq).await;
            store.close().await;
            match proof.map_err(|e| anyhow::anyhow!("{e}"))? {
                Some(p) => {
                    println!("{}", serde_json::to_string_pretty(&p)?);
                    Ok(ExitCode::SUCCESS)
                }
                None => anyhow::bail!(
                    "chain {node} has no event {} covered by a checkpoint yet (checkpoints are signed every ten seconds while events flow, and at every stop)",
                    args.seq
                ),
            }
        }
        AuditCommand::CheckProof(args) => {
            let text = if args.proof.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&args.proof)
                    .with_context(|| format!("cannot read {}", args.proof.display()))?
            };
            let proof: rampart_core::audit::proof::Proof = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("not a proof from `rampart audit proof`: {e}"))?;
            let key = public_key(args.key.as_deref())?;
            match rampart_core::audit::proof::check(&proof, key.trim()) {
                Ok(p) => {
                    println!(
                        "OK: event {} of chain {} ({} {} at {}) is in the checkpoint of {} events{}",
                        p.event.seq,
                        p.event.node,
                        p.event.action,
                        p.event.outcome,
                        p.event.at.to_rfc3339(),
                        p.size,
                        p.signed_at
                            .map(|t| format!(" signed {}", t.to_rfc3339()))
                            .unwrap_or_default()
                    );
                    println!("{}", rampart_core::audit::format::ecs_line(&p.event));
                    Ok(ExitCode::SUCCESS)
                }
                Err(why) => {
                    println!("NOT proven: {why}");
                    Ok(ExitCode::from(3))
                }
            }
        }
        AuditCommand::Key(args) => {
            let settings = load(config, &common_overrides(&args.common))?;
            let _logs = rampart::logging::init("warn");
            let svc = rampart::cli_services(&settings).await?;
            let keys = rampart::audit::keys(
                svc.data.keys(),
                svc.store.as_ref(),
                svc.auth.clock().as_ref(),
            )
            .await;
            svc.close().await;
            println!("{}", keys?.verifier_key());
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn backup(config: Option<PathBuf>, command: BackupCommand) -> Result<ExitCode> {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = TermProgress { on: tty };
    let end_bar = || {
        if tty {
            eprintln!();
        }
    };
    match command {
        BackupCommand::Keygen(args) => {
            let (identity, recipient) = rampart::backup::keygen();
            let text = format!(
                "# A Rampart backup identity: it opens every backup sealed to the recipient below.\n\
                 # Keep it off the server, apart from the master key.\n\
                 # recipient: {recipient}\n{}\n",
                identity.expose_secret()
            );
            let text = SecretString::new(text);
            match &args.out {
                Some(path) => {
                    rampart::datadir::write_private(path, text.expose_secret().as_bytes())?;
                    eprintln!("identity written to {}", path.display());
                }
                None => print!("{}", text.expose_secret()),
            }
            eprintln!("recipient (for [backup] recipients): {recipient}");
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Create(args) => {
            let settings = load(config, &common_overrides(&args.common))?;
            let _logs = rampart::logging::init("warn");
            let started = std::time::Instant::now();
            let svc = rampart::cli_services(&settings).await?;
            let taken = rampart::backup::take(
                &settings,
                &svc,
                args.to.as_deref(),
                &rampart_crypto::OsEntropy,
                &bar,
            )
            .await;
            end_bar();
            svc.close().await;
            let rampart::backup::Taken {
                created: c,
                checked,
                uploaded,
            } = taken?;
            println!(
                "backup written: {} ({} bytes, {} rows in {} tables, taken {})",
                c.path.display(),
                c.bytes,
                c.manifest.tables.values().sum::<u64>(),
                c.manifest.tables.len(),
                c.manifest.created_at
            );
            match checked {
                Ok(k) => println!(
                    "restored into scratch space and checked: {} audit events verified",
                    k.events
                ),
                Err(e) => {
                    eprintln!(
                        "error: the backup did not pass its check, and was not uploaded: {e:#}"
                    );
                    return Ok(ExitCode::from(3));
                }
            }
            match uploaded {
                Some(Ok(Some(u))) => println!(
                    "uploaded to the bucket as {}{}",
                    u.key,
                    u.locked_until
                        .map(|t| format!(", locked until {}", t.to_rfc3339()))
                        .unwrap_or_default()
                ),
                Some(Err(e)) => {
                    return Err(e.context(format!(
                        "the backup is written and checked ({}) but was not uploaded",
                        c.path.display()
                    )))
                }
                Some(Ok(None)) | None => {}
            }
            eprintln!("took {:.1} s", started.elapsed().as_secs_f64());
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Verify(args) => {
            let settings = load(config, &common_overrides(&args.common))?;
            let _logs = rampart::logging::init("warn");
            // The deployment's services, once: Rampart's own backup key,
            // and the trail the check is recorded in.
            let svc = if rampart::backup::database_exists(&settings) {
                Some(rampart::cli_services(&settings).await?)
            } else {
                None
            };
            let checked = async {
                let unseal = rampart::backup::unseal(
                    &settings,
                    args.identity.as_deref(),
                    args.passphrase_file.as_deref(),
                    svc.as_ref(),
                )
                .await?;
                Ok::<_, anyhow::Error>(
                    rampart::backup::verify(&settings, svc.as_ref(), &args.file, &unseal, &bar)
                        .await,
                )
            }
            .await;
            if let Some(svc) = &svc {
                svc.close().await;
            }
            end_bar();
            let checked = checked?;
            match checked {
                Ok(c) => {
                    print!("{}", c.render(&args.file));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("NOT good: {e:#}");
                    Ok(ExitCode::from(3))
                }
            }
        }
        BackupCommand::Restore(args) => {
            let settings = load(config, &common_overrides(&args.open.common))?;
            let _logs = rampart::logging::init("warn");
            // The services of the database about to be replaced, only for
            // Rampart's own backup key, and closed before it is replaced.
            let own_key = args.open.identity.is_none()
                && args.open.passphrase_file.is_none()
                && settings.backup.passphrase.is_none()
                && rampart::backup::database_exists(&settings);
            let svc = if own_key {
                Some(rampart::cli_services(&settings).await?)
            } else {
                None
            };
            let unseal = rampart::backup::unseal(
                &settings,
                args.open.identity.as_deref(),
                args.open.passphrase_file.as_deref(),
                svc.as_ref(),
            )
            .await;
            if let Some(svc) = &svc {
                svc.close().await;
            }
            let unseal = unseal?;
            let now = rampart_core::Clock::now(&rampart_core::SystemClock);
            let restored = rampart::backup::restore(
                &settings,
                &args.open.file,
                &unseal,
                args.force,
                now,
                &bar,
            )
            .await;
            end_bar();
            let r = restored?;
            print!("{}", r.checked.render(&args.open.file));
            println!(
                "restored into {}; recovery point {}",
                if settings.is_sqlite() {
                    settings.data_dir.display().to_string()
                } else {
                    "the PostgreSQL database".to_owned()
                },
                r.checked.manifest.created_at
            );
            if let Some(old) = r.kept {
                println!("the database it replaced is kept as {}", old.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A progress bar on standard error, drawn only on a terminal.
struct TermProgress {
    on: bool,
}

impl rampart_scan::Progress for TermProgress {
    fn step(&self, what: &str, done: u64, total: u64) {
        if !self.on {
            return;
        }
        let width = 30;
        let filled = (done.min(total) * width).checked_div(total).unwrap_or(0) as usize;
        let what: String = what.chars().take(40).collect();
        eprint!(
            "\r\x1b[2K[{}{}] {done}/{total} {what}",
            "=".repeat(filled),
            " ".repeat(width as usize - filled)
        );
    }
}

async fn scan(config: Option<PathBuf>, command: ScanCommand) -> Result<ExitCode> {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let progress = TermProgress { on: tty };
    let now = rampart_core::Clock::now(&rampart_core::SystemClock);
    let (report, flags) = match command {
        ScanCommand::SelfScan(args) => {
            let settings = load(config, &common_overrides(&args.common))?;
            let _logs = rampart::logging::init("warn");
            let db = rampart::scan::advisory_db(args.advisory_db.as_deref())?;
            // The database as it is: never created, never migrated.
            let store = rampart::scan::open_for_scan(&settings).await;
            let report = rampart::scan::self_report(
                &settings,
                store.as_deref().map_err(String::as_str),
                &db,
                now,
            )
            .await;
            if let Ok(s) = store {
                s.close().await;
            }
            (report, args.report)
        }
        ScanCommand::Url(args) => {
            let mut opts = rampart_scan::url::UrlOptions {
                http_port: args.http_port,
                exposure: !args.no_exposure,
                timeout: std::time::Duration::from_secs(args.timeout_secs.max(1)),
                ..Default::default()
            };
            if let Some(ca) = &args.ca_file {
                opts.ca = rampart_scan::url::ca_file(ca)?;
            }
            let report =
                rampart_scan::url::scan(&args.url, &opts, rampart::scan::to_offset(now), &progress)
                    .await?;
            if tty {
                eprint!("\r\x1b[2K");
            }
            (report, args.report)
        }
        ScanCommand::Deps(args) => {
            let db = rampart::scan::advisory_db(args.advisory_db.as_deref())?;
            (
                rampart::scan::deps_report(&args.lockfile, &db, now)?,
                args.report,
            )
        }
    };
    let colour = flags.output.is_none()
        && flags.format == rampart_scan::render::Format::Terminal
        && std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none();
    let text = rampart_scan::render::render(&report, flags.format, colour);
    match &flags.output {
        Some(path) => {
            std::fs::write(path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "Report written to {} ({} findings: {} critical, {} error, {} warning, {} info)",
                path.display(),
                report.findings.len(),
                report.count(rampart_scan::Severity::Critical),
                report.count(rampart_scan::Severity::Error),
                report.count(rampart_scan::Severity::Warning),
                report.count(rampart_scan::Severity::Info),
            );
        }
        None => print!("{text}"),
    }
    Ok(match flags.fail_on.0 {
        Some(level) if report.fails(level) => ExitCode::from(3),
        _ => ExitCode::SUCCESS,
    })
}

async fn block(settings: Settings, command: BlockCommand) -> Result<()> {
    use rampart_core::events::{EventKind, Outcome};
    let svc = rampart::cli_services(&settings).await?;
    let rampart::Services { store, auth, .. } = svc.clone();
    let clock = auth.clock().clone();
    let meta = cli_meta();
    let failed = |e: &dyn std::fmt::Display| anyhow::anyhow!("{e}");
    let result = async {
        match command {
            BlockCommand::Add(a) => {
                let b = rampart_http::guard::add_block(
                    store.as_ref(),
                    clock.as_ref(),
                    &rampart_crypto::OsEntropy,
                    &settings.guard,
                    &a.network,
                    a.length,
                    &a.reason,
                    "cli",
                )
                .await
                .map_err(|e| failed(&e))?;
                let summary = b.summary();
                auth.record_event(
                    EventKind::BlockAdded,
                    Outcome::Success,
                    Some(&summary),
                    None,
                    &meta,
                )
                .await;
                println!("blocked {summary} ({}, offence {})", b.id, b.offence);
                println!("every running node refuses it within a second");
            }
            BlockCommand::List(_) => {
                let blocks = store
                    .active_blocks(clock.now(), 10_000)
                    .await
                    .map_err(|e| failed(&e))?;
                if blocks.is_empty() {
                    println!("no blocks in force");
                    return Ok(());
                }
                println!(
                    "{:<28} {:<24} {:<22} {:<20} reason",
                    "id", "network", "until", "source"
                );
                for b in blocks {
                    println!(
                        "{:<28} {:<24} {:<22} {:<20} {}",
                        b.id,
                        b.network,
                        b.expires_at.to_rfc3339(),
                        b.source,
                        b.reason
                    );
                }
            }
            BlockCommand::Remove(a) => {
                if !store
                    .lift_block(&a.id, clock.now())
                    .await
                    .map_err(|e| failed(&e))?
                {
                    anyhow::bail!("no block {} is in force (see `rampart block list`)", a.id);
                }
                auth.record_event(
                    EventKind::BlockRemoved,
                    Outcome::Success,
                    Some(&a.id),
                    None,
                    &meta,
                )
                .await;
                println!("lifted {}", a.id);
            }
        }
        Ok(())
    }
    .await;
    svc.close().await;
    result
}

/// Where a command's own events say they come from.
fn cli_meta() -> rampart_core::RequestMeta {
    rampart_core::RequestMeta {
        user_agent: Some("rampart-cli".to_owned()),
        ..Default::default()
    }
}

/// `--name`'s RFC 3339 time.
fn rfc3339(name: &str, s: &str) -> Result<rampart_core::Timestamp> {
    rampart_core::Timestamp::parse_rfc3339(s).ok_or_else(|| {
        anyhow::anyhow!("--{name} {s:?} is not an RFC 3339 time (e.g. 2026-01-31T00:00:00Z)")
    })
}

/// The audit public key from `--key`: the key itself (`rampart-audit+…`),
/// or a file holding it [default: ./rampart-data/audit.pub].
fn public_key(arg: Option<&str>) -> Result<String> {
    let text = match arg {
        Some(k) if k.starts_with("rampart-audit+") => k.to_owned(),
        Some(f) => {
            std::fs::read_to_string(f).with_context(|| format!("cannot read the key file {f}"))?
        }
        None => std::fs::read_to_string("rampart-data/audit.pub").context(
            "give the public key with --key (a file, or the key printed by `rampart audit key`)",
        )?,
    };
    Ok(text.trim().to_owned())
}

/// The schema file of `rampart collections apply`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFile {
    collections: std::collections::BTreeMap<String, rampart_core::data::CollectionSchema>,
}

/// One line from standard input, without its line ending; not echoed when
/// typed at a terminal.
fn read_secret_line() -> Result<SecretString> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    // SAFETY: termios calls on our own standard input, with a zeroed
    // struct that tcgetattr fills before it is read.
    let saved = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if tty && libc::tcgetattr(0, &mut t) == 0 {
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            libc::tcsetattr(0, libc::TCSANOW, &t);
            Some(saved)
        } else {
            None
        }
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(t) = saved {
        // SAFETY: restores the settings read above.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &t);
        }
        eprintln!();
    }
    read.context("cannot read the passphrase from standard input")?;
    let trimmed = line.trim_end_matches(['\n', '\r']).to_owned();
    zeroize::Zeroize::zeroize(&mut line);
    Ok(SecretString::new(trimmed))
}

async fn collections_apply(settings: Settings, args: CollectionsApplyArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let file: SchemaFile = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", args.file.display(), e.message()))?;
    let mut bad = 0;
    for (name, schema) in &file.collections {
        for p in schema.check() {
            bad += 1;
            let at = if p.field.is_empty() {
                String::new()
            } else {
                format!(" field `{}`:", p.field)
            };
            eprintln!("{name}:{at} {} ({})", p.message, p.code);
        }
    }
    if bad > 0 {
        bail!(
            "{} has {bad} problem(s); nothing was applied",
            args.file.display()
        );
    }
    if args.check {
        println!(
            "{}: {} collection(s), all valid.",
            args.file.display(),
            file.collections.len()
        );
        return Ok(());
    }
    let svc = rampart::cli_services(&settings).await?;
    let rampart::Services { data, .. } = svc.clone();
    let meta = cli_meta();
    // Collections that others reference go first.
    let mut pending: Vec<_> = file.collections.into_iter().collect();
    let mut failed = 0;
    let mut resealing = 0;
    while !pending.is_empty() {
        let names: Vec<String> = pending.iter().map(|(n, _)| n.clone()).collect();
        let ready = pending
            .iter()
            .position(|(n, s)| {
                s.references()
                    .iter()
                    .all(|r| *r == n || !names.iter().any(|x| x == r))
            })
            .unwrap_or(0);
        let (name, schema) = pending.remove(ready);
        let exists = data
            .store()
            .collection(&name)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .is_some();
        let result = if exists {
            data.update_collection(&name, schema, None, &meta)
                .await
                .map(|c| {
                    resealing += c.resealing;
                    format!("{name}: updated (revision {})", c.collection.rev)
                })
        } else {
            data.create_collection(&name, schema, None, &meta)
                .await
                .map(|_| format!("{name}: created"))
        };
        match result {
            Ok(line) => println!("{line}"),
            Err(e) => {
                failed += 1;
                eprintln!("{name}: refused: {}", describe(&e));
            }
        }
    }
    if resealing > 0 {
        eprintln!("re-encrypting {resealing} record(s)…");
        let n = data
            .reseal(&|c, done| eprintln!("  {c}: {done} record(s) re-encrypted"))
            .await;
        if let Err(e) = n {
            eprintln!("re-encryption stopped: {e}; it resumes when the server starts");
        }
    }
    data.flush_events().await;
    svc.close().await;
    if failed > 0 {
        bail!("{failed} collection(s) were not applied");
    }
    Ok(())
}

/// A domain error as a sentence, with the details a terminal user needs.
fn describe(e: &rampart_core::Error) -> String {
    match e {
        rampart_core::Error::InvalidSchema(p) => p
            .iter()
            .map(|p| format!("{} ({})", p.message, p.code))
            .collect::<Vec<_>>()
            .join("; "),
        e => e.to_string(),
    }
}

async fn keys_rotate(settings: Settings) -> Result<()> {
    let svc = rampart::cli_services(&settings).await?;
    let rampart::Services { data, .. } = svc.clone();
    let result = async {
        let rotated = data.rotate_data_keys().await?;
        for (c, k) in &rotated {
            println!("{c}: new data key {k}");
        }
        eprintln!("re-encrypting sensitive values…");
        let n = data
            .reseal(&|c, done| eprintln!("  {c}: {done} record(s) re-encrypted"))
            .await?;
        Ok::<_, rampart_core::Error>((rotated.len(), n))
    }
    .await;
    data.flush_events().await;
    svc.close().await;
    let (keys, records) =
        result.map_err(|e| anyhow::anyhow!("{e}; run the command again to resume"))?;
    println!("Rotated {keys} data key(s); re-encrypted {records} record(s). Old keys that protect nothing are retired.");
    Ok(())
}

async fn keys_rotate_master(settings: Settings) -> Result<()> {
    if !rampart::master_from_file() {
        bail!(
            "the master key comes from {} or {}: `keys rotate --master` writes a new key file, so run it with \
             the key in a file (master.key or master_key_file)",
            rampart::MASTER_KEY_ENV,
            rampart::MASTER_PASSPHRASE_ENV
        );
    }
    let path = rampart::layout(&settings).master_key;
    let svc = rampart::cli_services(&settings).await?;
    let rampart::Services { data, .. } = svc.clone();
    let next = path.with_extension("key.next");
    let result = async {
        let entropy = rampart_crypto::OsEntropy;
        let _ = std::fs::remove_file(&next);
        rampart::datadir::ensure_master_key(&next, &entropy)?;
        let new = rampart::datadir::read_master_key(&next)?;
        let n = data
            .keys()
            .rewrap_all(&new)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        std::fs::rename(&next, &path)
            .with_context(|| format!("cannot move {} to {}", next.display(), path.display()))?;
        Ok::<_, anyhow::Error>(n)
    }
    .await;
    svc.close().await;
    let n = result?;
    println!(
        "New master key written to {}; {n} data key(s) re-wrapped with it. Back it up now, and copy it to every node.",
        path.display()
    );
    Ok(())
}

async fn keys_status(settings: Settings) -> Result<()> {
    let svc = rampart::cli_services(&settings).await?;
    let rampart::Services { data, auth, .. } = svc.clone();
    let keys = rampart_http::data::status(&data).await;
    let now = auth.clock().now();
    svc.close().await;
    let keys = keys.map_err(|e| anyhow::anyhow!("{}", e.problem.detail))?;
    println!(
        "{:<14} {:<28} {:>10} {:>9}  state",
        "key id", "scope", "age (days)", "records"
    );
    for k in keys {
        let created = rampart_core::Timestamp::parse_rfc3339(&k.created_at).unwrap_or(now);
        let days = (now.millis() - created.millis()) / 86_400_000;
        let state = if k.retired_at.is_some() {
            "retired"
        } else {
            "active"
        };
        println!(
            "{:<14} {:<28} {:>10} {:>9}  {state}",
            k.id, k.scope, days, k.records
        );
    }
    Ok(())
}

async fn serve(settings: Settings) -> Result<()> {
    // Listening for signals from the start: a SIGTERM that arrives while
    // the banner is printed still means a clean shutdown.
    let signals = Signals::listen();
    let running = rampart::start(&settings, Deps::default()).await?;
    let l = &running.layout;
    let abs = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    eprintln!("Rampart {} is serving.", env!("CARGO_PKG_VERSION"));
    eprintln!("  HTTPS:        https://{}/api/v1/", running.https_addr);
    eprintln!(
        "  Console:      https://{}/console/ (administrators), /account/ (everyone)",
        running.https_addr
    );
    if let Some(a) = running.http_addr {
        eprintln!("  HTTP:         http://{a}/ (redirects to HTTPS only)");
    }
    if let Some(a) = running.metrics_addr {
        eprintln!("  Metrics:      http://{a}/metrics (Prometheus)");
    }
    eprintln!("  Data:         {}", abs(&l.dir).display());
    eprintln!(
        "  Audit trail:  chain {}, witness {} (`rampart audit verify`)",
        running.audit.node(),
        abs(&rampart::audit::witness_dir(&settings)).display()
    );
    if settings.is_sqlite() {
        eprintln!(
            "  Database:     {}",
            abs(&l.dir.join("rampart.db")).display()
        );
    } else {
        eprintln!("  Database:     PostgreSQL (from database_url)");
    }
    eprintln!(
        "  Certificate:  {}{}",
        abs(&l.tls_cert).display(),
        if l.generated_cert {
            " (self-signed, generated)"
        } else {
            ""
        }
    );
    eprintln!("  TLS key:      {}", abs(&l.tls_key).display());
    eprintln!("  Master key:   {}", abs(&l.master_key).display());
    if running.created.master_key {
        eprintln!();
        eprintln!(
            "WARNING: a new master key was created. Back up {} separately from the data:",
            abs(&l.master_key).display()
        );
        eprintln!("         without it, encrypted data and backups cannot be read; with it and the data, anyone can.");
    }
    for w in &running.warnings {
        eprintln!("WARNING: {w}");
        tracing::warn!(warning = %w, "startup warning");
    }
    if let Some(outbox) = &running.outbox {
        eprintln!(
            "WARNING: notifier = \"log\" (development): sign-in codes and security notices are written to {} and NOT delivered.",
            abs(outbox).display()
        );
        eprintln!("         For production set notifier = \"deliver\" with an [smtp] section, and [sms_webhook] for SMS codes.");
    }
    if let Some(token) = &running.setup_token {
        eprintln!();
        eprintln!("No administrator exists yet. Create the first one within 1 hour: open this link in a browser");
        eprintln!(
            "  https://{}/setup#token={}",
            running.https_addr,
            token.expose_secret()
        );
        eprintln!("  or with curl:");
        eprintln!(
            "  curl --cacert {} -X POST https://{}/api/v1/setup -H 'content-type: application/json' \\",
            abs(&l.tls_cert).display(),
            running.https_addr
        );
        eprintln!(
            "       -d '{{\"token\":\"{}\",\"email\":\"you@example.com\",\"password\":\"…\"}}'",
            token.expose_secret()
        );
        eprintln!("  or: rampart admin create --email you@example.com --password-stdin");
    }
    tracing::info!(https = %running.https_addr, "rampart started");
    signals.wait(&running).await;
    eprintln!("Shutting down: finishing in-flight requests…");
    tracing::info!("shutdown requested");
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM and SIGINT stop the server; SIGHUP reloads the certificate.
struct Signals {
    streams: Option<(
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
    )>,
}

impl Signals {
    fn listen() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let streams = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(t), Ok(i), Ok(h)) => Some((t, i, h)),
            _ => None,
        };
        Self { streams }
    }

    async fn wait(self, running: &rampart::Running) {
        let Some((mut term, mut int, mut hup)) = self.streams else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => return,
                _ = int.recv() => return,
                _ = hup.recv() => running.reload_tls(),
            }
        }
    }
}

async fn admin_create(settings: Settings, args: AdminCreateArgs) -> Result<()> {
    let mut input = String::new();
    std::io::stdin()
        .take(4096)
        .read_to_string(&mut input)
        .context("cannot read the password from standard input")?;
    // Only the line ending is removed; the password itself is never trimmed.
    let line = input
        .strip_suffix("\r\n")
        .or_else(|| input.strip_suffix('\n'))
        .unwrap_or(&input);
    if line.contains('\n') {
        bail!("give the password as a single line on standard input");
    }
    let password = SecretString::new(line.to_owned());
    zeroize::Zeroize::zeroize(&mut input);
    let svc = rampart::cli_services(&settings).await?;
    let rampart::Services { auth, .. } = svc.clone();
    let result = auth
        .create_admin(&args.email, &password, args.display_name)
        .await;
    svc.close().await;
    match result {
        Ok(account) => {
            println!(
                "Administrator {} created (id {}).",
                account.email, account.id
            );
            Ok(())
        }
        Err(rampart_core::Error::WeakPassword(r)) => {
            let mut msg = String::from("the password does not meet the policy:");
            for v in r.violations {
                msg.push_str(&format!("\n  - {} ({})", v.message, v.code));
            }
            for s in r.suggestions {
                msg.push_str(&format!("\n  hint: {s}"));
            }
            bail!(msg)
        }
        Err(e) => bail!("{e}"),
    }
}

/// The account with this address, for the command line: a missing one is
/// said in words.
async fn account_for_email(
    auth: &rampart_core::AuthService,
    email: &str,
) -> Result<rampart_core::Account> {
    match auth.account_by_email(email).await {
        Ok(a) => Ok(a),
        Err(rampart_core::Error::NotFound | rampart_core::Error::InvalidEmail) => {
            bail!("no account has the email address {email:?}")
        }
        Err(e) => bail!("{e}"),
    }
}

async fn admin_unlock(settings: Settings, args: AdminUnlockArgs) -> Result<()> {
    let svc = rampart::cli_services(&settings).await?;
    let result = async {
        let account = account_for_email(&svc.auth, &args.email).await?;
        svc.auth
            .unlock(&account.id, "command line", &Default::default())
            .await?;
        anyhow::Ok(account)
    }
    .await;
    svc.close().await;
    println!(
        "Account {} unlocked: its failed-login count and any delay or lock are cleared.",
        result?.email
    );
    Ok(())
}

async fn admin_reset_mfa(settings: Settings, args: AdminUnlockArgs) -> Result<()> {
    let svc = rampart::cli_services(&settings).await?;
    let rampart::Services { auth, .. } = svc.clone();
    let meta = cli_meta();
    let result = async {
        let account = account_for_email(&auth, &args.email).await?;
        auth.reset_mfa(&account.id, "cli", &meta).await?;
        anyhow::Ok(account)
    }
    .await;
    auth.flush_notices().await;
    svc.close().await;
    println!(
        "Second factors of {} reset: every factor and recovery code removed, every session ended. \
         The owner was notified by email; they sign in with their password and set up a factor again.",
        result?.email
    );
    Ok(())
}

fn config_check(settings: &Settings) -> Result<()> {
    settings.detect.check(&settings.data_dir)?;
    println!("Settings: OK");
    println!("  data_dir     {}", settings.data_dir.display());
    println!("  listen       {}", settings.listen);
    println!("  http_listen  {}", settings.http_listen);
    println!(
        "  database     {}",
        if settings.is_sqlite() {
            "SQLite (in the data dir unless database_url says otherwise)"
        } else {
            "PostgreSQL"
        }
    );
    println!("  registration {:?}", settings.registration);
    println!("  password     {:?} preset", settings.password.preset);
    let names = |v: &[rampart_core::mfa::Method]| {
        v.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
    };
    println!(
        "  mfa          required for {:?}; methods: {}",
        settings.mfa.required_for,
        names(&settings.mfa.methods)
    );
    match settings.notifier_mode() {
        rampart::config::NotifierMode::Log => println!(
            "  notifier     log: codes and notices are written to {}, NOT delivered (development only)",
            settings.data_dir.join(rampart::OUTBOX_FILE).display()
        ),
        rampart::config::NotifierMode::Deliver => println!(
            "  notifier     deliver: email via {}, SMS {}",
            settings.smtp.as_ref().map_or("?", |s| s.host.as_str()),
            if settings.sms_webhook.is_some() { "via the webhook" } else { "unavailable (no [sms_webhook])" }
        ),
    }
    if settings.data_dir.exists() {
        println!("Data directory: present");
    } else {
        println!("Data directory: absent (created on first `rampart serve`)");
    }
    if let (Some(c), Some(k)) = (&settings.tls_cert, &settings.tls_key) {
        rampart_http::tls::CertStore::open(c, k).context("TLS certificate")?;
        println!("TLS certificate: loads");
    }
    let problems = rampart::permission_problems(settings);
    for p in &problems {
        eprintln!("WARNING: {p}");
    }
    if settings.strict && !problems.is_empty() {
        bail!("{} permission problem(s) (--strict)", problems.len());
    }
    println!("Configuration check passed.");
    Ok(())
}
