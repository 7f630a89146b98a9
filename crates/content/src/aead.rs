//! The AEADs that encrypt chunk bodies (and delta bodies) and the
//! per-workspace secrets they use.

use aes_gcm::Aes256Gcm;
use chacha20poly1305::{AeadInOut, KeyInit, Tag, XChaCha20Poly1305, XNonce};

use crate::format::{NONCE_LEN, TAG_LEN};
use crate::keys::{Secret32, WorkspaceKey};

/// The AEAD that encrypts chunk bodies. Decoding reads it from the chunk
/// header, so a codec decodes both whichever it encodes with; chunk ids do
/// not depend on it, so dedup works across devices that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    /// XChaCha20-Poly1305: fast everywhere in software, the choice on CPUs
    /// without AES instructions.
    XChaCha20Poly1305,
    /// AES-256-GCM with a per-chunk key (see the chunk format): about three
    /// times as fast as XChaCha20-Poly1305 with AES-NI and carry-less
    /// multiply, much slower without them.
    Aes256Gcm,
}

impl Cipher {
    /// AES-256-GCM when this CPU has AES and carry-less multiplication
    /// instructions (detected at run time), XChaCha20-Poly1305 otherwise.
    pub fn fastest() -> Cipher {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("aes")
                && std::arch::is_x86_feature_detected!("pclmulqdq")
            {
                return Cipher::Aes256Gcm;
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("aes")
                && std::arch::is_aarch64_feature_detected!("pmull")
            {
                return Cipher::Aes256Gcm;
            }
        }
        Cipher::XChaCha20Poly1305
    }
}

/// The secrets of one key generation of a workspace, derived once. The
/// keyed gear table is not among them: only the current generation cuts
/// files, so the codec derives that one table alone.
pub(crate) struct Crypto {
    pub id_key: Secret32,
    pub aead: XChaCha20Poly1305,
    pub aes_master: Secret32,
}

impl Crypto {
    /// Derives the secrets of the generation whose key is `key`.
    pub fn derive(key: &WorkspaceKey) -> Crypto {
        let aead_key = key.chunk_aead_key();
        Crypto {
            id_key: key.chunk_id_key(),
            aead: XChaCha20Poly1305::new(&aead_key.0.into()),
            aes_master: key.chunk_aes_master_key(),
        }
    }

    /// Encrypts `body` in place; returns the tag.
    pub fn seal(
        &self,
        cipher: Cipher,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        body: &mut [u8],
    ) -> Result<[u8; TAG_LEN], ()> {
        match cipher {
            Cipher::XChaCha20Poly1305 => self
                .aead
                .encrypt_inout_detached(&XNonce::from(*nonce), aad, body.into())
                .map(Into::into)
                .map_err(|_| ()),
            Cipher::Aes256Gcm => {
                let (gcm, gcm_nonce) = self.aes_for(nonce);
                gcm.encrypt_inout_detached(&gcm_nonce, aad, body.into())
                    .map(Into::into)
                    .map_err(|_| ())
            }
        }
    }

    /// Decrypts `body` in place if `tag` authenticates it.
    pub fn open(
        &self,
        cipher: Cipher,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        body: &mut [u8],
        tag: [u8; TAG_LEN],
    ) -> Result<(), ()> {
        match cipher {
            Cipher::XChaCha20Poly1305 => self
                .aead
                .decrypt_inout_detached(&XNonce::from(*nonce), aad, body.into(), &Tag::from(tag))
                .map_err(|_| ()),
            Cipher::Aes256Gcm => {
                let (gcm, gcm_nonce) = self.aes_for(nonce);
                gcm.decrypt_inout_detached(&gcm_nonce, aad, body.into(), &tag.into())
                    .map_err(|_| ())
            }
        }
    }

    /// The per-chunk AES-256-GCM instance and its 12-byte nonce: the first
    /// half of the 24-byte nonce picks the key, the second half is the GCM
    /// nonce (see `format`). A key schedule per chunk costs about a
    /// microsecond, nothing next to a megabyte of AES.
    fn aes_for(
        &self,
        nonce: &[u8; NONCE_LEN],
    ) -> (Aes256Gcm, aes_gcm::Nonce<aes_gcm::aes::cipher::consts::U12>) {
        let (select, gcm_nonce) = nonce.split_at(NONCE_LEN / 2);
        let key = Secret32(*blake3::keyed_hash(&self.aes_master.0, select).as_bytes());
        let mut n = [0u8; NONCE_LEN / 2];
        n.copy_from_slice(gcm_nonce);
        (Aes256Gcm::new(&key.0.into()), n.into())
    }
}
