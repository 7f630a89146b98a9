//! Verification of membership statements and the verified view.

use std::collections::BTreeMap;

use stacksync_content::{WorkspaceKey, WrappedKey};
use stacksync_proto::ids::{UserId, WorkspaceId};

use super::commitment::{self, KeyCommitment};
use super::{Member, Parsed, Role, SIGNATURE_DOMAIN, open_history, parse};
use crate::error::{ErrorKind, Result, fail};
use crate::identity::{Identity, PublicIdentity};
use crate::kdf;
use crate::keyring::{Generation, KeyRing};
use crate::pins::{Pin, PinStore};

/// What a verified chain establishes, without keys: enough to check the
/// next statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainState {
    pub(crate) workspace: WorkspaceId,
    pub(crate) epoch: u64,
    pub(crate) hash: [u8; 32],
    pub(crate) generation: Generation,
    pub(crate) members: Vec<Member>,
    pub(crate) recovery: Option<Vec<u8>>,
    pub(crate) signer: UserId,
    /// The key commitment of each generation 1..=`generation`, in order:
    /// what every later statement must repeat and every key must match.
    pub(crate) commitments: Vec<KeyCommitment>,
    /// For each generation, every identity that could write while it was
    /// current (so records of past generations can be checked).
    pub(crate) writers: BTreeMap<Generation, Vec<PublicIdentity>>,
}

/// A membership statement that verified, with the keys it gave this client.
#[derive(Debug, Clone)]
pub struct Verified {
    pub(crate) state: ChainState,
    pub(crate) ring: KeyRing,
}

impl Verified {
    /// The workspace.
    pub fn workspace(&self) -> WorkspaceId {
        self.state.workspace
    }

    /// The statement's epoch (1 for the genesis statement).
    pub fn epoch(&self) -> u64 {
        self.state.epoch
    }

    /// The statement's hash (see [`super::statement_hash`]).
    pub fn hash(&self) -> [u8; 32] {
        self.state.hash
    }

    /// The current key generation.
    pub fn generation(&self) -> Generation {
        self.state.generation
    }

    /// The members, in increasing user-id order.
    pub fn members(&self) -> &[Member] {
        &self.state.members
    }

    /// The member entry of `user`.
    pub fn member(&self, user: &UserId) -> Option<&Member> {
        self.state.members.iter().find(|m| m.identity.user == *user)
    }

    /// Who signed the statement.
    pub fn signer(&self) -> UserId {
        self.state.signer
    }

    /// The keys of every generation this client may read.
    pub fn keyring(&self) -> &KeyRing {
        &self.ring
    }

    /// The passphrase recovery copy of the current key, if any.
    pub fn recovery_copy(&self) -> Option<&[u8]> {
        self.state.recovery.as_deref()
    }

    /// The identities of `user` that could write while `generation` was
    /// current.
    pub(crate) fn writer_identities(
        &self,
        generation: Generation,
        user: UserId,
    ) -> impl Iterator<Item = &PublicIdentity> {
        self.state
            .writers
            .get(&generation)
            .into_iter()
            .flatten()
            .filter(move |id| id.user == user)
    }

    /// Pins every member seen for the first time (trust on first use).
    /// Call it after a successful verify, then persist the pin store.
    pub fn pin_members(&self, pins: &mut PinStore) -> Result<()> {
        self.state
            .members
            .iter()
            .try_for_each(|m| pins.pin(&m.identity))
    }
}

/// How this client opens the current key of a statement.
enum Unlock<'a> {
    Member(&'a Identity),
    Passphrase(&'a [u8]),
}

/// Verifies one statement following `last_seen` (`None`: it must be the
/// genesis statement). Same as [`verify_chain`] with one statement.
pub fn verify(
    bytes: &[u8],
    me: &Identity,
    last_seen: Option<&Verified>,
    pins: &PinStore,
) -> Result<Verified> {
    verify_chain(&[bytes], me, last_seen, pins)
}

/// Verifies `statements`, consecutive and in order, starting right after
/// `last_seen` (or at the genesis statement), and opens the last one with
/// `me`'s key. Every link is checked (format, signature by a writing member
/// of the previous statement, epoch and hash chain, roles, rotation on
/// removal, key commitments repeated unchanged); every key opened from the
/// last one must match its commitment. Pins and my membership are checked
/// on the last statement only, since earlier ones are authenticated by the
/// chain and may predate me. Returns the last statement's view. Before trusting it the caller
/// pins first-use members ([`Verified::pin_members`]) and records the
/// epoch and hash ([`crate::Freshness::observe_membership`]).
pub fn verify_chain(
    statements: &[&[u8]],
    me: &Identity,
    last_seen: Option<&Verified>,
    pins: &PinStore,
) -> Result<Verified> {
    verify_inner(statements, Unlock::Member(me), last_seen, Some(pins))
}

/// Like [`verify_chain`], but opens the last statement with its passphrase
/// recovery copy instead of a member identity (for a user who lost their
/// identity). The recovery copy's KDF parameters must meet the floor.
pub fn recover_chain(
    statements: &[&[u8]],
    passphrase: &[u8],
    last_seen: Option<&Verified>,
    pins: &PinStore,
) -> Result<Verified> {
    verify_inner(
        statements,
        Unlock::Passphrase(passphrase),
        last_seen,
        Some(pins),
    )
}

/// A statement this client has just built (no pins to check: the caller
/// chose the members).
pub(crate) fn verify_own(bytes: &[u8], me: &Identity, prev: Option<&Verified>) -> Result<Verified> {
    verify_inner(&[bytes], Unlock::Member(me), prev, None)
}

fn verify_inner(
    statements: &[&[u8]],
    unlock: Unlock<'_>,
    last_seen: Option<&Verified>,
    pins: Option<&PinStore>,
) -> Result<Verified> {
    let (last, rest) = statements.split_last().ok_or(ErrorKind::InvalidInput)?;
    let mut state = last_seen.map(|v| v.state.clone());
    for bytes in rest {
        let parsed = parse(bytes)?;
        if state.as_ref().is_some_and(|s| s.hash == parsed.hash) {
            continue; // the statement already verified, sent again
        }
        state = Some(check_link(&parsed, state.as_ref())?);
    }
    let parsed = parse(last)?;
    if let Some(seen) = last_seen
        && seen.state.hash == parsed.hash
    {
        return Ok(seen.clone());
    }
    let state = check_link(&parsed, state.as_ref())?;
    if let Some(pins) = pins {
        for m in &state.members {
            if let Pin::Changed { .. } = pins.check(&m.identity) {
                return fail(ErrorKind::KeyChanged {
                    user: m.identity.user,
                });
            }
        }
    }
    let current = open_current(&parsed, &unlock)?;
    let ring = open_ring(&parsed, &state, current)?;
    Ok(Verified { state, ring })
}

/// The key ring of a statement whose chain verified, from my copy of its
/// current key: that key and every history key must be the key the signed
/// commitments list for its generation, so I hold what every other member
/// holds, and the old keys are the ones those generations really had.
fn open_ring(parsed: &Parsed, state: &ChainState, current: WorkspaceKey) -> Result<KeyRing> {
    let check = |g: Generation, key: &WorkspaceKey| {
        commitment::check_key(&state.workspace, &state.commitments, g, key)
    };
    check(state.generation, &current)?;
    let mut keys = BTreeMap::new();
    for (g, key) in open_history(&parsed.draft, &current)? {
        check(g, &key)?;
        keys.insert(g, key);
    }
    keys.insert(state.generation, current);
    KeyRing::new(state.workspace, state.generation, keys)
}

fn open_current(parsed: &Parsed, unlock: &Unlock<'_>) -> Result<WorkspaceKey> {
    match unlock {
        Unlock::Member(me) => {
            let entry = parsed
                .draft
                .entries
                .iter()
                .find(|e| e.member.identity.user == me.user())
                .ok_or(ErrorKind::NotAMember)?;
            if entry.member.identity != me.public() {
                return fail(ErrorKind::KeyChanged { user: me.user() });
            }
            let blob =
                WrappedKey::from_bytes(entry.wrapped.clone()).map_err(|_| ErrorKind::Malformed)?;
            WorkspaceKey::unwrap_for_member(&blob, me.x25519())
                .map_err(|_| ErrorKind::Tampered.into())
        }
        Unlock::Passphrase(passphrase) => {
            let copy = parsed
                .draft
                .recovery
                .as_ref()
                .ok_or(ErrorKind::NotAMember)?;
            kdf::check_passphrase_blob(copy)?;
            let blob = WrappedKey::from_bytes(copy.clone()).map_err(|_| ErrorKind::Malformed)?;
            WorkspaceKey::unwrap_with_passphrase(&blob, passphrase)
                .map_err(|_| ErrorKind::WrongPassphrase.into())
        }
    }
}

/// Checks everything about one statement that does not need its keys.
fn check_link(p: &Parsed, prev: Option<&ChainState>) -> Result<ChainState> {
    let d = &p.draft;
    check_structure(p)?;
    let signer = match prev {
        None => {
            if d.epoch != 1 {
                return fail(ErrorKind::BrokenChain);
            }
            if d.prev_hash != [0; 32] || d.generation != Generation(1) {
                return fail(ErrorKind::Malformed);
            }
            let signer = d
                .entries
                .iter()
                .map(|e| e.member)
                .find(|m| m.identity.user == d.signer)
                .ok_or(ErrorKind::NotAMember)?;
            if signer.role != Role::Owner {
                return fail(ErrorKind::NotAllowed);
            }
            signer
        }
        Some(prev) => {
            if d.workspace != prev.workspace {
                return fail(ErrorKind::WrongPlace);
            }
            if d.epoch < prev.epoch {
                return fail(ErrorKind::Rollback);
            }
            if d.epoch == prev.epoch {
                return fail(ErrorKind::Fork);
            }
            if d.epoch - prev.epoch > 1 {
                return fail(ErrorKind::BrokenChain);
            }
            if d.prev_hash != prev.hash {
                return fail(ErrorKind::Fork);
            }
            *prev
                .members
                .iter()
                .find(|m| m.identity.user == d.signer)
                .ok_or(ErrorKind::NotAMember)?
        }
    };
    if signer.read_only {
        return fail(ErrorKind::NotAllowed);
    }
    signer
        .identity
        .verify(SIGNATURE_DOMAIN, &p.signed, &p.signature)?;
    let members: Vec<Member> = d.entries.iter().map(|e| e.member).collect();
    if let Some(prev) = prev {
        if d.generation < prev.generation {
            return fail(ErrorKind::Rollback);
        }
        if d.generation.0 > prev.generation.0.saturating_add(1) {
            return fail(ErrorKind::Malformed);
        }
        // Keys already committed never change: not an old generation's (a
        // history a late joiner would trust), nor the current one's when
        // this statement does not rotate (members holding different keys
        // for one generation).
        if d.commitments.get(..prev.commitments.len()) != Some(prev.commitments.as_slice()) {
            return fail(ErrorKind::Fork);
        }
        if members != prev.members && signer.role != Role::Owner {
            return fail(ErrorKind::NotAllowed);
        }
        // A member gone, or listed with other keys: the old key holder must
        // not read what comes next.
        let shrank = prev
            .members
            .iter()
            .any(|old| !members.iter().any(|m| m.identity == old.identity));
        if shrank && d.generation == prev.generation {
            return fail(ErrorKind::ShrunkWithoutRotation);
        }
    }
    let mut writers = prev.map(|s| s.writers.clone()).unwrap_or_default();
    let list = writers.entry(d.generation).or_default();
    for m in members.iter().filter(|m| m.may_write()) {
        if !list.contains(&m.identity) {
            list.push(m.identity);
        }
    }
    Ok(ChainState {
        workspace: d.workspace,
        epoch: d.epoch,
        hash: p.hash,
        generation: d.generation,
        members,
        recovery: d.recovery.clone(),
        signer: d.signer,
        commitments: d.commitments.clone(),
        writers,
    })
}

/// Structure that holds for any statement on its own.
fn check_structure(p: &Parsed) -> Result<()> {
    let d = &p.draft;
    if d.entries.is_empty() {
        return fail(ErrorKind::EmptyMembers);
    }
    for pair in d.entries.windows(2) {
        let (a, b) = (pair[0].member.identity.user, pair[1].member.identity.user);
        if a == b {
            return fail(ErrorKind::DuplicateMember);
        }
        if a > b {
            return fail(ErrorKind::Malformed);
        }
    }
    for e in &d.entries {
        if e.member.role == Role::Owner && e.member.read_only {
            return fail(ErrorKind::Malformed);
        }
        // An X25519-wrapped workspace key: method byte 2, kind byte 1.
        if e.wrapped.len() < 8 || e.wrapped[5] != 2 || e.wrapped[6] != 1 {
            return fail(ErrorKind::Malformed);
        }
        WrappedKey::from_bytes(e.wrapped.clone()).map_err(|_| ErrorKind::Malformed)?;
    }
    if !d.entries.iter().any(|e| e.member.role == Role::Owner) {
        return fail(ErrorKind::NotAllowed);
    }
    if let Some(copy) = &d.recovery {
        kdf::check_passphrase_blob(copy)?;
        if copy[6] != 1 {
            return fail(ErrorKind::Malformed);
        }
        WrappedKey::from_bytes(copy.clone()).map_err(|_| ErrorKind::Malformed)?;
    }
    if d.generation.0 == 0
        || d.history.len() != (d.generation.0 - 1) as usize
        || d.commitments.len() != d.generation.0 as usize
    {
        return fail(ErrorKind::Malformed);
    }
    for (i, (g, _)) in d.history.iter().enumerate() {
        if g.0 as usize != i + 1 {
            return fail(ErrorKind::Malformed);
        }
    }
    Ok(())
}
