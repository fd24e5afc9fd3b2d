//! Exposure: a bounded list of well-known sensitive paths (version-control
//! metadata, environment files, backups and dumps, diagnostic pages, admin
//! panels, directory listings), fetched politely: one request at a time,
//! at most [`PATHS`]`.len() + 1` requests, a pause between them, and a stop
//! after [`MAX_ERRORS_IN_A_ROW`] errors, 429s or 5xx in a row.
//!
//! A path counts only when its body carries the content's own signature
//! (`[core]` in a git config, `KEY=value` lines in an env file, a zip
//! header …), and never when it equals the answer to a random path that
//! cannot exist (servers that answer 200 to everything).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::report::{Finding, Progress, Severity, Skipped};

pub const MAX_ERRORS_IN_A_ROW: u32 = 5;
/// Only this much of each body is read.
pub const MAX_BODY: usize = 64 * 1024;

/// A sensitive path the server serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exposed {
    pub path: String,
    pub what: String,
    pub status: u16,
}

#[derive(Clone, Copy)]
enum Sig {
    Contains(&'static [&'static str]),
    EnvLines,
    Prefix(&'static [u8]),
    /// Answers 200 with a login form or the product's name.
    Panel(&'static [&'static str]),
    Listing,
}

struct Probe {
    path: &'static str,
    what: &'static str,
    severity: Severity,
    sig: Sig,
}

macro_rules! probe {
    ($path:expr, $what:expr, $sev:ident, $sig:expr) => {
        Probe {
            path: $path,
            what: $what,
            severity: Severity::$sev,
            sig: $sig,
        }
    };
}

const PATHS: &[Probe] = &[
    probe!(
        "/.git/config",
        "Git repository metadata",
        Critical,
        Sig::Contains(&["[core]", "repositoryformatversion"])
    ),
    probe!(
        "/.git/HEAD",
        "Git repository metadata",
        Critical,
        Sig::Contains(&["ref: refs/"])
    ),
    probe!(
        "/.svn/entries",
        "Subversion metadata",
        Critical,
        Sig::Contains(&["dir\n", "svn:"])
    ),
    probe!(
        "/.hg/hgrc",
        "Mercurial metadata",
        Critical,
        Sig::Contains(&["[paths]", "[ui]"])
    ),
    probe!(
        "/.env",
        "environment file (secrets)",
        Critical,
        Sig::EnvLines
    ),
    probe!(
        "/.env.local",
        "environment file (secrets)",
        Critical,
        Sig::EnvLines
    ),
    probe!(
        "/.env.production",
        "environment file (secrets)",
        Critical,
        Sig::EnvLines
    ),
    probe!(
        "/.aws/credentials",
        "cloud credentials",
        Critical,
        Sig::Contains(&["aws_access_key_id"])
    ),
    probe!(
        "/.htpasswd",
        "password file",
        Critical,
        Sig::Contains(&[":$apr1$", ":{SHA}", ":$2y$", ":$6$"])
    ),
    probe!(
        "/.DS_Store",
        "macOS folder index (file names)",
        Warning,
        Sig::Prefix(b"\x00\x00\x00\x01Bud1")
    ),
    probe!(
        "/wp-config.php.bak",
        "configuration backup",
        Critical,
        Sig::Contains(&["<?php", "DB_PASSWORD"])
    ),
    probe!(
        "/wp-config.php~",
        "configuration backup",
        Critical,
        Sig::Contains(&["<?php", "DB_PASSWORD"])
    ),
    probe!(
        "/config.php.bak",
        "configuration backup",
        Critical,
        Sig::Contains(&["<?php"])
    ),
    probe!(
        "/index.php.bak",
        "source backup",
        Error,
        Sig::Contains(&["<?php"])
    ),
    probe!(
        "/config.yml",
        "configuration file",
        Error,
        Sig::Contains(&["password:", "secret:", "database:"])
    ),
    probe!(
        "/docker-compose.yml",
        "container configuration",
        Error,
        Sig::Contains(&["services:"])
    ),
    probe!(
        "/backup.zip",
        "site backup",
        Critical,
        Sig::Prefix(b"PK\x03\x04")
    ),
    probe!(
        "/backup.tar.gz",
        "site backup",
        Critical,
        Sig::Prefix(b"\x1f\x8b")
    ),
    probe!(
        "/site.zip",
        "site backup",
        Critical,
        Sig::Prefix(b"PK\x03\x04")
    ),
    probe!(
        "/www.zip",
        "site backup",
        Critical,
        Sig::Prefix(b"PK\x03\x04")
    ),
    probe!(
        "/backup.sql",
        "database dump",
        Critical,
        Sig::Contains(&["CREATE TABLE", "INSERT INTO"])
    ),
    probe!(
        "/dump.sql",
        "database dump",
        Critical,
        Sig::Contains(&["CREATE TABLE", "INSERT INTO"])
    ),
    probe!(
        "/database.sql",
        "database dump",
        Critical,
        Sig::Contains(&["CREATE TABLE", "INSERT INTO"])
    ),
    probe!(
        "/db.sqlite",
        "database file",
        Critical,
        Sig::Prefix(b"SQLite format 3\x00")
    ),
    probe!(
        "/phpinfo.php",
        "PHP configuration page",
        Error,
        Sig::Contains(&["phpinfo()", "PHP Version"])
    ),
    probe!(
        "/info.php",
        "PHP configuration page",
        Error,
        Sig::Contains(&["phpinfo()", "PHP Version"])
    ),
    probe!(
        "/server-status",
        "Apache status page",
        Error,
        Sig::Contains(&["Apache Server Status"])
    ),
    probe!(
        "/server-info",
        "Apache configuration page",
        Error,
        Sig::Contains(&["Apache Server Information"])
    ),
    probe!(
        "/nginx_status",
        "nginx status page",
        Warning,
        Sig::Contains(&["Active connections:"])
    ),
    probe!(
        "/actuator/env",
        "Spring Boot environment",
        Critical,
        Sig::Contains(&["propertySources", "activeProfiles"])
    ),
    probe!(
        "/actuator/heapdump",
        "Spring Boot heap dump",
        Critical,
        Sig::Prefix(b"JAVA PROFILE")
    ),
    probe!(
        "/debug/pprof/",
        "Go profiler",
        Error,
        Sig::Contains(&["/debug/pprof/", "goroutine"])
    ),
    probe!(
        "/elmah.axd",
        "ASP.NET error log",
        Error,
        Sig::Contains(&["Error Log for"])
    ),
    probe!(
        "/trace.axd",
        "ASP.NET trace",
        Error,
        Sig::Contains(&["Application Trace"])
    ),
    probe!(
        "/phpmyadmin/",
        "phpMyAdmin",
        Warning,
        Sig::Panel(&["phpmyadmin"])
    ),
    probe!("/pma/", "phpMyAdmin", Warning, Sig::Panel(&["phpmyadmin"])),
    probe!(
        "/adminer.php",
        "Adminer database console",
        Error,
        Sig::Panel(&["adminer"])
    ),
    probe!(
        "/wp-admin/",
        "WordPress admin",
        Warning,
        Sig::Panel(&["wp-login", "wordpress"])
    ),
    probe!(
        "/wp-login.php",
        "WordPress login",
        Warning,
        Sig::Panel(&["wp-login", "wordpress"])
    ),
    probe!(
        "/administrator/",
        "Joomla admin",
        Warning,
        Sig::Panel(&["joomla"])
    ),
    probe!(
        "/manager/html",
        "Tomcat manager",
        Error,
        Sig::Panel(&["tomcat"])
    ),
    probe!("/admin/", "admin panel", Warning, Sig::Panel(&[])),
    probe!("/uploads/", "directory listing", Warning, Sig::Listing),
    probe!("/backup/", "directory listing", Error, Sig::Listing),
    probe!("/files/", "directory listing", Warning, Sig::Listing),
    probe!("/static/", "directory listing", Warning, Sig::Listing),
    probe!("/", "directory listing", Warning, Sig::Listing),
];

/// How many requests the check makes at most.
pub fn budget() -> usize {
    PATHS.len() + 1
}

/// One fetched answer.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Fetches a path on the target; the HTTP client is the caller's.
pub trait Fetch {
    fn get(&self, path: &str) -> impl std::future::Future<Output = Option<Answer>> + Send;
}

fn matches(sig: Sig, body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    let lower = text.to_ascii_lowercase();
    let looks_html =
        lower.trim_start().starts_with("<!doctype html") || lower.trim_start().starts_with("<html");
    match sig {
        Sig::Contains(needles) => needles.iter().any(|n| text.contains(n)),
        Sig::EnvLines => {
            !looks_html
                && text
                    .lines()
                    .filter(|l| {
                        let l = l.trim();
                        l.split_once('=').is_some_and(|(k, _)| {
                            !k.is_empty()
                                && k.bytes().all(|b| {
                                    b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'
                                })
                        })
                    })
                    .count()
                    >= 2
        }
        Sig::Prefix(p) => body.starts_with(p),
        Sig::Panel(names) => {
            let form = lower.contains("<form")
                && (lower.contains("type=\"password\"") || lower.contains("type=password"));
            form || names.iter().any(|n| lower.contains(n))
        }
        Sig::Listing => {
            lower.contains("<title>index of /")
                || lower.contains("<h1>index of /")
                || lower.contains("directory listing for /")
        }
    }
}

/// Runs the probes; findings go to `out`, a stop to `skipped`.
pub async fn check(
    fetch: &impl Fetch,
    target: &str,
    pause: Duration,
    progress: &dyn Progress,
    out: &mut Vec<Finding>,
    skipped: &mut Vec<Skipped>,
) -> Vec<Exposed> {
    let mut exposed = Vec::new();
    // What the server answers for a path that cannot exist.
    let nonce: u64 = rand::random();
    let baseline = fetch.get(&format!("/rampart-scan-{nonce:016x}")).await;
    let baseline_body = baseline
        .as_ref()
        .filter(|a| a.status == 200)
        .map(|a| a.body.clone());
    let mut errors = 0;
    for (i, p) in PATHS.iter().enumerate() {
        progress.step(p.path, i as u64, PATHS.len() as u64);
        if i > 0 {
            tokio::time::sleep(pause).await;
        }
        let answer = fetch.get(p.path).await;
        let Some(a) = answer else {
            errors += 1;
            if errors >= MAX_ERRORS_IN_A_ROW {
                skipped.push(stop(i));
                break;
            }
            continue;
        };
        if a.status == 429 || a.status >= 500 {
            errors += 1;
            if errors >= MAX_ERRORS_IN_A_ROW {
                skipped.push(stop(i));
                break;
            }
            continue;
        }
        errors = 0;
        if a.status != 200
            || baseline_body.as_deref() == Some(&a.body[..])
            || !matches(p.sig, &a.body)
        {
            continue;
        }
        let (check, fix) = match p.sig {
            Sig::Panel(_) => (
                "exposure.admin_panel",
                "Allow the admin path only from your own addresses (a firewall rule or the server's allow list) or behind a VPN, and require a second factor.",
            ),
            Sig::Listing => (
                "exposure.directory_listing",
                "Turn directory listings off (nginx: autoindex off; Apache: Options -Indexes) and remove files that should not be public.",
            ),
            _ => (
                "exposure.sensitive_file",
                "Remove the file from the web root (and rotate any secret it held: assume it was copied), then deny dot-files and backups in the server (nginx: location ~ /\\. { deny all; }).",
            ),
        };
        out.push(Finding::new(
            check,
            p.severity,
            format!("{target}{}", p.path),
            format!("{} is served at {}", p.what, p.path),
            match p.sig {
                Sig::Panel(_) => "An admin login reachable from the whole internet invites password guessing and exploits of the panel itself.",
                Sig::Listing => "Anyone can browse the folder and download files nobody meant to publish.",
                _ => "Anyone can download it: it may hold passwords, keys, source code or customer data.",
            },
            fix,
        ));
        exposed.push(Exposed {
            path: p.path.to_owned(),
            what: p.what.to_owned(),
            status: a.status,
        });
    }
    progress.step("exposure", PATHS.len() as u64, PATHS.len() as u64);
    exposed
}

fn stop(i: usize) -> Skipped {
    Skipped {
        check: "exposure".to_owned(),
        reason: format!(
            "stopped after {} of {} paths: {MAX_ERRORS_IN_A_ROW} errors, 429s or 5xx answers in a row",
            i + 1,
            PATHS.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_need_the_content_not_just_a_200() {
        assert!(matches(
            Sig::Contains(&["[core]"]),
            b"[core]\n\trepositoryformatversion = 0\n"
        ));
        assert!(!matches(
            Sig::Contains(&["[core]"]),
            b"<html>Not here</html>"
        ));
        assert!(matches(Sig::EnvLines, b"DB_PASSWORD=x\nAPI_KEY=y\n"));
        assert!(!matches(Sig::EnvLines, b"<!doctype html><p>A=1</p>\nB=2"));
        assert!(!matches(Sig::EnvLines, b"just one=line"));
        assert!(matches(Sig::Prefix(b"PK\x03\x04"), b"PK\x03\x04rest"));
        assert!(matches(
            Sig::Listing,
            b"<html><title>Index of /uploads</title>"
        ));
        assert!(matches(
            Sig::Panel(&[]),
            b"<form><input type=\"password\"></form>"
        ));
        assert!(!matches(Sig::Panel(&[]), b"<p>welcome</p>"));
    }

    #[test]
    fn the_list_is_bounded() {
        assert!(
            budget() < 100,
            "a polite check makes a bounded number of requests"
        );
    }
}
