//! The signed membership statement of a workspace: who is a member, with
//! which keys and role, and the workspace key of the current generation
//! wrapped to each of them. It is the only source of workspace keys: a key
//! ring is built only from a statement that verified.
//!
//! Layout, format 2 (integers little-endian; format 1, which carried no key
//! commitments, was never shipped and is refused as a downgrade like any
//! other format):
//!
//! ```text
//! "SSms" | format u8 = 2 | workspace [16] | epoch u64 | generation u32 | prev_hash [32]
//! | member count u32 (<= 1024), members in increasing user-id order, each:
//!     public identity [80] | role u8 (1 owner, 2 member) | read_only u8 (0/1)
//!     | u16 len + content X25519-wrapped key of the current generation
//! | recovery: 0, or 1 then u16 len + content passphrase-wrapped key (Argon2id >= MIN_KDF)
//! | commitment count u32 (= generation), for generations 1..=generation in order:
//!     key commitment [32]
//! | history count u32, entries for generations 1..generation-1 in order, each:
//!     generation u32 | nonce [24] | key [32] sealed + tag [16]
//! | signer user id [16] | Ed25519 signature [64]
//! ```
//!
//! The signature covers every byte before it, prefixed with the domain
//! string `"StackSync 2026 vault v1 membership statement" 0`. The hash of
//! a statement (its `prev_hash` in the next one) is BLAKE3 `derive_key`
//! with context `"StackSync 2026 vault v1 membership statement hash"` over
//! all its bytes, signature included. History entries are sealed with
//! XChaCha20-Poly1305 under a key derived from the current generation's key
//! (so a member removed by a rotation, who never gets that key, cannot read
//! them), with AAD `"StackSync 2026 vault v1 key history" 0 | workspace |
//! current generation u32 | entry generation u32`.
//!
//! Key commitments (module `commitment`): the commitment of generation `g`
//! is BLAKE3 `derive_key` with context `"StackSync 2026 vault v2 key
//! commitment"` over `workspace [16] | g u32 | key of g [32]`. Every key a
//! member opens (its wrapped copy of the current key, the recovery copy,
//! each history entry) must match its generation's commitment, else
//! [`ErrorKind::Tampered`]; and a statement must repeat, byte for byte, the
//! commitments of every generation the previous statement had (the current
//! one included), else [`ErrorKind::Fork`]: two keys for one generation
//! are two versions of the same history. So all members of a generation
//! hold one key, and the history a late joiner opens holds the keys those
//! generations really had, even if a signing member is malicious.
//!
//! Chain rule (see [`verify_chain`]): a client verifies every statement
//! from the last one it verified (or from the genesis statement, epoch 1,
//! when it has none). A statement must carry epoch `last + 1` and
//! `prev_hash = hash(last)`; a gap is [`ErrorKind::BrokenChain`] (fetch
//! the missing statements), a lower epoch [`ErrorKind::Rollback`], the same
//! epoch with other bytes or a wrong `prev_hash` [`ErrorKind::Fork`].

mod commitment;
mod local;
mod verify;

#[cfg(test)]
mod consistency_tests;
#[cfg(test)]
mod tests;

use stacksync_content::{KdfParams, WorkspaceKey};
use stacksync_proto::ids::{UserId, WorkspaceId};
use zeroize::Zeroizing;

use crate::codec::{Reader, Writer};
use crate::crypto::{self, NONCE_LEN, TAG_LEN};
use crate::error::{ErrorKind, Result, fail};
use crate::identity::{Identity, PUBLIC_IDENTITY_LEN, PublicIdentity};
use crate::kdf;
use crate::keyring::{Generation, KeyRing, MAX_GENERATIONS};
use commitment::{KeyCommitment, commit};

pub use verify::{Verified, recover_chain, verify, verify_chain};

const MAGIC: &[u8; 4] = b"SSms";
/// The statement format this client writes and accepts.
pub const FORMAT: u8 = 2;
const SIGNATURE_DOMAIN: &str = "StackSync 2026 vault v1 membership statement";
const HASH_CONTEXT: &str = "StackSync 2026 vault v1 membership statement hash";
const HISTORY_DOMAIN: &str = "StackSync 2026 vault v1 key history";
/// The most members a workspace may have.
pub const MAX_MEMBERS: usize = 1024;
const MAX_WRAPPED_LEN: usize = 256;
const HISTORY_SEALED_LEN: usize = NONCE_LEN + 32 + TAG_LEN;

/// What a member may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// May change the member list, rotate keys and write.
    Owner,
    /// May write (unless read-only) and rotate keys, not change members.
    Member,
}

/// One member of a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Member {
    /// Their public keys.
    pub identity: PublicIdentity,
    /// Their role.
    pub role: Role,
    /// Whether they may only read (never sign records or statements).
    pub read_only: bool,
}

impl Member {
    /// A writing member with role [`Role::Member`].
    pub fn writer(identity: PublicIdentity) -> Member {
        Member {
            identity,
            role: Role::Member,
            read_only: false,
        }
    }

    /// A read-only member.
    pub fn reader(identity: PublicIdentity) -> Member {
        Member {
            identity,
            role: Role::Member,
            read_only: true,
        }
    }

    /// Whether this member may sign records and statements.
    pub fn may_write(&self) -> bool {
        !self.read_only
    }
}

/// A passphrase under which the current generation key is also sealed, so
/// the workspace survives the loss of every member's identity.
#[derive(Debug, Clone, Copy)]
pub struct RecoveryPassphrase<'a> {
    /// The passphrase.
    pub passphrase: &'a [u8],
    /// Argon2id parameters, at least [`crate::MIN_KDF`].
    pub params: KdfParams,
}

/// One member's entry: who, and the current key wrapped to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) member: Member,
    pub(crate) wrapped: Vec<u8>,
}

/// Every field of a statement except its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Draft {
    pub(crate) workspace: WorkspaceId,
    pub(crate) epoch: u64,
    pub(crate) generation: Generation,
    pub(crate) prev_hash: [u8; 32],
    pub(crate) entries: Vec<Entry>,
    pub(crate) recovery: Option<Vec<u8>>,
    /// The commitment of each generation 1..=`generation`, in order.
    pub(crate) commitments: Vec<KeyCommitment>,
    pub(crate) history: Vec<(Generation, Vec<u8>)>,
    pub(crate) signer: UserId,
}

/// A statement split into its fields, not yet checked beyond structure.
pub(crate) struct Parsed {
    pub(crate) draft: Draft,
    pub(crate) signed: Vec<u8>,
    pub(crate) signature: [u8; 64],
    pub(crate) hash: [u8; 32],
}

impl Draft {
    pub(crate) fn encode_unsigned(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(MAGIC)
            .u8(FORMAT)
            .workspace(&self.workspace)
            .u64(self.epoch);
        w.u32(self.generation.0).raw(&self.prev_hash);
        w.u32(u32::try_from(self.entries.len()).expect("callers keep members under MAX_MEMBERS"));
        for e in &self.entries {
            e.member.identity.write(&mut w);
            w.u8(match e.member.role {
                Role::Owner => 1,
                Role::Member => 2,
            });
            w.u8(u8::from(e.member.read_only)).bytes16(&e.wrapped);
        }
        match &self.recovery {
            None => w.u8(0),
            Some(r) => w.u8(1).bytes16(r),
        };
        w.u32(u32::try_from(self.commitments.len()).expect("at most MAX_GENERATIONS"));
        for c in &self.commitments {
            w.raw(c);
        }
        w.u32(u32::try_from(self.history.len()).expect("at most MAX_GENERATIONS"));
        for (g, sealed) in &self.history {
            w.u32(g.0).raw(sealed);
        }
        w.user(&self.signer);
        w.into_vec()
    }

    /// The signed statement bytes.
    pub(crate) fn sign(&self, signer: &Identity) -> Vec<u8> {
        let mut bytes = self.encode_unsigned();
        let signature = signer.sign(SIGNATURE_DOMAIN, &bytes);
        bytes.extend_from_slice(&signature);
        bytes
    }
}

/// The hash that the next statement's `prev_hash` must carry.
pub fn statement_hash(bytes: &[u8]) -> [u8; 32] {
    blake3::derive_key(HASH_CONTEXT, bytes)
}

/// Splits statement bytes into fields. Total: never panics, allocates at
/// most in proportion to the input, rejects trailing bytes.
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed> {
    let mut r = Reader::new(bytes);
    if r.take(4)? != MAGIC {
        return fail(ErrorKind::Malformed);
    }
    if r.u8()? != FORMAT {
        return fail(ErrorKind::Downgrade);
    }
    let workspace = r.workspace()?;
    let epoch = r.u64()?;
    let generation = Generation(r.u32()?);
    let prev_hash = r.array()?;
    let n = r.count(MAX_MEMBERS, PUBLIC_IDENTITY_LEN + 4)?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let identity = PublicIdentity::read(&mut r)?;
        let role = match r.u8()? {
            1 => Role::Owner,
            2 => Role::Member,
            _ => return fail(ErrorKind::Malformed),
        };
        let read_only = r.bool()?;
        let wrapped = r.bytes16(MAX_WRAPPED_LEN)?.to_vec();
        entries.push(Entry {
            member: Member {
                identity,
                role,
                read_only,
            },
            wrapped,
        });
    }
    let recovery = match r.bool()? {
        false => None,
        true => Some(r.bytes16(MAX_WRAPPED_LEN)?.to_vec()),
    };
    let c = r.count(MAX_GENERATIONS, 32)?;
    let mut commitments = Vec::with_capacity(c);
    for _ in 0..c {
        commitments.push(r.array()?);
    }
    let h = r.count(MAX_GENERATIONS, 4 + HISTORY_SEALED_LEN)?;
    let mut history = Vec::with_capacity(h);
    for _ in 0..h {
        let g = Generation(r.u32()?);
        history.push((g, r.take(HISTORY_SEALED_LEN)?.to_vec()));
    }
    let signer = r.user()?;
    let signed_len = r.position();
    let signature = r.array::<64>()?;
    r.finish()?;
    Ok(Parsed {
        draft: Draft {
            workspace,
            epoch,
            generation,
            prev_hash,
            entries,
            recovery,
            commitments,
            history,
            signer,
        },
        signed: bytes[..signed_len].to_vec(),
        signature,
        hash: statement_hash(bytes),
    })
}

fn history_aad(workspace: &WorkspaceId, current: Generation, entry: Generation) -> Vec<u8> {
    let mut w = Writer::new();
    w.raw(HISTORY_DOMAIN.as_bytes()).u8(0).workspace(workspace);
    w.u32(current.0).u32(entry.0);
    w.into_vec()
}

/// Seals every generation of `ring` except `current` under `current_key`.
fn seal_history(
    workspace: &WorkspaceId,
    current: Generation,
    current_key: &WorkspaceKey,
    ring: Option<&KeyRing>,
) -> Result<Vec<(Generation, Vec<u8>)>> {
    let Some(ring) = ring else {
        return Ok(Vec::new());
    };
    let key = KeyRing::history_key(current_key);
    let mut out = Vec::new();
    for g in ring.generations().filter(|g| *g < current) {
        let mut plain = Zeroizing::new(*ring.key(g)?.expose_bytes());
        out.push((
            g,
            crypto::seal(
                &key,
                &history_aad(workspace, current, g),
                plain.as_mut_slice(),
            )?,
        ));
    }
    Ok(out)
}

/// Opens a statement's history with its current key.
pub(crate) fn open_history(
    draft: &Draft,
    current_key: &WorkspaceKey,
) -> Result<Vec<(Generation, WorkspaceKey)>> {
    let key = KeyRing::history_key(current_key);
    let mut out = Vec::with_capacity(draft.history.len());
    for (g, sealed) in &draft.history {
        let plain = crypto::open(
            &key,
            &history_aad(&draft.workspace, draft.generation, *g),
            sealed,
        )?;
        let bytes: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| ErrorKind::Tampered)?;
        out.push((*g, WorkspaceKey::from_bytes(bytes)));
    }
    Ok(out)
}

/// Wraps `key` to each member, in canonical (user-id) order.
fn entries_for(members: &[Member], key: &WorkspaceKey) -> Result<Vec<Entry>> {
    let mut sorted = members.to_vec();
    sorted.sort_by_key(|m| m.identity.user);
    if sorted
        .windows(2)
        .any(|w| w[0].identity.user == w[1].identity.user)
    {
        return fail(ErrorKind::DuplicateMember);
    }
    if sorted.is_empty() {
        return fail(ErrorKind::EmptyMembers);
    }
    if sorted.len() > MAX_MEMBERS {
        return fail(ErrorKind::InvalidInput);
    }
    sorted
        .into_iter()
        .map(|member| {
            let wrapped = key
                .wrap_for_member(&member.identity.x25519)
                .map_err(|_| ErrorKind::InvalidInput)?;
            Ok(Entry {
                member,
                wrapped: wrapped.as_bytes().to_vec(),
            })
        })
        .collect()
}

fn recovery_copy(key: &WorkspaceKey, recovery: &RecoveryPassphrase<'_>) -> Result<Vec<u8>> {
    kdf::check_sealing_params(&recovery.params)?;
    let blob = key
        .wrap_with_passphrase(recovery.passphrase, &recovery.params)
        .map_err(|_| ErrorKind::InvalidInput)?;
    Ok(blob.as_bytes().to_vec())
}

fn fresh_key() -> Result<WorkspaceKey> {
    WorkspaceKey::generate().map_err(|_| ErrorKind::Random.into())
}

/// Builders of statements.
pub struct Statement;

impl Statement {
    /// The first statement of a new workspace: `owner` becomes its owner
    /// (and must not also be in `others`), generation 1 gets a fresh key.
    /// Returns the bytes to send and the creator's own [`Verified`] view.
    pub fn genesis(
        owner: &Identity,
        workspace: WorkspaceId,
        others: &[Member],
        recovery: Option<RecoveryPassphrase<'_>>,
    ) -> Result<(Vec<u8>, Verified)> {
        if others.iter().any(|m| m.identity.user == owner.user()) {
            return fail(ErrorKind::InvalidInput);
        }
        let mut members = others.to_vec();
        members.push(Member {
            identity: owner.public(),
            role: Role::Owner,
            read_only: false,
        });
        let key = fresh_key()?;
        let draft = Draft {
            workspace,
            epoch: 1,
            generation: Generation(1),
            prev_hash: [0; 32],
            entries: entries_for(&members, &key)?,
            recovery: recovery.map(|r| recovery_copy(&key, &r)).transpose()?,
            commitments: vec![commit(&workspace, Generation(1), &key)],
            history: Vec::new(),
            signer: owner.user(),
        };
        let bytes = draft.sign(owner);
        let verified = verify::verify_own(&bytes, owner, None)?;
        Ok((bytes, verified))
    }

    /// The statement after `prev`, signed by `signer`, listing `members`
    /// (the complete new list). A new generation key is made when `rotate`
    /// is set and always when a member of `prev` is missing from `members`
    /// or listed with other keys. A new `recovery` passphrase replaces the
    /// recovery copy; without one the copy is kept if the key did not
    /// change and dropped if it did. The key commitments of `prev` are
    /// kept as they are; a new generation adds its own.
    pub fn next(
        prev: &Verified,
        signer: &Identity,
        members: &[Member],
        rotate: bool,
        recovery: Option<RecoveryPassphrase<'_>>,
    ) -> Result<(Vec<u8>, Verified)> {
        let removed = prev
            .members()
            .iter()
            .any(|old| !members.iter().any(|m| m.identity == old.identity));
        let rotate = rotate || removed;
        let ring = prev.keyring();
        let (generation, key) = if rotate {
            let next = prev
                .generation()
                .0
                .checked_add(1)
                .ok_or(ErrorKind::InvalidInput)?;
            (Generation(next), fresh_key()?)
        } else {
            (prev.generation(), ring.current_key().clone())
        };
        let recovery = match recovery {
            Some(r) => Some(recovery_copy(&key, &r)?),
            None if !rotate => prev.recovery_copy().map(<[u8]>::to_vec),
            None => None,
        };
        let mut commitments = prev.state.commitments.clone();
        if rotate {
            commitments.push(commit(&prev.workspace(), generation, &key));
        }
        let draft = Draft {
            workspace: prev.workspace(),
            epoch: prev.epoch().checked_add(1).ok_or(ErrorKind::InvalidInput)?,
            generation,
            prev_hash: prev.hash(),
            entries: entries_for(members, &key)?,
            recovery,
            commitments,
            history: seal_history(&prev.workspace(), generation, &key, Some(ring))?,
            signer: signer.user(),
        };
        let bytes = draft.sign(signer);
        let verified = verify::verify_own(&bytes, signer, Some(prev))?;
        Ok((bytes, verified))
    }
}
