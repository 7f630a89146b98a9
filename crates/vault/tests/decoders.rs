//! Every decoder is total: random bytes, and valid blobs with random
//! damage, give an error or a value, never a panic (and, with the caps in
//! the codec, never an allocation beyond the input's size). The inputs come
//! from the server, the adversary of every class in the CCS 2024, MEGA and
//! Share with Care papers.

use std::sync::OnceLock;

use proptest::prelude::*;
use stacksync_proto::ids::{ChunkId, ItemId, UserId, WorkspaceId};
use stacksync_vault::membership::{verify, verify_chain};
use stacksync_vault::{
    ChunkEntry, Freshness, Identity, ItemKind, KeyRing, Member, PinStore, PublicIdentity, Record,
    RecordContext, Statement, Verified, open_name, seal_name,
};

struct Fixture {
    owner: Identity,
    bob: Identity,
    genesis: Vec<u8>,
    v1: Verified,
    record: Vec<u8>,
    ctx: RecordContext,
    name: Vec<u8>,
    item: ItemId,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let owner = Identity::generate(UserId::new()).unwrap();
        let bob = Identity::generate(UserId::new()).unwrap();
        let (genesis, v1) = Statement::genesis(
            &owner,
            WorkspaceId::new(),
            &[Member::writer(bob.public())],
            None,
        )
        .unwrap();
        let item = ItemId::new();
        let name = seal_name(v1.keyring(), None, item, "a.txt").unwrap();
        let rec = Record {
            workspace: v1.workspace(),
            item,
            parent: None,
            kind: ItemKind::File,
            deleted: false,
            version: 1,
            generation: v1.generation(),
            name: name.clone(),
            chunks: vec![ChunkEntry {
                id: ChunkId([3; 32]),
                len: 10,
            }],
            total_len: 10,
            modified_ms: 0,
            content_hash: [0; 32],
            author: owner.user(),
        };
        let record = rec.seal(&v1, &owner).unwrap();
        Fixture {
            ctx: rec.context(),
            owner,
            bob,
            genesis,
            v1,
            record,
            name,
            item,
        }
    })
}

/// A valid blob with one byte set, then cut or extended.
fn damage(valid: &[u8], at: usize, value: u8, cut: usize, extra: &[u8]) -> Vec<u8> {
    let mut b = valid.to_vec();
    let at = at % b.len();
    b[at] = value;
    b.truncate(b.len() - cut % (b.len() + 1));
    b.extend_from_slice(extra);
    b
}

fn with_prefix(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut b = prefix.to_vec();
    b.extend_from_slice(rest);
    b
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn public_identity_and_pins_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = PublicIdentity::from_bytes(&bytes);
        let _ = PinStore::decode(&bytes);
        let _ = PinStore::decode(&with_prefix(b"SSpn\x01", &bytes));
    }

    #[test]
    fn freshness_and_local_state_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Freshness::decode(&bytes);
        let _ = Freshness::decode(&with_prefix(b"SSfr\x01", &bytes));
        let _ = KeyRing::open(&bytes, &[0; 32]);
        let _ = KeyRing::open(&with_prefix(b"SSkr\x01", &bytes), &[0; 32]);
        let _ = Verified::open_local(&with_prefix(b"SSlv\x02", &bytes), &[0; 32]);
    }

    #[test]
    fn identity_blob_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Identity::open(&bytes, b"pw");
        let _ = Identity::open(&with_prefix(b"SSid\x01", &bytes), b"pw");
    }

    #[test]
    fn statements_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        at in any::<usize>(), value in any::<u8>(), cut in 0usize..8,
        extra in proptest::collection::vec(any::<u8>(), 0..4),
    ) {
        let f = fixture();
        let pins = PinStore::new();
        let _ = verify(&bytes, &f.bob, None, &pins);
        let _ = verify(&with_prefix(b"SSms\x02", &bytes), &f.bob, Some(&f.v1), &pins);
        let damaged = damage(&f.genesis, at, value, cut, &extra);
        if damaged != f.genesis {
            prop_assert!(verify(&damaged, &f.bob, None, &pins).is_err());
        }
        let _ = verify_chain(&[&f.genesis, &damaged], &f.owner, None, &pins);
    }

    #[test]
    fn records_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        at in any::<usize>(), value in any::<u8>(), cut in 0usize..8,
        extra in proptest::collection::vec(any::<u8>(), 0..4),
    ) {
        let f = fixture();
        let _ = Record::open(&bytes, &f.ctx, &f.v1);
        let _ = Record::open(&with_prefix(b"SSrc\x01", &bytes), &f.ctx, &f.v1);
        let damaged = damage(&f.record, at, value, cut, &extra);
        if damaged != f.record {
            prop_assert!(Record::open(&damaged, &f.ctx, &f.v1).is_err());
        }
    }

    #[test]
    fn names_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        at in any::<usize>(), value in any::<u8>(), cut in 0usize..8,
    ) {
        let f = fixture();
        let _ = open_name(f.v1.keyring(), None, f.item, &bytes);
        let damaged = damage(&f.name, at, value, cut, &[]);
        if damaged != f.name {
            prop_assert!(open_name(f.v1.keyring(), None, f.item, &damaged).is_err());
        }
    }
}
