//! Fuzzing entry points for every decoder of this crate (all of them read
//! what a server, or a file the server could not write but a disk may have
//! damaged, holds): public identities, pins, freshness, blobs sealed under
//! a local key, membership statements, item records and names. Valid blobs
//! are made with fixed keys ([`fixture`]) so that a fuzzer mutating them
//! gets past authentication. They must never panic; the `fuzz/`
//! cargo-fuzz project and `tests/fuzz.rs` call them (`tests/decoders.rs`
//! has the property tests of the same decoders).

use std::sync::OnceLock;

use stacksync_proto::ids::{ChunkId, ItemId, UserId, WorkspaceId};

use crate::membership::{verify, verify_chain};
use crate::{
    ChunkEntry, Freshness, Identity, ItemKind, KeyRing, Member, PinStore, PublicIdentity, Record,
    RecordContext, Statement, Verified, open_name, seal_name,
};

/// The local key every local blob of the fixture is sealed under.
pub const FUZZ_LOCAL_KEY: [u8; 32] = [0x5a; 32];

/// Identities, a verified genesis statement and what it seals.
pub struct Fixture {
    /// The owner, who signs the genesis statement and the record.
    pub owner: Identity,
    /// A writing member, who verifies statements.
    pub bob: Identity,
    /// The genesis statement's bytes.
    pub genesis: Vec<u8>,
    /// The owner's view of it.
    pub v1: Verified,
    /// The second statement (the same members, keys rotated).
    pub second: Vec<u8>,
    /// A sealed record and its context.
    pub record: Vec<u8>,
    /// What the server claimed about the record.
    pub ctx: RecordContext,
    /// A sealed name of `item` at the root.
    pub name: Vec<u8>,
    /// The item the name and record are about.
    pub item: ItemId,
    /// Pins of both identities.
    pub pins: PinStore,
}

/// The fixture, made once (identities are random, so seeds are only valid
/// in the process that made them: the fuzz targets make both).
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let owner = Identity::generate(UserId::new()).expect("an identity");
        let bob = Identity::generate(UserId::new()).expect("an identity");
        let (genesis, v1) = Statement::genesis(
            &owner,
            WorkspaceId::new(),
            &[Member::writer(bob.public())],
            None,
        )
        .expect("a genesis statement");
        let (second, _) =
            Statement::next(&v1, &owner, v1.members(), true, None).expect("a second statement");
        let item = ItemId::new();
        let name = seal_name(v1.keyring(), None, item, "a.txt").expect("a name");
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
        let record = rec.seal(&v1, &owner).expect("a record");
        let mut pins = PinStore::new();
        pins.confirm_change(&owner.public());
        pins.confirm_change(&bob.public());
        Fixture {
            ctx: rec.context(),
            owner,
            bob,
            genesis,
            v1,
            second,
            record,
            name,
            item,
            pins,
        }
    })
}

/// Reads `data` as a public identity, a pin store and a freshness record;
/// each accepted one encodes back to the same bytes. Returns how many
/// accepted it.
pub fn public_blobs(data: &[u8]) -> usize {
    let mut n = 0;
    if let Ok(public) = PublicIdentity::from_bytes(data) {
        assert_eq!(
            public.to_bytes().as_slice(),
            data,
            "a public identity with slack"
        );
        n += 1;
    }
    if let Ok(pins) = PinStore::decode(data) {
        assert_eq!(PinStore::decode(&pins.encode()).ok(), Some(pins));
        n += 1;
    }
    if let Ok(fresh) = Freshness::decode(data) {
        assert_eq!(Freshness::decode(&fresh.encode()).ok(), Some(fresh));
        n += 1;
    }
    n
}

/// Reads `data` as each blob sealed under [`FUZZ_LOCAL_KEY`] (an identity,
/// a key ring, a verified membership); what opens seals again and opens
/// as the same. Returns how many opened it.
pub fn local_blobs(data: &[u8]) -> usize {
    let key = &FUZZ_LOCAL_KEY;
    let mut n = 0;
    if let Ok(identity) = Identity::open_local(data, key) {
        let again = Identity::open_local(&identity.seal_local(key).expect("seals"), key);
        assert_eq!(again.map(|i| i.public()).ok(), Some(identity.public()));
        n += 1;
    }
    if let Ok(ring) = KeyRing::open(data, key) {
        let again = KeyRing::open(&ring.seal(key).expect("seals"), key).expect("opens");
        assert_eq!(again.current(), ring.current());
        assert_eq!(again.workspace(), ring.workspace());
        n += 1;
    }
    if let Ok(v) = Verified::open_local(data, key) {
        let again = Verified::open_local(&v.seal_local(key).expect("seals"), key).expect("opens");
        assert_eq!((again.epoch(), again.hash()), (v.epoch(), v.hash()));
        n += 1;
    }
    n
}

/// Reads `data` as a membership statement: as the genesis (verified by
/// bob), as the statement after the genesis (verified by the owner), and
/// after the genesis in a chain. Anything but the fixture's own statements
/// is refused. Returns how many checks accepted it.
pub fn statement(data: &[u8]) -> usize {
    let f = fixture();
    let as_genesis = verify(data, &f.bob, None, &f.pins);
    if as_genesis.is_ok() {
        assert_eq!(data, f.genesis.as_slice(), "a forged genesis verified");
    }
    let as_next = verify(data, &f.owner, Some(&f.v1), &f.pins);
    if as_next.is_ok() {
        // The statement after the genesis, or the genesis seen again.
        assert!(
            data == f.second.as_slice() || data == f.genesis.as_slice(),
            "a forged statement verified"
        );
    }
    let chain = verify_chain(&[&f.genesis, data], &f.owner, None, &f.pins);
    if chain.is_ok() {
        assert!(
            data == f.second.as_slice() || data == f.genesis.as_slice(),
            "a forged chain verified"
        );
    }
    usize::from(as_genesis.is_ok()) + usize::from(as_next.is_ok()) + usize::from(chain.is_ok())
}

/// Reads `data` as a sealed record (in the fixture's context) and as a
/// sealed name of the fixture's item; either opens only as the fixture's
/// own bytes, which seal deterministically. Returns how many opened.
pub fn record_and_name(data: &[u8]) -> usize {
    let f = fixture();
    let mut n = 0;
    if let Ok(rec) = Record::open(data, &f.ctx, &f.v1) {
        assert_eq!(
            rec.seal(&f.v1, &f.owner).ok().as_deref(),
            Some(data),
            "a forged record opened"
        );
        n += 1;
    }
    if let Ok(name) = open_name(f.v1.keyring(), None, f.item, data) {
        let again = seal_name(f.v1.keyring(), None, f.item, &name).expect("seals");
        assert_eq!(again, data, "a forged name opened");
        n += 1;
    }
    n
}

/// Valid inputs of every entry point, made with [`fixture`].
pub fn seeds() -> Vec<Vec<u8>> {
    let f = fixture();
    let mut fresh = Freshness::new();
    let _ = fresh.observe(f.item, 2, [7; 32]);
    let _ = fresh.observe_membership(1, f.v1.hash());
    vec![
        f.owner.public().to_bytes().to_vec(),
        f.pins.encode(),
        fresh.encode(),
        f.owner.seal_local(&FUZZ_LOCAL_KEY).expect("seals"),
        f.v1.keyring().seal(&FUZZ_LOCAL_KEY).expect("seals"),
        f.v1.seal_local(&FUZZ_LOCAL_KEY).expect("seals"),
        f.genesis.clone(),
        f.second.clone(),
        f.record.clone(),
        f.name.clone(),
    ]
}
