//! Issue 5 from the command line: `collections apply`, `keys rotate`
//! (data keys and the master key), `keys status`, and a start with a
//! wrong or missing master key, against a real `rampart` process.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::support::*;

fn rampart(args: &[&str]) -> (bool, String, String) {
    rampart_cli(args, None)
}

const SCHEMA: &str = r#"
[collections.customers]
access.list = ["owner", "admin"]

[collections.customers.fields]
name = { type = "text", required = true }
email = { type = "email", sensitive = true, searchable = true, unique = true }
tax_id = { type = "text", sensitive = true, read = ["admin"] }

[collections.orders.fields]
customer = { type = "reference", collection = "customers", required = true }
total = { type = "number", min = 0 }
"#;

async fn login(p: &Proc, email: &str) -> String {
    let v: Value = p
        .client
        .post(p.url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": STRONG}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["token"].as_str().unwrap().to_owned()
}

fn digest(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

#[tokio::test]
async fn schema_file_rotation_and_master_key_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let file = dir.path().join("schema.toml");
    std::fs::File::create(&file)
        .unwrap()
        .write_all(SCHEMA.as_bytes())
        .unwrap();
    let f = file.to_str().unwrap();

    // A broken file is refused whole, naming the problem.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[collections.x.fields]\nid = { type = \"text\" }\n").unwrap();
    let (ok, _, err) = rampart(&[
        "collections",
        "apply",
        "--data-dir",
        d,
        bad.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("reserved_field_name"), "{err}");
    let (ok, out, err) = rampart(&["collections", "apply", "--check", "--data-dir", d, f]);
    assert!(
        ok && out.contains("2 collection(s), all valid"),
        "{out}{err}"
    );

    let (ok, out, err) = rampart(&["collections", "apply", "--data-dir", d, f]);
    assert!(ok, "{err}");
    assert!(
        out.contains("customers: created") && out.contains("orders: created"),
        "{out}"
    );
    // Applying the same file again changes nothing.
    let (ok, out, _) = rampart(&["collections", "apply", "--data-dir", d, f]);
    assert!(
        ok && out.contains("customers: updated (revision 1)"),
        "{out}"
    );

    let mut p = Proc::spawn(&data, &[]);
    let r = p
        .client
        .post(p.url("/api/v1/auth/register"))
        .json(&json!({"email": "m@example.com", "password": STRONG}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let token = login(&p, "m@example.com").await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let r: Value = p
            .client
            .post(p.url("/api/v1/collections/customers/records"))
            .bearer_auth(&token)
            .json(&json!({"name": format!("c{i}"), "email": format!("c{i}@example.com"), "tax_id": format!("T{i}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(r["id"].as_str().unwrap().to_owned());
    }
    // Rotation while the server runs: reads keep working.
    let (ok, out, err) = rampart(&["keys", "rotate", "--data-dir", d]);
    assert!(ok, "{err}");
    assert!(
        out.contains("Rotated 2 data key(s); re-encrypted 30 record(s)"),
        "{out}"
    );
    assert!(
        err.contains("customers: 30 record(s) re-encrypted"),
        "progress: {err}"
    );
    let r: Value = p
        .client
        .get(p.url(&format!("/api/v1/collections/customers/records/{}", ids[7])))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["data"]["email"], "c7@example.com");
    let (ok, out, _) = rampart(&["keys", "status", "--data-dir", d]);
    assert!(ok);
    assert!(
        out.contains("retired")
            && out.contains("collection:customers")
            && out.contains(" 30  active"),
        "{out}"
    );

    // The master key: a new file, every data key re-wrapped, values as they were.
    let old_master = std::fs::read(data.join("master.key")).unwrap();
    let (ok, out, err) = rampart(&["keys", "rotate", "--master", "--data-dir", d]);
    assert!(ok, "{err}");
    assert!(out.contains("re-wrapped"), "{out}");
    assert_ne!(std::fs::read(data.join("master.key")).unwrap(), old_master);
    assert!(p.terminate().await.success());
    let p = Proc::spawn(&data, &[]);
    let token = login(&p, "m@example.com").await;
    let r: Value = p
        .client
        .get(p.url(&format!("/api/v1/collections/customers/records/{}", ids[3])))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["data"]["email"], "c3@example.com");
    let mut p = p;
    assert!(p.terminate().await.success());

    // The old master key no longer opens anything: refused, nothing touched.
    let db = data.join("rampart.db");
    let before = digest(&db);
    let new_master = std::fs::read(data.join("master.key")).unwrap();
    std::fs::write(data.join("master.key"), &old_master).unwrap();
    let serve = [
        "serve",
        "--data-dir",
        d,
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "off",
    ];
    let (ok, _, err) = rampart(&serve);
    assert!(!ok);
    assert!(
        err.contains("master key (or passphrase) is not the one this database"),
        "{err}"
    );
    assert_eq!(digest(&db), before, "the database was changed");
    // A missing key file is named as missing, and no new key is left behind.
    std::fs::remove_file(data.join("master.key")).unwrap();
    let (ok, _, err) = rampart(&serve);
    assert!(!ok);
    assert!(err.contains("is missing"), "{err}");
    assert!(!data.join("master.key").exists());
    assert_eq!(digest(&db), before, "the database was changed");
    // With the right key back, all is well.
    std::fs::write(data.join("master.key"), &new_master).unwrap();
    let mut p = Proc::spawn(&data, &[]);
    assert!(p.terminate().await.success());
}

/// `serve --master-passphrase-stdin`: the master key is stretched from a
/// passphrase (no key file is written); a wrong passphrase is refused; the
/// passphrase appears in no log line and no database file.
#[tokio::test]
async fn a_master_passphrase_replaces_the_key_file() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let pass = "Canary passphrase: tidal-orchard-velvet-91";
    let serve = |passphrase: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rampart"));
        cmd.env("RAMPART_METRICS_LISTEN", "127.0.0.1:0");
        cmd.args([
            "serve",
            "--data-dir",
            d,
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "off",
            "--master-passphrase-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        for (k, _) in std::env::vars() {
            if k.starts_with("RAMPART_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(format!("{passphrase}\n").as_bytes())
            .unwrap();
        drop(stdin);
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        pump(child.stdout.take().unwrap(), out.clone());
        pump(child.stderr.take().unwrap(), err.clone());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let text = String::from_utf8_lossy(&err.lock().unwrap()).into_owned();
            if text.contains("HTTPS:") {
                return (Some(child), out, text);
            }
            if let Ok(Some(_)) = child.try_wait() {
                std::thread::sleep(std::time::Duration::from_millis(100));
                let text = String::from_utf8_lossy(&err.lock().unwrap()).into_owned();
                return (None, out, text);
            }
            assert!(std::time::Instant::now() < deadline, "{text}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let stop = |mut child: std::process::Child| {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        assert!(child.wait().unwrap().success());
    };
    let (child, out, _) = serve(pass);
    stop(child.expect("started with a passphrase"));
    assert!(
        !data.join("master.key").exists(),
        "no key file with a passphrase"
    );
    let (child, _, err) = serve("a different passphrase, long enough");
    assert!(child.is_none());
    assert!(err.contains("is not the one this database"), "{err}");
    let (child, _, err) = serve("short");
    assert!(child.is_none());
    assert!(err.contains("at least 16 characters"), "{err}");
    let (child, out2, err) = serve(pass);
    stop(child.expect("the right passphrase starts again"));
    assert!(!err.contains(pass));
    for o in [out, out2] {
        assert!(!String::from_utf8_lossy(&o.lock().unwrap()).contains(pass));
    }
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(pass.len()).any(|w| w == pass.as_bytes()),
                "{}",
                path.display()
            );
        }
    }
}

/// `RAMPART_MASTER_KEY`: the key from the environment, no key file written;
/// another key in the environment is refused (the master fingerprint).
#[test]
fn the_master_key_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let status = |key: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rampart"));
        cmd.args(["keys", "status", "--data-dir", d])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars() {
            if k.starts_with("RAMPART_") {
                cmd.env_remove(k);
            }
        }
        let out = cmd.env("RAMPART_MASTER_KEY", key).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let (ok, out, err) = status(key);
    assert!(ok, "{err}");
    assert!(out.contains("system"), "{out}");
    assert!(
        !data.join("master.key").exists(),
        "no key file with RAMPART_MASTER_KEY"
    );
    let (ok, _, _) = status(key);
    assert!(ok);
    let (ok, _, err) = status("HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4=");
    assert!(!ok);
    assert!(err.contains("is not the one this database"), "{err}");
    let (ok, _, err) = status("not-base64!");
    assert!(!ok);
    assert!(
        err.contains("RAMPART_MASTER_KEY is not 32 bytes of base64"),
        "{err}"
    );
    assert!(!err.contains("not-base64!"), "the key is never echoed");
}
