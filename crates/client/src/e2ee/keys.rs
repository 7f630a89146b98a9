//! Where an end-to-end encrypted workspace's keys come from on this
//! device: the user's identity (unlocked once with the encryption
//! passphrase at `setup`, then kept sealed under a device key), the pins of
//! members' public keys, and each workspace's last verified membership
//! statement; and the requests that publish, fetch and extend them.
//!
//! Everything here is kept in the profile folder (0600 files), where the
//! server cannot write: it is the baseline every later statement from the
//! server must follow (no rollback, no fork, no substituted key).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stacksync_proto::keys::{KeyStatement, MAX_KEY_STATEMENTS};
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{EncryptionMode, Error, UserId, Workspace, WorkspaceId};
use stacksync_vault::membership::verify_chain;
use stacksync_vault::{ErrorKind as VaultKind, Identity, MIN_KDF, PinStore, Statement, Verified};

use crate::connection::{Connection, unexpected};
use crate::profile::{ProfileError, write_atomic};

/// The device key that seals the files below.
const DEVICE_KEY_FILE: &str = "vault.key";
/// The user's identity, sealed under the device key.
const IDENTITY_FILE: &str = "identity.vault";
/// Pinned public keys of the members seen so far.
const PINS_FILE: &str = "pins.vault";

/// The keys of one end-to-end encrypted workspace on this device: who I
/// am, and the membership statement I last verified (the key ring of
/// every generation I was given).
pub struct WorkspaceKeys {
    /// My identity.
    pub identity: Arc<Identity>,
    /// The workspace's latest verified membership.
    pub membership: Verified,
}

impl WorkspaceKeys {
    /// The chunk codec of the current key generation: chunks encrypted
    /// under it, ids keyed by it, files cut where it says.
    pub fn codec(&self) -> stacksync_content::ChunkCodec {
        stacksync_content::ChunkCodec::encrypted(self.membership.keyring().current_key())
    }
}

/// The key files in a profile folder.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    home: PathBuf,
}

fn vault_error(what: &str) -> impl Fn(stacksync_vault::VaultError) -> Error + '_ {
    move |e| Error::internal(format!("{what}: {e}"))
}

fn profile_error(e: ProfileError) -> Error {
    Error::internal(format!("the client's key files: {e}"))
}

impl KeyFiles {
    /// The key files of the profile in `home`.
    pub fn new(home: &Path) -> KeyFiles {
        KeyFiles {
            home: home.to_path_buf(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.home.join(name)
    }

    fn membership_file(workspace: WorkspaceId) -> String {
        format!("membership-{workspace}.vault")
    }

    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        let path = self.path(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::internal(format!("reading {}: {e}", path.display()))),
        }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), Error> {
        write_atomic(&self.path(name), bytes, crate::private::FILE_MODE).map_err(profile_error)
    }

    /// The device key, created on first use.
    fn device_key(&self) -> Result<[u8; 32], Error> {
        if let Some(bytes) = self.read(DEVICE_KEY_FILE)? {
            return bytes.as_slice().try_into().map_err(|_| {
                Error::internal(format!(
                    "{} is damaged (not 32 bytes)",
                    self.path(DEVICE_KEY_FILE).display()
                ))
            });
        }
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)
            .map_err(|e| Error::internal(format!("no randomness for a device key: {e}")))?;
        self.write(DEVICE_KEY_FILE, &key)?;
        Ok(key)
    }

    /// Keeps `identity` on this device.
    pub fn save_identity(&self, identity: &Identity) -> Result<(), Error> {
        let sealed = identity
            .seal_local(&self.device_key()?)
            .map_err(vault_error("sealing the identity"))?;
        self.write(IDENTITY_FILE, &sealed)
    }

    /// The identity kept on this device, if any.
    pub fn load_identity(&self) -> Result<Option<Identity>, Error> {
        let Some(bytes) = self.read(IDENTITY_FILE)? else {
            return Ok(None);
        };
        Identity::open_local(&bytes, &self.device_key()?)
            .map(Some)
            .map_err(vault_error("opening this device's identity"))
    }

    fn load_pins(&self) -> Result<PinStore, Error> {
        match self.read(PINS_FILE)? {
            None => Ok(PinStore::new()),
            Some(bytes) => PinStore::decode(&bytes).map_err(vault_error("reading the pinned keys")),
        }
    }

    fn save_pins(&self, pins: &PinStore) -> Result<(), Error> {
        self.write(PINS_FILE, &pins.encode())
    }

    fn load_membership(&self, workspace: WorkspaceId) -> Result<Option<Verified>, Error> {
        let Some(bytes) = self.read(&Self::membership_file(workspace))? else {
            return Ok(None);
        };
        Verified::open_local(&bytes, &self.device_key()?)
            .map(Some)
            .map_err(vault_error("opening the workspace's last membership"))
    }

    fn save_membership(&self, verified: &Verified) -> Result<(), Error> {
        let sealed = verified
            .seal_local(&self.device_key()?)
            .map_err(vault_error("sealing the workspace's membership"))?;
        self.write(&Self::membership_file(verified.workspace()), &sealed)
    }

    /// Forgets every key file (for `setup --force`; the identity stays on
    /// the server, sealed under the passphrase).
    pub fn remove_all(home: &Path) -> std::io::Result<()> {
        for entry in std::fs::read_dir(home)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name == DEVICE_KEY_FILE
                || name == IDENTITY_FILE
                || name == PINS_FILE
                || (name.starts_with("membership-") && name.ends_with(".vault"))
            {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}

/// Unlocks the user's identity with the encryption `passphrase` (at
/// `setup`): opens the sealed copy the server keeps for the user's
/// devices, or, for an account that has none yet, makes a new identity and
/// publishes it with its sealed copy. The passphrase must not be the login
/// password, which the server sees at every login.
pub async fn unlock_identity(
    conn: &dyn Connection,
    user: UserId,
    passphrase: &str,
    login_password: &str,
) -> Result<Identity, Error> {
    if passphrase.is_empty() {
        return Err(Error::bad_request("the encryption passphrase is empty"));
    }
    if passphrase == login_password {
        return Err(Error::bad_request(
            "the encryption passphrase must differ from the login password: the server sees \
             the password at every login, and could then open your keys",
        ));
    }
    let (published, sealed) = match conn.rpc(Request::GetOwnIdentity).await? {
        Reply::OwnIdentity { identity, sealed } => (identity, sealed),
        other => return Err(unexpected("get_own_identity", other)),
    };
    match (published, sealed) {
        (Some(published), Some(sealed)) => {
            // Argon2 work: off the async threads.
            let passphrase = passphrase.to_owned();
            let identity =
                tokio::task::spawn_blocking(move || Identity::open(&sealed, passphrase.as_bytes()))
                    .await
                    .map_err(|e| Error::internal(format!("opening the identity: {e}")))?
                    .map_err(|e| match e.kind() {
                        VaultKind::WrongPassphrase => {
                            Error::bad_request("wrong encryption passphrase for this account")
                        }
                        _ => Error::internal(format!("the account's sealed identity: {e}")),
                    })?;
            if identity.user() != user || identity.public().to_bytes().as_slice() != published {
                return Err(Error::internal(
                    "the server's copy of your identity does not match the public key it \
                     publishes for you; not using either",
                ));
            }
            Ok(identity)
        }
        (Some(_), None) => Err(Error::bad_request(
            "this account's encryption identity has no copy on the server that a passphrase \
             opens; set this device up from one that holds it",
        )),
        (None, _) => {
            let identity = Identity::generate(user).map_err(vault_error("a new identity"))?;
            let passphrase = passphrase.to_owned();
            let (identity, sealed) = tokio::task::spawn_blocking(move || {
                let sealed = identity.seal(passphrase.as_bytes(), MIN_KDF);
                (identity, sealed)
            })
            .await
            .map_err(|e| Error::internal(format!("sealing the identity: {e}")))?;
            let sealed = sealed.map_err(vault_error("sealing the identity"))?;
            match conn
                .rpc(Request::PublishIdentity {
                    identity: identity.public().to_bytes().to_vec(),
                    sealed: Some(sealed),
                })
                .await?
            {
                Reply::IdentityPublished { .. } => Ok(identity),
                other => Err(unexpected("publish_identity", other)),
            }
        }
    }
}

/// Every statement of `workspace`'s key chain after `after_epoch`, and the
/// chain's latest epoch as the server reports it.
async fn statements_after(
    conn: &dyn Connection,
    workspace: WorkspaceId,
    after_epoch: u64,
) -> Result<(Vec<KeyStatement>, u64), Error> {
    let mut out: Vec<KeyStatement> = Vec::new();
    let mut after = after_epoch;
    loop {
        let request = Request::GetKeyStatements {
            workspace,
            after_epoch: after,
            limit: MAX_KEY_STATEMENTS,
        };
        let (statements, latest) = match conn.rpc(request).await? {
            Reply::KeyStatements {
                workspace: w,
                statements,
                latest_epoch,
            } if w == workspace => (statements, latest_epoch),
            other => return Err(unexpected("get_key_statements", other)),
        };
        let before = out.len();
        for s in statements {
            if s.epoch != after + 1 {
                return Err(Error::internal(format!(
                    "the server sent key statement {} where {} was due",
                    s.epoch,
                    after + 1
                )));
            }
            after = s.epoch;
            out.push(s);
        }
        if after >= latest || out.len() == before {
            return Ok((out, latest));
        }
    }
}

/// The keys of `workspace` for this device: the last membership it
/// verified, brought up to date with the statements the server has since.
/// A workspace without any statement is an error, never a reason to make
/// new keys (only `setup --encrypted` makes the first statement).
pub async fn open_workspace(
    files: &KeyFiles,
    conn: &dyn Connection,
    workspace: &Workspace,
) -> Result<WorkspaceKeys, Error> {
    let identity = files.load_identity()?.ok_or_else(|| {
        Error::bad_request(format!(
            "workspace {} is end-to-end encrypted and this device holds no key for it: run \
             `stacksync setup ... --passphrase` with the account's encryption passphrase",
            workspace.name
        ))
    })?;
    let last = files.load_membership(workspace.id)?;
    let membership = bring_up_to_date(files, conn, &identity, workspace.id, last).await?;
    Ok(WorkspaceKeys {
        identity: Arc::new(identity),
        membership,
    })
}

/// Verifies the statements after `last` and keeps the result.
async fn bring_up_to_date(
    files: &KeyFiles,
    conn: &dyn Connection,
    identity: &Identity,
    workspace: WorkspaceId,
    last: Option<Verified>,
) -> Result<Verified, Error> {
    let seen = last.as_ref().map_or(0, Verified::epoch);
    let (statements, latest) = statements_after(conn, workspace, seen).await?;
    if latest < seen {
        return Err(Error::internal(format!(
            "the server says workspace {workspace}'s key chain ends at epoch {latest}, but this \
             device has verified epoch {seen}: refusing the rollback"
        )));
    }
    let Some(_) = statements.last() else {
        return last.ok_or_else(|| {
            Error::internal(format!(
                "workspace {workspace} is end-to-end encrypted but the server has no key \
                 statement for it"
            ))
        });
    };
    let mut pins = files.load_pins()?;
    let bytes: Vec<&[u8]> = statements.iter().map(|s| s.statement.as_slice()).collect();
    let verified = verify_chain(&bytes, identity, last.as_ref(), &pins)
        .map_err(vault_error("verifying the workspace's membership"))?;
    if verified.workspace() != workspace {
        return Err(Error::internal(format!(
            "the server sent another workspace's key chain for workspace {workspace}"
        )));
    }
    verified
        .pin_members(&mut pins)
        .map_err(vault_error("pinning the members' keys"))?;
    files.save_pins(&pins)?;
    files.save_membership(&verified)?;
    Ok(verified)
}

/// Makes the caller's own empty private `workspace` end-to-end encrypted
/// with `identity` as its only member (`setup --encrypted`), or, when it
/// already is, brings this device's keys for it up to date. Returns the
/// workspace as the server now describes it.
pub async fn encrypt_private(
    files: &KeyFiles,
    conn: &dyn Connection,
    workspace: Workspace,
    identity: &Identity,
) -> Result<Workspace, Error> {
    let workspace = if workspace.encryption == EncryptionMode::ClientSide {
        workspace
    } else {
        match conn
            .rpc(Request::EncryptWorkspace {
                workspace: workspace.id,
            })
            .await?
        {
            Reply::Workspace(w) if w.id == workspace.id => w,
            other => return Err(unexpected("encrypt_workspace", other)),
        }
    };
    if workspace.encryption != EncryptionMode::ClientSide {
        return Err(Error::internal(
            "the server did not make the workspace end-to-end encrypted",
        ));
    }
    let last = files.load_membership(workspace.id)?;
    let (existing, _) = statements_after(conn, workspace.id, 0).await?;
    if existing.is_empty() && last.is_none() {
        let (statement, _) = Statement::genesis(identity, workspace.id, &[], None)
            .map_err(vault_error("the workspace's first key statement"))?;
        let stored = conn
            .rpc(Request::PutKeyStatement {
                workspace: workspace.id,
                epoch: 1,
                statement,
            })
            .await;
        match stored {
            Ok(Reply::KeyStatementStored { .. }) => {}
            // Another device of mine made it first: read theirs below.
            Err(e) if e.kind == stacksync_proto::ErrorKind::Conflict => {}
            Ok(other) => return Err(unexpected("put_key_statement", other)),
            Err(e) => return Err(e),
        }
    }
    bring_up_to_date(files, conn, identity, workspace.id, last).await?;
    Ok(workspace)
}
