//! The commit rules (reference section 4): the one decision, for one
//! proposed version of one item, that every server applies.
//!
//! The metadata store and the engine's simulated server both decide a
//! commit here, so the rules a test runs against are the rules production
//! has. The decision is pure: whatever it needs to know about the rest of
//! the workspace (the stored version a retry names, the new parent and its
//! ancestors, a sibling holding the name, live children of a folder being
//! deleted) the caller looks up first, as plain values ([`Facts`]), and
//! only the facts [`lookups`] asks for: a store reads them with queries,
//! a simulation from memory.
//!
//! For each proposed version `v` of an item:
//! - a new item must start at `v == 1`;
//! - `v == latest + 1` is accepted and becomes a new version;
//! - `v <= latest` whose stored version is identical (same device, same
//!   content, same place; see [`same_version`]) is an idempotent re-commit
//!   and reports the stored version, writing nothing;
//! - anything else is a conflict carrying the server's current metadata;
//! - and an accepted version is refused instead when its shape is wrong,
//!   the item belongs to another workspace, it turns a file into a folder
//!   or back, its parent (or, for a folder, any ancestor) is not a live
//!   folder of the workspace, a folder would move into itself or nest
//!   deeper than [`MAX_DEPTH`], it deletes a folder that still has live
//!   children, or it takes a name a live sibling holds up to case and
//!   Unicode form ([`crate::ItemName::fold_key`]).
//!
//! The server decides what a version did ([`normalized_status`]); a delete
//! keeps the item where it was and carries no content.

use crate::{
    CommitOutcome, DeviceId, Error, ErrorKind, ItemId, ItemMeta, ItemName, ItemStatus, Millis,
    ProposedItem, WorkspaceId, same_chunks,
};

/// Deepest folder nesting a server accepts; also bounds the cycle check.
pub const MAX_DEPTH: usize = 4096;

/// Where the commit happens: the workspace, the committing device, the
/// server's clock and the revision an accepted version gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub workspace: WorkspaceId,
    pub device: DeviceId,
    pub now: Millis,
    /// The workspace revision the version gets if accepted (latest + 1).
    pub revision: u64,
}

/// What the decision needs looked up, beyond the item's current state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lookups {
    /// The stored version with this number (the proposal may be a retry).
    pub stored_version: Option<u64>,
    /// Walk the ancestry from this parent ([`AncestryWalk`]); `Some(None)`
    /// is the top of the workspace (nothing to look up).
    pub ancestry: Option<Option<ItemId>>,
    /// The live sibling in this folder holding this name up to folding.
    pub name_holder: Option<(Option<ItemId>, ItemName)>,
    /// Whether this folder has live children.
    pub live_children: Option<ItemId>,
}

/// What the caller found for [`Lookups`]; what was not asked for is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The stored version [`Lookups::stored_version`] named (`None` if
    /// there is none).
    pub stored: Option<ItemMeta>,
    /// The result of the [`AncestryWalk`].
    pub ancestry: Ancestry,
    /// Another live item in the folder whose name or folded name is the
    /// new one. A store whose unique index enforces the rule may pass
    /// `None` for a new item and explain a refused write with
    /// [`name_taken`].
    pub name_holder: Option<ItemMeta>,
    /// Whether the folder being deleted has live children.
    pub live_children: bool,
}

impl Default for Facts {
    fn default() -> Self {
        Facts {
            stored: None,
            ancestry: Ancestry::Live,
            name_holder: None,
            live_children: false,
        }
    }
}

/// What the walk up from a new parent found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ancestry {
    /// The parent (and, for a folder, every ancestor) is a live folder of
    /// the workspace, or the item sits at the top.
    Live,
    /// This folder on the way up is missing, deleted, a file, or in
    /// another workspace.
    Missing(ItemId),
    /// A folder would move into itself or one of its descendants.
    Cycle,
    /// The chain of ancestors is deeper than [`MAX_DEPTH`].
    TooDeep,
}

/// The walk up from a new parent, one lookup at a time, so that a store
/// (asynchronous queries) and a simulation (a map) walk the same way:
///
/// ```ignore
/// let mut walk = AncestryWalk::new(workspace, item, is_folder, parent);
/// while let Some(id) = walk.next_lookup() {
///     walk.found(lookup(id).as_ref());
/// }
/// let ancestry = walk.result();
/// ```
///
/// A file only needs a live parent; a folder needs a live chain to the
/// top that does not pass through itself.
#[derive(Debug, Clone)]
pub struct AncestryWalk {
    workspace: WorkspaceId,
    item: ItemId,
    is_folder: bool,
    cursor: Option<ItemId>,
    depth: usize,
    result: Option<Ancestry>,
}

impl AncestryWalk {
    /// A walk for `item` (a folder or not) placed under `parent`.
    pub fn new(
        workspace: WorkspaceId,
        item: ItemId,
        is_folder: bool,
        parent: Option<ItemId>,
    ) -> AncestryWalk {
        AncestryWalk {
            workspace,
            item,
            is_folder,
            cursor: parent,
            depth: 0,
            result: None,
        }
    }

    /// The folder whose latest state the walk needs next, or `None` once
    /// it has its [`AncestryWalk::result`].
    pub fn next_lookup(&mut self) -> Option<ItemId> {
        if self.result.is_some() {
            return None;
        }
        let Some(id) = self.cursor else {
            self.result = Some(Ancestry::Live);
            return None;
        };
        self.depth += 1;
        if id == self.item {
            self.result = Some(Ancestry::Cycle);
            return None;
        }
        if self.depth > MAX_DEPTH {
            self.result = Some(Ancestry::TooDeep);
            return None;
        }
        Some(id)
    }

    /// The latest state of the folder [`AncestryWalk::next_lookup`] named
    /// (`None`: no such item).
    pub fn found(&mut self, folder: Option<&ItemMeta>) {
        let Some(id) = self.cursor else { return };
        match folder.filter(|f| f.workspace == self.workspace && f.is_folder && f.status.is_live())
        {
            None => self.result = Some(Ancestry::Missing(id)),
            Some(_) if !self.is_folder => self.result = Some(Ancestry::Live),
            Some(f) => self.cursor = f.parent,
        }
    }

    /// What the walk found (`Live` if it was not walked to the end).
    pub fn result(&self) -> Ancestry {
        self.result.unwrap_or(Ancestry::Live)
    }
}

/// The decision for one proposed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A new version: write it. Its chunks are the proposal's; a store
    /// may replace their locations with the ones its chunk index settles.
    Accept(ItemMeta),
    /// The proposal is this stored version again: report it, write nothing.
    Retry(ItemMeta),
    /// The server has moved on: this is its current state. Nothing written.
    Conflict(ItemMeta),
    /// Refused: nothing written.
    Refuse(Error),
}

impl Decision {
    /// The outcome reported to the device.
    pub fn into_outcome(self) -> CommitOutcome {
        match self {
            Decision::Accept(meta) | Decision::Retry(meta) => CommitOutcome::Committed { meta },
            Decision::Conflict(current) => CommitOutcome::Conflict { current },
            Decision::Refuse(error) => CommitOutcome::Refused { error },
        }
    }
}

/// Where the version rules lead before any lookup.
enum Route {
    Done(Decision),
    Retry,
    Place(Placement),
}

/// An accepted version's place, before the checks that need lookups.
struct Placement {
    status: ItemStatus,
    parent: Option<ItemId>,
    name: ItemName,
    /// The version newly takes a live name (only then can it clash).
    takes_name: bool,
}

fn route(workspace: WorkspaceId, current: Option<&ItemMeta>, p: &ProposedItem) -> Route {
    if let Err(error) = p.check_shape() {
        return Route::Done(Decision::Refuse(error));
    }
    match current {
        Some(cur) if cur.workspace != workspace => {
            // Do not reveal anything about an item of another workspace.
            return Route::Done(Decision::Refuse(Error::forbidden(format!(
                "item {} is not in workspace {workspace}",
                p.id
            ))));
        }
        Some(cur) if p.version <= cur.version => return Route::Retry,
        Some(cur) if p.version > cur.version + 1 => {
            return Route::Done(Decision::Conflict(cur.clone()));
        }
        Some(cur) if cur.is_folder != p.is_folder => {
            return Route::Done(Decision::Refuse(Error::bad_request(format!(
                "item {} cannot change between file and folder",
                p.id
            ))));
        }
        Some(_) => {}
        None if p.version != 1 => {
            return Route::Done(Decision::Refuse(Error::not_found(format!(
                "item {} does not exist on the server; a new item starts at version 1",
                p.id
            ))));
        }
        None => {}
    }
    let status = normalized_status(current, p);
    // A delete keeps the item where it was; only live versions place it.
    let (parent, name) = match (current, status) {
        (Some(cur), ItemStatus::Deleted) => (cur.parent, cur.name.clone()),
        _ => (p.parent, p.name.clone()),
    };
    let takes_name = status.is_live()
        && current.is_none_or(|c| !c.status.is_live() || c.parent != parent || c.name != name);
    Route::Place(Placement {
        status,
        parent,
        name,
        takes_name,
    })
}

/// The facts [`decide`] will read for this proposal.
pub fn lookups(workspace: WorkspaceId, current: Option<&ItemMeta>, p: &ProposedItem) -> Lookups {
    match route(workspace, current, p) {
        Route::Done(_) => Lookups::default(),
        Route::Retry => Lookups {
            stored_version: Some(p.version),
            ..Lookups::default()
        },
        Route::Place(place) => Lookups {
            stored_version: None,
            ancestry: place.status.is_live().then_some(place.parent),
            live_children: (!place.status.is_live() && p.is_folder).then_some(p.id),
            name_holder: place.takes_name.then(|| (place.parent, place.name.clone())),
        },
    }
}

/// Decides one proposed version. `current` is the item's latest state
/// (`None`: no such item anywhere); `facts` answer [`lookups`].
pub fn decide(
    at: &Setting,
    current: Option<&ItemMeta>,
    p: &ProposedItem,
    facts: &Facts,
) -> Decision {
    let place = match route(at.workspace, current, p) {
        Route::Done(decision) => return decision,
        Route::Retry => {
            let cur = current.expect("a retry is routed only for an existing item");
            return match &facts.stored {
                Some(stored)
                    if stored.version == p.version && same_version(stored, p, at.device) =>
                {
                    Decision::Retry(stored.clone())
                }
                _ => Decision::Conflict(cur.clone()),
            };
        }
        Route::Place(place) => place,
    };
    let live = place.status.is_live();
    if live {
        match facts.ancestry {
            Ancestry::Live => {}
            Ancestry::Missing(id) => {
                return Decision::Refuse(Error::not_found(format!(
                    "parent folder {id} does not exist"
                )));
            }
            Ancestry::Cycle => {
                return Decision::Refuse(Error::bad_request(format!(
                    "folder {} cannot move into itself",
                    p.id
                )));
            }
            Ancestry::TooDeep => {
                return Decision::Refuse(Error::bad_request(format!(
                    "folders nest deeper than {MAX_DEPTH}"
                )));
            }
        }
    } else if p.is_folder && facts.live_children {
        return Decision::Refuse(Error::bad_request(format!(
            "folder {} is not empty; delete its contents first",
            p.id
        )));
    }
    if place.takes_name
        && let Some(holder) = &facts.name_holder
        && holder.id != p.id
    {
        return Decision::Refuse(name_taken(&place.name, holder.clone()));
    }
    Decision::Accept(ItemMeta {
        id: p.id,
        workspace: at.workspace,
        parent: place.parent,
        name: place.name,
        is_folder: p.is_folder,
        mimetype: p.mimetype.clone(),
        status: place.status,
        version: p.version,
        content_hash: if live { p.content_hash } else { None },
        size: if live { p.size } else { 0 },
        client_modified: p.client_modified,
        server_modified: at.now,
        device: at.device,
        revision: at.revision,
        chunks: if live { p.chunks.clone() } else { Vec::new() },
        record: p.record.clone(),
    })
}

/// The server decides what a version did; the client's claim is not trusted.
pub fn normalized_status(current: Option<&ItemMeta>, p: &ProposedItem) -> ItemStatus {
    match current {
        None => ItemStatus::New,
        Some(_) if p.status == ItemStatus::Deleted => ItemStatus::Deleted,
        Some(cur) if cur.parent != p.parent => ItemStatus::Moved,
        Some(cur) if cur.name != p.name => ItemStatus::Renamed,
        Some(_) => ItemStatus::Changed,
    }
}

/// Whether `p` is a retry of the stored version: same device, same content,
/// same place. Fields the server normalizes (status, server time) are
/// compared by meaning, not by spelling.
pub fn same_version(stored: &ItemMeta, p: &ProposedItem, device: DeviceId) -> bool {
    if stored.device != device || stored.status.is_live() != p.status.is_live() {
        return false;
    }
    if stored.record != p.record {
        // A sealed record names its version and content: the same bytes
        // are the same version (records are sealed deterministically).
        return false;
    }
    if !stored.status.is_live() {
        return true;
    }
    stored.parent == p.parent
        && stored.name == p.name
        && stored.is_folder == p.is_folder
        && stored.content_hash == p.content_hash
        && stored.size == p.size
        // Where chunks are stored is the index's business, not the
        // version's: a retry may name other locations (another device
        // stored a chunk first) and still be the same version.
        && same_chunks(&stored.chunks, &p.chunks)
        && stored.mimetype == p.mimetype
        && stored.client_modified == p.client_modified
}

/// The refusal of `name` because live sibling `holder` holds it or its
/// folding key (a name that differs only in case or Unicode form).
pub fn name_taken(name: &ItemName, holder: ItemMeta) -> Error {
    let message = if holder.name == *name {
        format!(
            "the name {:?} is taken in that folder by item {}",
            name.as_str(),
            holder.id
        )
    } else {
        // Two such names would overwrite each other on macOS and Windows.
        format!(
            "the name {:?} differs only in case or Unicode form from {:?} (item {}) in that folder",
            name.as_str(),
            holder.name.as_str(),
            holder.id
        )
    };
    let mut error = Error::new(ErrorKind::Conflict, message);
    error.current = Some(Box::new(holder));
    error
}

/// Whether `other` holds `name` in `parent` up to folding, as a live item
/// other than `id`: the test behind [`Facts::name_holder`] for a caller
/// that scans items.
pub fn holds_name(other: &ItemMeta, id: ItemId, parent: Option<ItemId>, name: &ItemName) -> bool {
    other.id != id
        && other.status.is_live()
        && other.parent == parent
        && (other.name == *name || other.name.fold_key() == name.fold_key())
}

#[cfg(test)]
#[path = "commit_rules_tests.rs"]
mod tests;
