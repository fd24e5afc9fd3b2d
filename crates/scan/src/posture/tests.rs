use super::*;
use std::os::unix::fs::PermissionsExt;

fn at(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(ms / 1000).unwrap()
}

const DAY: i64 = 86_400_000;

fn checks(out: &[Finding]) -> Vec<(&str, Severity)> {
    out.iter().map(|f| (f.check.as_str(), f.severity)).collect()
}

fn run(f: &SelfFacts, now_ms: i64) -> (Vec<Finding>, Vec<String>, Vec<Skipped>) {
    let (mut out, mut passed, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    check(f, at(now_ms), &mut out, &mut passed, &mut skipped);
    (out, passed, skipped)
}

fn sound() -> SelfFacts {
    SelfFacts {
        mfa_required_for_admins: true,
        email_verification: "required".to_owned(),
        password_preset: "default".to_owned(),
        log_level: "info".to_owned(),
        admins: Some(Vec::new()),
        api_keys: Some(Vec::new()),
        backups_scheduled: true,
        last_verified_backup_ms: Some(1_000 * DAY - 3_600_000),
        incident: Some(IncidentFacts {
            last_drill_ms: Some(990 * DAY),
            drill_every_days: 90,
            plan_present: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn a_sound_configuration_has_no_findings_and_says_what_passed() {
    let (out, passed, skipped) = run(&sound(), 1_000 * DAY);
    assert!(out.is_empty(), "{out:#?}");
    assert!(passed.iter().any(|p| p.contains("second factor")));
    assert!(
        skipped.iter().any(|s| s.check == "ops.audit_chain"),
        "missing subsystems are shown as not checked"
    );
}

#[test]
fn an_unread_database_is_shown_with_its_reason() {
    let mut f = sound();
    f.admins = None;
    f.api_keys = None;
    f.unread_because = Some("no database yet".to_owned());
    let (_, _, skipped) = run(&f, 1_000 * DAY);
    let why: Vec<(&str, &str)> = skipped
        .iter()
        .filter(|s| s.check == "ops.admin" || s.check == "ops.api_key")
        .map(|s| (s.check.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(
        why,
        vec![
            ("ops.admin", "no database yet"),
            ("ops.api_key", "no database yet")
        ]
    );
}

#[test]
fn risky_settings_are_findings_whose_severity_follows_exposure() {
    let mut f = sound();
    f.registration_open = true;
    // Open registration is a finding only while addresses go unverified.
    let (out, passed, _) = run(&f, DAY);
    assert!(!checks(&out)
        .iter()
        .any(|x| x.0 == "config.registration_open"));
    assert!(
        passed
            .iter()
            .any(|p| p.contains("email_verification = \"required\"")),
        "{passed:?}"
    );
    f.email_verification = "optional".to_owned();
    f.notifier_log = true;
    f.mfa_required_for_admins = false;
    f.password_preset_weaker = true;
    f.password_preset = "short".to_owned();
    f.log_level = "rampart=debug".to_owned();
    f.danger = vec!["danger_accept_any".to_owned()];
    f.trusted_proxies = vec![
        "0.0.0.0/0".to_owned(),
        "10.0.0.0/8".to_owned(),
        "10.0.0.5/32".to_owned(),
    ];
    f.admin_open_to_all = true;
    f.protections_off = vec!["guard.auth.ip_per_minute = 0".to_owned()];
    let (out, _, _) = run(&f, DAY);
    let c = checks(&out);
    assert!(
        c.contains(&("config.registration_open", Severity::Info)),
        "{c:?}"
    );
    assert!(c.contains(&("config.notifier_log", Severity::Info)));
    assert!(c.contains(&("config.mfa_not_required_for_admins", Severity::Error)));
    assert!(c.contains(&("config.password_preset_weak", Severity::Warning)));
    assert!(c.contains(&("config.debug_logging", Severity::Info)));
    assert!(c.contains(&("config.danger", Severity::Error)));
    assert!(c.contains(&("config.protection_off", Severity::Warning)));
    assert!(c.contains(&("config.trusted_proxies_broad", Severity::Error)));
    assert!(c.contains(&("config.trusted_proxies_broad", Severity::Warning)));
    assert_eq!(
        c.iter()
            .filter(|x| x.0 == "config.trusted_proxies_broad")
            .count(),
        2,
        "a /32 is fine"
    );
    assert!(
        !c.iter().any(|x| x.0 == "config.admin_open"),
        "loopback: nobody else reaches the admin routes"
    );

    f.production = true;
    let (out, _, _) = run(&f, DAY);
    let c = checks(&out);
    assert!(c.contains(&("config.registration_open", Severity::Warning)));
    assert!(c.contains(&("config.notifier_log", Severity::Error)));
    assert!(c.contains(&("config.admin_open", Severity::Warning)));
    assert!(c.contains(&("config.protection_off", Severity::Error)));
}

#[test]
fn permission_mistakes_are_found_and_private_files_pass() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");
    std::fs::write(&key, "k").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut f = sound();
    f.data_dir = dir.path().to_owned();
    f.master_key = Some(key.clone());
    f.files = vec![
        FileFact {
            role: "data directory".to_owned(),
            path: dir.path().to_owned(),
            is_dir: true,
            secret: false,
        },
        FileFact {
            role: "master key".to_owned(),
            path: key.clone(),
            is_dir: false,
            secret: true,
        },
    ];
    let (out, _, _) = run(&f, DAY);
    let perms: Vec<&Finding> = out
        .iter()
        .filter(|x| x.check == "files.permissions")
        .collect();
    assert_eq!(perms.len(), 2, "{out:#?}");
    assert!(perms.iter().all(|p| p.severity == Severity::Error));
    assert!(perms
        .iter()
        .any(|p| p.fix == format!("chmod 600 {}", key.display())));
    assert!(checks(&out).contains(&("files.master_key_in_data_dir", Severity::Info)));

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    f.production = true;
    let (out, passed, _) = run(&f, DAY);
    assert!(
        !out.iter().any(|x| x.check == "files.permissions"),
        "{out:#?}"
    );
    assert!(passed
        .iter()
        .any(|p| p.starts_with("master key is private")));
    assert!(checks(&out).contains(&("files.master_key_in_data_dir", Severity::Error)));

    let outside = tempfile::tempdir().unwrap();
    f.master_key = Some(outside.path().join("master.key"));
    let (out, _, _) = run(&f, DAY);
    assert!(!out
        .iter()
        .any(|x| x.check == "files.master_key_in_data_dir"));
}

#[test]
fn administrators_and_api_keys_are_checked() {
    let now = 400 * DAY;
    let mut f = sound();
    f.admins = Some(vec![
        AdminFact {
            email: "a@x.test".into(),
            has_second_factor: false,
            created_at_ms: 0,
            last_sign_in_ms: Some(now - DAY),
        },
        AdminFact {
            email: "b@x.test".into(),
            has_second_factor: true,
            created_at_ms: 0,
            last_sign_in_ms: Some(now - 91 * DAY),
        },
        AdminFact {
            email: "c@x.test".into(),
            has_second_factor: true,
            created_at_ms: now - 10 * DAY,
            last_sign_in_ms: None,
        },
    ]);
    f.api_keys = Some(vec![
        ApiKeyFact {
            id: "key_ci".into(),
            name: "ci".into(),
            prefix: "rk_ab".into(),
            created_at_ms: 0,
            expires_at_ms: None,
            last_used_ms: Some(now - DAY),
        },
        ApiKeyFact {
            id: "key_old".into(),
            name: "old".into(),
            prefix: "rk_cd".into(),
            created_at_ms: 0,
            expires_at_ms: Some(now + DAY),
            last_used_ms: None,
        },
        ApiKeyFact {
            id: "key_fresh".into(),
            name: "fresh".into(),
            prefix: "rk_ef".into(),
            created_at_ms: now - DAY,
            expires_at_ms: Some(now + DAY),
            last_used_ms: None,
        },
    ]);
    let (out, _, _) = run(&f, now);
    let t: Vec<(&str, &str)> = out
        .iter()
        .map(|x| (x.check.as_str(), x.target.as_str()))
        .collect();
    assert_eq!(
        t,
        vec![
            ("ops.admin_without_mfa", "administrator a@x.test"),
            ("ops.admin_unused", "administrator b@x.test"),
            ("ops.api_key_no_expiry", "API key ci (rk_ab…)"),
            ("ops.api_key_unused", "API key old (rk_cd…)"),
        ]
    );
    // The fix names the key to revoke.
    assert!(
        out[2].fix.ends_with("/api/v1/admin/api-keys/key_ci)."),
        "{}",
        out[2].fix
    );
    assert!(
        out[3].fix.ends_with("/api/v1/admin/api-keys/key_old)."),
        "{}",
        out[3].fix
    );
}

#[test]
fn danger_settings_are_found_wherever_they_are() {
    let t: toml::Table = toml::from_str(
        "danger_off = false\ndanger_top = true\n[guard]\ndanger_no_limits = \"yes\"\nfine = true\n",
    )
    .unwrap();
    assert_eq!(
        danger_keys(&t),
        vec!["danger_top".to_owned(), "guard.danger_no_limits".to_owned()]
    );
}

#[test]
fn backups_are_scheduled_and_recently_verified() {
    let mut f = sound();
    let (_, passed, _) = run(&f, 1_000 * DAY);
    assert!(
        passed
            .iter()
            .any(|p| p.contains("restore check 1 hours ago")),
        "{passed:?}"
    );
    f.last_verified_backup_ms = Some(997 * DAY);
    let (out, _, _) = run(&f, 1_000 * DAY);
    assert_eq!(checks(&out), vec![("ops.backup", Severity::Error)]);
    assert!(out[0].title.contains("3 days old"), "{out:?}");
    f.last_verified_backup_ms = None;
    let (out, _, _) = run(&f, 1_000 * DAY);
    assert_eq!(checks(&out), vec![("ops.backup", Severity::Warning)]);
    f.backups_scheduled = false;
    let (out, _, _) = run(&f, 1_000 * DAY);
    assert_eq!(
        checks(&out),
        vec![("ops.backup", Severity::Info)],
        "on a laptop"
    );
    f.production = true;
    let (out, _, _) = run(&f, 1_000 * DAY);
    assert_eq!(
        checks(&out),
        vec![("ops.backup", Severity::Warning)],
        "on a server"
    );
    // Scheduled but the database unread: not checked, with the reason.
    let mut f = sound();
    f.admins = None;
    f.unread_because = Some("no database yet".to_owned());
    let (out, _, skipped) = run(&f, 1_000 * DAY);
    assert!(!checks(&out).iter().any(|(c, _)| *c == "ops.backup"));
    assert!(skipped
        .iter()
        .any(|s| s.check == "ops.backup" && s.reason == "no database yet"));
}

#[test]
fn a_lockdown_an_old_drill_and_no_plan_are_findings() {
    let mut f = sound();
    f.incident = Some(IncidentFacts {
        lockdown: Some(("inc_1".to_owned(), 1_000 * DAY - 7_200_000)),
        accounts_locked: 2,
        last_drill_ms: Some(800 * DAY),
        drill_every_days: 90,
        drill_overdue_days: Some(200),
        plan_present: false,
    });
    let (out, _, _) = run(&f, 1_000 * DAY);
    let find = |check: &str, sev: Severity| {
        out.iter()
            .filter(|o| o.check == check && o.severity == sev)
            .count()
    };
    assert_eq!(find("ops.lockdown", Severity::Warning), 1, "{out:#?}");
    assert!(out
        .iter()
        .any(|o| o.title.contains("inc_1") && o.title.contains("2 hours")));
    assert_eq!(find("ops.lockdown", Severity::Info), 1);
    assert_eq!(find("ops.drill", Severity::Warning), 1);
    assert!(out.iter().any(|o| o.title.contains("200 days")));
    assert_eq!(find("ops.incident_plan", Severity::Info), 1);
    // Never drilled: advice, until the trail is older than the period.
    let i = f.incident.as_mut().unwrap();
    (i.last_drill_ms, i.drill_overdue_days) = (None, None);
    let (out, _, _) = run(&f, 1_000 * DAY);
    assert!(out
        .iter()
        .any(|o| o.check == "ops.drill" && o.severity == Severity::Info));
    f.incident.as_mut().unwrap().drill_overdue_days = Some(95);
    let (out, _, _) = run(&f, 1_000 * DAY);
    assert!(out
        .iter()
        .any(|o| o.check == "ops.drill" && o.severity == Severity::Warning));
    // No reminder configured: nothing.
    f.incident.as_mut().unwrap().drill_every_days = 0;
    let (out, _, _) = run(&f, 1_000 * DAY);
    assert!(!out.iter().any(|o| o.check == "ops.drill"));
}

#[test]
fn an_acme_certificate_is_judged_with_its_renewal_and_a_missing_one_is_a_finding() {
    // A certificate from a CA (a test one: issuer differs from subject).
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["api.example.com".to_owned()]).unwrap();
    leaf.not_before = at(1_000 * DAY - 10 * DAY);
    leaf.not_after = at(1_000 * DAY + 80 * DAY);
    let leaf = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let mut f = sound();
    f.production = true;
    f.acme = Some(AcmeFacts {
        directory: "https://ca.example.com/dir".to_owned(),
        names: "api.example.com".to_owned(),
        chain: Some(vec![leaf.der().to_vec()]),
        renew_at_ms: Some(1_000 * DAY + 50 * DAY),
        read: true,
    });
    // The generated file is not judged while ACME provides the certificate.
    f.tls_cert = Some(PathBuf::from("/nonexistent/tls.crt"));
    let (out, passed, _) = run(&f, 1_000 * DAY);
    assert!(out.is_empty(), "{out:#?}");
    assert!(passed
        .iter()
        .any(|p| p.starts_with("certificate obtained by ACME from https://ca.example.com/dir")));
    assert!(passed
        .iter()
        .any(|p| p.starts_with("next certificate renewal at 1972-")));

    // Past its renewal time: renewals are failing.
    let later = 1_000 * DAY + 51 * DAY;
    f.last_verified_backup_ms = Some(later - 3_600_000);
    let (out, _, _) = run(&f, later);
    assert_eq!(
        checks(&out),
        vec![
            ("tls.cert_expiring", Severity::Warning),
            ("tls.acme_renewal_overdue", Severity::Warning)
        ]
    );
    f.last_verified_backup_ms = sound().last_verified_backup_ms;

    // None obtained yet: the generated certificate is what clients see.
    f.acme.as_mut().unwrap().chain = None;
    f.acme.as_mut().unwrap().renew_at_ms = None;
    let (out, _, _) = run(&f, 1_000 * DAY);
    assert_eq!(checks(&out), vec![("tls.acme_pending", Severity::Error)]);
    f.production = false;
    let (out, _, _) = run(&f, 1_000 * DAY);
    assert_eq!(checks(&out), vec![("tls.acme_pending", Severity::Warning)]);
    // The database not read: not checked, with the reason.
    f.acme.as_mut().unwrap().read = false;
    f.unread_because = Some("no database yet".to_owned());
    let (out, _, skipped) = run(&f, 1_000 * DAY);
    assert!(!checks(&out).iter().any(|c| c.0.starts_with("tls.")));
    assert!(skipped
        .iter()
        .any(|s| s.check == "the ACME certificate" && s.reason == "no database yet"));
}
