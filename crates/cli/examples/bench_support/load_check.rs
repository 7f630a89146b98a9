//! The load bench's lost check, on what the server answers once every
//! device settled: every version a device was told was committed is in
//! its item's history as it was acknowledged; every content a user saved
//! is in some version's history (conflicted copies are items too); every
//! device of a user holds the server's tree; each workspace's revisions
//! are 1..=latest with each item's versions 1..=n, none twice.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{ContentHash, ItemId, ItemMeta, WorkspaceId};

use super::load_device::Device;
use super::timed::AckedCommit;

/// What the check found for all users.
#[derive(Default)]
pub struct CheckReport {
    pub items: usize,
    pub versions: usize,
    /// Acknowledged commits checked, and those missing or different.
    pub acked: usize,
    pub lost_commits: Vec<String>,
    /// Saved contents checked, and those found nowhere.
    pub saved: usize,
    pub lost_contents: Vec<String>,
    /// Devices whose tree differs from the server's.
    pub diverged: Vec<String>,
    /// Revision gaps, versions applied twice, gaps in an item's versions.
    pub revision_problems: Vec<String>,
    /// Reads that failed.
    pub errors: Vec<String>,
}

impl CheckReport {
    pub fn lost(&self) -> usize {
        self.lost_commits.len() + self.lost_contents.len()
    }

    pub fn passed(&self) -> bool {
        self.lost() == 0
            && self.diverged.is_empty()
            && self.revision_problems.is_empty()
            && self.errors.is_empty()
    }
}

/// What to plant, to show the check can fail: for each user it looks for
/// a made-up version of one acknowledged commit and a made-up saved
/// content.
#[derive(Clone, Copy, Default)]
pub struct Plant {
    pub loss: bool,
}

/// Path -> content hash (`None` for a folder) of the live items.
pub type Tree = BTreeMap<String, Option<ContentHash>>;

/// Checks the devices of one user (`devices`, all of the same private
/// workspace) against the server, reading through the first device's
/// connection; `acked` are the commits acknowledged in that workspace.
pub async fn check_user(
    devices: &[&Device],
    acked: &[AckedCommit],
    plant: Plant,
    report: &mut CheckReport,
) {
    let Some(reader) = devices.first() else {
        return;
    };
    let ws = reader.workspace.id;
    let (latest, revision) = match server_items(reader, ws).await {
        Ok(x) => x,
        Err(e) => {
            report.errors.push(format!("reading the feed of {ws}: {e}"));
            return;
        }
    };
    // Every item's whole history, a few reads at a time.
    let histories: Vec<(ItemId, Result<Vec<ItemMeta>, String>)> =
        futures::stream::iter(latest.keys().copied())
            .map(|id| async move { (id, versions(reader, ws, id).await) })
            .buffer_unordered(8)
            .collect()
            .await;
    let mut history: BTreeMap<ItemId, Vec<ItemMeta>> = BTreeMap::new();
    for (id, h) in histories {
        match h {
            Ok(v) => {
                history.insert(id, v);
            }
            Err(e) => report
                .errors
                .push(format!("reading the versions of {id}: {e}")),
        }
    }
    report.items += history.len();
    report.versions += history.values().map(Vec::len).sum::<usize>();

    // (1) Acknowledged commits, as acknowledged.
    let mut acked: Vec<AckedCommit> = acked.to_vec();
    if plant.loss
        && let Some(first) = acked.first_mut()
    {
        first.meta.version += 1000;
    }
    let mut checked = BTreeSet::new();
    for c in &acked {
        let m = &c.meta;
        if !checked.insert((m.id, m.version)) {
            continue;
        }
        report.acked += 1;
        let found = history
            .get(&m.id)
            .and_then(|h| h.iter().find(|v| v.version == m.version));
        match found {
            None => report.lost_commits.push(format!(
                "{} was told version {} of {} ({:?}) was committed; the server has no such version",
                c.device,
                m.version,
                m.id,
                m.name.as_str()
            )),
            Some(v)
                if v.content_hash != m.content_hash
                    || v.status != m.status
                    || v.revision != m.revision
                    || v.name != m.name
                    || v.parent != m.parent =>
            {
                report.lost_commits.push(format!(
                    "{}: version {} of {} differs from what was acknowledged (revision {} vs {}, status {:?} vs {:?})",
                    c.device, m.version, m.id, v.revision, m.revision, v.status, m.status
                ))
            }
            Some(_) => {}
        }
    }

    // (2) Saved contents: in some version, or on a device (which (3)
    // compares with the server's tree).
    let mut kept: BTreeSet<ContentHash> = history
        .values()
        .flatten()
        .filter_map(|v| v.content_hash)
        .collect();
    for d in devices {
        kept.extend(d.tree().into_values().flatten());
    }
    let mut saved: BTreeMap<ContentHash, String> = BTreeMap::new();
    for d in devices {
        saved.extend(d.saved.iter().map(|(h, w)| (*h, w.clone())));
    }
    if plant.loss {
        saved.insert(
            ContentHash([0x5a; 32]),
            "a made-up content (planted)".into(),
        );
    }
    report.saved += saved.len();
    for (h, what) in &saved {
        if !kept.contains(h) {
            report.lost_contents.push(format!("content of {what}"));
        }
    }

    // (3) Convergence.
    match server_tree(&latest) {
        Ok(tree) => {
            for d in devices {
                let mine = d.tree();
                if mine != tree {
                    report.diverged.push(format!(
                        "{} differs from the server:\n{}",
                        d.name,
                        diff(&tree, &mine)
                    ));
                }
            }
        }
        Err(e) => report.revision_problems.push(e),
    }

    // (4) Revisions 1..=latest, each once; each item's versions 1..=n.
    let mut revisions: Vec<u64> = history.values().flatten().map(|v| v.revision).collect();
    revisions.sort_unstable();
    let expected: Vec<u64> = (1..=revision).collect();
    if revisions != expected {
        let have: BTreeSet<u64> = revisions.iter().copied().collect();
        let missing: Vec<u64> = expected
            .iter()
            .filter(|r| !have.contains(r))
            .copied()
            .collect();
        let twice: Vec<u64> = revisions
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect();
        report.revision_problems.push(format!(
            "workspace {ws}: revisions are not 1..={revision}: missing {:?}, twice {:?}",
            &missing[..missing.len().min(10)],
            &twice[..twice.len().min(10)]
        ));
    }
    for (id, h) in &history {
        let numbers: Vec<u64> = h.iter().map(|v| v.version).collect();
        let expected: Vec<u64> = (1..=h.len() as u64).collect();
        if numbers != expected {
            report
                .revision_problems
                .push(format!("item {id}: versions {numbers:?}"));
        }
    }
}

/// The latest state of every item of `ws` (the change feed from 0), and
/// its latest revision.
async fn server_items(
    reader: &Device,
    ws: WorkspaceId,
) -> Result<(BTreeMap<ItemId, ItemMeta>, u64), String> {
    let mut items = BTreeMap::new();
    let mut since = 0;
    loop {
        let page = match reader
            .conn()
            .rpc(Request::GetChanges {
                workspace: ws,
                since,
                limit: 1000,
            })
            .await
        {
            Ok(Reply::Changes(page)) => page,
            Ok(other) => return Err(format!("unexpected reply {other:?}")),
            Err(e) => return Err(e.to_string()),
        };
        for m in page.items {
            items.insert(m.id, m);
        }
        since = page.cursor;
        if !page.has_more {
            return Ok((items, since));
        }
    }
}

async fn versions(reader: &Device, ws: WorkspaceId, item: ItemId) -> Result<Vec<ItemMeta>, String> {
    match reader
        .conn()
        .rpc(Request::GetVersions {
            workspace: ws,
            item,
        })
        .await
    {
        Ok(Reply::Versions { versions }) => Ok(versions),
        Ok(other) => Err(format!("unexpected reply {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

fn server_tree(items: &BTreeMap<ItemId, ItemMeta>) -> Result<Tree, String> {
    let mut tree = Tree::new();
    for m in items.values().filter(|m| m.status.is_live()) {
        let mut path = m.name.as_str().to_string();
        let mut parent = m.parent;
        let mut depth = 0;
        while let Some(p) = parent {
            let folder = items
                .get(&p)
                .filter(|f| f.status.is_live())
                .ok_or_else(|| format!("live item {} sits in a dead folder {p}", m.id))?;
            path = format!("{}/{path}", folder.name.as_str());
            parent = folder.parent;
            depth += 1;
            if depth > 64 {
                return Err(format!("item {} sits in a folder cycle", m.id));
            }
        }
        let value = if m.is_folder { None } else { m.content_hash };
        if !m.is_folder && value.is_none() {
            return Err(format!("file {} has no content hash", m.id));
        }
        tree.insert(path, value);
    }
    Ok(tree)
}

fn diff(server: &Tree, device: &Tree) -> String {
    let mut out = Vec::new();
    for (p, v) in server {
        match device.get(p) {
            None => out.push(format!("  only on the server: {p}")),
            Some(w) if w != v => out.push(format!("  differs: {p}")),
            _ => {}
        }
    }
    for p in device.keys().filter(|p| !server.contains_key(*p)) {
        out.push(format!("  only on the device: {p}"));
    }
    out.truncate(20);
    out.join("\n")
}
