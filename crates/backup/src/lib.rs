//! Rampart's backup file (ADR 0013): a manifest and a database snapshot,
//! compressed with zstd and encrypted with age, to X25519 recipients or to
//! a passphrase.
//!
//! The plaintext is the line [`MAGIC`], one line of JSON (the
//! [`Manifest`]), one line holding the manifest's MAC (made by the caller
//! with a key only the deployment holds: age proves nothing of who made a
//! file, and recipients are public), then exactly `snapshot_bytes` bytes
//! of the snapshot, and nothing after. Reading checks the age header's
//! size before any key is tried, then the magic line and the manifest,
//! hands both with the MAC to the caller to authenticate before a single
//! snapshot byte is written, then the snapshot's size and SHA-256. This
//! crate does no I/O of its own: callers hand it readers and writers.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};

pub use age;
use rampart_crypto::SecretString;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The first line of every backup's plaintext.
pub const MAGIC: &[u8] = b"RAMPART-BACKUP 1\n";
/// The manifest line's longest allowed length.
pub const MAX_MANIFEST: usize = 1 << 20;
/// The most recipient stanzas an age header may carry, and its longest
/// allowed size: a hostile file cannot make reading it costly.
pub const MAX_STANZAS: usize = 64;
pub const MAX_HEADER: usize = 64 * 1024;
/// scrypt's work factor for passphrases (age's own default), which is
/// also the most a file may ask of the reader (256 MiB).
const SCRYPT_LOG_N: u8 = 18;
/// The MAC line's longest allowed length.
const MAX_MAC: usize = 256;
/// zstd level: the fastest but one (level 3 cost four times as much on
/// sealed values and JSON for a few per cent of size; bench/README.md).
const ZSTD_LEVEL: i32 = 1;
/// zstd's worker threads: compression runs beside encryption and hashing.
const ZSTD_WORKERS: u32 = 2;

/// One node's audit chain at the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub node: String,
    /// The last event's sequence number.
    pub seq: u64,
    /// Its link (hex), which commits to every event before it.
    pub link: String,
}

/// What a backup says of itself, inside its encryption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// This file format's version (1).
    pub format: u32,
    pub rampart_version: String,
    /// When the snapshot was taken: RFC 3339 and Unix milliseconds.
    pub created_at: String,
    pub created_at_ms: i64,
    /// The database schema version (migrations applied).
    pub schema_version: i64,
    /// Where the snapshot was taken from: `sqlite` or `postgres`.
    pub source: String,
    /// Rows per table.
    pub tables: BTreeMap<String, u64>,
    pub chain_heads: Vec<ChainHead>,
    /// The master key's fingerprint (never the key): which deployment's
    /// master key opens the sealed fields inside.
    pub master_fingerprint: Option<String>,
    /// The value of the sentinel row committed just before the snapshot.
    pub sentinel: String,
    /// How the master key is stretched when it is a passphrase (never
    /// the passphrase): what a restore into a new directory needs to
    /// derive it before it can authenticate this manifest.
    #[serde(default)]
    pub master_kdf: Option<MasterKdf>,
    /// The snapshot: a SQLite database file.
    pub snapshot_bytes: u64,
    pub snapshot_sha256: String,
}

/// The salt (base64) and Argon2id cost of a passphrase master key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterKdf {
    pub salt: String,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

/// The manifest as the file holds it (and as its MAC covers it).
pub fn manifest_line(manifest: &Manifest) -> Result<String, Error> {
    serde_json::to_string(manifest).map_err(|e| Error::Damaged(e.to_string()))
}

/// Whom a backup is encrypted to.
pub enum Seal {
    Recipients(Vec<age::x25519::Recipient>),
    Passphrase(SecretString),
}

/// What opens a backup.
pub enum Unseal {
    Identities(Vec<age::x25519::Identity>),
    Passphrase(SecretString),
}

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Seal::Recipients(r) => write!(f, "Seal::Recipients({} recipients)", r.len()),
            Seal::Passphrase(_) => f.write_str("Seal::Passphrase([redacted])"),
        }
    }
}

impl std::fmt::Debug for Unseal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unseal::Identities(i) => write!(f, "Unseal::Identities({} identities)", i.len()),
            Unseal::Passphrase(_) => f.write_str("Unseal::Passphrase([redacted])"),
        }
    }
}

/// Why a backup could not be written or read. No message holds a key,
/// a passphrase or a byte of the backup's content.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not a Rampart backup (no age header)")]
    NotAge,
    #[error("the backup's age header is larger than {MAX_HEADER} bytes or has more than {MAX_STANZAS} recipients; refused unread")]
    HeaderTooLarge,
    #[error("no identity or passphrase given opens this backup (it was encrypted to other recipients, or the passphrase is wrong)")]
    WrongKey,
    #[error("the backup asks for a passphrase, and none was given (or asks for an identity, and a passphrase was given)")]
    WrongKind,
    #[error("the backup is damaged: {0}")]
    Damaged(String),
    #[error("the backup ends early: {0}")]
    Truncated(String),
    #[error("{0}")]
    Unauthentic(String),
    #[error("no recipients to encrypt to")]
    NoRecipients,
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Parses `age1…` recipients (one per entry).
pub fn parse_recipients(keys: &[String]) -> Result<Vec<age::x25519::Recipient>, String> {
    keys.iter()
        .map(|k| {
            k.trim()
                .parse::<age::x25519::Recipient>()
                .map_err(|_| format!("`{}` is not an age X25519 recipient (age1…)", short(k)))
        })
        .collect()
}

/// Reads an age identity file: `AGE-SECRET-KEY-1…` lines, `#` comments.
/// The error never repeats a line of the file.
pub fn parse_identities(text: &str) -> Result<Vec<age::x25519::Identity>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let id = line
            .parse::<age::x25519::Identity>()
            .map_err(|_| format!("line {} is not an age X25519 identity", i + 1))?;
        out.push(id);
    }
    if out.is_empty() {
        return Err("no age identity in the file".into());
    }
    Ok(out)
}

/// The age X25519 identity whose secret is these 32 bytes: how Rampart's
/// own backup recipient is kept (a data key, wrapped by the master key).
pub fn identity_from_secret(secret: &[u8]) -> Result<age::x25519::Identity, String> {
    use bech32::ToBase32;
    if secret.len() != 32 {
        return Err("a backup check secret is 32 bytes".into());
    }
    let lower = SecretString::new(
        bech32::encode(
            "age-secret-key-",
            secret.to_base32(),
            bech32::Variant::Bech32,
        )
        .map_err(|_| "cannot encode the backup check identity".to_owned())?,
    );
    let text = SecretString::new(lower.expose_secret().to_uppercase());
    text.expose_secret()
        .parse::<age::x25519::Identity>()
        .map_err(|_| "cannot read the backup check identity".to_owned())
}

fn short(s: &str) -> String {
    let s = s.trim();
    if s.len() > 12 {
        format!("{}…", s.chars().take(12).collect::<String>())
    } else {
        s.to_owned()
    }
}

/// Writes a backup of `snapshot` (exactly `manifest.snapshot_bytes`
/// bytes, whose SHA-256 is `manifest.snapshot_sha256`) to `out`, with
/// `mac_of`'s MAC of the manifest line; `progress` hears the snapshot
/// bytes written so far. Returns `out`.
pub fn write<W: Write>(
    out: W,
    seal: &Seal,
    manifest: &Manifest,
    mac_of: &dyn Fn(&str) -> String,
    mut snapshot: impl Read,
    progress: &mut dyn FnMut(u64),
) -> Result<W, Error> {
    let encryptor = match seal {
        Seal::Recipients(r) if r.is_empty() => return Err(Error::NoRecipients),
        Seal::Recipients(r) => {
            age::Encryptor::with_recipients(r.iter().map(|r| r as &dyn age::Recipient))
                .map_err(|e| Error::Damaged(format!("cannot encrypt: {e}")))?
        }
        Seal::Passphrase(p) => {
            let mut r = age::scrypt::Recipient::new(age::secrecy::SecretString::from(
                p.expose_secret().to_owned(),
            ));
            r.set_work_factor(SCRYPT_LOG_N);
            age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
                .map_err(|e| Error::Damaged(format!("cannot encrypt: {e}")))?
        }
    };
    let sealed = encryptor.wrap_output(out)?;
    let mut z = zstd::stream::write::Encoder::new(sealed, ZSTD_LEVEL)?;
    z.multithread(ZSTD_WORKERS)?;
    z.write_all(MAGIC)?;
    let line = manifest_line(manifest)?;
    let mac = mac_of(&line);
    if mac.is_empty() || mac.len() > MAX_MAC || !mac.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Damaged(
            "the manifest's MAC is not one printable word".into(),
        ));
    }
    z.write_all(line.as_bytes())?;
    z.write_all(b"\n")?;
    z.write_all(mac.as_bytes())?;
    z.write_all(b"\n")?;
    let mut buf = vec![0u8; 1 << 20];
    let mut written = 0u64;
    loop {
        let n = snapshot.read(&mut buf)?;
        if n == 0 {
            break;
        }
        z.write_all(&buf[..n])?;
        written += n as u64;
        progress(written);
    }
    if written != manifest.snapshot_bytes {
        return Err(Error::Damaged(format!(
            "the snapshot was {written} bytes, the manifest says {}",
            manifest.snapshot_bytes
        )));
    }
    let sealed = z.finish()?;
    Ok(sealed.finish()?)
}

/// Reads a backup from `input`: checks the age header's size, decrypts,
/// decompresses, checks the magic line and the manifest, has
/// `authenticate` check the manifest line against its MAC (refusing the
/// file before any snapshot byte is written when it says no), copies the
/// snapshot to `snapshot` while hashing it, and checks its size, hash and
/// that nothing follows. `progress` hears the snapshot bytes read so far.
pub fn read(
    input: impl Read,
    unseal: &Unseal,
    authenticate: &mut dyn FnMut(&Manifest, &str, &str) -> Result<(), String>,
    snapshot: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<Manifest, Error> {
    let mut input = BufReader::new(input);
    let header = read_header(&mut input)?;
    let whole = io::Cursor::new(header).chain(input);
    let decryptor = age::Decryptor::new(whole).map_err(|e| match e {
        age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => Error::NotAge,
        other => Error::Damaged(format!("age header: {other}")),
    })?;
    let plain = match unseal {
        Unseal::Identities(ids) => {
            if decryptor.is_scrypt() {
                return Err(Error::WrongKind);
            }
            decryptor.decrypt(ids.iter().map(|i| i as &dyn age::Identity))
        }
        Unseal::Passphrase(p) => {
            if !decryptor.is_scrypt() {
                return Err(Error::WrongKind);
            }
            let mut id = age::scrypt::Identity::new(age::secrecy::SecretString::from(
                p.expose_secret().to_owned(),
            ));
            id.set_max_work_factor(SCRYPT_LOG_N);
            decryptor.decrypt(std::iter::once(&id as &dyn age::Identity))
        }
    }
    .map_err(|e| match e {
        age::DecryptError::NoMatchingKeys | age::DecryptError::DecryptionFailed => Error::WrongKey,
        age::DecryptError::ExcessiveWork { .. } => {
            Error::Damaged("the passphrase's work factor is beyond what Rampart accepts".into())
        }
        other => Error::Damaged(format!("cannot decrypt: {other}")),
    })?;
    let z = zstd::stream::read::Decoder::new(plain)?;
    let mut z = BufReader::new(z);
    let damaged_io = |e: io::Error, what: &str| {
        match e.kind() {
        io::ErrorKind::UnexpectedEof => Error::Truncated(what.to_owned()),
        // age's STREAM: a chunk whose tag fails, or a last chunk missing.
        io::ErrorKind::InvalidData if e.to_string().contains("decryption") => Error::Damaged(
            format!("{what}: the encrypted data fails its integrity check (the file was cut short or changed)"),
        ),
        _ => Error::Damaged(format!("{what}: {e}")),
    }
    };
    let mut magic = [0u8; MAGIC.len()];
    z.read_exact(&mut magic)
        .map_err(|e| damaged_io(e, "no Rampart backup header"))?;
    if magic != MAGIC {
        return Err(Error::Damaged(
            "the decrypted content is not a Rampart backup".into(),
        ));
    }
    let mut line = Vec::new();
    (&mut z)
        .take(MAX_MANIFEST as u64 + 1)
        .read_until(b'\n', &mut line)
        .map_err(|e| damaged_io(e, "the manifest"))?;
    if line.last() != Some(&b'\n') {
        return Err(if line.len() > MAX_MANIFEST {
            Error::Damaged("the manifest is too long".into())
        } else {
            Error::Truncated("within the manifest".into())
        });
    }
    let line = String::from_utf8(line[..line.len() - 1].to_vec())
        .map_err(|_| Error::Damaged("the manifest is not UTF-8".into()))?;
    let manifest: Manifest = serde_json::from_str(&line)
        .map_err(|e| Error::Damaged(format!("the manifest is not valid: {e}")))?;
    if manifest.format != 1 {
        return Err(Error::Damaged(format!(
            "backup format {} is newer than this Rampart reads (1)",
            manifest.format
        )));
    }
    let mut mac = Vec::new();
    (&mut z)
        .take(MAX_MAC as u64 + 1)
        .read_until(b'\n', &mut mac)
        .map_err(|e| damaged_io(e, "the manifest's MAC"))?;
    if mac.last() != Some(&b'\n') {
        return Err(if mac.len() > MAX_MAC {
            Error::Damaged("the manifest's MAC is too long".into())
        } else {
            Error::Truncated("within the manifest's MAC".into())
        });
    }
    let mac = std::str::from_utf8(&mac[..mac.len() - 1])
        .map_err(|_| Error::Damaged("the manifest's MAC is not text".into()))?;
    authenticate(&manifest, &line, mac).map_err(Error::Unauthentic)?;
    let mut hash = Sha256::new();
    let mut left = manifest.snapshot_bytes;
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = z
            .read(&mut buf[..want])
            .map_err(|e| damaged_io(e, "the snapshot"))?;
        if n == 0 {
            return Err(Error::Truncated(format!(
                "the snapshot has {done} of {} bytes",
                manifest.snapshot_bytes
            )));
        }
        hash.update(&buf[..n]);
        snapshot.write_all(&buf[..n])?;
        left -= n as u64;
        done += n as u64;
        progress(done);
    }
    let mut extra = [0u8; 1];
    if z.read(&mut extra)
        .map_err(|e| damaged_io(e, "after the snapshot"))?
        != 0
    {
        return Err(Error::Damaged("there is data after the snapshot".into()));
    }
    if hex::encode(hash.finalize()) != manifest.snapshot_sha256 {
        return Err(Error::Damaged(
            "the snapshot's SHA-256 is not the manifest's".into(),
        ));
    }
    Ok(manifest)
}

/// Reads the age header (up to and including the `---` line), refusing
/// one that is too large or names too many recipients.
fn read_header(input: &mut impl BufRead) -> Result<Vec<u8>, Error> {
    let mut header = Vec::new();
    let mut stanzas = 0usize;
    let mut first = true;
    loop {
        let mut line = Vec::new();
        let n = input
            .take((MAX_HEADER - header.len()) as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(if first {
                Error::NotAge
            } else {
                Error::Truncated("within the age header".into())
            });
        }
        if first && !line.starts_with(b"age-encryption.org/") {
            return Err(Error::NotAge);
        }
        first = false;
        header.extend_from_slice(&line);
        if header.len() > MAX_HEADER {
            return Err(Error::HeaderTooLarge);
        }
        if line.starts_with(b"-> ") {
            stanzas += 1;
            if stanzas > MAX_STANZAS {
                return Err(Error::HeaderTooLarge);
            }
        }
        if line.starts_with(b"--- ") {
            return Ok(header);
        }
        if line.last() != Some(&b'\n') {
            return Err(Error::Truncated("within the age header".into()));
        }
    }
}

/// The SHA-256 (hex) of everything `r` yields, and its length.
pub fn sha256_of(mut r: impl Read) -> io::Result<(String, u64)> {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n_total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok((hex::encode(hash.finalize()), n_total));
        }
        hash.update(&buf[..n]);
        n_total += n as u64;
    }
}

#[cfg(test)]
mod tests;
