//! Tests of membership statements. Each attack test names the paper class
//! it covers.

use super::*;
use crate::pins::PinStore;
use stacksync_content::WrappedKey;

pub(crate) fn person() -> Identity {
    Identity::generate(UserId::new()).unwrap()
}

/// Re-signs `draft` as `signer`: what a (malicious or buggy) member could
/// produce, never the server.
pub(crate) fn forge(draft: &Draft, signer: &Identity) -> Vec<u8> {
    draft.sign(signer)
}

pub(crate) fn kind(r: Result<Verified>) -> ErrorKind {
    r.unwrap_err().kind().clone()
}

/// An owner, Bob (writer) and Carol (read-only) in a fresh workspace.
pub(crate) struct World {
    pub(crate) owner: Identity,
    pub(crate) bob: Identity,
    pub(crate) carol: Identity,
    pub(crate) ws: WorkspaceId,
    pub(crate) genesis: Vec<u8>,
    pub(crate) pins: PinStore,
}

pub(crate) fn world() -> World {
    let (owner, bob, carol) = (person(), person(), person());
    let ws = WorkspaceId::new();
    let others = [Member::writer(bob.public()), Member::reader(carol.public())];
    let (genesis, _) = Statement::genesis(&owner, ws, &others, None).unwrap();
    World {
        owner,
        bob,
        carol,
        ws,
        genesis,
        pins: PinStore::new(),
    }
}

pub(crate) fn draft_of(bytes: &[u8]) -> Draft {
    parse(bytes).unwrap().draft
}

#[test]
fn genesis_round_trip_for_every_member() {
    let w = world();
    for me in [&w.owner, &w.bob, &w.carol] {
        let v = verify(&w.genesis, me, None, &w.pins).unwrap();
        assert_eq!(v.workspace(), w.ws);
        assert_eq!(v.epoch(), 1);
        assert_eq!(v.generation(), Generation(1));
        assert_eq!(v.members().len(), 3);
        assert_eq!(v.signer(), w.owner.user());
        assert_eq!(v.hash(), statement_hash(&w.genesis));
        assert_eq!(v.keyring().workspace(), w.ws);
    }
    let a = verify(&w.genesis, &w.owner, None, &w.pins).unwrap();
    let b = verify(&w.genesis, &w.bob, None, &w.pins).unwrap();
    assert_eq!(
        a.keyring().current_key().expose_bytes(),
        b.keyring().current_key().expose_bytes()
    );
    // Re-encoding the parsed draft gives the same bytes: canonical.
    let p = parse(&w.genesis).unwrap();
    assert_eq!(p.draft.encode_unsigned(), p.signed);
}

#[test]
fn a_stranger_is_not_a_member() {
    let w = world();
    assert_eq!(
        kind(verify(&w.genesis, &person(), None, &w.pins)),
        ErrorKind::NotAMember
    );
}

/// MEGA (S&P 2023) / CCS 2024 class: malleable or unauthenticated key
/// material. Every byte of a statement is covered by the signature.
#[test]
fn every_flipped_byte_of_a_statement_is_refused() {
    let w = world();
    let (next, _) = {
        let v = verify(&w.genesis, &w.owner, None, &w.pins).unwrap();
        let members: Vec<Member> = v.members().to_vec();
        Statement::next(&v, &w.owner, &members, true, None).unwrap()
    };
    let v1 = verify(&w.genesis, &w.bob, None, &w.pins).unwrap();
    for at in 0..next.len() {
        let mut b = next.clone();
        b[at] ^= 0x04;
        assert!(verify(&b, &w.bob, Some(&v1), &w.pins).is_err(), "byte {at}");
    }
    for at in 0..w.genesis.len() {
        let mut b = w.genesis.clone();
        b[at] ^= 0x80;
        assert!(verify(&b, &w.bob, None, &w.pins).is_err(), "byte {at}");
    }
}

/// CCS 2024 / MEGA class: one bit of a member's wrapped key flipped (the
/// server substituting or corrupting key material).
#[test]
fn a_bit_flipped_in_any_wrapped_key_is_refused() {
    let w = world();
    let p = parse(&w.genesis).unwrap();
    // Find each wrapped key's position and flip a bit in its ciphertext.
    for e in &p.draft.entries {
        let at = w
            .genesis
            .windows(e.wrapped.len())
            .position(|x| x == e.wrapped)
            .unwrap();
        let mut b = w.genesis.clone();
        b[at + e.wrapped.len() - 20] ^= 1;
        assert_eq!(kind(verify(&b, &w.bob, None, &w.pins)), ErrorKind::Tampered);
    }
}

/// Share with Care (EuroS&P 2024) class: the server injects a member (its
/// own key) into the list so that future keys are wrapped to it.
#[test]
fn member_injected_by_the_server_is_refused() {
    let w = world();
    let mut d = draft_of(&w.genesis);
    let eve = person();
    let key = WorkspaceKey::generate().unwrap();
    d.entries.push(Entry {
        member: Member::writer(eve.public()),
        wrapped: key
            .wrap_for_member(&eve.public().x25519)
            .unwrap()
            .as_bytes()
            .to_vec(),
    });
    d.entries.sort_by_key(|e| e.member.identity.user);
    // The server cannot sign: it keeps the owner's old signature.
    let mut bytes = d.encode_unsigned();
    bytes.extend_from_slice(&parse(&w.genesis).unwrap().signature);
    assert_eq!(
        kind(verify(&bytes, &w.bob, None, &w.pins)),
        ErrorKind::Tampered
    );
    // Nor can it sign as itself: it is not the owner.
    let mut d2 = d.clone();
    d2.signer = eve.user();
    d2.entries.iter_mut().for_each(|e| {
        if e.member.identity.user == eve.user() {
            e.member.role = Role::Owner;
        }
    });
    let forged = forge(&d2, &eve);
    let mut pins = PinStore::new();
    pins.pin(&w.owner.public()).unwrap();
    // As a new genesis it is another workspace's history: Bob's last seen
    // statement rejects it as a fork.
    let v1 = verify(&w.genesis, &w.bob, None, &pins).unwrap();
    assert!(verify(&forged, &w.bob, Some(&v1), &pins).is_err());
}

#[test]
fn empty_member_list_is_refused() {
    let w = world();
    let mut d = draft_of(&w.genesis);
    d.entries.clear();
    assert_eq!(
        kind(verify(&forge(&d, &w.owner), &w.owner, None, &w.pins)),
        ErrorKind::EmptyMembers
    );
}

#[test]
fn duplicate_member_is_refused() {
    let w = world();
    let mut d = draft_of(&w.genesis);
    let copy = d.entries[0].clone();
    d.entries.insert(0, copy);
    assert_eq!(
        kind(verify(&forge(&d, &w.owner), &w.owner, None, &w.pins)),
        ErrorKind::DuplicateMember
    );
    let dup = [
        Member::writer(w.bob.public()),
        Member::writer(w.bob.public()),
    ];
    assert_eq!(
        Statement::genesis(&w.owner, w.ws, &dup, None)
            .unwrap_err()
            .kind(),
        &ErrorKind::DuplicateMember
    );
}

/// CCS 2024 class (removed members keep access): a member list that shrank
/// while the key stayed the same.
#[test]
fn shrunken_member_list_without_new_generation_is_refused() {
    let w = world();
    let v1 = verify(&w.genesis, &w.owner, None, &w.pins).unwrap();
    let mut d = draft_of(&w.genesis);
    d.epoch = 2;
    d.prev_hash = v1.hash();
    d.entries.retain(|e| e.member.identity.user != w.bob.user());
    let bytes = forge(&d, &w.owner);
    assert_eq!(
        kind(verify(&bytes, &w.owner, Some(&v1), &w.pins)),
        ErrorKind::ShrunkWithoutRotation
    );
}

/// Share with Care / CCS 2024 class: a statement signed by someone who is
/// not a member, or by a read-only member, or a non-owner changing members.
#[test]
fn signature_by_non_member_or_read_only_member_is_refused() {
    let w = world();
    let v1 = verify(&w.genesis, &w.owner, None, &w.pins).unwrap();
    let mut d = draft_of(&w.genesis);
    d.epoch = 2;
    d.prev_hash = v1.hash();
    let eve = person();
    d.signer = eve.user();
    assert_eq!(
        kind(verify(&forge(&d, &eve), &w.owner, Some(&v1), &w.pins)),
        ErrorKind::NotAMember
    );
    d.signer = w.carol.user(); // read-only
    assert_eq!(
        kind(verify(&forge(&d, &w.carol), &w.owner, Some(&v1), &w.pins)),
        ErrorKind::NotAllowed
    );
    // Bob (a writer, not owner) may rotate but not add a member.
    d.signer = w.bob.user();
    let same = forge(&d, &w.bob);
    verify(&same, &w.owner, Some(&v1), &w.pins).unwrap();
    let dave = person();
    let key = WorkspaceKey::generate().unwrap();
    d.entries.push(Entry {
        member: Member::writer(dave.public()),
        wrapped: key
            .wrap_for_member(&dave.public().x25519)
            .unwrap()
            .as_bytes()
            .to_vec(),
    });
    d.entries.sort_by_key(|e| e.member.identity.user);
    assert_eq!(
        kind(verify(&forge(&d, &w.bob), &w.owner, Some(&v1), &w.pins)),
        ErrorKind::NotAllowed
    );
    // Genesis signed by a non-owner member.
    let mut g = draft_of(&w.genesis);
    g.signer = w.bob.user();
    assert_eq!(
        kind(verify(&forge(&g, &w.bob), &w.owner, None, &w.pins)),
        ErrorKind::NotAllowed
    );
}

/// CCS 2024 / Share with Care class: the server substitutes a member's
/// public key with its own. Pinned keys catch it until the user confirms.
#[test]
fn replaced_member_key_is_key_changed_until_confirmed() {
    let w = world();
    let mut pins = PinStore::new();
    let v = verify(&w.genesis, &w.owner, None, &pins).unwrap();
    v.pin_members(&mut pins).unwrap();
    // A workspace where "Bob" has other keys.
    let fake_bob = Identity::generate(w.bob.user()).unwrap();
    let others = [Member::writer(fake_bob.public())];
    let (other, _) = Statement::genesis(&w.owner, WorkspaceId::new(), &others, None).unwrap();
    assert_eq!(
        kind(verify(&other, &w.owner, None, &pins)),
        ErrorKind::KeyChanged { user: w.bob.user() }
    );
    pins.confirm_change(&fake_bob.public());
    verify(&other, &w.owner, None, &pins).unwrap();
    // My own entry listing other keys for me.
    verify(&other, &fake_bob, None, &PinStore::new()).unwrap();
    assert_eq!(
        kind(verify(&other, &w.bob, None, &PinStore::new())),
        ErrorKind::KeyChanged { user: w.bob.user() }
    );
}

/// CCS 2024 class (no rollback protection): an older statement served
/// after a newer one, and two different statements at the same epoch.
#[test]
fn epoch_rollback_and_fork_are_refused() {
    let w = world();
    let v1 = verify(&w.genesis, &w.owner, None, &w.pins).unwrap();
    let members = v1.members().to_vec();
    let (s2, v2) = Statement::next(&v1, &w.owner, &members, false, None).unwrap();
    let (s3, v3) = Statement::next(&v2, &w.owner, &members, true, None).unwrap();
    // Rollback: epoch 2 after epoch 3.
    assert_eq!(
        kind(verify(&s2, &w.owner, Some(&v3), &w.pins)),
        ErrorKind::Rollback
    );
    assert_eq!(
        kind(verify(&w.genesis, &w.owner, Some(&v3), &w.pins)),
        ErrorKind::Rollback
    );
    // Fork: another statement at epoch 3 (validly signed by the owner).
    let (s3b, _) = Statement::next(&v2, &w.owner, &members, false, None).unwrap();
    assert_eq!(
        kind(verify(&s3b, &w.owner, Some(&v3), &w.pins)),
        ErrorKind::Fork
    );
    // The same statement again is fine (idempotent).
    assert_eq!(
        verify(&s3, &w.owner, Some(&v3), &w.pins).unwrap().hash(),
        v3.hash()
    );
    // A gap (epoch 3 after epoch 1) needs the missing statement.
    assert_eq!(
        kind(verify(&s3, &w.bob, Some(&v1), &w.pins)),
        ErrorKind::BrokenChain
    );
    let chained = verify_chain(&[&s2, &s3], &w.bob, Some(&v1), &w.pins).unwrap();
    assert_eq!(chained.epoch(), 3);
    // A statement at epoch 2 that does not follow genesis: fork.
    let mut d = draft_of(&s2);
    d.prev_hash = [7; 32];
    assert_eq!(
        kind(verify(&forge(&d, &w.owner), &w.owner, Some(&v1), &w.pins)),
        ErrorKind::Fork
    );
    // Without a last-seen statement, only the genesis statement is accepted.
    assert_eq!(
        kind(verify(&s3, &w.bob, None, &w.pins)),
        ErrorKind::BrokenChain
    );
    // Generation going down is a rollback.
    let mut d = draft_of(&s3);
    d.epoch = 4;
    d.prev_hash = v3.hash();
    d.generation = Generation(1);
    d.commitments.truncate(1);
    d.history.clear();
    assert_eq!(
        kind(verify(&forge(&d, &w.owner), &w.owner, Some(&v3), &w.pins)),
        ErrorKind::Rollback
    );
}

/// CCS 2024 class (downgrade): a statement whose format byte is lowered
/// (format 1 had no key commitments) or unknown.
#[test]
fn format_byte_downgrade_is_refused() {
    let w = world();
    assert_eq!(w.genesis[4], FORMAT);
    for f in [0u8, 1, 3, 255] {
        let mut b = w.genesis.clone();
        b[4] = f;
        assert_eq!(
            kind(verify(&b, &w.owner, None, &w.pins)),
            ErrorKind::Downgrade
        );
    }
}

/// CCS 2024 / MEGA class: a recovery copy sealed with KDF parameters
/// below the floor (cheap offline guessing of the passphrase).
#[test]
fn weak_kdf_in_recovery_copy_is_refused() {
    let w = world();
    let recovery = RecoveryPassphrase {
        passphrase: b"long recovery phrase",
        params: crate::MIN_KDF,
    };
    let (s, v) = Statement::genesis(&w.owner, w.ws, &[], Some(recovery)).unwrap();
    let recovered = recover_chain(&[&s], b"long recovery phrase", None, &w.pins).unwrap();
    assert_eq!(
        recovered.keyring().current_key().expose_bytes(),
        v.keyring().current_key().expose_bytes()
    );
    assert_eq!(
        kind(recover_chain(&[&s], b"wrong", None, &w.pins)),
        ErrorKind::WrongPassphrase
    );
    // A member signs a statement carrying a weak recovery copy.
    let weak = KdfParams {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    };
    let mut d = draft_of(&s);
    let key = v.keyring().current_key();
    d.recovery = Some(
        key.wrap_with_passphrase(b"pw", &weak)
            .unwrap()
            .as_bytes()
            .to_vec(),
    );
    let bytes = forge(&d, &w.owner);
    assert_eq!(
        kind(verify(&bytes, &w.owner, None, &w.pins)),
        ErrorKind::Downgrade
    );
    let weak_request = RecoveryPassphrase {
        passphrase: b"pw",
        params: weak,
    };
    assert_eq!(
        Statement::genesis(&w.owner, w.ws, &[], Some(weak_request))
            .unwrap_err()
            .kind(),
        &ErrorKind::InvalidInput
    );
}

/// CCS 2024 class (removed members keep access): after Bob is removed, the
/// new generation is not wrapped to him and he cannot read it, while the
/// others read old and new generations.
#[test]
fn removed_member_cannot_read_new_generation() {
    let w = world();
    let v1 = verify(&w.genesis, &w.owner, None, &w.pins).unwrap();
    let remaining: Vec<Member> = v1
        .members()
        .iter()
        .copied()
        .filter(|m| m.identity.user != w.bob.user())
        .collect();
    // Even without asking for rotation, removal rotates.
    let (s2, v2) = Statement::next(&v1, &w.owner, &remaining, false, None).unwrap();
    assert_eq!(v2.generation(), Generation(2));
    let bob_v1 = verify(&w.genesis, &w.bob, None, &w.pins).unwrap();
    assert_eq!(
        kind(verify(&s2, &w.bob, Some(&bob_v1), &w.pins)),
        ErrorKind::NotAMember
    );
    // The new key appears nowhere Bob can open: not in any wrapped copy.
    let p = parse(&s2).unwrap();
    for e in &p.draft.entries {
        let blob = WrappedKey::from_bytes(e.wrapped.clone()).unwrap();
        assert!(WorkspaceKey::unwrap_for_member(&blob, w.bob.x25519()).is_err());
    }
    assert!(open_history(&p.draft, bob_v1.keyring().current_key()).is_err());
    // Carol (read-only, remaining) reads both generations.
    let carol_v1 = verify(&w.genesis, &w.carol, None, &w.pins).unwrap();
    let carol_v2 = verify(&s2, &w.carol, Some(&carol_v1), &w.pins).unwrap();
    let ring = carol_v2.keyring();
    assert_eq!(ring.current(), Generation(2));
    assert_eq!(
        ring.key(Generation(1)).unwrap().expose_bytes(),
        bob_v1.keyring().current_key().expose_bytes()
    );
    assert_ne!(
        ring.key(Generation(2)).unwrap().expose_bytes(),
        bob_v1.keyring().current_key().expose_bytes()
    );
}

/// A member who joins later verifies the chain from genesis and reads old
/// generations through the history.
#[test]
fn late_joiner_verifies_chain_and_reads_history() {
    let w = world();
    let v1 = verify(&w.genesis, &w.owner, None, &w.pins).unwrap();
    let members = v1.members().to_vec();
    let (s2, v2) = Statement::next(&v1, &w.owner, &members, true, None).unwrap();
    let dave = person();
    let mut with_dave = members.clone();
    with_dave.push(Member::writer(dave.public()));
    let (s3, _) = Statement::next(&v2, &w.owner, &with_dave, false, None).unwrap();
    assert_eq!(
        kind(verify(&s3, &dave, None, &w.pins)),
        ErrorKind::BrokenChain
    );
    let dv = verify_chain(&[&w.genesis, &s2, &s3], &dave, None, &w.pins).unwrap();
    assert_eq!(dv.generation(), Generation(2));
    assert_eq!(
        dv.keyring().key(Generation(1)).unwrap().expose_bytes(),
        v1.keyring().current_key().expose_bytes()
    );
}

#[test]
fn local_seal_round_trip() {
    let w = world();
    let v = verify(&w.genesis, &w.bob, None, &w.pins).unwrap();
    let sealed = v.seal_local(&[1; 32]).unwrap();
    let back = Verified::open_local(&sealed, &[1; 32]).unwrap();
    assert_eq!(back.state, v.state);
    assert_eq!(
        back.keyring().current_key().expose_bytes(),
        v.keyring().current_key().expose_bytes()
    );
    assert!(Verified::open_local(&sealed, &[2; 32]).is_err());
    // The restored view checks the next statement like the original.
    let members = v.members().to_vec();
    let owner_v = verify(&w.genesis, &w.owner, None, &w.pins).unwrap();
    let (s2, _) = Statement::next(&owner_v, &w.owner, &members, true, None).unwrap();
    verify(&s2, &w.bob, Some(&back), &w.pins).unwrap();
}
