//! The client's own copy of its verified membership view.
//!
//! A client persists its last [`Verified`] to check the next statement
//! against it (and the records of past generations against the writers of
//! their time). It is sealed under a 32-byte local key the client keeps out
//! of the server's reach. Layout: `"SSlv" | format u8 = 2 | nonce [24] |
//! XChaCha20-Poly1305(state || key ring) + tag`, AAD = the first 5 bytes.
//! Format 2 added the key commitments to the state (format 1 never
//! shipped; it is refused as a downgrade).

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use super::commitment;
use super::verify::{ChainState, Verified};
use super::{MAX_MEMBERS, Member, Role};
use crate::codec::{Reader, Writer};
use crate::crypto;
use crate::error::{ErrorKind, Result, fail};
use crate::identity::{PUBLIC_IDENTITY_LEN, PublicIdentity};
use crate::keyring::{Generation, KeyRing, MAX_GENERATIONS};

const MAGIC: &[u8; 4] = b"SSlv";
const FORMAT: u8 = 2;
const MAX_WRITERS_PER_GENERATION: usize = 1 << 16;

impl Verified {
    /// Seals this view for the client's own storage.
    pub fn seal_local(&self, local_key: &[u8; 32]) -> Result<Vec<u8>> {
        let s = &self.state;
        let mut w = Writer::new();
        w.workspace(&s.workspace)
            .u64(s.epoch)
            .raw(&s.hash)
            .u32(s.generation.0)
            .user(&s.signer);
        w.u32(u32::try_from(s.members.len()).expect("at most MAX_MEMBERS"));
        for m in &s.members {
            m.identity.write(&mut w);
            w.u8(u8::from(m.role == Role::Owner))
                .u8(u8::from(m.read_only));
        }
        match &s.recovery {
            None => w.u8(0),
            Some(r) => w.u8(1).bytes16(r),
        };
        w.u32(u32::try_from(s.writers.len()).expect("at most MAX_GENERATIONS"));
        for (g, ids) in &s.writers {
            w.u32(g.0)
                .u32(u32::try_from(ids.len()).expect("bounded by members per statement"));
            for id in ids {
                id.write(&mut w);
            }
        }
        w.u32(u32::try_from(s.commitments.len()).expect("at most MAX_GENERATIONS"));
        for c in &s.commitments {
            w.raw(c);
        }
        self.ring.write_clear(&mut w);
        let mut plain = Zeroizing::new(w.into_vec());
        crypto::seal_local(MAGIC, FORMAT, local_key, &mut plain)
    }

    /// Opens a view sealed by [`Verified::seal_local`].
    pub fn open_local(bytes: &[u8], local_key: &[u8; 32]) -> Result<Verified> {
        let plain = crypto::open_local(bytes, MAGIC, FORMAT, local_key)?;
        let mut r = Reader::new(&plain);
        let workspace = r.workspace()?;
        let epoch = r.u64()?;
        let hash = r.array()?;
        let generation = Generation(r.u32()?);
        let signer = r.user()?;
        let n = r.count(MAX_MEMBERS, PUBLIC_IDENTITY_LEN + 2)?;
        let mut members = Vec::with_capacity(n);
        for _ in 0..n {
            let identity = PublicIdentity::read(&mut r)?;
            let role = if r.bool()? { Role::Owner } else { Role::Member };
            members.push(Member {
                identity,
                role,
                read_only: r.bool()?,
            });
        }
        let recovery = match r.bool()? {
            false => None,
            true => Some(r.bytes16(256)?.to_vec()),
        };
        let g = r.count(MAX_GENERATIONS, 8)?;
        let mut writers = BTreeMap::new();
        for _ in 0..g {
            let generation = Generation(r.u32()?);
            let k = r.count(MAX_WRITERS_PER_GENERATION, PUBLIC_IDENTITY_LEN)?;
            let mut ids = Vec::with_capacity(k);
            for _ in 0..k {
                ids.push(PublicIdentity::read(&mut r)?);
            }
            if writers.insert(generation, ids).is_some() {
                return fail(ErrorKind::Malformed);
            }
        }
        let c = r.count(MAX_GENERATIONS, 32)?;
        let mut commitments = Vec::with_capacity(c);
        for _ in 0..c {
            commitments.push(r.array()?);
        }
        let ring = KeyRing::read_clear(&mut r)?;
        r.finish()?;
        if ring.workspace() != workspace
            || ring.current() != generation
            || commitments.len() != generation.0 as usize
        {
            return fail(ErrorKind::Malformed);
        }
        // Sealed by this client, so consistent unless our own storage broke.
        for g in ring.generations() {
            commitment::check_key(&workspace, &commitments, g, ring.key(g)?)
                .map_err(|_| ErrorKind::Malformed)?;
        }
        Ok(Verified {
            state: ChainState {
                workspace,
                epoch,
                hash,
                generation,
                members,
                recovery,
                signer,
                commitments,
                writers,
            },
            ring,
        })
    }
}
