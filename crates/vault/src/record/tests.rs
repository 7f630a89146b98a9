//! Tests of sealed records; attack tests name the paper class they cover.

use super::*;
use crate::freshness::Freshness;
use crate::identity::Identity;
use crate::membership::{Member, Statement};
use crate::names::seal_name;

struct World {
    owner: Identity,
    bob: Identity,
    carol: Identity,
    v1: Verified,
}

fn world() -> World {
    let owner = Identity::generate(UserId::new()).unwrap();
    let bob = Identity::generate(UserId::new()).unwrap();
    let carol = Identity::generate(UserId::new()).unwrap();
    let others = [Member::writer(bob.public()), Member::reader(carol.public())];
    let (_, v1) = Statement::genesis(&owner, WorkspaceId::new(), &others, None).unwrap();
    World {
        owner,
        bob,
        carol,
        v1,
    }
}

fn file(v: &Verified, author: &Identity, item: ItemId, version: u64) -> Record {
    let parent = Some(ItemId::new());
    let chunks = vec![
        ChunkEntry {
            id: ChunkId([1; 32]),
            len: 1000,
        },
        ChunkEntry {
            id: ChunkId([2; 32]),
            len: 24,
        },
    ];
    Record {
        workspace: v.workspace(),
        item,
        parent,
        kind: ItemKind::File,
        deleted: false,
        version,
        generation: v.generation(),
        name: seal_name(v.keyring(), parent, item, "notes.txt").unwrap(),
        chunks,
        total_len: 1024,
        modified_ms: 1_700_000_000_000,
        content_hash: [7; 32],
        author: author.user(),
    }
}

fn kind(r: Result<Record>) -> ErrorKind {
    r.unwrap_err().kind().clone()
}

#[test]
fn round_trip_file_folder_and_delete() {
    let w = world();
    let rec = file(&w.v1, &w.bob, ItemId::new(), 1);
    let sealed = rec.seal(&w.v1, &w.bob).unwrap();
    assert_eq!(Record::open(&sealed, &rec.context(), &w.v1).unwrap(), rec);
    assert_eq!(
        rec.context().chunks,
        vec![
            (ChunkId([1; 32]), padme(1000) as u32),
            (ChunkId([2; 32]), 24)
        ]
    );
    // Sealed again, the same version is the same bytes (a retry).
    assert_eq!(rec.seal(&w.v1, &w.bob).unwrap(), sealed);
    let edited = Record {
        modified_ms: rec.modified_ms + 1,
        ..rec.clone()
    };
    assert_ne!(edited.seal(&w.v1, &w.bob).unwrap(), sealed);
    let folder = Record {
        kind: ItemKind::Folder,
        chunks: Vec::new(),
        total_len: 0,
        ..rec.clone()
    };
    let sealed = folder.seal(&w.v1, &w.owner).unwrap_err();
    assert_eq!(sealed.kind(), &ErrorKind::InvalidInput); // author field says Bob
    let folder = Record {
        author: w.owner.user(),
        ..folder
    };
    let sealed = folder.seal(&w.v1, &w.owner).unwrap();
    assert_eq!(
        Record::open(&sealed, &folder.context(), &w.v1).unwrap(),
        folder
    );
    let gone = Record {
        deleted: true,
        version: 2,
        ..rec
    };
    let sealed = gone.seal(&w.v1, &w.bob).unwrap();
    assert_eq!(Record::open(&sealed, &gone.context(), &w.v1).unwrap(), gone);
}

/// MEGA (S&P 2023) / CCS 2024 class: unauthenticated or malleable
/// metadata. Every single-byte change of a sealed record is refused.
#[test]
fn every_flipped_byte_of_a_record_is_refused() {
    let w = world();
    let rec = file(&w.v1, &w.bob, ItemId::new(), 3);
    let sealed = rec.seal(&w.v1, &w.bob).unwrap();
    let ctx = rec.context();
    for at in 0..sealed.len() {
        let mut b = sealed.clone();
        b[at] ^= 0x10;
        assert!(Record::open(&b, &ctx, &w.v1).is_err(), "byte {at}");
    }
    assert!(Record::open(&sealed[..sealed.len() - 1], &ctx, &w.v1).is_err());
    let mut longer = sealed;
    longer.push(0);
    assert!(Record::open(&longer, &ctx, &w.v1).is_err());
}

/// Share with Care (EuroS&P 2024) / CCS 2024 class: the server files an
/// authentic record under another item or version, as is or with its
/// clear header rewritten.
#[test]
fn records_swapped_between_items_or_versions_are_refused() {
    let w = world();
    let (a, b) = (ItemId::new(), ItemId::new());
    let ra = file(&w.v1, &w.bob, a, 1);
    let rb = file(&w.v1, &w.bob, b, 1);
    let sa = ra.seal(&w.v1, &w.bob).unwrap();
    // A's record served as B's.
    assert_eq!(
        kind(Record::open(&sa, &rb.context(), &w.v1)),
        ErrorKind::WrongPlace
    );
    // Header rewritten to say B: the AEAD refuses.
    let mut relabelled = sa.clone();
    relabelled[25..41].copy_from_slice(b.0.as_bytes());
    let ctx_b = RecordContext {
        item: b,
        ..ra.context()
    };
    assert_eq!(
        kind(Record::open(&relabelled, &ctx_b, &w.v1)),
        ErrorKind::Tampered
    );
    // Version 1 served as version 2, as is and relabelled.
    let ctx_v2 = RecordContext {
        version: 2,
        ..ra.context()
    };
    assert_eq!(
        kind(Record::open(&sa, &ctx_v2, &w.v1)),
        ErrorKind::WrongPlace
    );
    let mut v2 = sa.clone();
    v2[41..49].copy_from_slice(&2u64.to_le_bytes());
    assert_eq!(kind(Record::open(&v2, &ctx_v2, &w.v1)), ErrorKind::Tampered);
    // Another workspace.
    let ctx_ws = RecordContext {
        workspace: WorkspaceId::new(),
        ..ra.context()
    };
    assert_eq!(
        kind(Record::open(&sa, &ctx_ws, &w.v1)),
        ErrorKind::WrongPlace
    );
}

/// Share with Care / CCS 2024 class: the server lists an authentic record
/// under another parent, as another kind, alive when deleted, or with other
/// chunks or sizes.
#[test]
fn server_claims_that_differ_from_the_record_are_refused() {
    let w = world();
    let rec = file(&w.v1, &w.bob, ItemId::new(), 1);
    let sealed = rec.seal(&w.v1, &w.bob).unwrap();
    let moved = RecordContext {
        parent: Some(ItemId::new()),
        ..rec.context()
    };
    assert_eq!(
        kind(Record::open(&sealed, &moved, &w.v1)),
        ErrorKind::WrongPlace
    );
    let to_root = RecordContext {
        parent: None,
        ..rec.context()
    };
    assert_eq!(
        kind(Record::open(&sealed, &to_root, &w.v1)),
        ErrorKind::WrongPlace
    );
    let folder = RecordContext {
        is_folder: true,
        ..rec.context()
    };
    let deleted = RecordContext {
        deleted: true,
        ..rec.context()
    };
    let mut swapped = rec.context();
    swapped.chunks.swap(0, 1);
    let mut dropped = rec.context();
    dropped.chunks.pop();
    let mut resized = rec.context();
    resized.chunks[1].1 = 4096;
    let mut doubled = rec.context();
    doubled.chunks.push(doubled.chunks[1]);
    for ctx in [folder, deleted, swapped, dropped, resized, doubled] {
        assert_eq!(
            kind(Record::open(&sealed, &ctx, &w.v1)),
            ErrorKind::WrongPlace,
            "{ctx:?}"
        );
    }
}

/// CCS 2024 class (no rollback protection): an authentic old version
/// replayed after a newer one was observed.
#[test]
fn replayed_old_version_after_newer_is_rollback() {
    let w = world();
    let item = ItemId::new();
    let mut fresh = Freshness::new();
    let r1 = file(&w.v1, &w.bob, item, 1);
    let r2 = file(&w.v1, &w.bob, item, 2);
    let s1 = r1.seal(&w.v1, &w.bob).unwrap();
    let s2 = r2.seal(&w.v1, &w.bob).unwrap();
    for (s, r) in [(&s1, &r1), (&s2, &r2)] {
        let opened = Record::open(s, &r.context(), &w.v1).unwrap();
        fresh.observe(item, opened.version, record_hash(s)).unwrap();
    }
    let replay = Record::open(&s1, &r1.context(), &w.v1).unwrap();
    assert_eq!(
        fresh
            .observe(item, replay.version, record_hash(&s1))
            .unwrap_err()
            .kind(),
        &ErrorKind::Rollback
    );
    // Another authentic record at the seen version: a fork.
    let r2b = Record {
        modified_ms: r2.modified_ms + 1,
        ..r2.clone()
    };
    let s2b = r2b.seal(&w.v1, &w.bob).unwrap();
    assert_eq!(
        fresh
            .observe(item, 2, record_hash(&s2b))
            .unwrap_err()
            .kind(),
        &ErrorKind::Fork
    );
}

/// CCS 2024 class (downgrade): a record whose format byte was lowered.
#[test]
fn record_format_downgrade_and_unknown_generation() {
    let w = world();
    let rec = file(&w.v1, &w.bob, ItemId::new(), 1);
    let sealed = rec.seal(&w.v1, &w.bob).unwrap();
    let mut old = sealed.clone();
    old[4] = 0;
    assert_eq!(
        kind(Record::open(&old, &rec.context(), &w.v1)),
        ErrorKind::Downgrade
    );
    let mut future = sealed.clone();
    future[5..9].copy_from_slice(&9u32.to_le_bytes());
    assert_eq!(
        kind(Record::open(&future, &rec.context(), &w.v1)),
        ErrorKind::UnknownGeneration
    );
}

/// Share with Care / CCS 2024 class: a record written by a read-only
/// member, by a non-member with stolen keys, or claiming another author.
#[test]
fn record_by_reader_non_member_or_false_author_is_refused() {
    let w = world();
    let item = ItemId::new();
    // Carol is read-only: the API refuses, and a hand-made one is refused.
    let by_carol = file(&w.v1, &w.carol, item, 1);
    assert_eq!(
        by_carol.seal(&w.v1, &w.carol).unwrap_err().kind(),
        &ErrorKind::InvalidInput
    );
    let forged = by_carol.seal_unchecked(&w.v1, &w.carol).unwrap();
    assert_eq!(
        kind(Record::open(&forged, &by_carol.context(), &w.v1)),
        ErrorKind::NotAllowed
    );
    // Eve holds the keys (say, leaked) but was never a member.
    let eve = Identity::generate(UserId::new()).unwrap();
    let by_eve = file(&w.v1, &eve, item, 1);
    let forged = by_eve.seal_unchecked(&w.v1, &eve).unwrap();
    assert_eq!(
        kind(Record::open(&forged, &by_eve.context(), &w.v1)),
        ErrorKind::NotAMember
    );
    // Bob signs a record that names the owner as its author.
    let as_owner = file(&w.v1, &w.owner, item, 1);
    let forged = as_owner.seal_unchecked(&w.v1, &w.bob).unwrap();
    assert_eq!(
        kind(Record::open(&forged, &as_owner.context(), &w.v1)),
        ErrorKind::Tampered
    );
}

#[test]
fn inconsistent_lengths_are_refused() {
    let w = world();
    let mut rec = file(&w.v1, &w.bob, ItemId::new(), 1);
    rec.total_len = 1025;
    assert_eq!(
        rec.seal(&w.v1, &w.bob).unwrap_err().kind(),
        &ErrorKind::InvalidInput
    );
    let forged = rec.seal_unchecked(&w.v1, &w.bob).unwrap();
    assert_eq!(
        kind(Record::open(&forged, &rec.context(), &w.v1)),
        ErrorKind::Malformed
    );
    let mut big = file(&w.v1, &w.bob, ItemId::new(), 1);
    big.chunks[0].len = MAX_CHUNK_LEN as u32 + 1;
    big.total_len = big.chunks.iter().map(|c| u64::from(c.len)).sum();
    let forged = big.seal_unchecked(&w.v1, &w.bob).unwrap();
    assert_eq!(
        kind(Record::open(&forged, &big.context(), &w.v1)),
        ErrorKind::Malformed
    );
}

/// After Bob's removal: his records of generation 1 still verify (they
/// were written while he could write), a record he makes under generation
/// 2 is impossible (no key) and his generation-1 key cannot open a
/// generation-2 record.
#[test]
fn removed_writer_and_generations() {
    let w = world();
    let old = file(&w.v1, &w.bob, ItemId::new(), 1);
    let old_sealed = old.seal(&w.v1, &w.bob).unwrap();
    let remaining: Vec<Member> =
        w.v1.members()
            .iter()
            .copied()
            .filter(|m| m.identity.user != w.bob.user())
            .collect();
    let (_, v2) = Statement::next(&w.v1, &w.owner, &remaining, false, None).unwrap();
    assert_eq!(Record::open(&old_sealed, &old.context(), &v2).unwrap(), old);
    let new = file(&v2, &w.owner, ItemId::new(), 1);
    let new_sealed = new.seal(&v2, &w.owner).unwrap();
    assert_eq!(Record::open(&new_sealed, &new.context(), &v2).unwrap(), new);
    assert_eq!(
        kind(Record::open(&new_sealed, &new.context(), &w.v1)),
        ErrorKind::UnknownGeneration
    );
    // Bob, removed, is not a writer of generation 2.
    let by_bob = Record {
        author: w.bob.user(),
        ..new
    };
    let forged = by_bob.seal_unchecked(&v2, &w.bob).unwrap();
    assert_eq!(
        kind(Record::open(&forged, &by_bob.context(), &v2)),
        ErrorKind::NotAMember
    );
}
