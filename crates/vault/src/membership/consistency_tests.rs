//! Key consistency: a malicious signing member (threat model: "a current
//! member") cannot give members different keys for one generation, nor
//! give a new member wrong keys for old generations. CCS 2024 class
//! (unchecked key material), which the server alone cannot reach since it
//! cannot sign; here the signer is the attacker, so every forged statement
//! carries a valid signature.

use std::collections::BTreeMap;

use super::tests::{World, draft_of, forge, kind, person, world};
use super::*;
use crate::membership::commitment::commit;
use crate::pins::PinStore;

fn other_key() -> WorkspaceKey {
    WorkspaceKey::generate().unwrap()
}

/// `d` with the current key wrapped to `victim` replaced by `key`.
fn rewrap_for(d: &mut Draft, victim: &Identity, key: &WorkspaceKey) {
    let entry = d
        .entries
        .iter_mut()
        .find(|e| e.member.identity.user == victim.user())
        .unwrap();
    entry.wrapped = key
        .wrap_for_member(&victim.public().x25519)
        .unwrap()
        .as_bytes()
        .to_vec();
}

/// The owner's view after a rotation: generation 2, same members.
fn rotated(w: &World) -> (Vec<u8>, Verified, Verified) {
    let v1 = verify(&w.genesis, &w.owner, None, &w.pins).unwrap();
    let members = v1.members().to_vec();
    let (s2, v2) = Statement::next(&v1, &w.owner, &members, true, None).unwrap();
    (s2, v1, v2)
}

/// The signer wraps another key for Bob than for everyone else (Bob's
/// writes would be unreadable to the others, or readable to whoever the
/// signer shares that key with). Bob refuses; the honest members accept.
#[test]
fn signer_wrapping_a_different_key_for_one_member_is_refused_by_that_member() {
    let w = world();
    // At genesis.
    let mut d = draft_of(&w.genesis);
    rewrap_for(&mut d, &w.bob, &other_key());
    let split = forge(&d, &w.owner);
    assert_eq!(
        kind(verify(&split, &w.bob, None, &w.pins)),
        ErrorKind::Tampered
    );
    verify(&split, &w.carol, None, &w.pins).unwrap();
    verify(&split, &w.owner, None, &w.pins).unwrap();

    // At a rotation, checked by members who follow the chain.
    let (s2, _, _) = rotated(&w);
    let bob_v1 = verify(&w.genesis, &w.bob, None, &w.pins).unwrap();
    let carol_v1 = verify(&w.genesis, &w.carol, None, &w.pins).unwrap();
    let mut d = draft_of(&s2);
    rewrap_for(&mut d, &w.bob, &other_key());
    let split = forge(&d, &w.owner);
    assert_eq!(
        kind(verify(&split, &w.bob, Some(&bob_v1), &w.pins)),
        ErrorKind::Tampered
    );
    verify(&split, &w.carol, Some(&carol_v1), &w.pins).unwrap();
    // The honest statement passes for both (the test can fail).
    verify(&s2, &w.bob, Some(&bob_v1), &w.pins).unwrap();
}

/// The same split, with the commitment made to Bob's key instead: then it
/// is every other member who refuses. One commitment per generation means
/// two keys can never both verify.
#[test]
fn split_keys_committed_to_the_victims_key_are_refused_by_everyone_else() {
    let w = world();
    let bobs = other_key();
    let mut d = draft_of(&w.genesis);
    rewrap_for(&mut d, &w.bob, &bobs);
    d.commitments = vec![commit(&w.ws, Generation(1), &bobs)];
    let split = forge(&d, &w.owner);
    verify(&split, &w.bob, None, &w.pins).unwrap();
    assert_eq!(
        kind(verify(&split, &w.carol, None, &w.pins)),
        ErrorKind::Tampered
    );
}

/// A signer who gives everyone a new key without a new generation: the
/// old generation's data would no longer open, and members still on the
/// old key would disagree with the new. Refused whether or not the
/// commitment follows the new key.
#[test]
fn new_key_under_an_old_generation_is_refused() {
    let w = world();
    let v1 = verify(&w.genesis, &w.owner, None, &w.pins).unwrap();
    let bob_v1 = verify(&w.genesis, &w.bob, None, &w.pins).unwrap();
    let members = v1.members().to_vec();
    let (s2, _) = Statement::next(&v1, &w.owner, &members, false, None).unwrap();
    verify(&s2, &w.bob, Some(&bob_v1), &w.pins).unwrap();
    let silent = other_key();
    let mut d = draft_of(&s2);
    d.entries = entries_for(&members, &silent).unwrap();
    assert_eq!(
        kind(verify(&forge(&d, &w.owner), &w.bob, Some(&bob_v1), &w.pins)),
        ErrorKind::Tampered
    );
    d.commitments = vec![commit(&w.ws, Generation(1), &silent)];
    assert_eq!(
        kind(verify(&forge(&d, &w.owner), &w.bob, Some(&bob_v1), &w.pins)),
        ErrorKind::Fork
    );
}

/// A history entry sealed with a wrong key for generation 1: a member who
/// joins later would decrypt old data with it (or fail to). The new member
/// and the existing ones refuse the statement.
#[test]
fn history_sealed_with_a_wrong_old_key_is_refused_by_a_new_member() {
    let w = world();
    let (s2, _, v2) = rotated(&w);
    let dave = person();
    let mut with_dave = v2.members().to_vec();
    with_dave.push(Member::writer(dave.public()));
    let (s3, _) = Statement::next(&v2, &w.owner, &with_dave, false, None).unwrap();
    verify_chain(&[&w.genesis, &s2, &s3], &dave, None, &w.pins).unwrap();

    let mut keys = BTreeMap::new();
    keys.insert(Generation(1), other_key());
    keys.insert(Generation(2), v2.keyring().current_key().clone());
    let lying = KeyRing::new(w.ws, Generation(2), keys).unwrap();
    let mut d = draft_of(&s3);
    d.history = seal_history(&w.ws, Generation(2), lying.current_key(), Some(&lying)).unwrap();
    let bad = forge(&d, &w.owner);
    assert_eq!(
        kind(verify_chain(&[&w.genesis, &s2, &bad], &dave, None, &w.pins)),
        ErrorKind::Tampered
    );
    let bob_v1 = verify(&w.genesis, &w.bob, None, &w.pins).unwrap();
    let bob_v2 = verify(&s2, &w.bob, Some(&bob_v1), &w.pins).unwrap();
    assert_eq!(
        kind(verify(&bad, &w.bob, Some(&bob_v2), &w.pins)),
        ErrorKind::Tampered
    );
}

/// The same lie made consistent: the wrong old key, and the commitment of
/// generation 1 rewritten to match it. The chain fixed that commitment at
/// genesis, so the rewrite is a fork, for a late joiner too.
#[test]
fn later_statement_changing_an_old_commitment_is_refused() {
    let w = world();
    let (s2, _, v2) = rotated(&w);
    let dave = person();
    let mut with_dave = v2.members().to_vec();
    with_dave.push(Member::writer(dave.public()));
    let (s3, _) = Statement::next(&v2, &w.owner, &with_dave, false, None).unwrap();

    let wrong = other_key();
    let mut keys = BTreeMap::new();
    keys.insert(Generation(1), wrong.clone());
    keys.insert(Generation(2), v2.keyring().current_key().clone());
    let lying = KeyRing::new(w.ws, Generation(2), keys).unwrap();
    let mut d = draft_of(&s3);
    d.history = seal_history(&w.ws, Generation(2), lying.current_key(), Some(&lying)).unwrap();
    d.commitments[0] = commit(&w.ws, Generation(1), &wrong);
    let bad = forge(&d, &w.owner);
    assert_eq!(
        kind(verify_chain(&[&w.genesis, &s2, &bad], &dave, None, &w.pins)),
        ErrorKind::Fork
    );
    assert_eq!(
        kind(verify(&bad, &w.owner, Some(&v2), &w.pins)),
        ErrorKind::Fork
    );
    // Rewritten already at the rotation that made generation 2.
    let mut d = draft_of(&s2);
    d.commitments[0] = commit(&w.ws, Generation(1), &wrong);
    let bob_v1 = verify(&w.genesis, &w.bob, None, &w.pins).unwrap();
    assert_eq!(
        kind(verify(&forge(&d, &w.owner), &w.bob, Some(&bob_v1), &w.pins)),
        ErrorKind::Fork
    );
}

/// One commitment per generation, no more, no fewer.
#[test]
fn too_few_or_too_many_commitments_are_malformed() {
    let w = world();
    let (s2, v1, _) = rotated(&w);
    let extra = commit(&w.ws, Generation(9), &other_key());
    for (bytes, last) in [(&w.genesis, None), (&s2, Some(&v1))] {
        let d = draft_of(bytes);
        let mut fewer = d.clone();
        fewer.commitments.pop();
        let mut more = d.clone();
        more.commitments.push(extra);
        for bad in [fewer, more] {
            assert_eq!(
                kind(verify(&forge(&bad, &w.owner), &w.owner, last, &w.pins)),
                ErrorKind::Malformed
            );
        }
    }
}

/// A recovery copy of another key than the members': whoever recovers with
/// the passphrase would write under a key no member holds.
#[test]
fn recovery_copy_of_a_different_key_is_refused() {
    let w = world();
    let recovery = RecoveryPassphrase {
        passphrase: b"long recovery phrase",
        params: crate::MIN_KDF,
    };
    let (s, _) = Statement::genesis(&w.owner, w.ws, &[], Some(recovery)).unwrap();
    recover_chain(&[&s], recovery.passphrase, None, &w.pins).unwrap();
    let mut d = draft_of(&s);
    d.recovery = Some(recovery_copy(&other_key(), &recovery).unwrap());
    assert_eq!(
        kind(recover_chain(
            &[&forge(&d, &w.owner)],
            recovery.passphrase,
            None,
            &PinStore::new()
        )),
        ErrorKind::Tampered
    );
}

/// The commitments survive the client's own storage and keep binding.
#[test]
fn commitments_persist_in_the_local_view() {
    let w = world();
    let (s2, _, _) = rotated(&w);
    let bob_v1 = verify(&w.genesis, &w.bob, None, &w.pins).unwrap();
    let bob_v2 = verify(&s2, &w.bob, Some(&bob_v1), &w.pins).unwrap();
    assert_eq!(bob_v2.state.commitments, draft_of(&s2).commitments);
    let back = Verified::open_local(&bob_v2.seal_local(&[3; 32]).unwrap(), &[3; 32]).unwrap();
    assert_eq!(back.state.commitments.len(), 2);
    let mut d = draft_of(&s2);
    d.epoch = 3;
    d.prev_hash = bob_v2.hash();
    d.commitments[1] = commit(&w.ws, Generation(2), &other_key());
    assert_eq!(
        kind(verify(&forge(&d, &w.owner), &w.bob, Some(&back), &w.pins)),
        ErrorKind::Fork
    );
}
