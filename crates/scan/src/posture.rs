//! `scan self`: the posture of this deployment, from facts the binary
//! gathers ([`SelfFacts`]: settings, file metadata, certificate, database
//! rows). Pure apart from reading file metadata and the certificate.
//!
//! Severity follows exposure: what only matters once others can reach the
//! server (open registration, the development notifier, a self-signed
//! certificate, the master key beside the data) is information or a
//! warning on a loopback address and an error on a reachable one.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use time::OffsetDateTime;

use crate::report::{Finding, Severity, Skipped};
use crate::tls::cert;

/// Accounts and keys unused this long are findings.
pub const UNUSED_DAYS: i64 = 90;

/// A file or directory whose permissions matter.
#[derive(Debug, Clone)]
pub struct FileFact {
    /// `data directory`, `database`, `master key`, `TLS key`, …
    pub role: String,
    pub path: PathBuf,
    pub is_dir: bool,
    /// Secret: readable by its owner only.
    pub secret: bool,
}

#[derive(Debug, Clone)]
pub struct AdminFact {
    pub email: String,
    pub has_second_factor: bool,
    pub created_at_ms: i64,
    pub last_sign_in_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct ApiKeyFact {
    /// The id the admin API revokes it by.
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub last_used_ms: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct SelfFacts {
    /// The HTTPS address is reachable from other machines.
    pub production: bool,
    /// Settings named `danger_*` that are on.
    pub danger: Vec<String>,
    /// Protections switched off by settings (`guard.auth.inspect = "off"`,
    /// a rate of 0, …), each as the setting that does it.
    pub protections_off: Vec<String>,
    pub registration_open: bool,
    /// `[accounts] email_verification` in force: `required`,
    /// `before_data` or `optional`.
    pub email_verification: String,
    pub mfa_required_for_admins: bool,
    /// The password preset, and whether it is weaker than `default`.
    pub password_preset: String,
    pub password_preset_weaker: bool,
    pub trusted_proxies: Vec<String>,
    /// No address rule limits the admin routes.
    pub admin_open_to_all: bool,
    pub notifier_log: bool,
    pub log_level: String,
    pub files: Vec<FileFact>,
    pub data_dir: PathBuf,
    pub master_key: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    /// `[tls] acme` is set: the certificate comes from a CA, not the file.
    pub acme: Option<AcmeFacts>,
    /// Why the database was not read, when it was not (`admins` and
    /// `api_keys` are then `None`).
    pub unread_because: Option<String>,
    /// `None` when the database could not be read.
    pub admins: Option<Vec<AdminFact>>,
    pub api_keys: Option<Vec<ApiKeyFact>>,
    /// `serve` backs up on a schedule (`[backup] dir` and recipients or a
    /// passphrase are set).
    pub backups_scheduled: bool,
    /// When the newest backup that passed its restore check was checked
    /// (ms since the epoch): `None` when there is none, or when the
    /// database was not read (`admins` is then `None` too).
    pub last_verified_backup_ms: Option<i64>,
    /// Incident response: `None` when the database was not read.
    pub incident: Option<IncidentFacts>,
}

/// What `scan self` knows of the certificate obtained by ACME (ADR 0016).
#[derive(Debug, Clone, Default)]
pub struct AcmeFacts {
    pub directory: String,
    /// The names, comma-separated.
    pub names: String,
    /// The stored certificate (DER, leaf first); `None` when none was
    /// obtained yet, or the database was not read.
    pub chain: Option<Vec<Vec<u8>>>,
    /// When the stored certificate is renewed (ms).
    pub renew_at_ms: Option<i64>,
    /// Whether the database was read.
    pub read: bool,
}

/// What `scan self` knows of incident response (ADR 0014).
#[derive(Debug, Clone, Default)]
pub struct IncidentFacts {
    /// The deployment lockdown in force: its id and start (ms).
    pub lockdown: Option<(String, i64)>,
    /// Accounts shut out by account lockdowns in force.
    pub accounts_locked: u64,
    /// When the newest drill ended (ms), if any.
    pub last_drill_ms: Option<i64>,
    /// `[incident] drill_every_days` (0: no reminder).
    pub drill_every_days: u32,
    /// Days since the last drill (or, before the first, since the trail
    /// began) when that is the period or more: what `serve`'s reminder
    /// decides (`rampart::incident::drill_overdue`), not recomputed here.
    pub drill_overdue_days: Option<i64>,
    /// Whether the response plan file exists.
    pub plan_present: bool,
}

fn unread_because(f: &SelfFacts) -> String {
    f.unread_because
        .clone()
        .unwrap_or_else(|| "the database could not be read".to_owned())
}

/// Runs every posture check.
pub fn check(
    f: &SelfFacts,
    now: OffsetDateTime,
    out: &mut Vec<Finding>,
    passed: &mut Vec<String>,
    skipped: &mut Vec<Skipped>,
) {
    let exposed = |prod: Severity, dev: Severity| if f.production { prod } else { dev };

    // Settings.
    for name in &f.danger {
        out.push(Finding::new(
            "config.danger",
            Severity::Error,
            name,
            format!("{name} is on"),
            "Settings named danger_* switch a protection off; they exist for tests and emergencies.",
            format!("Remove {name} from the settings file and the environment."),
        ));
    }
    if f.danger.is_empty() {
        passed.push("no danger_* setting is on".to_owned());
    }
    for setting in &f.protections_off {
        out.push(Finding::new(
            "config.protection_off",
            exposed(Severity::Error, Severity::Warning),
            setting,
            format!("A protection of the guard is off: {setting}"),
            "Requests it would have refused (injection probes, password guessing, floods) now reach the handlers.",
            "Remove the setting to get the default back (see the README, \"The guard\").",
        ));
    }
    if f.protections_off.is_empty() {
        passed.push("the guard's inspection and rate limits are on".to_owned());
    }
    let verification = f.email_verification.as_str();
    if f.registration_open && verification == "optional" {
        out.push(Finding::new(
            "config.registration_open",
            exposed(Severity::Warning, Severity::Info),
            "registration",
            "Anyone can register, and email addresses are not verified (email_verification = \"optional\")",
            "Anyone who reaches the server can create accounts under any address: spam sign-ups, and accounts in other people's names.",
            "Set [accounts] email_verification = \"required\" (needs notifier = \"deliver\"), or registration = \"invite\" (administrators send invitations) or \"closed\" unless the public must sign up.",
        ));
    } else if f.registration_open {
        passed.push(format!(
            "registration is open, and addresses are verified (email_verification = \"{verification}\")"
        ));
    } else {
        passed.push(format!(
            "registration is by invitation or closed (email_verification = \"{verification}\")"
        ));
    }
    if f.mfa_required_for_admins {
        passed.push("administrators must use a second factor".to_owned());
    } else {
        out.push(Finding::new(
            "config.mfa_not_required_for_admins",
            Severity::Error,
            "mfa.required_for",
            "Administrators are not required to use a second factor",
            "One phished or guessed password gives away every account and every record.",
            "Set [mfa] required_for = [\"admin\"] (the default).",
        ));
    }
    if f.password_preset_weaker {
        out.push(Finding::new(
            "config.password_preset_weak",
            Severity::Warning,
            "password.preset",
            format!("The password preset {:?} is weaker than the default", f.password_preset),
            "Shorter or more guessable passwords fall sooner to guessing and to cracking of a stolen database.",
            "Set [password] preset = \"default\".",
        ));
    } else {
        passed.push(format!("password preset {}", f.password_preset));
    }
    for p in &f.trusted_proxies {
        if let Some(sev) = proxy_breadth(p) {
            out.push(Finding::new(
                "config.trusted_proxies_broad",
                sev,
                format!("guard.trusted_proxies {p}"),
                format!("Trusted proxy range {p} is very broad"),
                "Anyone inside it can claim any client address in X-Forwarded-For, escaping address blocks, rate limits and allow lists.",
                "List only your proxies' own addresses (e.g. 10.0.0.5/32).",
            ));
        }
    }
    if f.admin_open_to_all {
        if f.production {
            out.push(Finding::new(
                "config.admin_open",
                Severity::Warning,
                "guard.admin.allow",
                "The admin routes are reachable from every address",
                "Password guessing and exploits against the admin API can come from anywhere.",
                "Set [guard.admin] allow = [\"<your office or VPN range>\"].",
            ));
        }
    } else {
        passed.push("admin routes limited by address".to_owned());
    }
    if f.notifier_log {
        out.push(Finding::new(
            "config.notifier_log",
            exposed(Severity::Error, Severity::Info),
            "notifier",
            "Codes and security notices are written to outbox.log, not delivered",
            "Users never receive sign-in codes, unlock codes or alerts about their accounts.",
            "Set notifier = \"deliver\" with an [smtp] section (and [sms_webhook] for SMS).",
        ));
    }
    let level = f.log_level.to_ascii_lowercase();
    if level.contains("debug") || level.contains("trace") {
        out.push(Finding::new(
            "config.debug_logging",
            exposed(Severity::Warning, Severity::Info),
            "log.level",
            format!("Logging is at {}", f.log_level),
            "Debug logs of libraries may hold request details; they also grow fast and bury what matters.",
            "Set [log] level = \"info\".",
        ));
    }

    // Files. Secrets and the data directory must be private; public
    // files (the certificate) only must not be writable by others. The
    // server's user is taken to be the data directory's owner (a scan run
    // with sudo must not suggest handing the files to root).
    let owner = std::fs::metadata(&f.data_dir).map(|m| m.uid()).ok();
    for file in &f.files {
        let Ok(meta) = std::fs::metadata(&file.path) else {
            continue;
        };
        let mode = meta.mode() & 0o777;
        let target = format!("{} {}", file.role, file.path.display());
        let private = file.secret || file.is_dir;
        let loose = if private { mode & 0o077 } else { mode & 0o022 };
        if loose != 0 {
            out.push(Finding::new(
                "files.permissions",
                if private { Severity::Error } else { Severity::Warning },
                &target,
                if private {
                    format!("The {} is accessible to other users (mode {:o})", file.role, mode)
                } else {
                    format!("The {} can be changed by other users (mode {:o})", file.role, mode)
                },
                "Other accounts on the machine (a compromised service, a shared host) can read or change it.",
                format!(
                    "chmod {} {}",
                    match (file.is_dir, private) {
                        (true, _) => "700",
                        (false, true) => "600",
                        (false, false) => "644",
                    },
                    file.path.display()
                ),
            ));
        } else if private {
            passed.push(format!("{} is private (mode {:o})", file.role, mode));
        }
        if let Some(uid) = owner.filter(|u| *u != meta.uid()) {
            out.push(Finding::new(
                "files.owner",
                Severity::Warning,
                &target,
                format!(
                    "The {} is owned by uid {}, not by the data directory's owner (uid {uid})",
                    file.role,
                    meta.uid()
                ),
                "Whoever owns it can replace it: a swapped key or certificate defeats every other protection.",
                format!("chown {uid} {} (the user Rampart runs as)", file.path.display()),
            ));
        }
    }
    if let Some(key) = &f.master_key {
        let inside = match (key.canonicalize(), f.data_dir.canonicalize()) {
            (Ok(k), Ok(d)) => k.starts_with(d),
            _ => key.starts_with(&f.data_dir),
        };
        if inside {
            out.push(Finding::new(
                "files.master_key_in_data_dir",
                exposed(Severity::Error, Severity::Info),
                format!("master key {}", key.display()),
                "The master key is stored inside the data directory",
                "A copy of the data directory (a backup, a snapshot, a stolen disk) then holds both the encrypted data and the key that opens it.",
                "Move it out (master_key_file = \"/etc/rampart/master.key\", mode 600) or pass it in RAMPART_MASTER_KEY from a secret store; back it up separately.",
            ));
        } else {
            passed.push("master key kept outside the data directory".to_owned());
        }
    }

    // The certificate: obtained by ACME, or the file's.
    if let Some(acme) = &f.acme {
        let target = format!("ACME certificate for {}", acme.names);
        match (&acme.chain, acme.read) {
            (Some(chain), _) => {
                let roots = cert::roots(&[]);
                if let Some(info) = cert::analyse(chain, None, &roots, now) {
                    cert::findings(
                        &info,
                        &target,
                        cert::Context::Own {
                            production: f.production,
                        },
                        out,
                    );
                    passed.push(format!(
                        "certificate obtained by ACME from {}, valid for {} more days",
                        acme.directory, info.days_left
                    ));
                }
                if let Some(at) = acme.renew_at_ms {
                    let when = OffsetDateTime::from_unix_timestamp(at / 1000)
                        .ok()
                        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                        .unwrap_or_default();
                    if at <= now.unix_timestamp() * 1000 {
                        out.push(Finding::new(
                            "tls.acme_renewal_overdue",
                            Severity::Warning,
                            &target,
                            format!("The certificate was due for renewal at {when} and is not renewed yet"),
                            "Renewals are failing; the certificate keeps working until it expires, then every client refuses the connection.",
                            "Read the tls.certificate_issued events (rampart events --type tls.certificate_issued): check that every name resolves to this server and that port 443 (TLS-ALPN-01) or 80 (HTTP-01) reaches it.",
                        ));
                    } else {
                        passed.push(format!("next certificate renewal at {when}"));
                    }
                }
            }
            (None, true) => out.push(Finding::new(
                "tls.acme_pending",
                if f.production {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                &target,
                "No certificate was obtained by ACME yet; the generated self-signed one is served",
                "Clients cannot verify the server until the CA issues the certificate.",
                "Read the tls.certificate_issued events (rampart events --type tls.certificate_issued): check that every name resolves to this server and that port 443 (TLS-ALPN-01) or 80 (HTTP-01) reaches it.",
            )),
            (None, false) => skipped.push(Skipped {
                check: "the ACME certificate".to_owned(),
                reason: unread_because(f),
            }),
        }
    } else if let Some(path) = &f.tls_cert {
        match read_chain(path) {
            Some(chain) => {
                let roots = cert::roots(&[]);
                if let Some(info) = cert::analyse(&chain, None, &roots, now) {
                    let before = out.len();
                    cert::findings(
                        &info,
                        &format!("certificate {}", path.display()),
                        cert::Context::Own {
                            production: f.production,
                        },
                        out,
                    );
                    if out.len() == before {
                        passed.push(format!(
                            "certificate valid for {} more days",
                            info.days_left
                        ));
                    }
                }
            }
            None => out.push(Finding::new(
                "tls.cert_unreadable",
                Severity::Error,
                format!("certificate {}", path.display()),
                "The TLS certificate file cannot be read as PEM",
                "The server cannot serve HTTPS with it.",
                "Point tls_cert at a PEM file holding the certificate and its chain.",
            )),
        }
    }

    // Operations.
    let unread = unread_because(f);
    let now_ms = now.unix_timestamp() * 1000;
    let unused = |last: Option<i64>, created: i64| {
        let since = last.unwrap_or(created);
        (now_ms - since) / 86_400_000 >= UNUSED_DAYS
    };
    match &f.admins {
        Some(admins) => {
            for a in admins {
                if !a.has_second_factor {
                    out.push(Finding::new(
                        "ops.admin_without_mfa",
                        Severity::Error,
                        format!("administrator {}", a.email),
                        format!("Administrator {} has no second factor", a.email),
                        "A phished or guessed password is enough to take over the whole deployment.",
                        "Sign in as this administrator and enrol a passkey or authenticator app (POST /api/v1/me/mfa/webauthn or POST /api/v1/me/mfa/totp).",
                    ));
                }
                if unused(a.last_sign_in_ms, a.created_at_ms) {
                    out.push(Finding::new(
                        "ops.admin_unused",
                        Severity::Warning,
                        format!("administrator {}", a.email),
                        format!(
                            "Administrator {} has not signed in for {UNUSED_DAYS} days or more",
                            a.email
                        ),
                        "Dormant privileged accounts are the ones nobody notices being misused.",
                        "Remove the administrator role from accounts that no longer need it.",
                    ));
                }
            }
            if admins.iter().all(|a| a.has_second_factor) {
                passed.push(format!(
                    "{} administrator(s), all with a second factor",
                    admins.len()
                ));
            }
        }
        None => skipped.push(Skipped {
            check: "ops.admin".to_owned(),
            reason: unread.clone(),
        }),
    }
    match &f.api_keys {
        Some(keys) => {
            for k in keys {
                let t = format!("API key {} ({}…)", k.name, k.prefix);
                if k.expires_at_ms.is_none() {
                    out.push(Finding::new(
                        "ops.api_key_no_expiry",
                        Severity::Warning,
                        &t,
                        format!("API key {:?} never expires", k.name),
                        "A key that leaks (a repository, a log, a laptop) works forever.",
                        format!("Create a replacement with expires_in_days and revoke this one (DELETE /api/v1/admin/api-keys/{}).", k.id),
                    ));
                }
                if unused(k.last_used_ms, k.created_at_ms) {
                    out.push(Finding::new(
                        "ops.api_key_unused",
                        Severity::Warning,
                        &t,
                        format!(
                            "API key {:?} has not been used for {UNUSED_DAYS} days or more",
                            k.name
                        ),
                        "An unused key is only risk: nobody would notice its misuse.",
                        format!("Revoke it (DELETE /api/v1/admin/api-keys/{}).", k.id),
                    ));
                }
            }
        }
        None => skipped.push(Skipped {
            check: "ops.api_key".to_owned(),
            reason: unread.clone(),
        }),
    }
    backups(
        f,
        now,
        exposed(Severity::Warning, Severity::Info),
        out,
        passed,
        skipped,
        &unread,
    );
    match &f.incident {
        Some(i) => incident(i, now, out, passed),
        None => skipped.push(Skipped {
            check: "ops.incident".to_owned(),
            reason: unread.clone(),
        }),
    }
    for (check, what) in [
        (
            "ops.audit_chain",
            "audit chain verification: not part of this scan; `serve` verifies the trail on its own and alerts on a \
             break (rampart-audit-verify-failed), and `rampart audit verify` checks it whole",
        ),
        (
            "ops.critical_alerts",
            "open critical alerts: not part of this scan; see GET /api/v1/admin/alerts?status=open",
        ),
    ] {
        skipped.push(Skipped {
            check: check.to_owned(),
            reason: what.to_owned(),
        });
    }
}

/// Lockdowns in force, drills and the response plan.
fn incident(
    i: &IncidentFacts,
    now: OffsetDateTime,
    out: &mut Vec<Finding>,
    passed: &mut Vec<String>,
) {
    let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
    if let Some((id, since)) = &i.lockdown {
        out.push(Finding::new(
            "ops.lockdown",
            Severity::Warning,
            "incident",
            format!(
                "The deployment is locked down (incident {id}, for {} hours)",
                (now_ms - since).max(0) / 3_600_000
            ),
            "Only administrators can sign in and administrative changes are frozen until it is lifted.",
            "When the cause is found and fixed: `rampart incident lift` (or POST /api/v1/admin/incident/lift).",
        ));
    } else {
        passed.push("the deployment is not locked down".to_owned());
    }
    if i.accounts_locked > 0 {
        out.push(Finding::new(
            "ops.lockdown",
            Severity::Info,
            "incident",
            format!("{} account(s) are shut out by an account lockdown", i.accounts_locked),
            "Their owners cannot sign in until it is lifted.",
            "See `rampart incident status`; lift each with `rampart incident lift ID` when it is handled.",
        ));
    }
    if i.drill_every_days > 0 {
        match (i.drill_overdue_days, i.last_drill_ms) {
            (Some(days), _) => out.push(Finding::new(
                "ops.drill",
                Severity::Warning,
                "incident",
                format!("No attack drill for {days} days"),
                format!(
                    "Drills are due every {} days ([incident] drill_every_days): a rule turned off or a setting changed since may have opened a gap.",
                    i.drill_every_days
                ),
                "Run `rampart drill`.",
            )),
            (None, None) => out.push(Finding::new(
                "ops.drill",
                Severity::Info,
                "incident",
                "No attack drill has been run",
                "Nobody knows yet whether this deployment blocks, alerts on or misses a brute force, stuffing, spraying, injection or a stolen session.",
                "Run `rampart drill`: it attacks this deployment safely and scores what it did about each attack.",
            )),
            (None, Some(at)) => passed.push(format!(
                "the last attack drill ran {} days ago",
                (now_ms - at).max(0) / 86_400_000
            )),
        }
    }
    if i.plan_present {
        passed.push("a response plan is written (incident-plan.md)".to_owned());
    } else {
        out.push(Finding::new(
            "ops.incident_plan",
            Severity::Info,
            "incident",
            "No response plan",
            "When an attack comes, nobody has written down whom to call, what to do first, and what the law requires within 72 hours.",
            "Run `rampart incident plan init` and fill it in.",
        ));
    }
}

/// A backup older than this is a finding.
const BACKUP_STALE_MS: i64 = 2 * 86_400_000;

/// Backups: scheduled, and the newest one checked recently.
fn backups(
    f: &SelfFacts,
    now: OffsetDateTime,
    unscheduled: Severity,
    out: &mut Vec<Finding>,
    passed: &mut Vec<String>,
    skipped: &mut Vec<Skipped>,
    unread: &str,
) {
    if !f.backups_scheduled {
        out.push(Finding::new(
            "ops.backup",
            unscheduled,
            "backup",
            "No scheduled backups",
            "A failed disk, a deleted file or ransomware would take every account and record with it.",
            "Run `rampart backup keygen`, keep the identity off this server, and set [backup] dir (another disk) and \
             recipients: serve then backs up daily and restores every backup to check it.",
        ));
        return;
    }
    if f.admins.is_none() {
        skipped.push(Skipped {
            check: "ops.backup".to_owned(),
            reason: unread.to_owned(),
        });
        return;
    }
    let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
    match f.last_verified_backup_ms {
        None => out.push(Finding::new(
            "ops.backup",
            Severity::Warning,
            "backup",
            "No backup has passed its restore check yet",
            "Until one has, nobody knows that the data can be got back.",
            "Run `rampart backup create` then `rampart backup verify FILE`, or wait for the scheduled run and look at \
             GET /api/v1/admin/backups.",
        )),
        Some(at) if now_ms - at > BACKUP_STALE_MS => out.push(Finding::new(
            "ops.backup",
            Severity::Error,
            "backup",
            format!(
                "The newest verified backup is {} days old",
                (now_ms - at) / 86_400_000
            ),
            "Scheduled backups are failing or not running: everything since would be lost.",
            "See the last failure in GET /api/v1/admin/backups (and the rampart-backup-failed alerts).",
        )),
        Some(at) => passed.push(format!(
            "the newest backup passed its restore check {} hours ago",
            (now_ms - at).max(0) / 3_600_000
        )),
    }
}

/// How broad a trusted-proxy range is too broad: everything (error), or
/// wider than a /16 (IPv4) or /32 (IPv6) (warning).
fn proxy_breadth(net: &str) -> Option<Severity> {
    let (addr, len) = net.split_once('/').unwrap_or((net, ""));
    let v6 = addr.contains(':');
    let len: u8 = if len.is_empty() {
        if v6 {
            128
        } else {
            32
        }
    } else {
        len.parse().ok()?
    };
    match (v6, len) {
        (_, 0) => Some(Severity::Error),
        (false, l) if l < 16 => Some(Severity::Warning),
        (true, l) if l < 32 => Some(Severity::Warning),
        _ => None,
    }
}

/// The DER certificates of a PEM file.
pub fn read_chain(path: &std::path::Path) -> Option<Vec<Vec<u8>>> {
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<Vec<u8>> = rustls_pki_types::CertificateDer::pem_file_iter(path)
        .ok()?
        .filter_map(|c| c.ok())
        .map(|c| c.as_ref().to_vec())
        .collect();
    (!certs.is_empty()).then_some(certs)
}

/// `danger_*` keys set to anything but `false` in a settings table,
/// with their dotted path.
pub fn danger_keys(table: &toml::Table) -> Vec<String> {
    fn walk(prefix: &str, t: &toml::Table, out: &mut Vec<String>) {
        for (k, v) in t {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(inner) => walk(&path, inner, out),
                toml::Value::Boolean(false) => {}
                _ if k.starts_with("danger_") => out.push(path),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk("", table, &mut out);
    out
}

#[cfg(test)]
mod tests;
