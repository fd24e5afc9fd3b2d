//! The data directory: created 0700 on first start, holding the SQLite
//! database, the generated TLS certificate and key, and the master key
//! file (0600). Loose permissions are warnings, or errors with `--strict`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use base64::Engine;
use rampart_crypto::{Entropy, SecretBytes, SecretString};

pub const MASTER_KEY_FILE: &str = "master.key";

#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    pub master_key: PathBuf,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// True when the certificate is Rampart's own self-signed one (renewed
    /// automatically, see [`renew_generated_cert`]).
    pub generated_cert: bool,
}

/// What was created on this start, for the banner.
#[derive(Debug, Default)]
pub struct Created {
    pub dir: bool,
    pub master_key: bool,
    pub cert: bool,
}

/// Creates `path` and its parents with mode 0700.
pub fn create_private_dir(path: &Path) -> Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    // Created with the mode, not chmod-ed after: no window where it is open.
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    Ok(true)
}

/// Creates a new file readable only by its owner (created with the mode);
/// refuses one that exists.
pub fn create_private(path: &Path) -> Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))
}

/// Writes a new file readable only by its owner; refuses to overwrite.
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = create_private(path)?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

/// Warnings for files or directories that other users can read.
pub fn permission_problems(paths: &[(&str, &Path)]) -> Vec<String> {
    let mut out = Vec::new();
    for (what, path) in paths {
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                out.push(format!(
                    "{what} {} is accessible by other users (mode {:o}); run: chmod {} {}",
                    path.display(),
                    mode,
                    if meta.is_dir() { "700" } else { "600" },
                    path.display()
                ));
            }
        }
    }
    out
}

/// Prepares the data directory; generates what is missing.
pub fn prepare(
    layout: Layout,
    now: SystemTime,
    entropy: &dyn Entropy,
    key_file: bool,
) -> Result<(Layout, Created)> {
    let mut created = Created {
        dir: create_private_dir(&layout.dir)?,
        ..Created::default()
    };
    if key_file {
        created.master_key = ensure_master_key(&layout.master_key, entropy)?;
    }
    created.cert = renew_generated_cert(&layout, now, entropy)?;
    Ok((layout, created))
}

/// Creates the master key file (32 random bytes, base64, mode 0600) when
/// it is missing; true when it did.
pub fn ensure_master_key(path: &Path, entropy: &dyn Entropy) -> Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    let mut key = [0u8; 32];
    entropy.fill(&mut key);
    let mut text = base64::engine::general_purpose::STANDARD.encode(key);
    text.push('\n');
    zeroize::Zeroize::zeroize(&mut key);
    write_private(path, text.as_bytes())?;
    zeroize::Zeroize::zeroize(&mut text);
    Ok(true)
}

/// Reads the master key. A file that is not 32 bytes of base64 is refused
/// with its path, never its content.
pub fn read_master_key(path: &Path) -> Result<SecretBytes> {
    let text = SecretString::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the master key {}", path.display()))?,
    );
    decode_master_key(&text).ok_or_else(|| {
        anyhow::anyhow!(
            "the master key {} is not 32 bytes of base64; restore it from your backup",
            path.display()
        )
    })
}

/// A master key as written in its file or `RAMPART_MASTER_KEY`: 32 bytes
/// of base64, surrounding whitespace ignored.
pub fn decode_master_key(text: &SecretString) -> Option<SecretBytes> {
    base64::engine::general_purpose::STANDARD
        .decode(text.expose_secret().trim())
        .ok()
        .filter(|b| b.len() == 32)
        .map(SecretBytes::new)
}

/// Writes a new self-signed certificate and key when Rampart's own pair is
/// missing or its certificate is within 30 days of its end. An operator's
/// certificate is never touched. Returns true when it wrote a new pair.
pub fn renew_generated_cert(
    layout: &Layout,
    now: SystemTime,
    entropy: &dyn Entropy,
) -> Result<bool> {
    if !layout.generated_cert {
        return Ok(false);
    }
    // Only a missing pair, or our own certificate near its end, is
    // replaced; a file that cannot be read is left for `CertStore` to
    // refuse with a clear message.
    let due = match fs::read_to_string(&layout.tls_cert) {
        Ok(pem) => rampart_crypto::self_signed_due(&pem, now),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read {}", layout.tls_cert.display()))
        }
    } || !layout.tls_key.exists();
    if !due {
        return Ok(false);
    }
    create_private_dir(&layout.dir.join("tls"))?;
    let ss = rampart_crypto::generate_self_signed(now, entropy)?;
    replace_private(&layout.tls_key, ss.key_pem.expose_secret().as_bytes())?;
    replace_private(&layout.tls_cert, ss.cert_pem.as_bytes())?;
    Ok(true)
}

/// Replaces `path` with a new owner-only file, through a rename so a reader
/// sees the old content or the new, never a part.
fn replace_private(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("new");
    let _ = fs::remove_file(&tmp);
    write_private(&tmp, data)?;
    fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

impl Layout {
    /// Where everything lives for this data directory and TLS setting,
    /// without touching the disk.
    pub fn of(dir: &Path, tls: Option<(PathBuf, PathBuf)>) -> Layout {
        let (tls_cert, tls_key, generated_cert) = match tls {
            Some((c, k)) => (c, k, false),
            None => (dir.join("tls/cert.pem"), dir.join("tls/key.pem"), true),
        };
        Layout {
            dir: dir.to_owned(),
            master_key: dir.join(MASTER_KEY_FILE),
            tls_cert,
            tls_key,
            generated_cert,
        }
    }
}

/// Fails with every problem when `strict`, otherwise returns them as warnings.
pub fn enforce(problems: Vec<String>, strict: bool) -> Result<Vec<String>> {
    if strict && !problems.is_empty() {
        bail!(
            "refusing to start with loose permissions (--strict):\n  {}",
            problems.join("\n  ")
        );
    }
    Ok(problems)
}
