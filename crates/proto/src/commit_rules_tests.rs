//! The commit decision on random inputs: its invariants hold whatever the
//! stored state, the proposal and the facts looked up.

use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::{ChunkId, ChunkRef, ContentHash};

const WS: WorkspaceId = WorkspaceId(Uuid::from_u64_pair(1, 1));
const OTHER_WS: WorkspaceId = WorkspaceId(Uuid::from_u64_pair(1, 2));

fn item(n: u64) -> ItemId {
    ItemId(Uuid::from_u64_pair(9, n))
}

fn device(n: u64) -> DeviceId {
    DeviceId(Uuid::from_u64_pair(5, n))
}

fn name(i: usize) -> ItemName {
    // Two pairs that fold together, and one that stands alone.
    let names = ["a", "A", "caf\u{e9}", "CAF\u{c9}", "b"];
    ItemName::new(names[i % names.len()]).expect("test names are valid")
}

fn status(i: usize) -> ItemStatus {
    [
        ItemStatus::New,
        ItemStatus::Changed,
        ItemStatus::Renamed,
        ItemStatus::Moved,
        ItemStatus::Deleted,
    ][i % 5]
}

/// A file's content (hash, size, chunks) from a small seed; `None` for a
/// folder or a delete.
fn content(seed: u8) -> (Option<ContentHash>, u64, Vec<ChunkRef>) {
    let size = u32::from(seed % 3) * 10;
    let chunks = if size == 0 {
        Vec::new()
    } else {
        vec![ChunkRef::whole(ChunkId([seed; 32]), size)]
    };
    (Some(ContentHash([seed; 32])), u64::from(size), chunks)
}

/// A status that fits `version` (a first version is new).
fn status_at(version: u64, st: usize) -> ItemStatus {
    if version == 1 {
        ItemStatus::New
    } else {
        status(st)
    }
}

/// The content of an item of this kind and status: none for a folder or a
/// deleted item.
fn content_of(
    is_folder: bool,
    status: ItemStatus,
    seed: u8,
) -> (Option<ContentHash>, u64, Vec<ChunkRef>) {
    if is_folder || !status.is_live() {
        (None, 0, Vec::new())
    } else {
        content(seed)
    }
}

prop_compose! {
    fn meta()(
        id in 1..4u64, parent in proptest::option::of(1..5u64), name_i in 0..5usize,
        is_folder: bool, st in 0..5usize, version in 1..5u64, seed in 0..4u8, dev in 1..3u64,
        other_ws in proptest::bool::weighted(0.1), rev in 1..50u64,
    ) -> ItemMeta {
        let status = status_at(version, st);
        let (hash, size, chunks) = content_of(is_folder, status, seed);
        ItemMeta {
            id: item(id),
            workspace: if other_ws { OTHER_WS } else { WS },
            parent: parent.map(item),
            name: name(name_i),
            is_folder,
            mimetype: None,
            status,
            version,
            content_hash: hash,
            size,
            client_modified: i64::from(seed),
            server_modified: 0,
            device: device(dev),
            revision: rev,
            chunks,
            record: None,
        }
    }
}

prop_compose! {
    fn proposal()(
        id in 1..4u64, parent in proptest::option::of(1..5u64), name_i in 0..5usize,
        is_folder: bool, st in 0..5usize, version in 1..6u64, seed in 0..4u8,
        malformed in proptest::bool::weighted(0.05),
    ) -> ProposedItem {
        let status = status_at(version, st);
        let (hash, size, chunks) = content_of(is_folder, status, seed);
        ProposedItem {
            id: item(id),
            parent: parent.map(item),
            name: name(name_i),
            is_folder,
            mimetype: None,
            status,
            version,
            content_hash: hash,
            size: if malformed { size + 1 } else { size },
            client_modified: i64::from(seed),
            chunks,
            record: None,
        }
    }
}

fn ancestry() -> impl Strategy<Value = Ancestry> {
    prop_oneof![
        4 => Just(Ancestry::Live),
        1 => (1..5u64).prop_map(|n| Ancestry::Missing(item(n))),
        1 => Just(Ancestry::Cycle),
        1 => Just(Ancestry::TooDeep),
    ]
}

prop_compose! {
    fn facts()(
        stored in proptest::option::of(meta()), ancestry in ancestry(),
        name_holder in proptest::option::of(meta()), live_children: bool,
    ) -> Facts {
        Facts { stored, ancestry, name_holder, live_children }
    }
}

/// A case: the item's current state (made to agree with `p`'s id), the
/// proposal, the device and the facts.
fn case() -> impl Strategy<Value = (Option<ItemMeta>, ProposedItem, DeviceId, Facts)> {
    (
        proptest::option::of(meta()),
        proposal(),
        1..3u64,
        facts(),
        proptest::bool::ANY,
    )
        .prop_map(|(cur, p, dev, mut facts, retry_of_current)| {
            let cur = cur.map(|mut c| {
                c.id = p.id;
                c
            });
            if let Some(s) = &mut facts.stored {
                s.id = p.id;
                s.version = p.version;
            }
            // Often make the proposal the stored current version again,
            // from the device that committed it: a retry.
            if retry_of_current && let Some(c) = &cur {
                let again = ProposedItem {
                    id: c.id,
                    parent: c.parent,
                    name: c.name.clone(),
                    is_folder: c.is_folder,
                    mimetype: c.mimetype.clone(),
                    status: c.status,
                    version: c.version,
                    content_hash: c.content_hash,
                    size: c.size,
                    client_modified: c.client_modified,
                    chunks: c.chunks.clone(),
                    record: None,
                };
                facts.stored = Some(c.clone());
                return (cur.clone(), again, c.device, facts);
            }
            (cur, p, device(dev), facts)
        })
}

const AT_REVISION: u64 = 100;

fn setting(dev: DeviceId) -> Setting {
    Setting {
        workspace: WS,
        device: dev,
        now: 77,
        revision: AT_REVISION,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn decision_keeps_the_commit_rules((cur, p, dev, facts) in case()) {
        let at = setting(dev);
        let decision = decide(&at, cur.as_ref(), &p, &facts);
        // Deterministic, and reads only what `lookups` asked for.
        prop_assert_eq!(&decision, &decide(&at, cur.as_ref(), &p, &facts));
        let asked = lookups(WS, cur.as_ref(), &p);
        let mut blind = Facts::default();
        if asked.stored_version.is_some() { blind.stored = facts.stored.clone(); }
        if asked.ancestry.is_some() { blind.ancestry = facts.ancestry; }
        if asked.name_holder.is_some() { blind.name_holder = facts.name_holder.clone(); }
        if asked.live_children.is_some() { blind.live_children = facts.live_children; }
        prop_assert_eq!(&decision, &decide(&at, cur.as_ref(), &p, &blind));

        match &decision {
            Decision::Accept(m) => {
                prop_assert!(p.check_shape().is_ok());
                match &cur {
                    None => prop_assert_eq!(m.version, 1),
                    Some(c) => {
                        prop_assert_eq!(m.version, c.version + 1);
                        prop_assert_eq!(c.workspace, WS);
                        prop_assert_eq!(c.is_folder, p.is_folder, "file <-> folder accepted");
                    }
                }
                prop_assert_eq!(m.id, p.id);
                prop_assert_eq!(m.workspace, WS);
                prop_assert_eq!(m.device, dev);
                prop_assert_eq!(m.revision, AT_REVISION);
                prop_assert_eq!(m.status, normalized_status(cur.as_ref(), &p));
                if m.status.is_live() {
                    prop_assert_eq!(facts.ancestry, Ancestry::Live, "accepted under a bad parent");
                    prop_assert_eq!((m.parent, &m.name), (p.parent, &p.name));
                    prop_assert_eq!(m.content_hash, p.content_hash);
                    let moved = cur.as_ref().is_none_or(|c| {
                        !c.status.is_live() || c.parent != m.parent || c.name != m.name
                    });
                    if moved && let Some(h) = &facts.name_holder {
                        prop_assert_eq!(h.id, p.id, "took a name a sibling holds");
                    }
                } else {
                    let c = cur.as_ref().expect("a new item is never a delete");
                    prop_assert_eq!((m.parent, &m.name), (c.parent, &c.name), "a delete moved");
                    prop_assert!(m.content_hash.is_none() && m.size == 0 && m.chunks.is_empty());
                    prop_assert!(!(p.is_folder && facts.live_children), "deleted a non-empty folder");
                }
                // The same proposal again, once stored, is a retry that
                // reports exactly what was stored and writes nothing.
                let again_facts = Facts { stored: Some(m.clone()), ..Facts::default() };
                let later = Setting { revision: AT_REVISION + 1, now: 78, ..at };
                prop_assert_eq!(
                    decide(&later, Some(m), &p, &again_facts),
                    Decision::Retry(m.clone())
                );
            }
            Decision::Retry(m) => {
                let c = cur.as_ref().expect("a retry names a stored item");
                prop_assert!(p.version <= c.version);
                prop_assert_eq!(Some(m), facts.stored.as_ref(), "a retry reports the stored version");
                prop_assert!(same_version(m, &p, dev));
            }
            Decision::Conflict(current) => {
                prop_assert_eq!(Some(current), cur.as_ref(), "a conflict carries the current state");
                prop_assert!(p.version != current.version + 1, "a conflict on the next version");
            }
            Decision::Refuse(e) => {
                // A name refusal carries its holder; no other carries a version.
                if let Some(holder) = &e.current {
                    prop_assert_eq!(e.kind, ErrorKind::Conflict);
                    prop_assert_eq!(Some(holder.as_ref()), facts.name_holder.as_ref());
                }
            }
        }
    }

    /// Another device proposing the very same version is not a retry.
    #[test]
    fn a_retry_is_the_same_device((cur, p, _dev, _facts) in case()) {
        let Some(c) = cur else { return Ok(()) };
        let stored = Facts { stored: Some(c.clone()), ..Facts::default() };
        let mut again = p.clone();
        again.version = c.version;
        let other = DeviceId(Uuid::from_u64_pair(6, 6));
        prop_assume!(c.device != other);
        let d = decide(&setting(other), Some(&c), &again, &stored);
        prop_assert!(!matches!(d, Decision::Retry(_) | Decision::Accept(_)), "{:?}", d);
    }
}

fn folder(n: u64, parent: Option<u64>, live: bool) -> ItemMeta {
    ItemMeta {
        id: item(n),
        workspace: WS,
        parent: parent.map(item),
        name: name(n as usize),
        is_folder: true,
        mimetype: None,
        status: if live {
            ItemStatus::Changed
        } else {
            ItemStatus::Deleted
        },
        version: 2,
        content_hash: None,
        size: 0,
        client_modified: 0,
        server_modified: 0,
        device: device(1),
        revision: n,
        chunks: Vec::new(),
        record: None,
    }
}

fn walk(items: &[ItemMeta], id: u64, is_folder: bool, parent: Option<u64>) -> Ancestry {
    let mut w = AncestryWalk::new(WS, item(id), is_folder, parent.map(item));
    while let Some(next) = w.next_lookup() {
        w.found(items.iter().find(|m| m.id == next));
    }
    w.result()
}

#[test]
fn ancestry_walk_finds_cycles_and_dead_ancestors() {
    // 1 ─ 2 ─ 3 live; 4 deleted under 1; 5 live under 4.
    let items = [
        folder(1, None, true),
        folder(2, Some(1), true),
        folder(3, Some(2), true),
        folder(4, Some(1), false),
        folder(5, Some(4), true),
    ];
    assert_eq!(walk(&items, 9, true, None), Ancestry::Live);
    assert_eq!(walk(&items, 9, true, Some(3)), Ancestry::Live);
    assert_eq!(walk(&items, 1, true, Some(3)), Ancestry::Cycle);
    assert_eq!(walk(&items, 2, true, Some(3)), Ancestry::Cycle);
    assert_eq!(walk(&items, 9, true, Some(4)), Ancestry::Missing(item(4)));
    // A folder needs every ancestor live; a file only its parent.
    assert_eq!(walk(&items, 9, true, Some(5)), Ancestry::Missing(item(4)));
    assert_eq!(walk(&items, 9, false, Some(5)), Ancestry::Live);
    assert_eq!(walk(&items, 9, false, Some(8)), Ancestry::Missing(item(8)));
}
