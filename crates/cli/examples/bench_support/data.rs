//! Data sets: reproducible bytes, manifests of what a folder must hold, and
//! the checks that a folder holds it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Reproducible incompressible bytes (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        for chunk in out.chunks_mut(8) {
            let b = self.next().to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        out
    }
}

/// Expected content of a folder: relative path -> (size, BLAKE3).
pub type Manifest = BTreeMap<String, (u64, blake3::Hash)>;

/// Writes `data` at `rel` under `root` (creating folders) and records it.
pub fn put_file(
    root: &Path,
    manifest: &mut Manifest,
    rel: String,
    data: &[u8],
) -> anyhow::Result<()> {
    let path = root.join(&rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
    manifest.insert(rel, (data.len() as u64, blake3::hash(data)));
    Ok(())
}

pub fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Paths of `manifest` that `root` does not hold yet with the expected
/// content; checks sizes first and hashes only files of the right size.
pub fn missing(root: &Path, manifest: &Manifest, pending: &[String]) -> Vec<String> {
    pending
        .iter()
        .filter(|rel| {
            let (size, hash) = manifest[*rel];
            let path = root.join(rel);
            match std::fs::metadata(&path) {
                Ok(m) if m.len() == size => {
                    std::fs::read(&path).ok().map(|b| blake3::hash(&b)) != Some(hash)
                }
                _ => true,
            }
        })
        .cloned()
        .collect()
}

/// Every path of `manifest` that `root` does not hold with its content.
pub fn missing_all(root: &Path, manifest: &Manifest) -> Vec<String> {
    let all: Vec<String> = manifest.keys().cloned().collect();
    missing(root, manifest, &all)
}

/// Waits until `root` holds everything in `manifest`, polling every `poll`,
/// for at most `deadline`; returns when the first file arrived and when the
/// last did (both measured from `started`).
pub async fn wait_for_manifest(
    root: PathBuf,
    manifest: Arc<Manifest>,
    started: Instant,
    deadline: Duration,
    poll: Duration,
) -> anyhow::Result<(Duration, Duration)> {
    let mut pending: Vec<String> = manifest.keys().cloned().collect();
    let mut first = None;
    loop {
        let (r, m, p) = (root.clone(), manifest.clone(), pending.clone());
        let left = tokio::task::spawn_blocking(move || missing(&r, &m, &p)).await?;
        if first.is_none() && left.len() < manifest.len() {
            first = Some(started.elapsed());
        }
        if left.is_empty() {
            return Ok((first.unwrap_or_default(), started.elapsed()));
        }
        if started.elapsed() > deadline {
            bail!(
                "{} of {} files did not reach {} within {deadline:?} (first: {:?})",
                left.len(),
                manifest.len(),
                root.display(),
                left.first()
            );
        }
        pending = left;
        tokio::time::sleep(poll).await;
    }
}
