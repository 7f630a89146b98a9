//! Key commitments: how every member knows they hold the same key as every
//! other member, for every generation.
//!
//! A statement wraps the current key separately to each member and seals
//! older keys in its history, so without a check a signing member could
//! give one member a different key from another's (splitting the group, or
//! handing a victim a key it shares with the server), or slip a wrong old
//! key into the history a new member relies on. The signed statement
//! therefore lists, for each generation 1..=current, a commitment: BLAKE3
//! `derive_key` with context [`COMMITMENT_CONTEXT`] over `workspace [16] |
//! generation u32 | key [32]`. The key is 32 uniformly random bytes, so
//! this domain-separated hash reveals nothing usable about it (the server
//! sees it) while binding it (collision resistance): a member checks every key they open against it, and once a
//! generation's commitment is signed it never changes (see
//! `check_link` in `verify.rs`).

use stacksync_content::WorkspaceKey;
use stacksync_proto::ids::WorkspaceId;

use crate::error::{ErrorKind, Result, fail};
use crate::keyring::Generation;

const COMMITMENT_CONTEXT: &str = "StackSync 2026 vault v2 key commitment";

/// The commitment to one generation's key.
pub(crate) type KeyCommitment = [u8; 32];

/// The commitment to `key` as the key of `generation` of `workspace`.
pub(crate) fn commit(
    workspace: &WorkspaceId,
    generation: Generation,
    key: &WorkspaceKey,
) -> KeyCommitment {
    // Fed piecewise so the key is never copied into a buffer.
    let mut hasher = blake3::Hasher::new_derive_key(COMMITMENT_CONTEXT);
    hasher
        .update(workspace.0.as_bytes())
        .update(&generation.0.to_le_bytes())
        .update(key.expose_bytes());
    *hasher.finalize().as_bytes()
}

/// The listed commitment of `generation` (commitments are listed for
/// generations 1..=current, in order).
pub(crate) fn listed(
    commitments: &[KeyCommitment],
    generation: Generation,
) -> Option<&KeyCommitment> {
    let index = usize::try_from(generation.0).ok()?.checked_sub(1)?;
    commitments.get(index)
}

/// Refuses `key` unless it is the key `commitments` lists for
/// `generation`: [`ErrorKind::Tampered`], the key I was given is not the
/// one the signed statement commits to (so not the one the other members
/// got).
pub(crate) fn check_key(
    workspace: &WorkspaceId,
    commitments: &[KeyCommitment],
    generation: Generation,
    key: &WorkspaceKey,
) -> Result<()> {
    match listed(commitments, generation) {
        Some(expected) if *expected == commit(workspace, generation, key) => Ok(()),
        _ => fail(ErrorKind::Tampered),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commitment_binds_workspace_generation_and_key() {
        let ws = WorkspaceId::new();
        let key = WorkspaceKey::from_bytes([1; 32]);
        let c = commit(&ws, Generation(1), &key);
        assert_ne!(c, commit(&WorkspaceId::new(), Generation(1), &key));
        assert_ne!(c, commit(&ws, Generation(2), &key));
        assert_ne!(
            c,
            commit(&ws, Generation(1), &WorkspaceKey::from_bytes([2; 32]))
        );
        assert_ne!(&c, key.expose_bytes());
        check_key(&ws, &[c], Generation(1), &key).unwrap();
        for g in [Generation(0), Generation(2), Generation(u32::MAX)] {
            assert_eq!(
                check_key(&ws, &[c], g, &key).unwrap_err().kind(),
                &ErrorKind::Tampered
            );
        }
    }
}
