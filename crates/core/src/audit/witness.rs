//! The witness: every checkpoint also appended to a file outside the
//! database (one JSON line per checkpoint, one file per node), in a
//! directory of its own. Whoever can rewrite the database, even with the
//! master key, cannot rewrite what the witness already holds; `rampart
//! audit verify --witness` compares the two.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CheckpointRow;

#[derive(Debug, Clone)]
pub struct Witness {
    dir: PathBuf,
}

/// One line of a witness file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessEntry {
    pub node: String,
    pub size: u64,
    /// Unix milliseconds.
    pub at: i64,
    pub note: String,
}

impl Witness {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `node`'s checkpoints.
    pub fn path(&self, node: &str) -> PathBuf {
        self.dir.join(format!("{node}.checkpoints"))
    }

    /// Appends a checkpoint and syncs it to disk.
    pub async fn append(&self, c: &CheckpointRow) -> std::io::Result<()> {
        let line = serde_json::to_string(&WitnessEntry {
            node: c.node.clone(),
            size: c.size,
            at: c.at.millis(),
            note: c.note.clone(),
        })
        .map_err(std::io::Error::other)?;
        let path = self.path(&c.node);
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let fresh = !dir.exists();
            std::fs::create_dir_all(&dir)?;
            if fresh {
                restrict(&dir, 0o700)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            restrict(&path, 0o600)?;
            f.write_all(format!("{line}\n").as_bytes())?;
            f.sync_data()
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn restrict(_: &Path, _: u32) -> std::io::Result<()> {
    Ok(())
}

/// Reads a witness file: its entries, and the numbers of lines that are not
/// entries (a torn last line after a crash, or tampering).
pub fn read_entries(text: &str) -> (Vec<WitnessEntry>, Vec<usize>) {
    let mut entries = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<WitnessEntry>(line) {
            Ok(e) => entries.push(e),
            Err(_) => bad.push(i + 1),
        }
    }
    (entries, bad)
}
