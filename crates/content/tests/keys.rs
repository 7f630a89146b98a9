//! Key wrapping under passphrases and to members.

use stacksync_content::{
    ContentError, KdfParams, KeyProblem, MemberPublicKey, MemberSecretKey, WorkspaceKey, WrappedKey,
};

/// Cheap Argon2 parameters: the tests check the plumbing, not the cost.
const FAST: KdfParams = KdfParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

fn key_problem<T: std::fmt::Debug>(r: Result<T, ContentError>) -> KeyProblem {
    match r {
        Err(ContentError::Key(p)) => p,
        other => panic!("expected a key problem, got {other:?}"),
    }
}

#[test]
fn passphrase_wrap_round_trips_and_refuses_the_wrong_passphrase() {
    let key = WorkspaceKey::generate().unwrap();
    let blob = key.wrap_with_passphrase(b"correct horse", &FAST).unwrap();
    let stored = WrappedKey::from_bytes(blob.as_bytes().to_vec()).unwrap();
    let back = WorkspaceKey::unwrap_with_passphrase(&stored, b"correct horse").unwrap();
    assert_eq!(back.expose_bytes(), key.expose_bytes());
    assert_eq!(
        key_problem(WorkspaceKey::unwrap_with_passphrase(
            &stored,
            b"wrong horse"
        )),
        KeyProblem::Unwrap
    );
    // Two wraps of the same key differ (fresh salt and nonce).
    assert_ne!(
        key.wrap_with_passphrase(b"correct horse", &FAST).unwrap(),
        blob
    );
}

#[test]
fn tampered_or_hostile_blobs_are_refused() {
    let key = WorkspaceKey::generate().unwrap();
    let blob = key.wrap_with_passphrase(b"pw", &FAST).unwrap();
    for at in [8, 20, 30, 50, blob.as_bytes().len() - 1] {
        let mut bad = blob.as_bytes().to_vec();
        bad[at] ^= 1;
        let r = WrappedKey::from_bytes(bad)
            .and_then(|b| WorkspaceKey::unwrap_with_passphrase(&b, b"pw"));
        assert!(r.is_err(), "flip at {at} accepted");
    }
    // A blob asking for 4 GiB of Argon2 memory is refused before any work.
    let mut greedy = blob.as_bytes().to_vec();
    greedy[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    let greedy = WrappedKey::from_bytes(greedy).unwrap();
    assert!(matches!(
        key_problem(WorkspaceKey::unwrap_with_passphrase(&greedy, b"pw")),
        KeyProblem::BadParams(_)
    ));
    assert!(matches!(
        key_problem(WrappedKey::from_bytes(b"SSwk".to_vec())),
        KeyProblem::Malformed(_)
    ));
    let mut v9 = blob.as_bytes().to_vec();
    v9[4] = 9;
    assert_eq!(
        key_problem(WrappedKey::from_bytes(v9)),
        KeyProblem::UnsupportedVersion(9)
    );
}

#[test]
fn member_wrapping_shares_one_key_with_several_members() {
    let key = WorkspaceKey::generate().unwrap();
    let alice = MemberSecretKey::generate().unwrap();
    let bob = MemberSecretKey::generate().unwrap();
    let for_alice = key.wrap_for_member(&alice.public_key()).unwrap();
    let for_bob = key.wrap_for_member(&bob.public_key()).unwrap();
    assert_eq!(
        WorkspaceKey::unwrap_for_member(&for_alice, &alice)
            .unwrap()
            .expose_bytes(),
        key.expose_bytes()
    );
    assert_eq!(
        WorkspaceKey::unwrap_for_member(&for_bob, &bob)
            .unwrap()
            .expose_bytes(),
        key.expose_bytes()
    );
    assert_eq!(
        key_problem(WorkspaceKey::unwrap_for_member(&for_alice, &bob)),
        KeyProblem::Unwrap
    );
    // A passphrase blob is not a member blob.
    let pw = key.wrap_with_passphrase(b"pw", &FAST).unwrap();
    assert!(matches!(
        key_problem(WorkspaceKey::unwrap_for_member(&pw, &alice)),
        KeyProblem::WrongMethod { .. }
    ));
    // Low-order points would make the shared secret public.
    assert_eq!(
        key_problem(key.wrap_for_member(&MemberPublicKey([0; 32]))),
        KeyProblem::WeakPublicKey
    );
}

#[test]
fn member_private_key_is_kept_under_the_passphrase() {
    let alice = MemberSecretKey::generate().unwrap();
    let blob = alice.wrap_with_passphrase(b"alice pw", &FAST).unwrap();
    let back = MemberSecretKey::unwrap_with_passphrase(&blob, b"alice pw").unwrap();
    assert_eq!(back.public_key(), alice.public_key());
    // The kind byte stops a member-key blob being opened as a workspace key.
    assert!(matches!(
        key_problem(WorkspaceKey::unwrap_with_passphrase(&blob, b"alice pw")),
        KeyProblem::WrongKind { .. }
    ));
    assert_eq!(
        format!("{:?}", WorkspaceKey::from_bytes([1; 32])),
        "WorkspaceKey(<redacted>)"
    );
}
