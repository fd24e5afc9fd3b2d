//! Issue 16: backups. Taken while the server writes, sealed, checked by
//! restoring them, restored into a new data directory and into
//! PostgreSQL; every kind of damage refused; no plaintext inside.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::support::*;

const RECORD_CANARY: &str = "canary-record-body-5d1e";
const SEALED_CANARY: &str = "canary-sealed-field-77ab";

/// A server with a `notes` collection (a plain `body`, a sensitive
/// `secret`), its administrator's token, and an age identity file and
/// recipient for its backups.
struct Deployment {
    s: TestServer,
    admin: String,
    identity: PathBuf,
    recipient: String,
    backups: tempfile::TempDir,
    /// The PostgreSQL URL, when it runs on one.
    pg: Option<String>,
}

fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let (code, _, err) = rampart_run(&["backup", "keygen", "--out", path.to_str().unwrap()], None);
    assert_eq!(code, Some(0), "{err}");
    let recipient = err
        .lines()
        .find_map(|l| l.strip_prefix("recipient (for [backup] recipients): "))
        .expect("the recipient is printed")
        .to_owned();
    (path, recipient)
}

async fn deployment(db: Db) -> Deployment {
    let backups = tempfile::tempdir().unwrap();
    let (identity, recipient) = keygen(backups.path(), "identity.txt");
    let pg = match &db {
        Db::Postgres(url) => Some(url.clone()),
        Db::Sqlite => None,
    };
    let s = TestServer::with(Options {
        db,
        ..Options::default()
    })
    .await;
    let admin = s.admin().await;
    let r = s
        .post_auth(
            "/api/v1/admin/collections",
            &admin,
            json!({
                "name": "notes",
                "fields": {
                    "body": {"type": "text", "required": true},
                    "secret": {"type": "text", "sensitive": true}
                }
            }),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    Deployment {
        s,
        admin,
        identity,
        recipient,
        backups,
        pg,
    }
}

impl Deployment {
    fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![(
            "RAMPART_BACKUP__RECIPIENTS".to_owned(),
            format!("[\"{}\"]", self.recipient),
        )];
        if let Some(url) = &self.pg {
            env.push(("RAMPART_DATABASE_URL".to_owned(), url.clone()));
        }
        env
    }

    fn cli(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let data = self.s.data_dir();
        let mut all = vec!["--data-dir".to_owned(), data.display().to_string()];
        all.splice(0..0, args.iter().map(|a| (*a).to_owned()));
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        rampart_run_env(&all, None, &env)
    }

    async fn note(&self, i: usize) -> Option<String> {
        let r = self
            .s
            .post_auth(
                "/api/v1/collections/notes/records",
                &self.admin,
                json!({"body": format!("{RECORD_CANARY}-{i}"), "secret": format!("{SEALED_CANARY}-{i}")}),
            )
            .await;
        if r.status() != 201 {
            return None;
        }
        let v: Value = r.json().await.unwrap();
        v["id"].as_str().map(str::to_owned)
    }

    fn create(&self) -> PathBuf {
        let to = self.backups.path().display().to_string();
        let (code, out, err) = self.cli(&["backup", "create", "--to", &to]);
        assert_eq!(code, Some(0), "{out}{err}");
        written(&out)
    }
}

async fn record_ids(s: &TestServer, admin: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/api/v1/collections/notes/records?limit=100".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = s.get_auth(&path, admin).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let page = v["records"].as_array().unwrap();
        ids.extend(page.iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        match v["next_cursor"].as_str() {
            Some(n) if !page.is_empty() => cursor = Some(n.to_owned()),
            _ => return ids,
        }
    }
}

/// The file `rampart backup create` says it wrote.
fn written(out: &str) -> PathBuf {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("backup written: "))
        .unwrap_or_else(|| panic!("no file named in {out:?}"));
    PathBuf::from(line.split(" (").next().unwrap())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A copy of `file` with `edit` applied.
fn damaged(file: &Path, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(file).unwrap();
    edit(&mut bytes);
    let out = file.with_file_name(name);
    std::fs::write(&out, bytes).unwrap();
    out
}

#[tokio::test]
async fn a_backup_taken_while_the_server_writes_restores_every_acknowledged_record() {
    let d = deployment(Db::Sqlite).await;
    for i in 0..50 {
        d.note(i).await.unwrap();
    }
    // Writers keep going while the backup is taken; what was acknowledged
    // before the command started must be in it.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = Arc::new(tokio::sync::Mutex::new(d));
    let writer = {
        let (acked, stop, d) = (acked.clone(), stop.clone(), d.clone());
        tokio::spawn(async move {
            let mut i = 1_000;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let d = d.lock().await;
                if let Some(id) = d.note(i).await {
                    acked.lock().unwrap().push(id);
                }
                i += 1;
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (before, file) = {
        let guard = d.lock().await;
        let before = record_ids(&guard.s, &guard.admin).await;
        let to = guard.backups.path().display().to_string();
        let data = guard.s.data_dir().display().to_string();
        let env = guard.env();
        drop(guard);
        let out = tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            rampart_run_env(
                &["backup", "create", "--data-dir", &data, "--to", &to],
                None,
                &env,
            )
        })
        .await
        .unwrap();
        assert_eq!(out.0, Some(0), "{}{}", out.1, out.2);
        (before, written(&out.1))
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    assert!(
        !acked.lock().unwrap().is_empty(),
        "writes went on meanwhile"
    );
    let mut d = Arc::try_unwrap(d).ok().unwrap().into_inner();
    assert!(file.exists());
    assert!(file.extension().unwrap() == "rampart-backup");
    // No partial file is left beside it.
    let names: Vec<String> = std::fs::read_dir(d.backups.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".partial")), "{names:?}");

    // Nothing readable inside: record values, sealed values, the master
    // key, the administrator's session token and password.
    let bytes = std::fs::read(&file).unwrap();
    let master = std::fs::read_to_string(d.s.data_dir().join("master.key")).unwrap();
    for canary in [
        RECORD_CANARY,
        SEALED_CANARY,
        master.trim(),
        d.admin.as_str(),
        STRONG,
        "owner@example.com",
        "SQLite format 3",
    ] {
        assert!(
            !contains(&bytes, canary.as_bytes()),
            "{canary:?} is readable in the backup"
        );
    }

    // Verified with Rampart's own key (the server's), and with the identity.
    let (code, out, err) = d.cli(&["backup", "verify", file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("OK: ") && out.contains("sentinel"), "{out}");
    let id = d.identity.display().to_string();
    let (code, out, _) = d.cli(&[
        "backup",
        "verify",
        file.to_str().unwrap(),
        "--identity",
        &id,
    ]);
    assert_eq!(code, Some(0), "{out}");

    // Restored into a new data directory, beside the deployment's master
    // key (which the backup does not hold), it serves every record that
    // was acknowledged before the backup began.
    d.s.stop().await;
    let new = tempfile::tempdir().unwrap();
    let new_data = new.path().join("data");
    std::fs::create_dir(&new_data).unwrap();
    std::fs::write(new_data.join("master.key"), &master).unwrap();
    let (code, out, err) = rampart_run(
        &[
            "backup",
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            new_data.to_str().unwrap(),
            "--identity",
            &id,
        ],
        None,
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("recovery point"), "{out}");
    let restored = TestServer::with(Options {
        dir: Some(new),
        ..Options::default()
    })
    .await;
    let after = record_ids(&restored, &d.admin).await;
    for id in &before {
        assert!(
            after.contains(id),
            "record {id}, acknowledged before the backup, is missing"
        );
    }
    let r = restored
        .get_auth(
            &format!("/api/v1/collections/notes/records/{}", before[0]),
            &d.admin,
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["data"]["secret"]
            .as_str()
            .unwrap()
            .starts_with(SEALED_CANARY),
        "{v}"
    );
}

#[tokio::test]
async fn verify_refuses_truncation_a_flipped_byte_a_wrong_key_and_another_deployment() {
    let d = deployment(Db::Sqlite).await;
    for i in 0..20 {
        d.note(i).await.unwrap();
    }
    let file = d.create();
    let len = std::fs::metadata(&file).unwrap().len() as usize;
    let check = |f: &Path, extra: &[&str], want: &str| {
        let mut args = vec!["backup", "verify", f.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (code, out, err) = d.cli(&args);
        assert_eq!(code, Some(3), "{f:?} {extra:?} passed: {out}{err}");
        assert!(
            out.contains("NOT good") && out.contains(want),
            "{f:?}: {out}"
        );
    };
    let short = damaged(&file, "short.rampart-backup", |b| b.truncate(len - 100));
    check(&short, &[], "cut short");
    let flipped = damaged(&file, "flipped.rampart-backup", |b| b[len / 2] ^= 0x01);
    check(&flipped, &[], "damaged");
    let (other_id, _) = keygen(d.backups.path(), "other.txt");
    check(
        &file,
        &["--identity", other_id.to_str().unwrap()],
        "no identity",
    );
    let absurd = damaged(&file, "absurd.rampart-backup", |b| {
        let mut h = b"age-encryption.org/v1\n".to_vec();
        for _ in 0..200 {
            h.extend_from_slice(b"-> X25519 AAAA\nAAAA\n");
        }
        h.extend_from_slice(b"--- AAAA\n");
        *b = h;
    });
    check(&absurd, &[], "recipients");
    let text = damaged(&file, "text.rampart-backup", |b| *b = b"hello".to_vec());
    check(&text, &[], "not a Rampart backup");

    // A forgery by someone who knows the public recipient (ransomware
    // holding the bucket's credentials, say): a real backup's content
    // under a changed manifest, sealed to the same recipient. Only the
    // master key makes the manifest's MAC.
    let ids =
        rampart_backup::parse_identities(&std::fs::read_to_string(&d.identity).unwrap()).unwrap();
    let mut snap = Vec::new();
    let mut m = rampart_backup::read(
        std::fs::File::open(&file).unwrap(),
        &rampart_backup::Unseal::Identities(ids),
        &mut |_: &rampart_backup::Manifest, _: &str, _: &str| Ok(()),
        &mut snap,
        &mut |_| {},
    )
    .unwrap();
    m.created_at_ms += 86_400_000;
    let forged = rampart_backup::write(
        Vec::new(),
        &rampart_backup::Seal::Recipients(
            rampart_backup::parse_recipients(std::slice::from_ref(&d.recipient)).unwrap(),
        ),
        &m,
        &|line: &str| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(line.as_bytes())),
        &snap[..],
        &mut |_| {},
    )
    .unwrap();
    let forged_path = d.backups.path().join("forged.rampart-backup");
    std::fs::write(&forged_path, forged).unwrap();
    check(
        &forged_path,
        &["--identity", d.identity.to_str().unwrap()],
        "forged or changed",
    );

    // Another deployment's backup, opened with its identity, is refused
    // for its master key.
    let other = deployment(Db::Sqlite).await;
    let theirs = other.create();
    let id = other.identity.display().to_string();
    check(&theirs, &["--identity", &id], "another deployment");

    // Every check is an event of the trail.
    let r =
        d.s.get_auth(
            "/api/v1/admin/events?type=backup.verified&limit=50",
            &d.admin,
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let failures = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.to_string().contains("\"failure\""))
        .count();
    assert!(failures >= 7, "{v}");
}

#[tokio::test]
async fn restore_refuses_a_live_data_directory_and_replaces_a_stopped_one_only_when_forced() {
    let mut d = deployment(Db::Sqlite).await;
    d.note(1).await.unwrap();
    let file = d.create();
    let second = d.note(2).await.unwrap();
    let f = file.to_str().unwrap();
    // The server serves this directory: refused, even with --force.
    let (code, _, err) = d.cli(&["backup", "restore", f, "--force"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("serving"), "{err}");
    d.s.stop().await;
    // Stopped, but it holds a database: refused without --force.
    let (code, _, err) = d.cli(&["backup", "restore", f]);
    assert_ne!(code, Some(0));
    assert!(err.contains("--force"), "{err}");
    // A backup into the data directory is refused.
    let inside = d.s.data_dir().join("backups").display().to_string();
    let (code, _, err) = d.cli(&["backup", "create", "--to", &inside]);
    assert_ne!(code, Some(0));
    assert!(err.contains("data directory"), "{err}");
    assert!(!Path::new(&inside).exists(), "nothing is left inside it");
    // A damaged backup, forced: refused before anything is touched.
    let len = std::fs::metadata(&file).unwrap().len() as usize;
    let short = damaged(&file, "short.rampart-backup", |b| b.truncate(len / 2));
    let db = d.s.data_dir().join("rampart.db");
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let before = inode(&db);
    let (code, _, err) = d.cli(&["backup", "restore", short.to_str().unwrap(), "--force"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("cut short"), "{err}");
    assert_eq!(inode(&db), before, "the database was not replaced");
    assert!(!std::fs::read_dir(d.s.data_dir()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("before-restore")));
    // Forced: the old database is kept beside the restored one.
    let (code, out, err) = d.cli(&["backup", "restore", f, "--force"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let kept: Vec<_> = std::fs::read_dir(d.s.data_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("before-restore"))
        .collect();
    assert!(!kept.is_empty(), "the replaced database is kept");
    let dir = std::mem::replace(&mut d.s.dir, tempfile::tempdir().unwrap());
    let again = TestServer::with(Options {
        dir: Some(dir),
        ..Options::default()
    })
    .await;
    let ids = record_ids(&again, &d.admin).await;
    assert_eq!(ids.len(), 1, "the restored database is the backup's");
    assert!(!ids.contains(&second));
}

#[tokio::test]
async fn a_sqlite_backup_restores_into_postgresql_which_serves_it_and_backs_up_in_turn() {
    let Some(pg) = fresh_pg_schema().await else {
        return;
    };
    let mut d = deployment(Db::Sqlite).await;
    for i in 0..30 {
        d.note(i).await.unwrap();
    }
    let file = d.create();
    let before = record_ids(&d.s, &d.admin).await;
    d.s.stop().await;
    let master = std::fs::read_to_string(d.s.data_dir().join("master.key")).unwrap();
    let new = tempfile::tempdir().unwrap();
    std::fs::create_dir(new.path().join("data")).unwrap();
    std::fs::write(new.path().join("data/master.key"), &master).unwrap();
    let id = d.identity.display().to_string();
    let restore = || {
        rampart_run(
            &[
                "backup",
                "restore",
                file.to_str().unwrap(),
                "--data-dir",
                new.path().join("data").to_str().unwrap(),
                "--database-url",
                &pg,
                "--identity",
                &id,
            ],
            None,
        )
    };
    let (code, out, err) = restore();
    assert_eq!(code, Some(0), "{out}{err}");
    // A second restore into the same database is refused: it is not empty.
    let (code, _, err) = restore();
    assert_ne!(code, Some(0));
    assert!(err.contains("not empty"), "{err}");
    let served = TestServer::with(Options {
        db: Db::Postgres(pg.clone()),
        dir: Some(new),
        ..Options::default()
    })
    .await;
    assert_eq!(record_ids(&served, &d.admin).await.len(), before.len());

    // PostgreSQL backs up in turn (one repeatable-read copy), and that
    // backup verifies.
    let to = d.backups.path().join("from-pg");
    let data = served.data_dir().display().to_string();
    let env = [
        ("RAMPART_DATABASE_URL", pg.as_str()),
        (
            "RAMPART_BACKUP__RECIPIENTS",
            &format!("[\"{}\"]", d.recipient),
        ),
    ];
    let (code, out, err) = rampart_run_env(
        &[
            "backup",
            "create",
            "--data-dir",
            &data,
            "--to",
            to.to_str().unwrap(),
        ],
        None,
        &env,
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let from_pg = written(&out).display().to_string();
    let (code, out, err) = rampart_run_env(
        &["backup", "verify", &from_pg, "--data-dir", &data],
        None,
        &env,
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("from postgres"), "{out}");
}

#[tokio::test]
async fn a_passphrase_seals_and_opens_and_a_wrong_one_does_not() {
    let d = deployment(Db::Sqlite).await;
    d.note(1).await.unwrap();
    let pass = d.backups.path().join("pass.txt");
    std::fs::write(&pass, "correct horse battery staple 42\n").unwrap();
    let short = d.backups.path().join("short.txt");
    std::fs::write(&short, "too short\n").unwrap();
    let wrong = d.backups.path().join("wrong.txt");
    std::fs::write(&wrong, "incorrect horse battery staple 42\n").unwrap();
    let data = d.s.data_dir().display().to_string();
    let to = d.backups.path().join("p").display().to_string();
    let run = |args: &[&str], pass: &Path| {
        let p = pass.display().to_string();
        let mut all = args.to_vec();
        all.extend_from_slice(&["--data-dir", &data]);
        rampart_run_env(
            &all,
            None,
            &[("RAMPART_BACKUP__PASSPHRASE_FILE", p.as_str())],
        )
    };
    // A short passphrase is refused with the settings, before any work,
    // and not repeated.
    let (code, _, err) = run(&["backup", "create", "--to", &to], &short);
    assert_ne!(code, Some(0));
    assert!(err.contains("use at least 16"), "{err}");
    assert!(!err.contains("too short"), "{err}");
    let (code, out, err) = run(&["backup", "create", "--to", &to], &pass);
    assert_eq!(code, Some(0), "{out}{err}");
    let file = written(&out).display().to_string();
    let bytes = std::fs::read(&file).unwrap();
    assert!(!contains(&bytes, b"correct horse"));
    let (code, out, _) = run(&["backup", "verify", &file], &pass);
    assert_eq!(code, Some(0), "{out}");
    let (code, wrong_out, wrong_err) = run(&["backup", "verify", &file], &wrong);
    assert_eq!(code, Some(3), "{wrong_out}");
    assert!(wrong_out.contains("passphrase is wrong"), "{wrong_out}");
    // The same by --passphrase-file, whose short form is refused too.
    let (code, out, _) = rampart_run(
        &[
            "backup",
            "verify",
            &file,
            "--data-dir",
            &data,
            "--passphrase-file",
            pass.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, Some(0), "{out}");
    let (code, _, err) = rampart_run(
        &[
            "backup",
            "verify",
            &file,
            "--data-dir",
            &data,
            "--passphrase-file",
            short.to_str().unwrap(),
        ],
        None,
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("shorter than 16"), "{err}");
    // No passphrase in any output or event.
    for text in [&out, &err, &wrong_out, &wrong_err] {
        assert!(!text.contains("horse battery"), "{text}");
    }
    let events =
        d.s.get_auth("/api/v1/admin/events?limit=500", &d.admin)
            .await
            .text()
            .await
            .unwrap();
    assert!(events.contains("backup.verified"), "{events}");
    assert!(!events.contains("horse battery") && !events.contains("too short"));
}

fn backups_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".rampart-backup"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn the_server_backs_up_on_schedule_checks_each_backup_and_alerts_when_one_fails_or_is_missing(
) {
    let keys = tempfile::tempdir().unwrap();
    let (_, recipient) = keygen(keys.path(), "identity.txt");
    let dest = keys.path().join("scheduled");
    let s = TestServer::with(
        Options::default()
            .env("RAMPART_BACKUP__DIR", dest.to_str().unwrap())
            .env("RAMPART_BACKUP__RECIPIENTS", &format!("[\"{recipient}\"]"))
            .env("RAMPART_BACKUP__KEEP_DAILY", "2")
            .env("RAMPART_BACKUP__KEEP_WEEKLY", "0")
            .env("RAMPART_BACKUP__KEEP_MONTHLY", "0"),
    )
    .await;
    s.admin().await;
    let day = std::time::Duration::from_secs(86_400);
    // Three daily runs: each written, verified by restoring it, and the
    // retention keeps the newest two.
    for run in 1..=3 {
        s.clock.advance(day);
        let admin = s.login_mfa("owner@example.com").await;
        let verified = loop {
            let v = events_of(&s, &admin, "backup.verified").await;
            if v.len() >= run {
                break v;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        assert!(
            verified.iter().all(|e| e.contains("\"success\"")),
            "{verified:?}"
        );
        let r = s.get_auth("/api/v1/admin/backups", &admin).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert!(v["last_verified"]["at"].is_string(), "{v}");
    }
    assert_eq!(backups_in(&dest).len(), 2, "{:?}", backups_in(&dest));

    // The destination becomes unusable: the run fails, an alert is raised;
    // and hours later the missing backup is an event (and alert) of its own.
    std::fs::remove_dir_all(&dest).unwrap();
    std::fs::write(&dest, b"not a directory").unwrap();
    s.clock.advance(day);
    let admin = s.login_mfa("owner@example.com").await;
    let failed = wait_for_event(&s, &admin, "backup.created", "\"failure\"").await;
    assert!(!failed.contains(&recipient));
    s.clock.advance(std::time::Duration::from_secs(4 * 3600));
    let admin = s.login_mfa("owner@example.com").await;
    wait_for_event(&s, &admin, "backup.missing", "\"failure\"").await;
    for _ in 0..600 {
        let r = s
            .get_auth("/api/v1/admin/alerts?rule=rampart-backup-failed", &admin)
            .await;
        let v: Value = r.json().await.unwrap();
        if !v["alerts"].as_array().unwrap().is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no alert for the failed backup");
}

#[tokio::test]
async fn on_several_nodes_one_takes_each_scheduled_backup() {
    let Some(url) = fresh_pg_schema().await else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let (_, recipient) = keygen(keys.path(), "identity.txt");
    let node = |dest: &Path| {
        Options {
            db: Db::Postgres(url.clone()),
            ..Options::default()
        }
        .env("RAMPART_BACKUP__DIR", dest.to_str().unwrap())
        .env("RAMPART_BACKUP__RECIPIENTS", &format!("[\"{recipient}\"]"))
    };
    let (dest_a, dest_b) = (keys.path().join("a"), keys.path().join("b"));
    let a = TestServer::with(node(&dest_a)).await;
    a.admin().await;
    let key = a.data_dir().join("master.key").display().to_string();
    let b = TestServer::with(node(&dest_b).env("RAMPART_MASTER_KEY_FILE", &key)).await;
    let day = std::time::Duration::from_secs(86_400);
    a.clock.advance(day);
    b.clock.advance(day);
    let admin = a.login_mfa("owner@example.com").await;
    wait_for_event(&a, &admin, "backup.verified", "\"success\"").await;
    // Give the other node every chance to run it too.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let files = backups_in(&dest_a).len() + backups_in(&dest_b).len();
    assert_eq!(
        files,
        1,
        "a: {:?}, b: {:?}",
        backups_in(&dest_a),
        backups_in(&dest_b)
    );
    assert_eq!(events_of(&a, &admin, "backup.created").await.len(), 1);
}

/// A real S3 API on 127.0.0.1: moto's server (`moto[server]` from PyPI,
/// which `.ci/run` installs), stopped when dropped. `None` when moto is
/// not installed, outside CI.
struct Moto {
    child: std::process::Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn moto() -> Option<Moto> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = match std::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("moto_server is required under CI=true: {e}");
            }
            eprintln!("\n!!! SKIPPING the S3 test: no moto_server ({e}) !!!\n");
            return None;
        }
    };
    let m = Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some(m);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("moto_server did not start");
}

#[tokio::test]
async fn backups_go_to_s3_once_locked_against_deletion_and_overwriting() {
    let Some(s3) = moto().await else {
        return;
    };
    let http = reqwest::Client::new();
    // A bucket with Object Lock (and so versioning) on.
    let made = std::process::Command::new("python3")
        .args([
            "-c",
            "import boto3,sys; boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
             aws_access_key_id='AKIDMOTO', aws_secret_access_key='x').create_bucket(Bucket='backups', \
             ObjectLockEnabledForBucket=True)",
            &s3.url,
        ])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    let d = deployment(Db::Sqlite).await;
    d.note(1).await.unwrap();
    let secret = d.backups.path().join("s3-secret");
    std::fs::write(&secret, "moto-secret-key-canary\n").unwrap();
    let to = d.backups.path().join("local");
    let data = d.s.data_dir().display().to_string();
    let recipients = format!("[\"{}\"]", d.recipient);
    let env = [
        ("RAMPART_BACKUP__RECIPIENTS", recipients.as_str()),
        ("RAMPART_BACKUP__DIR", to.to_str().unwrap()),
        ("RAMPART_BACKUP__S3__ENDPOINT", s3.url.as_str()),
        ("RAMPART_BACKUP__S3__BUCKET", "backups"),
        ("RAMPART_BACKUP__S3__PREFIX", "acme/"),
        ("RAMPART_BACKUP__S3__ACCESS_KEY_ID", "AKIDMOTO"),
        (
            "RAMPART_BACKUP__S3__SECRET_ACCESS_KEY_FILE",
            secret.to_str().unwrap(),
        ),
        ("RAMPART_BACKUP__S3__LOCK_DAYS", "3"),
    ];
    let (code, out, err) = rampart_run_env(&["backup", "create", "--data-dir", &data], None, &env);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("uploaded to the bucket as acme/rampart-"),
        "{out}"
    );
    assert!(out.contains("locked until"), "{out}");
    assert!(!out.contains("moto-secret") && !err.contains("moto-secret"));
    let local = written(&out);
    let key = format!("acme/{}", local.file_name().unwrap().to_str().unwrap());

    // Seen by another S3 client (boto3): the object is the local file,
    // byte for byte, locked in compliance mode; its version cannot be
    // deleted before its date, by anyone.
    let script = r#"
import boto3, botocore, hashlib, json, sys
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="AKIDMOTO", aws_secret_access_key="x")
o = s3.get_object(Bucket="backups", Key=sys.argv[2])
out = {"sha256": hashlib.sha256(o["Body"].read()).hexdigest(),
       "mode": o.get("ObjectLockMode"), "until": str(o.get("ObjectLockRetainUntilDate"))}
v = s3.list_object_versions(Bucket="backups", Prefix=sys.argv[2])["Versions"][0]["VersionId"]
try:
    s3.delete_object(Bucket="backups", Key=sys.argv[2], VersionId=v)
    out["delete"] = "deleted"
except botocore.exceptions.ClientError as e:
    out["delete"] = e.response["Error"]["Code"]
print(json.dumps(out))
"#;
    let seen = std::process::Command::new("python3")
        .args(["-c", script, &s3.url, &key])
        .output()
        .unwrap();
    assert!(
        seen.status.success(),
        "{}",
        String::from_utf8_lossy(&seen.stderr)
    );
    let seen: Value = serde_json::from_slice(&seen.stdout).unwrap();
    let (sha, _) = rampart_backup::sha256_of(std::fs::File::open(&local).unwrap()).unwrap();
    assert_eq!(seen["sha256"], sha.as_str());
    assert_eq!(seen["mode"], "COMPLIANCE");
    assert_eq!(seen["delete"], "AccessDenied", "{seen}");

    // The same name is never written twice: a conditional write.
    let settings = rampart::config::S3Settings {
        endpoint: s3.url.clone(),
        bucket: "backups".into(),
        region: "us-east-1".into(),
        prefix: "acme/".into(),
        access_key_id: "AKIDMOTO".into(),
        secret_access_key: Some(rampart_crypto::SecretString::new(
            "moto-secret-key-canary".into(),
        )),
        secret_access_key_file: None,
        lock_days: 0,
        path_style: true,
    };
    let target = rampart::backup::s3::Target::from_settings(&settings).unwrap();
    let e = target
        .upload(
            &http,
            &local,
            rampart_core::Timestamp(d.s.unix_now() as i64 * 1000),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("exists already"), "{e}");

    // Each upload is an event; the trail never holds the secret.
    let uploads = events_of(&d.s, &d.admin, "backup.uploaded").await;
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert!(uploads[0].contains("\"success\"") && uploads[0].contains("locked_until"));
    let r =
        d.s.get_auth("/api/v1/admin/events?limit=500", &d.admin)
            .await;
    assert!(!r.text().await.unwrap().contains("moto-secret"));
}
