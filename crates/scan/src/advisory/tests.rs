use super::*;

fn write(dir: &Path, package: &str, id: &str, body: &str) {
    let d = dir.join("crates").join(package);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(format!("{id}.md")), body).unwrap();
}

fn advisory(id: &str, package: &str, date: &str, extra: &str, versions: &str) -> String {
    format!(
        "```toml\n[advisory]\nid = \"{id}\"\npackage = \"{package}\"\ndate = \"{date}\"\nurl = \"https://example.test/{id}\"\n{extra}\n\n[versions]\n{versions}\n```\n\n# Title of {id}\n\nProse.\n"
    )
}

const LOCK: &str = r#"
version = 4

[[package]]
name = "demo"
version = "1.1.0"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "other"
version = "2.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "local"
version = "0.1.0"
"#;

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    // Matches demo 1.1.0: patched only from 1.2.0.
    write(
        dir.path(),
        "demo",
        "RUSTSEC-2026-9001",
        &advisory(
            "RUSTSEC-2026-9001",
            "demo",
            "2026-08-01",
            "cvss = \"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H\"",
            "patched = [\">= 1.2.0\"]\nunaffected = [\"< 1.0.0\"]",
        ),
    );
    // Does not match other 2.0.0: patched.
    write(
        dir.path(),
        "other",
        "RUSTSEC-2026-9002",
        &advisory(
            "RUSTSEC-2026-9002",
            "other",
            "2026-08-10",
            "",
            "patched = [\">= 1.5.0, < 2.0.0-0\", \">= 2.0.0 \"]",
        ),
    );
    // Withdrawn: ignored although it would match.
    write(
        dir.path(),
        "other",
        "RUSTSEC-2026-9003",
        &advisory(
            "RUSTSEC-2026-9003",
            "other",
            "2026-08-11",
            "withdrawn = \"2026-08-12\"",
            "patched = []",
        ),
    );
    // A path package's name: never looked up.
    write(
        dir.path(),
        "local",
        "RUSTSEC-2026-9004",
        &advisory(
            "RUSTSEC-2026-9004",
            "local",
            "2026-08-12",
            "informational = \"unmaintained\"",
            "patched = []",
        ),
    );
    dir
}

fn at(date: &str) -> OffsetDateTime {
    let f = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(date, &f).unwrap().midnight().assume_utc()
}

#[test]
fn a_vulnerable_package_is_found_and_a_patched_one_is_not() {
    let dir = fixture();
    let db = Database::open(dir.path()).unwrap();
    assert_eq!(db.count, 3, "the withdrawn advisory is not loaded");
    assert!(db.unreadable.is_empty());
    let packages = parse_lockfile(LOCK, "Cargo.lock").unwrap();
    let mut out = Vec::new();
    let summary = check(&db, &packages, at("2026-08-20"), &mut out);
    assert_eq!(out.len(), 1, "{out:#?}");
    let f = &out[0];
    assert_eq!(f.check, "deps.RUSTSEC-2026-9001");
    assert_eq!(f.target, "demo@1.1.0");
    assert_eq!(f.severity, Severity::Critical, "CVSS 9.8");
    assert!(f.fix.contains(">=1.2.0"), "{}", f.fix);
    assert!(f.why.contains("Title of RUSTSEC-2026-9001"));
    assert_eq!(summary.packages, 2, "the path package is not counted");
    assert_eq!(summary.affected, 1);
    assert_eq!(summary.database_date.as_deref(), Some("2026-08-12"));
}

#[test]
fn an_unaffected_version_is_not_reported() {
    let dir = fixture();
    let db = Database::open(dir.path()).unwrap();
    let lock = LOCK.replace("1.1.0", "0.9.0");
    let mut out = Vec::new();
    check(
        &db,
        &parse_lockfile(&lock, "x").unwrap(),
        at("2026-08-20"),
        &mut out,
    );
    assert!(out.is_empty(), "{out:#?}");
}

#[test]
fn a_stale_database_is_a_finding() {
    let dir = fixture();
    let db = Database::open(dir.path()).unwrap();
    let mut out = Vec::new();
    check(&db, &[], at("2026-09-11"), &mut out);
    assert!(out.is_empty(), "30 days is not stale yet");
    check(&db, &[], at("2026-09-12"), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].check, "deps.advisory_db_stale");
    assert!(out[0].title.contains("31 days"), "{}", out[0].title);
}

#[test]
fn a_directory_without_advisories_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let e = Database::open(dir.path()).err().unwrap().to_string();
    assert!(e.contains(&dir.path().display().to_string()), "{e}");
    let e = parse_lockfile("[[package]]\nname = 1", "bad.lock")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("bad.lock"), "{e}");
}

#[test]
fn the_bundled_snapshot_loads_whole() {
    let db = Database::bundled();
    assert!(db.count > 1000, "{}", db.count);
    assert!(db.unreadable.len() < 5, "{:?}", db.unreadable);
    let newest = db.newest.unwrap();
    assert!(newest.year() >= 2026, "{newest}");
    // A famous one: time 0.1 (RUSTSEC-2020-0071) is affected below 0.2.23.
    let time = &db.by_package["time"];
    let a = time.iter().find(|a| a.id == "RUSTSEC-2020-0071").unwrap();
    assert!(a.affects(&Version::parse("0.1.45").unwrap()));
    assert!(!a.affects(&Version::parse("0.3.36").unwrap()));
}

#[test]
fn cvss_scores_match_the_specification() {
    for (v, s) in [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
        ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 5.5),
        ("CVSS:3.0/AV:N/AC:H/PR:N/UI:R/S:C/C:L/I:L/A:N", 4.7),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
    ] {
        assert_eq!(cvss_base_score(v), Some(s), "{v}");
    }
    assert_eq!(cvss_base_score("CVSS:2.0/AV:N"), None);
    assert_eq!(cvss_base_score("CVSS:3.1/AV:X/AC:L"), None);
}

#[test]
fn a_package_list_is_read_and_accepted_advisories_become_information() {
    let packages = parse_package_list("demo 1.1.0\nother v2.0.0\n\nbroken\n");
    assert_eq!(packages.len(), 2);
    assert!(packages.iter().all(|p| p.from_registry));
    let dir = fixture();
    let db = Database::open(dir.path()).unwrap();
    let mut out = Vec::new();
    check(&db, &packages, at("2026-08-20"), &mut out);
    apply_accepted(
        &mut out,
        &[Accepted {
            id: "RUSTSEC-2026-9001",
            package: "other",
            reason: "wrong package",
        }],
    );
    assert_eq!(
        out[0].severity,
        Severity::Critical,
        "only the named package's finding is accepted"
    );
    apply_accepted(
        &mut out,
        &[Accepted {
            id: "RUSTSEC-2026-9001",
            package: "demo",
            reason: "only public-key operations",
        }],
    );
    assert_eq!(out[0].severity, Severity::Info);
    assert!(out[0].title.starts_with("Accepted: "));
    assert!(out[0].why.ends_with("only public-key operations"));
}

#[test]
fn pre_releases_are_ordered_like_rustsec_and_unreadable_advisories_are_counted() {
    let req = |s: &str| VersionReq::parse(s).unwrap();
    let v = |s: &str| Version::parse(s).unwrap();
    assert!(
        in_range(&req(">= 1.2.0"), &v("1.3.0-rc.1")),
        "a pre-release of a later version is above"
    );
    assert!(
        !in_range(&req(">= 1.3.0"), &v("1.3.0-rc.1")),
        "a pre-release is below its release"
    );
    assert!(in_range(&req(">= 1.3.0-rc.1, < 1.4.0"), &v("1.3.0-rc.2")));
    assert!(in_range(&req("^0.10"), &v("0.10.0-rc.19")));
    assert!(!in_range(&req("< 0.9.0"), &v("0.10.0-rc.19")));

    let dir = fixture();
    write(
        dir.path(),
        "odd",
        "RUSTSEC-2026-9005",
        &advisory(
            "RUSTSEC-2026-9005",
            "odd",
            "2026-08-13",
            "",
            "patched = [\"not a range\"]",
        ),
    );
    let db = Database::open(dir.path()).unwrap();
    assert_eq!(db.unreadable, vec!["RUSTSEC-2026-9005".to_owned()]);
    let mut out = Vec::new();
    let summary = check(&db, &[], at("2026-08-20"), &mut out);
    assert_eq!(summary.unreadable, vec!["RUSTSEC-2026-9005".to_owned()]);
}

#[test]
fn only_crates_io_packages_are_looked_up() {
    let lock = LOCK.replace(
        "name = \"demo\"\nversion = \"1.1.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"",
        "name = \"demo\"\nversion = \"1.1.0\"\nsource = \"registry+https://my-company.example/index\"",
    );
    assert_ne!(lock, LOCK);
    let packages = parse_lockfile(&lock, "x").unwrap();
    assert!(
        !packages
            .iter()
            .find(|p| p.name == "demo")
            .unwrap()
            .from_registry
    );
}
