//! Which location claims a commit may make, and which stored locations a
//! member may be given.
//!
//! Rules (finding 10: a member must not be able to plant a location):
//! - A location a commit proposes is used only if its pack is an object of
//!   the workspace's ledger (stored through the server, or found in the
//!   container when a commit first named it), not being collected, and the
//!   span lies within the pack's recorded size. Otherwise the version is
//!   refused.
//! - A chunk the workspace's index already has takes the index's location
//!   (first claim), except that a version whose committer proposes a span
//!   in a pack *they uploaded themselves*, while the index places the chunk
//!   in an object the ledger says someone else stored, keeps that span as its own location
//!   (`version_chunks.pack_*`), read before the index's. So another
//!   member's earlier claim never decides where a member's own upload is
//!   read from, and one member's devices still share one location.
//! - A proposed location that is a delta (`PackSpan::base`) must name a
//!   base the workspace indexes stored whole (no chains) in an object not
//!   being collected; and a delta never overrides the index as a
//!   member's own location, so every delta a version reads is its chunk's
//!   index entry, which holds a reference on the base (migration 0007).
//! - `LocateChunks` (what lets a client skip an upload) answers a member
//!   only with locations in objects that member uploaded: a location
//!   someone else claimed may be a plant, so the member uploads its own
//!   copy instead (and, by the rule above, reads it back from there).

use std::collections::{HashMap, HashSet};

use stacksync_proto::{ChunkId, ChunkRef, Error, UserId};

use crate::objects::StoredObject;

/// The object a chunk's location reads from: its pack, or the object
/// named by the chunk itself.
pub(crate) fn object_of(c: &ChunkRef) -> ChunkId {
    c.span.map_or(c.id, |s| s.pack)
}

/// The packs of `objects` that `committer` uploaded.
pub(crate) fn own_packs(
    objects: &HashMap<ChunkId, StoredObject>,
    committer: Option<UserId>,
) -> HashSet<ChunkId> {
    objects
        .values()
        .filter(|o| committer.is_some() && o.uploader == committer)
        .map(|o| o.id)
        .collect()
}

/// Checks a proposed span against the ledger: a known, unmarked object
/// that holds all of it.
fn check_claim(objects: &HashMap<ChunkId, StoredObject>, c: &ChunkRef) -> Result<(), Error> {
    let Some(span) = c.span else { return Ok(()) };
    let Some(pack) = objects.get(&span.pack) else {
        return Err(Error::not_found(format!(
            "chunk {} is placed in pack {}, which is not stored in this workspace",
            c.id, span.pack
        )));
    };
    let end = span.offset.checked_add(u64::from(span.len));
    if end.is_none_or(|end| end > pack.size) {
        return Err(Error::bad_request(format!(
            "chunk {} is placed at bytes {}..+{} of pack {}, which has {} bytes",
            c.id, span.offset, span.len, span.pack, pack.size
        )));
    }
    Ok(())
}

/// Checks the base of a proposed delta location: indexed, stored whole,
/// in an object that is not being collected.
fn check_base(
    index: &HashMap<ChunkId, ChunkRef>,
    objects: &HashMap<ChunkId, StoredObject>,
    c: &ChunkRef,
) -> Result<(), Error> {
    let Some(base) = c.span.and_then(|s| s.base) else {
        return Ok(());
    };
    let Some(stored) = index.get(&base) else {
        return Err(Error::not_found(format!(
            "chunk {} is a delta against chunk {base}, which this workspace does not store",
            c.id
        )));
    };
    if stored.span.is_some_and(|s| s.base.is_some()) {
        return Err(Error::bad_request(format!(
            "chunk {} is a delta against chunk {base}, which is itself a delta",
            c.id
        )));
    }
    if objects.get(&object_of(stored)).is_some_and(|o| o.marked) {
        return Err(Error::unavailable(format!(
            "chunk {base}, the base of chunk {}, is being garbage collected; upload it whole",
            c.id
        )));
    }
    Ok(())
}

/// Settles where a version's chunks are read from: `located` is what the
/// chunk index decided for `proposed` (same order). New claims are checked
/// against the ledger; a span in the committer's own pack overrides the
/// index; no location may read from an object being collected.
pub(crate) fn settle(
    index: &HashMap<ChunkId, ChunkRef>,
    objects: &HashMap<ChunkId, StoredObject>,
    own: &HashSet<ChunkId>,
    proposed: &[ChunkRef],
    located: Vec<ChunkRef>,
) -> Result<Vec<ChunkRef>, Error> {
    let mut settled = Vec::with_capacity(located.len());
    for (p, l) in proposed.iter().zip(located) {
        let chunk = match p.span {
            // The committer's own upload, where the index places the chunk
            // in an object the ledger says someone else stored.
            Some(span)
                if span.base.is_none()
                    && own.contains(&span.pack)
                    && index.get(&p.id).is_some_and(|i| {
                        let held_in = object_of(i);
                        objects.contains_key(&held_in) && !own.contains(&held_in)
                    }) =>
            {
                check_claim(objects, p)?;
                *p
            }
            // A chunk new to the workspace: its location is the claim.
            _ if !index.contains_key(&p.id) && l.span == p.span => {
                check_claim(objects, p)?;
                check_base(index, objects, p)?;
                l
            }
            _ => l,
        };
        if objects.get(&object_of(&chunk)).is_some_and(|o| o.marked) {
            return Err(Error::unavailable(format!(
                "object {} holding chunk {} is being garbage collected; upload it again",
                object_of(&chunk),
                chunk.id
            )));
        }
        settled.push(chunk);
    }
    Ok(settled)
}

/// Whether `user` may be given `stored` as the place of a chunk they have
/// not uploaded: only if the object holding it is their own upload.
pub(crate) fn may_share(
    objects: &HashMap<ChunkId, StoredObject>,
    user: UserId,
    stored: &ChunkRef,
) -> bool {
    objects
        .get(&object_of(stored))
        .is_some_and(|o| o.uploader == Some(user) && !o.marked)
}

impl crate::MetaStore {
    /// [`MetaStore::locate_chunks`](crate::MetaStore::locate_chunks) as
    /// `user` may see it: a chunk stored in an object someone else
    /// uploaded is reported as unknown, so the member uploads its own copy
    /// (see the module docs). The caller checks membership.
    pub async fn locate_chunks_for(
        &self,
        ws: stacksync_proto::WorkspaceId,
        user: UserId,
        ids: &[ChunkId],
    ) -> Result<Vec<Option<ChunkRef>>, crate::StoreError> {
        let found = self.locate_chunks(ws, ids).await?;
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|source| crate::StoreError::Db {
                context: "acquiring a connection",
                source,
            })?;
        let objects =
            crate::objects::ledger_rows(&mut conn, ws, found.iter().flatten().map(object_of))
                .await?;
        Ok(found
            .into_iter()
            .map(|c| c.filter(|c| may_share(&objects, user, c)))
            .collect())
    }
}
