//! The change feed's answer about this device's own commits, known without
//! asking. Revisions are gap-free per workspace (one per accepted
//! version), so when the versions a device just committed hold exactly the
//! revisions `since + 1 ..= R`, the feed read from `since` holds those
//! versions and nothing else, up to cursor `R`: the page the server would
//! send is the commit's own metadata. After a commit the engine reads the
//! feed from its cursor before the commit; answering that read here spares
//! the device downloading its own change. Any other read goes to the
//! server. A page built here says more may follow (`has_more`), so the
//! engine always goes on to read the feed from the server past its own
//! commits: the read may be the one a notification about someone else's
//! change started, and that change must not wait for the next one.

use stacksync_proto::{ChangesPage, CommitOutcome, CommitResult, ItemId, ItemMeta, WorkspaceId};

/// This device's commits since the feed position `since`, with no other
/// change between them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OwnChanges {
    known: Option<Known>,
}

#[derive(Debug, Clone, PartialEq)]
struct Known {
    since: u64,
    /// The latest version of each item committed, in revision order; their
    /// revisions are exactly `since + 1 ..= cursor`, less the earlier
    /// versions of items committed twice.
    items: Vec<ItemMeta>,
    cursor: u64,
}

impl OwnChanges {
    /// Takes in a commit's result.
    pub fn committed(&mut self, result: &CommitResult) {
        let mut versions: Vec<&ItemMeta> = result
            .results
            .iter()
            .filter_map(|r| match &r.outcome {
                CommitOutcome::Committed { meta } => Some(meta),
                _ => None,
            })
            .collect();
        if versions.is_empty() {
            // Conflicts and refusals add no revision: what is known holds.
            return;
        }
        versions.sort_by_key(|m| m.revision);
        let first = versions[0].revision;
        let contiguous = versions
            .iter()
            .enumerate()
            .all(|(i, m)| m.revision == first + i as u64);
        let last = first + versions.len() as u64 - 1;
        if !contiguous || first == 0 {
            self.known = None;
            return;
        }
        let mut known = match self.known.take() {
            // Right after what was known: the two make one run.
            Some(k) if k.cursor + 1 == first => k,
            _ => Known {
                since: first - 1,
                items: Vec::new(),
                cursor: first - 1,
            },
        };
        let new: std::collections::HashSet<ItemId> = versions.iter().map(|m| m.id).collect();
        known.items.retain(|old| !new.contains(&old.id));
        known.items.extend(versions.into_iter().cloned());
        known.cursor = last;
        self.known = Some(known);
    }

    /// The page the feed holds from `since` (at most `limit` items), if it
    /// is known here; either way, what was known is used up.
    pub fn page(&mut self, workspace: WorkspaceId, since: u64, limit: u32) -> Option<ChangesPage> {
        let known = self.known.take()?;
        (known.since == since && known.items.len() <= limit as usize).then_some(ChangesPage {
            workspace,
            items: known.items,
            cursor: known.cursor,
            has_more: true,
        })
    }
}

#[cfg(test)]
#[path = "own_changes_tests.rs"]
mod tests;
