//! Save-to-arrival latency of edits between two synced folders, and the
//! figures that summarise it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::data::Rng;

/// Save-to-arrival latencies; a missed edit counts as the deadline and is
/// listed in `missed` by number.
pub struct Latencies {
    pub samples: Vec<Duration>,
    pub missed: Vec<usize>,
}

/// What to edit and how long an edit may take.
pub struct EditPlan {
    /// Relative paths edited in turn (edit `i` saves `targets[i % len]`);
    /// edit 0 is a warm-up that is not counted.
    pub targets: Vec<String>,
    pub edits: usize,
    pub seed: u64,
    /// Pause between two measured edits, so each is timed on a quiet system.
    pub gap: Duration,
    /// How long one edit may take to reach the other side before it counts
    /// as missed.
    pub deadline: Duration,
}

/// Saves small files (0.3-4 KiB of text) `plan.edits` times in `from`
/// (atomically, like an editor) and times each until `to` holds the new
/// content, polled every 2 ms.
pub async fn measure_edits(
    from: &Path,
    to: &Path,
    scratch: &Path,
    plan: &EditPlan,
) -> anyhow::Result<Latencies> {
    let (edits, gap, deadline) = (plan.edits, plan.gap, plan.deadline);
    if plan.targets.is_empty() {
        bail!("no file to edit");
    }
    let mut rng = Rng::new(plan.seed);
    let mut out = Latencies {
        samples: Vec::with_capacity(edits),
        missed: Vec::new(),
    };
    // Edit 0 is the warm-up (it may create the file and its folder): not counted.
    for i in 0..=edits {
        let rel = &plan.targets[i % plan.targets.len()];
        if let Some(parent) = from.join(rel).parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut body = format!("edit {i}\n").into_bytes();
        let len = 256 + rng.below(3840) as usize;
        body.extend(rng.bytes(len / 2).iter().flat_map(|b| {
            let hex = b"0123456789abcdef";
            [hex[(b >> 4) as usize], hex[(b & 15) as usize]]
        }));
        // An editor's atomic save: write elsewhere, then rename into place.
        let tmp = scratch.join("edit.tmp");
        std::fs::write(&tmp, &body)?;
        let started = Instant::now();
        std::fs::rename(&tmp, from.join(rel))?;
        let target = to.join(rel);
        let arrived = loop {
            if std::fs::read(&target).ok().as_deref() == Some(&body[..]) {
                break Some(started.elapsed());
            }
            if started.elapsed() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        if i == 0 {
            if arrived.is_none() {
                bail!("the warm-up edit did not arrive within {deadline:?}");
            }
        } else {
            match arrived {
                Some(d) => out.samples.push(d),
                None => {
                    out.missed.push(i);
                    out.samples.push(deadline);
                }
            }
        }
        tokio::time::sleep(gap).await;
    }
    Ok(out)
}

/// Nearest-rank percentile in milliseconds (NaN without samples).
pub fn percentile_ms(samples: &[Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut v: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    v.sort_by(f64::total_cmp);
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// How many samples fall in each latency band.
pub fn histogram(samples: &[Duration]) -> String {
    let bands = [50u64, 100, 150, 200, 300, 500, 1000, 2000];
    let mut counts = vec![0usize; bands.len() + 1];
    for d in samples {
        let ms = d.as_millis() as u64;
        counts[bands.iter().position(|b| ms < *b).unwrap_or(bands.len())] += 1;
    }
    let mut out = Vec::new();
    let mut lower = 0;
    for (i, c) in counts.iter().enumerate() {
        let label = match bands.get(i) {
            Some(b) => format!("{lower}-{b} ms"),
            None => format!(">= {lower} ms"),
        };
        if *c > 0 {
            out.push(format!("{label}: {c}"));
        }
        lower = bands.get(i).copied().unwrap_or(lower);
    }
    out.join(", ")
}
