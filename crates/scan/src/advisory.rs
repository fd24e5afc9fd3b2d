//! Known-vulnerable dependencies: a RustSec advisory database read from a
//! directory (`crates/<name>/RUSTSEC-*.md`, TOML front matter) or from the
//! copy compiled into the binary (`data/advisories.txt`, the same format
//! with the prose cut), matched against a `Cargo.lock`.
//!
//! A package is affected when its version is in none of the advisory's
//! `patched` and `unaffected` ranges, as RustSec defines it. Withdrawn
//! advisories are ignored; packages without a registry source (workspace
//! members, path dependencies) are not looked up.

use std::collections::BTreeMap;
use std::path::Path;

use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use crate::report::{Finding, Severity};

/// The advisory data shipped in the binary: the snapshot of RustSec's
/// database taken on the date in `SNAPSHOT.md` (see `data/refresh-advisories`).
pub const BUNDLED: &str = include_str!("../data/advisories.txt");

/// After this many days an advisory database is a finding of its own.
pub const STALE_AFTER_DAYS: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum AdvisoryError {
    #[error("cannot read the advisory database at {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path} holds no RustSec advisories (expected crates/<name>/RUSTSEC-*.md)")]
    Empty { path: String },
    #[error("cannot read the lock file {path}: {reason}")]
    Lockfile { path: String, reason: String },
}

/// One advisory, as much of it as the scanner uses.
#[derive(Debug, Clone)]
pub struct Advisory {
    pub id: String,
    pub package: String,
    pub title: String,
    pub date: Option<Date>,
    pub url: Option<String>,
    pub aliases: Vec<String>,
    pub informational: Option<String>,
    pub cvss: Option<String>,
    pub os: Vec<String>,
    pub patched: Vec<VersionReq>,
    pub unaffected: Vec<VersionReq>,
}

#[derive(Deserialize)]
struct FrontMatter {
    advisory: AdvisorySection,
    #[serde(default)]
    versions: VersionsSection,
    #[serde(default)]
    affected: AffectedSection,
}

#[derive(Deserialize)]
struct AdvisorySection {
    id: String,
    package: String,
    date: Option<String>,
    url: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    informational: Option<String>,
    cvss: Option<String>,
    withdrawn: Option<String>,
}

#[derive(Deserialize, Default)]
struct VersionsSection {
    #[serde(default)]
    patched: Vec<String>,
    #[serde(default)]
    unaffected: Vec<String>,
}

#[derive(Deserialize, Default)]
struct AffectedSection {
    #[serde(default)]
    os: Vec<String>,
}

/// Parses one advisory file: `Ok(None)` for a withdrawn advisory, `Err`
/// with its id (or `?`) for one that cannot be read, which the report
/// counts rather than silently dropping.
pub fn parse_advisory(text: &str) -> Result<Option<Advisory>, String> {
    let unreadable = |id: Option<&str>| id.unwrap_or("?").to_owned();
    let body = text
        .trim_start()
        .strip_prefix("```toml")
        .ok_or_else(|| unreadable(None))?;
    let end = body.find("\n```").ok_or_else(|| unreadable(None))?;
    let fm: FrontMatter = toml::from_str(&body[..end]).map_err(|_| unreadable(None))?;
    if fm.advisory.withdrawn.is_some() {
        return Ok(None);
    }
    let rest = &body[end + 4..];
    let title = rest
        .lines()
        .find_map(|l| l.strip_prefix("# "))
        .unwrap_or("(untitled)")
        .trim()
        .to_owned();
    let reqs = |v: &[String]| -> Result<Vec<VersionReq>, String> {
        v.iter()
            .map(|r| VersionReq::parse(r.trim()).map_err(|_| unreadable(Some(&fm.advisory.id))))
            .collect()
    };
    let patched = reqs(&fm.versions.patched)?;
    let unaffected = reqs(&fm.versions.unaffected)?;
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    Ok(Some(Advisory {
        id: fm.advisory.id,
        package: fm.advisory.package,
        title,
        date: fm
            .advisory
            .date
            .and_then(|d| Date::parse(d.trim(), &date_format).ok()),
        url: fm.advisory.url,
        aliases: fm.advisory.aliases,
        informational: fm.advisory.informational,
        cvss: fm.advisory.cvss,
        os: fm.affected.os,
        patched,
        unaffected,
    }))
}

/// Whether `v` is in `req`, ordering pre-releases as RustSec (and OSV)
/// do: `1.3.0-rc.1` is at or above `1.2.0`, which `VersionReq::matches`
/// would deny because it keeps pre-releases out of ranges.
pub fn in_range(req: &VersionReq, v: &Version) -> bool {
    use semver::Op;
    req.comparators.iter().all(|c| {
        let (Some(minor), Some(patch)) = (c.minor, c.patch) else {
            let mut release = v.clone();
            release.pre = semver::Prerelease::EMPTY;
            return c.matches(&release);
        };
        let base = Version {
            major: c.major,
            minor,
            patch,
            pre: c.pre.clone(),
            build: semver::BuildMetadata::EMPTY,
        };
        let mut v = v.clone();
        v.build = semver::BuildMetadata::EMPTY;
        match c.op {
            Op::Exact => v == base,
            Op::Greater => v > base,
            Op::GreaterEq => v >= base,
            Op::Less => v < base,
            Op::LessEq => v <= base,
            _ => {
                let mut release = v.clone();
                release.pre = semver::Prerelease::EMPTY;
                c.matches(&release)
            }
        }
    })
}

impl Advisory {
    /// RustSec's rule: affected unless patched or unaffected.
    pub fn affects(&self, version: &Version) -> bool {
        !self
            .patched
            .iter()
            .chain(&self.unaffected)
            .any(|r| in_range(r, version))
    }

    fn severity(&self) -> Severity {
        match self.informational.as_deref() {
            Some("notice") => Severity::Info,
            Some(_) => Severity::Warning,
            None => match self.cvss.as_deref().and_then(cvss_base_score) {
                Some(s) if s >= 9.0 => Severity::Critical,
                Some(s) if s < 4.0 => Severity::Warning,
                _ => Severity::Error,
            },
        }
    }
}

/// An advisory database in memory, by package.
pub struct Database {
    by_package: BTreeMap<String, Vec<Advisory>>,
    /// The newest advisory date: how fresh the database is.
    pub newest: Option<Date>,
    pub count: usize,
    /// Advisories that could not be read (their ids, or `?`).
    pub unreadable: Vec<String>,
    /// Where it came from, for the report.
    pub source: String,
}

impl Database {
    /// The copy compiled into the binary.
    pub fn bundled() -> Database {
        let parsed = BUNDLED.split("%%% ").filter_map(|c| {
            let start = c.find('\n')?;
            Some(parse_advisory(&c[start..]))
        });
        Database::from_parsed(parsed, "built-in RustSec snapshot".to_owned())
    }

    /// A checkout or copy of github.com/rustsec/advisory-db.
    pub fn open(dir: &Path) -> Result<Database, AdvisoryError> {
        let path = dir.display().to_string();
        let crates = dir.join("crates");
        let entries = std::fs::read_dir(&crates).map_err(|e| AdvisoryError::Unreadable {
            path: path.clone(),
            reason: e.kind().to_string(),
        })?;
        let mut parsed = Vec::new();
        for entry in entries.flatten() {
            let Ok(files) = std::fs::read_dir(entry.path()) else {
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name();
                let name = name.to_string_lossy().into_owned();
                if !(name.starts_with("RUSTSEC-") && name.ends_with(".md")) {
                    continue;
                }
                parsed.push(match std::fs::read_to_string(file.path()) {
                    Ok(text) => parse_advisory(&text).map_err(|id| {
                        if id == "?" {
                            name.trim_end_matches(".md").to_owned()
                        } else {
                            id
                        }
                    }),
                    Err(_) => Err(name.trim_end_matches(".md").to_owned()),
                });
            }
        }
        let db = Database::from_parsed(parsed, path.clone());
        if db.count == 0 {
            return Err(AdvisoryError::Empty { path });
        }
        Ok(db)
    }

    fn from_parsed(
        all: impl IntoIterator<Item = Result<Option<Advisory>, String>>,
        source: String,
    ) -> Database {
        let mut by_package: BTreeMap<String, Vec<Advisory>> = BTreeMap::new();
        let mut newest = None;
        let mut count = 0;
        let mut unreadable = Vec::new();
        for a in all {
            match a {
                Ok(Some(a)) => {
                    newest = newest.max(a.date);
                    count += 1;
                    by_package.entry(a.package.clone()).or_default().push(a);
                }
                Ok(None) => {}
                Err(id) => unreadable.push(id),
            }
        }
        unreadable.sort();
        Database {
            by_package,
            newest,
            count,
            unreadable,
            source,
        }
    }

    /// Days since the newest advisory, at `now`.
    pub fn age_days(&self, now: OffsetDateTime) -> Option<i64> {
        self.newest.map(|d| (now.date() - d).whole_days())
    }
}

/// A package from a lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: Version,
    /// Only registry packages are looked up.
    pub from_registry: bool,
}

#[derive(Deserialize)]
struct LockFile {
    #[serde(default)]
    package: Vec<LockPackage>,
}

#[derive(Deserialize)]
struct LockPackage {
    name: String,
    version: String,
    source: Option<String>,
}

/// Reads a `Cargo.lock` (format v1 to v4).
pub fn parse_lockfile(text: &str, path: &str) -> Result<Vec<Package>, AdvisoryError> {
    let lock: LockFile = toml::from_str(text).map_err(|e| AdvisoryError::Lockfile {
        path: path.to_owned(),
        reason: e.message().to_owned(),
    })?;
    lock.package
        .into_iter()
        .map(|p| {
            let version = Version::parse(&p.version).map_err(|_| AdvisoryError::Lockfile {
                path: path.to_owned(),
                reason: format!("package {} has an invalid version", p.name),
            })?;
            Ok(Package {
                // RustSec covers crates.io; a crate of the same name from
                // another registry is another crate.
                from_registry: p.source.as_deref().is_some_and(|s| {
                    s == "registry+https://github.com/rust-lang/crates.io-index"
                        || s == "sparse+https://index.crates.io/"
                }),
                name: p.name,
                version,
            })
        })
        .collect()
}

/// Reads a package list of `name version` lines (as `cargo tree --format
/// '{p}'` prints them), every one from a registry.
pub fn parse_package_list(text: &str) -> Vec<Package> {
    text.lines()
        .filter_map(|l| {
            let (name, version) = l.trim().split_once(' ')?;
            Some(Package {
                name: name.to_owned(),
                version: Version::parse(version.trim().trim_start_matches('v')).ok()?,
                from_registry: true,
            })
        })
        .collect()
}

/// An advisory judged not to apply, with the reason (like cargo-deny's
/// `ignore` entries): its finding stays in the report, as information.
pub struct Accepted {
    pub id: &'static str,
    pub package: &'static str,
    pub reason: &'static str,
}

/// Lowers the findings of accepted advisories to `Info`, saying why.
pub fn apply_accepted(findings: &mut [Finding], accepted: &[Accepted]) {
    for f in findings.iter_mut() {
        if let Some(a) = accepted.iter().find(|a| {
            f.check == format!("deps.{}", a.id) && f.target.starts_with(&format!("{}@", a.package))
        }) {
            f.severity = Severity::Info;
            f.title = format!("Accepted: {}", f.title);
            f.why = format!("{} Why it does not apply: {}", f.why, a.reason);
        }
    }
}

/// The dependency check's figures, for the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DepsSummary {
    pub packages: usize,
    pub advisories: usize,
    pub database: String,
    /// `YYYY-MM-DD` of the newest advisory.
    pub database_date: Option<String>,
    pub affected: usize,
    /// Advisories the database holds but that could not be read.
    #[serde(default)]
    pub unreadable: Vec<String>,
}

/// Checks `packages` against `db`; adds the findings (one per affected
/// package and advisory, and one for a stale database) to `out`.
pub fn check(
    db: &Database,
    packages: &[Package],
    now: OffsetDateTime,
    out: &mut Vec<Finding>,
) -> DepsSummary {
    let mut affected = 0;
    for p in packages.iter().filter(|p| p.from_registry) {
        let Some(advisories) = db.by_package.get(&p.name) else {
            continue;
        };
        for a in advisories.iter().filter(|a| a.affects(&p.version)) {
            affected += 1;
            out.push(finding_for(a, p));
        }
    }
    if let Some(age) = db.age_days(now).filter(|d| *d > STALE_AFTER_DAYS) {
        out.push(Finding::new(
            "deps.advisory_db_stale",
            Severity::Warning,
            db.source.clone(),
            format!("The advisory database is {age} days old"),
            "Advisories published since then are not checked, so a newly known vulnerability in a dependency goes unreported.",
            "Fetch a current copy (git clone https://github.com/rustsec/advisory-db) and pass it with --advisory-db DIR, or update Rampart, whose release carries a fresh snapshot.",
        ));
    }
    DepsSummary {
        packages: packages.iter().filter(|p| p.from_registry).count(),
        advisories: db.count,
        database: db.source.clone(),
        database_date: db.newest.map(|d| d.to_string()),
        affected,
        unreadable: db.unreadable.clone(),
    }
}

fn finding_for(a: &Advisory, p: &Package) -> Finding {
    let kind = match a.informational.as_deref() {
        Some("unmaintained") => "is unmaintained",
        Some("unsound") => "is unsound",
        Some(_) => "has a notice",
        None => "has a known vulnerability",
    };
    let mut why = format!("{}: {}.", a.id, a.title.trim_end_matches('.'));
    if !a.aliases.is_empty() {
        why.push_str(&format!(" Also known as {}.", a.aliases.join(", ")));
    }
    if !a.os.is_empty() {
        why.push_str(&format!(" Only on {}.", a.os.join(", ")));
    }
    if let Some(u) = &a.url {
        why.push_str(&format!(" See {u}"));
    }
    let fix = if a.patched.is_empty() {
        format!(
            "No fixed version exists: replace {} with a maintained alternative (see the advisory).",
            p.name
        )
    } else {
        let ranges: Vec<String> = a.patched.iter().map(|r| r.to_string()).collect();
        format!(
            "Upgrade {} to a version matching {} (cargo update -p {}).",
            p.name,
            ranges.join(" or "),
            p.name
        )
    };
    Finding::new(
        &format!("deps.{}", a.id),
        a.severity(),
        format!("{}@{}", p.name, p.version),
        format!("{} {} {kind}", p.name, p.version),
        why,
        fix,
    )
}

/// The CVSS v3 base score of a vector (`CVSS:3.1/AV:N/...`), per the
/// FIRST specification; `None` for anything else.
pub fn cvss_base_score(vector: &str) -> Option<f64> {
    let mut m = BTreeMap::new();
    let mut parts = vector.split('/');
    if !parts.next()?.starts_with("CVSS:3") {
        return None;
    }
    for p in parts {
        let (k, v) = p.split_once(':')?;
        m.insert(k, v);
    }
    let changed = *m.get("S")? == "C";
    let av = match *m.get("AV")? {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        "P" => 0.2,
        _ => return None,
    };
    let ac = match *m.get("AC")? {
        "L" => 0.77,
        "H" => 0.44,
        _ => return None,
    };
    let pr = match (*m.get("PR")?, changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        ("H", false) => 0.27,
        ("H", true) => 0.5,
        _ => return None,
    };
    let ui = match *m.get("UI")? {
        "N" => 0.85,
        "R" => 0.62,
        _ => return None,
    };
    let cia = |k: &str| -> Option<f64> {
        match *m.get(k)? {
            "H" => Some(0.56),
            "L" => Some(0.22),
            "N" => Some(0.0),
            _ => None,
        }
    };
    let iss = 1.0 - (1.0 - cia("C")?) * (1.0 - cia("I")?) * (1.0 - cia("A")?);
    let impact = if changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02).powi(15)
    } else {
        6.42 * iss
    };
    if impact <= 0.0 {
        return Some(0.0);
    }
    let exploit = 8.22 * av * ac * pr * ui;
    let raw = if changed {
        (1.08 * (impact + exploit)).min(10.0)
    } else {
        (impact + exploit).min(10.0)
    };
    // Round up to one decimal, as the specification's Roundup does.
    let int = (raw * 100_000.0).round() as i64;
    Some(if int % 10_000 == 0 {
        int as f64 / 100_000.0
    } else {
        ((int / 10_000) + 1) as f64 / 10.0
    })
}

#[cfg(test)]
mod tests;
