use std::collections::BTreeMap;

use rampart_crypto::SecretString;

use super::*;
use sha2::{Digest, Sha256};

const CANARY: &[u8] = b"canary-record-value-7f3a91";

fn snapshot() -> Vec<u8> {
    let mut s = Vec::new();
    for i in 0..20_000u32 {
        s.extend_from_slice(CANARY);
        s.extend_from_slice(&i.to_le_bytes());
    }
    s
}

fn manifest(snap: &[u8]) -> Manifest {
    let (sha, n) = sha256_of(snap).unwrap();
    Manifest {
        format: 1,
        rampart_version: "0.1.0".into(),
        created_at: "2026-12-07T07:00:00Z".into(),
        created_at_ms: 1_796_626_800_000,
        schema_version: 10,
        source: "sqlite".into(),
        tables: BTreeMap::from([("accounts".to_owned(), 3)]),
        chain_heads: vec![ChainHead {
            node: "n1".into(),
            seq: 41,
            link: "ab".repeat(32),
        }],
        master_fingerprint: Some("fp".into()),
        master_kdf: None,
        sentinel: "sentinel-1".into(),
        snapshot_bytes: n,
        snapshot_sha256: sha,
    }
}

/// The deployment's MAC of a manifest line, in these tests: a SHA-256
/// under a key (the real one is an HMAC under the master key).
fn mac(line: &str) -> String {
    mac_with("deployment-key", line)
}

fn mac_with(key: &str, line: &str) -> String {
    hex::encode(Sha256::digest(format!("{key}\0{line}").as_bytes()))
}

fn authentic(_: &Manifest, line: &str, got: &str) -> Result<(), String> {
    if mac(line) == got {
        Ok(())
    } else {
        Err("the manifest's MAC does not match".into())
    }
}

fn keys() -> (Seal, Unseal) {
    let id = age::x25519::Identity::generate();
    (
        Seal::Recipients(vec![id.to_public()]),
        Unseal::Identities(vec![id]),
    )
}

fn backup(seal: &Seal, snap: &[u8]) -> Vec<u8> {
    let mut seen = 0;
    let out = write(Vec::new(), seal, &manifest(snap), &mac, snap, &mut |n| {
        seen = n
    })
    .unwrap();
    assert_eq!(seen, snap.len() as u64, "progress reaches the end");
    out
}

fn restore(file: &[u8], unseal: &Unseal) -> Result<(Manifest, Vec<u8>), Error> {
    let mut out = Vec::new();
    let m = read(file, unseal, &mut authentic, &mut out, &mut |_| {})?;
    Ok((m, out))
}

#[test]
fn a_backup_reads_back_whole_and_holds_no_plaintext() {
    let snap = snapshot();
    let (seal, unseal) = keys();
    let file = backup(&seal, &snap);
    assert!(
        !file.windows(CANARY.len()).any(|w| w == CANARY),
        "plaintext in the file"
    );
    assert!(
        file.len() < snap.len() / 4,
        "compressed: {} of {}",
        file.len(),
        snap.len()
    );
    let (m, back) = restore(&file, &unseal).unwrap();
    assert_eq!(m, manifest(&snap));
    assert_eq!(back, snap);
}

#[test]
fn a_passphrase_opens_what_it_sealed_and_nothing_else_does() {
    let snap = snapshot();
    let seal = Seal::Passphrase(SecretString::new("correct horse battery staple".into()));
    let file = backup(&seal, &snap);
    let (_, back) = restore(
        &file,
        &Unseal::Passphrase(SecretString::new("correct horse battery staple".into())),
    )
    .unwrap();
    assert_eq!(back, snap);
    let wrong = restore(
        &file,
        &Unseal::Passphrase(SecretString::new("wrong horse".into())),
    );
    assert!(matches!(wrong, Err(Error::WrongKey)), "{wrong:?}");
    let (_, identities) = keys();
    let other = restore(&file, &identities);
    assert!(matches!(other, Err(Error::WrongKind)), "{other:?}");
}

#[test]
fn another_identity_is_refused() {
    let snap = snapshot();
    let (seal, _) = keys();
    let (_, other) = keys();
    let file = backup(&seal, &snap);
    assert!(matches!(restore(&file, &other), Err(Error::WrongKey)));
}

#[test]
fn truncation_anywhere_is_caught() {
    let snap = snapshot();
    let (seal, unseal) = keys();
    let file = backup(&seal, &snap);
    for cut in [0, 10, 100, file.len() / 2, file.len() - 1] {
        let r = restore(&file[..cut], &unseal);
        assert!(r.is_err(), "cut at {cut} of {} read back", file.len());
    }
}

#[test]
fn a_flipped_byte_anywhere_is_caught() {
    let snap = snapshot();
    let (seal, unseal) = keys();
    let file = backup(&seal, &snap);
    for at in [5, 60, 150, file.len() / 2, file.len() - 5] {
        let mut bad = file.clone();
        bad[at] ^= 0x01;
        let r = restore(&bad, &unseal);
        assert!(r.is_err(), "a flip at {at} of {} read back", file.len());
    }
}

#[test]
fn a_manifest_that_lies_about_the_snapshot_is_caught() {
    let snap = snapshot();
    let (seal, unseal) = keys();
    // A hash that is not the snapshot's.
    let mut m = manifest(&snap);
    m.snapshot_sha256 = "00".repeat(32);
    let file = write(Vec::new(), &seal, &m, &mac, &snap[..], &mut |_| {}).unwrap();
    let r = restore(&file, &unseal);
    assert!(matches!(r, Err(Error::Damaged(_))), "{r:?}");
    // A size larger than the snapshot: refused while writing.
    let mut m = manifest(&snap);
    m.snapshot_bytes += 1;
    assert!(write(Vec::new(), &seal, &m, &mac, &snap[..], &mut |_| {}).is_err());
}

#[test]
fn an_absurd_age_header_is_refused_unread() {
    let (_, unseal) = keys();
    let mut file = b"age-encryption.org/v1\n".to_vec();
    for _ in 0..=MAX_STANZAS {
        file.extend_from_slice(b"-> X25519 AAAA\nAAAA\n");
    }
    file.extend_from_slice(b"--- AAAA\n");
    let r = restore(&file, &unseal);
    assert!(matches!(r, Err(Error::HeaderTooLarge)), "{r:?}");
    let mut long = b"age-encryption.org/v1\n".to_vec();
    long.extend(std::iter::repeat_n(b'A', MAX_HEADER + 10));
    let r = restore(&long, &unseal);
    assert!(matches!(r, Err(Error::HeaderTooLarge)), "{r:?}");
}

#[test]
fn what_is_not_a_backup_says_so() {
    let (_, unseal) = keys();
    let r = restore(b"SQLite format 3\0", &unseal);
    assert!(matches!(r, Err(Error::NotAge)), "{r:?}");
    let r = restore(b"", &unseal);
    assert!(matches!(r, Err(Error::NotAge)), "{r:?}");
}

#[test]
fn errors_and_debug_never_show_a_key() {
    let id = age::x25519::Identity::generate();
    let secret = id.to_string();
    let unseal = Unseal::Identities(vec![id]);
    assert!(!format!("{unseal:?}").contains("AGE-SECRET-KEY"));
    let pass = Unseal::Passphrase(SecretString::new("hunter2-passphrase".into()));
    assert!(!format!("{pass:?}").contains("hunter2"));
    let bad = format!(
        "{}\nAGE-SECRET-KEY-1NOTAKEY\n",
        age::secrecy::ExposeSecret::expose_secret(&secret)
    );
    let Err(e) = parse_identities(&bad) else {
        panic!("a bad identity line was accepted");
    };
    assert!(!e.contains("NOTAKEY"), "{e}");
    assert!(e.contains("line 2"), "{e}");
    let e = parse_recipients(&["age1notarecipientatallreally".into()]).unwrap_err();
    assert!(e.contains("not an age"), "{e}");
}

#[test]
fn the_check_identity_is_the_same_for_the_same_secret_and_opens_what_its_recipient_sealed() {
    let a = identity_from_secret(&[7u8; 32]).unwrap();
    let b = identity_from_secret(&[7u8; 32]).unwrap();
    let c = identity_from_secret(&[8u8; 32]).unwrap();
    assert_eq!(a.to_public().to_string(), b.to_public().to_string());
    assert_ne!(a.to_public().to_string(), c.to_public().to_string());
    assert!(identity_from_secret(&[7u8; 31]).is_err());
    let snap = snapshot();
    let m = manifest(&snap);
    let file = write(
        Vec::new(),
        &Seal::Recipients(vec![
            age::x25519::Identity::generate().to_public(),
            a.to_public(),
        ]),
        &m,
        &mac,
        &snap[..],
        &mut |_| {},
    )
    .unwrap();
    let mut out = Vec::new();
    read(
        &file[..],
        &Unseal::Identities(vec![b]),
        &mut authentic,
        &mut out,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(out, snap);
}

#[test]
fn a_forged_manifest_is_refused_before_a_byte_of_its_snapshot_is_written() {
    // Anyone who knows a recipient can make a well-formed backup; only
    // the deployment can make the MAC. A huge `snapshot_bytes` is never
    // acted on.
    let snap = snapshot();
    let (seal, unseal) = keys();
    let mut m = manifest(&snap);
    m.tables.insert("accounts".into(), 1);
    let forged = write(
        Vec::new(),
        &seal,
        &m,
        &|l: &str| mac_with("attacker", l),
        &snap[..],
        &mut |_| {},
    )
    .unwrap();
    let mut out = Vec::new();
    let mut asked = 0;
    let r = read(
        &forged[..],
        &unseal,
        &mut |m: &Manifest, l: &str, got: &str| {
            asked += 1;
            assert_eq!(m.tables["accounts"], 1);
            authentic(m, l, got)
        },
        &mut out,
        &mut |_| {},
    );
    assert!(matches!(r, Err(Error::Unauthentic(_))), "{r:?}");
    assert_eq!(asked, 1);
    assert!(out.is_empty(), "no snapshot byte was written");
    // A MAC that is not one printable word is refused when writing.
    assert!(write(
        Vec::new(),
        &seal,
        &m,
        &|_: &str| "two words".into(),
        &snap[..],
        &mut |_| {}
    )
    .is_err());
}
