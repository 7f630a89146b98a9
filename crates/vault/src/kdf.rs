//! The floor on Argon2id parameters this client accepts.
//!
//! content's [`KdfParams`] caps parameters from above (a hostile blob must
//! not exhaust memory) but has no minimum: a server that rewrites a
//! passphrase-sealed blob with 8 KiB / 1 pass parameters would turn an
//! offline guessing attack from months into minutes once the user re-seals
//! (or, for blobs sealed under such parameters, immediately). Every
//! passphrase blob this crate opens is checked against [`MIN_KDF`] *before*
//! Argon2 runs, and every blob it seals uses at least [`MIN_KDF`].

use stacksync_content::{ContentError, KdfParams, KeyProblem, WrappedKey};

use crate::error::{ErrorKind, Result, fail};

/// The OWASP floor for Argon2id: 19 MiB, 2 passes, 1 lane. Each parameter
/// is checked on its own, so none can be traded away.
pub const MIN_KDF: KdfParams = KdfParams {
    memory_kib: 19 * 1024,
    iterations: 2,
    parallelism: 1,
};

/// Whether `p` is at or above the floor in every parameter.
pub fn meets_floor(p: &KdfParams) -> bool {
    p.memory_kib >= MIN_KDF.memory_kib
        && p.iterations >= MIN_KDF.iterations
        && p.parallelism >= MIN_KDF.parallelism
}

/// Reads the Argon2id parameters of a content passphrase-wrapped key blob
/// and refuses the blob with [`ErrorKind::Downgrade`] if they are below
/// [`MIN_KDF`] (or its wrap format is one this client does not write).
/// Anything else that is not such a blob is [`ErrorKind::Malformed`].
pub(crate) fn check_passphrase_blob(blob: &[u8]) -> Result<KdfParams> {
    let wrapped = match WrappedKey::from_bytes(blob.to_vec()) {
        Ok(w) => w,
        Err(ContentError::Key(KeyProblem::UnsupportedVersion(_))) => {
            return fail(ErrorKind::Downgrade);
        }
        Err(_) => return fail(ErrorKind::Malformed),
    };
    let Some(params) = wrapped.kdf_params() else {
        return fail(ErrorKind::Malformed);
    };
    if !meets_floor(&params) {
        return fail(ErrorKind::Downgrade);
    }
    Ok(params)
}

/// Refuses to seal anything under parameters below the floor.
pub(crate) fn check_sealing_params(p: &KdfParams) -> Result<()> {
    if !meets_floor(p) {
        return fail(ErrorKind::InvalidInput);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stacksync_content::WorkspaceKey;

    #[test]
    fn floor_is_per_parameter() {
        assert!(meets_floor(&MIN_KDF));
        assert!(meets_floor(&KdfParams::default()));
        for weaker in [
            KdfParams {
                memory_kib: MIN_KDF.memory_kib - 1,
                ..MIN_KDF
            },
            KdfParams {
                iterations: 1,
                ..MIN_KDF
            },
            KdfParams {
                parallelism: 0,
                ..MIN_KDF
            },
        ] {
            assert!(!meets_floor(&weaker), "{weaker:?}");
        }
    }

    /// Reads the parameters where content writes them: a blob content
    /// sealed at the floor passes, the same blob with memory lowered fails.
    #[test]
    fn reads_content_blob_layout() {
        let key = WorkspaceKey::from_bytes([5; 32]);
        let blob = key.wrap_with_passphrase(b"pw", &MIN_KDF).unwrap();
        assert_eq!(check_passphrase_blob(blob.as_bytes()).unwrap(), MIN_KDF);
        let mut weak = blob.as_bytes().to_vec();
        weak[8..12].copy_from_slice(&1024u32.to_le_bytes());
        assert_eq!(
            check_passphrase_blob(&weak).unwrap_err().kind(),
            &ErrorKind::Downgrade
        );
        let mut old = blob.as_bytes().to_vec();
        old[4] = 0;
        assert_eq!(
            check_passphrase_blob(&old).unwrap_err().kind(),
            &ErrorKind::Downgrade
        );
        let x = key
            .wrap_for_member(&stacksync_content::MemberSecretKey::from_bytes([7; 32]).public_key())
            .unwrap();
        assert!(check_passphrase_blob(x.as_bytes()).is_err());
    }
}
