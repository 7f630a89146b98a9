//! The whole client-side flow through the public API only: create a
//! workspace, share it, write and read a file version, catch the server
//! replaying state, remove a member.

use stacksync_proto::ids::{ChunkId, ItemId, UserId, WorkspaceId};
use stacksync_vault::membership::verify;
use stacksync_vault::record::record_hash;
use stacksync_vault::{
    ChunkEntry, ErrorKind, Freshness, Identity, ItemKind, MIN_KDF, Member, PinStore, Record,
    Statement, Verified, open_name, seal_name,
};

#[test]
fn share_write_read_and_remove() {
    let alice = Identity::generate(UserId::new()).unwrap();
    let bob = Identity::generate(UserId::new()).unwrap();
    // Bob's identity travels sealed under his passphrase.
    let bob_blob = bob.seal(b"bob's passphrase", MIN_KDF).unwrap();
    let bob = Identity::open(&bob_blob, b"bob's passphrase").unwrap();

    let ws = WorkspaceId::new();
    let (s1, alice_v1) =
        Statement::genesis(&alice, ws, &[Member::writer(bob.public())], None).unwrap();

    // Bob: verify, pin, remember.
    let mut pins = PinStore::new();
    let mut fresh = Freshness::new();
    let bob_v1 = verify(&s1, &bob, None, &pins).unwrap();
    bob_v1.pin_members(&mut pins).unwrap();
    fresh
        .observe_membership(bob_v1.epoch(), bob_v1.hash())
        .unwrap();
    let local = bob_v1.seal_local(&[42; 32]).unwrap();
    let bob_v1 = Verified::open_local(&local, &[42; 32]).unwrap();

    // Alice writes a file; the server stores the sealed record and lists
    // the name and padded size beside it.
    let item = ItemId::new();
    let name = seal_name(alice_v1.keyring(), None, item, "plan.md").unwrap();
    let rec = Record {
        workspace: ws,
        item,
        parent: None,
        kind: ItemKind::File,
        deleted: false,
        version: 1,
        generation: alice_v1.generation(),
        name,
        chunks: vec![ChunkEntry {
            id: ChunkId([9; 32]),
            len: 5000,
        }],
        total_len: 5000,
        modified_ms: 1,
        content_hash: [1; 32],
        author: alice.user(),
    };
    let sealed = rec.seal(&alice_v1, &alice).unwrap();
    let listed = rec.context();

    // Bob reads it.
    let got = Record::open(&sealed, &listed, &bob_v1).unwrap();
    fresh
        .observe(item, got.version, record_hash(&sealed))
        .unwrap();
    assert_eq!(
        open_name(bob_v1.keyring(), got.parent, got.item, &got.name).unwrap(),
        "plan.md"
    );
    assert!(bob_v1.keyring().key(got.generation).is_ok());

    // Alice removes Bob; the workspace key rotates.
    let empty = Statement::next(&alice_v1, &alice, &[], false, None).unwrap_err();
    assert_eq!(empty.kind(), &ErrorKind::EmptyMembers);
    let alone: Vec<Member> = alice_v1
        .members()
        .iter()
        .copied()
        .filter(|m| m.identity.user == alice.user())
        .collect();
    let (s2, alice_v2) = Statement::next(&alice_v1, &alice, &alone, false, None).unwrap();
    assert_eq!(alice_v2.generation().0, 2);
    assert_eq!(
        verify(&s2, &bob, Some(&bob_v1), &pins).unwrap_err().kind(),
        &ErrorKind::NotAMember
    );
    // The server replays the genesis statement to Alice: rollback.
    assert_eq!(
        verify(&s1, &alice, Some(&alice_v2), &pins)
            .unwrap_err()
            .kind(),
        &ErrorKind::Rollback
    );
}
