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
use stacksync_proto::{EncryptionMode, Error, ErrorKind, UserId, Workspace, WorkspaceId};
use stacksync_vault::membership::verify_chain;
use stacksync_vault::{
    ErrorKind as VaultKind, Identity, MIN_KDF, Member, Pin, PinStore, PublicIdentity, Role,
    Statement, Verified,
};

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
    /// The chunk codec of the workspace: new chunks encrypted under the
    /// current key generation, ids keyed by it, files cut where it says;
    /// chunks of every generation this member holds decoded (a file that
    /// did not change since a rotation keeps its older chunks).
    pub fn codec(&self) -> Result<stacksync_content::ChunkCodec, Error> {
        let ring = self.membership.keyring();
        let keys: Vec<_> = ring
            .generations()
            .map(|g| ring.key(g).map(|k| (g.0, k)))
            .collect::<Result<_, _>>()
            .map_err(vault_error("the workspace's key ring"))?;
        stacksync_content::ChunkCodec::encrypted_generations(ring.current().0, keys)
            .map_err(|e| Error::internal(format!("the workspace's chunk codec: {e}")))
    }

    /// The epoch of the membership statement these keys come from.
    pub fn epoch(&self) -> u64 {
        self.membership.epoch()
    }
}

/// Someone the owner's device invited into an end-to-end encrypted shared
/// folder. The owner's device gives the folder's key to these people only,
/// however many members the server lists: the server cannot add a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitee {
    /// Their email, trimmed and in lower case.
    pub email: String,
    /// Whether they were invited to read only (they get the key, but the
    /// other members accept no version they sign).
    pub read_only: bool,
}

impl Invitee {
    /// `email`, invited read-only or not.
    pub fn new(email: &str, read_only: bool) -> Invitee {
        Invitee {
            email: email.trim().to_lowercase(),
            read_only,
        }
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

    fn invited_file(workspace: WorkspaceId) -> String {
        format!("invited-{workspace}.txt")
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

    /// Notes that this device invited `invitees` into the end-to-end
    /// encrypted shared folder `workspace` (made when the first of them
    /// accepts): kept beside the keys, where the server cannot write.
    pub fn record_invited(
        &self,
        workspace: WorkspaceId,
        invitees: &[Invitee],
    ) -> Result<(), Error> {
        let mut all = self.invited(workspace)?;
        for i in invitees {
            all.retain(|known| known.email != i.email);
            all.push(i.clone());
        }
        self.save_invited(workspace, &all)
    }

    /// Forgets the invitations of `emails` into `workspace` (unshared).
    pub fn forget_invited(&self, workspace: WorkspaceId, emails: &[String]) -> Result<(), Error> {
        let gone: Vec<String> = emails.iter().map(|e| e.trim().to_lowercase()).collect();
        let mut all = self.invited(workspace)?;
        all.retain(|i| !gone.contains(&i.email));
        self.save_invited(workspace, &all)
    }

    fn save_invited(&self, workspace: WorkspaceId, all: &[Invitee]) -> Result<(), Error> {
        let text: String = all
            .iter()
            .map(|i| format!("{} {}\n", if i.read_only { "ro" } else { "rw" }, i.email))
            .collect();
        self.write(&Self::invited_file(workspace), text.as_bytes())
    }

    /// The people this device invited into `workspace`.
    pub fn invited(&self, workspace: WorkspaceId) -> Result<Vec<Invitee>, Error> {
        let name = Self::invited_file(workspace);
        let Some(bytes) = self.read(&name)? else {
            return Ok(Vec::new());
        };
        let damaged = || Error::internal(format!("{} is damaged", self.path(&name).display()));
        let text = String::from_utf8(bytes).map_err(|_| damaged())?;
        text.lines()
            .map(|line| match line.split_once(' ') {
                Some(("ro", email)) => Ok(Invitee::new(email, true)),
                Some(("rw", email)) => Ok(Invitee::new(email, false)),
                _ => Err(damaged()),
            })
            .collect()
    }

    /// The keys of `workspace` as this device last verified them, without
    /// asking the server (what a member removed since still holds).
    pub fn offline_keys(&self, workspace: WorkspaceId) -> Result<Option<WorkspaceKeys>, Error> {
        let (Some(identity), Some(membership)) =
            (self.load_identity()?, self.load_membership(workspace)?)
        else {
            return Ok(None);
        };
        Ok(Some(WorkspaceKeys {
            identity: Arc::new(identity),
            membership,
        }))
    }

    /// How `public` compares with the keys pinned for its user.
    pub fn pin_state(&self, public: &PublicIdentity) -> Result<Pin, Error> {
        Ok(self.load_pins()?.check(public))
    }

    /// Pins `public` in place of whatever was pinned for its user, once
    /// the user compared its fingerprint with its owner (`stacksync
    /// trust`).
    pub fn trust(&self, public: &PublicIdentity) -> Result<(), Error> {
        let mut pins = self.load_pins()?;
        pins.confirm_change(public);
        self.save_pins(&pins)
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
                || (name.starts_with("invited-") && name.ends_with(".txt"))
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
    let first = last.is_none();
    let waiting = || {
        Error::unavailable(format!(
            "waiting for the owner's device to add your key to the end-to-end encrypted \
             shared folder {:?}",
            workspace.name
        ))
    };
    let membership = match bring_up_to_date(files, conn, &identity, workspace.id, last).await {
        Ok(m) => m,
        Err(Refusal::NoStatement) | Err(Refusal::NotAMember)
            if workspace.is_shared && workspace.owner != identity.user() =>
        {
            return Err(waiting());
        }
        Err(e) => return Err(e.into()),
    };
    // The chain starts with its owner's statement: the workspace's owner
    // (the server refuses anyone else's genesis, and so does this device).
    if first
        && !membership
            .members()
            .iter()
            .any(|m| m.role == Role::Owner && m.identity.user == workspace.owner)
    {
        return Err(Error::internal(format!(
            "the key chain of workspace {} does not name its owner as the keys' owner",
            workspace.id
        )));
    }
    Ok(WorkspaceKeys {
        identity: Arc::new(identity),
        membership,
    })
}

/// Why [`bring_up_to_date`] gave no membership.
enum Refusal {
    /// The server has no statement and this device none either.
    NoStatement,
    /// The latest statement does not list me (not added yet, or removed).
    NotAMember,
    Other(Error),
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Refusal {
        Refusal::Other(e)
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Error {
        match r {
            Refusal::NoStatement => Error::internal(
                "the workspace is end-to-end encrypted but the server has no key statement for it",
            ),
            Refusal::NotAMember => Error::forbidden(
                "the workspace's latest key statement does not give this account its key",
            ),
            Refusal::Other(e) => e,
        }
    }
}

/// Verifies the statements after `last` and keeps the result.
async fn bring_up_to_date(
    files: &KeyFiles,
    conn: &dyn Connection,
    identity: &Identity,
    workspace: WorkspaceId,
    last: Option<Verified>,
) -> Result<Verified, Refusal> {
    let seen = last.as_ref().map_or(0, Verified::epoch);
    let (statements, latest) = statements_after(conn, workspace, seen).await?;
    if latest < seen {
        return Err(Error::internal(format!(
            "the server says workspace {workspace}'s key chain ends at epoch {latest}, but this \
             device has verified epoch {seen}: refusing the rollback"
        ))
        .into());
    }
    let Some(_) = statements.last() else {
        return last.ok_or(Refusal::NoStatement);
    };
    let mut pins = files.load_pins()?;
    let bytes: Vec<&[u8]> = statements.iter().map(|s| s.statement.as_slice()).collect();
    let verified = match verify_chain(&bytes, identity, last.as_ref(), &pins) {
        Ok(v) => v,
        Err(e) if e.kind() == &VaultKind::NotAMember => return Err(Refusal::NotAMember),
        Err(e) => {
            return Err(vault_error("verifying the workspace's membership")(e).into());
        }
    };
    if verified.workspace() != workspace {
        return Err(Error::internal(format!(
            "the server sent another workspace's key chain for workspace {workspace}"
        ))
        .into());
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

/// What [`share_keys`] did to a shared folder's key list.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeyListChange {
    /// The epoch of the statement now latest.
    pub epoch: u64,
    /// Members given the key by this call (emails).
    pub added: Vec<String>,
    /// Members whose key this call took away, with a new key generation
    /// for everyone else (user ids: they are no longer listed).
    pub removed: Vec<UserId>,
    /// Members the server lists who do not get the key yet, and why.
    pub waiting: Vec<(String, String)>,
}

/// Attempts at appending a statement that another device of the owner's
/// raced.
const APPEND_ATTEMPTS: usize = 3;

/// The owner's device keeps the key list of the end-to-end encrypted
/// shared folder `workspace` in step with who may read it: writes its
/// first statement (the owner alone) if there is none; gives the key to
/// each member the server lists who this device invited, whose identity
/// it pins on first use (a changed key is left out until confirmed); and,
/// when a listed member is no longer a member on the server (unshared, or
/// left), appends a statement without them under a new key generation,
/// which everything written from then on uses.
///
/// The server cannot add a reader (only invitees get the key, with the key
/// they had when first seen) and cannot quietly keep one (it can only make
/// the owner drop a member early, which it could do anyway by not serving
/// them).
pub async fn share_keys(
    files: &KeyFiles,
    conn: &dyn Connection,
    workspace: &Workspace,
) -> Result<KeyListChange, Error> {
    let identity = files.load_identity()?.ok_or_else(|| {
        Error::bad_request(
            "this device holds no encryption identity: run `stacksync setup ... --passphrase` \
             with the account's encryption passphrase",
        )
    })?;
    if workspace.owner != identity.user() || !workspace.is_shared {
        return Err(Error::forbidden(format!(
            "only the owner's devices keep the key list of shared folder {:?}",
            workspace.name
        )));
    }
    let ws = workspace.id;
    let last = files.load_membership(ws)?;
    if last.is_none() && statements_after(conn, ws, 0).await?.0.is_empty() {
        let (statement, _) = Statement::genesis(&identity, ws, &[], None)
            .map_err(vault_error("the shared folder's first key statement"))?;
        put_statement(conn, ws, 1, statement).await?;
    }
    let mut verified = bring_up_to_date(files, conn, &identity, ws, last).await?;
    let mut change = KeyListChange::default();
    for _ in 0..APPEND_ATTEMPTS {
        let server = members_on_server(conn, ws).await?;
        let invited = files.invited(ws)?;
        let mut pins = files.load_pins()?;
        let me = identity.user();
        let listed = verified.members();
        let mut members: Vec<Member> = listed
            .iter()
            .filter(|m| m.identity.user == me)
            .cloned()
            .collect();
        change.added.clear();
        change.waiting.clear();
        // Everyone the server lists who is listed already or was invited
        // from here, with whether they read only.
        let mut asked: Vec<(&stacksync_proto::Member, Option<&Member>, bool)> = Vec::new();
        for s in server.iter().filter(|s| s.user != me) {
            let known = listed.iter().find(|m| m.identity.user == s.user);
            let invitee = invited
                .iter()
                .find(|i| i.email == s.email.trim().to_lowercase());
            match (known, invitee) {
                (Some(m), _) => asked.push((s, Some(m), m.read_only)),
                (None, Some(i)) => asked.push((s, None, i.read_only || s.read_only)),
                (None, None) => change.waiting.push((
                    s.email.clone(),
                    "not invited from this device: the server lists them, but only people \
                     this device invited get the key"
                        .into(),
                )),
            }
        }
        let found = identities(conn, asked.iter().map(|(s, ..)| s.user).collect()).await?;
        for ((s, known, read_only), published) in asked.iter().zip(found) {
            let public = match published {
                Some(p) => {
                    let public = PublicIdentity::from_bytes(&p.identity)
                        .map_err(vault_error("a member's published identity"))?;
                    if p.user != s.user || public.user != s.user {
                        return Err(Error::internal(format!(
                            "the identity the server publishes for {} names another user",
                            s.email
                        )));
                    }
                    Some(public)
                }
                None => None,
            };
            let keep = |members: &mut Vec<Member>| {
                if let Some(m) = known {
                    members.push(**m);
                }
            };
            let Some(public) = public else {
                keep(&mut members);
                if known.is_none() {
                    change.waiting.push((
                        s.email.clone(),
                        "has no encryption identity yet (`stacksync setup ... --passphrase` on \
                         their device)"
                            .into(),
                    ));
                }
                continue;
            };
            if known.is_some_and(|m| m.identity == public) {
                keep(&mut members);
                continue;
            }
            // New here, or a listed member with new keys: given the key
            // only with keys this device pinned (first use, or a change
            // the user confirmed with `stacksync trust`).
            if let Pin::Changed { .. } = pins.check(&public) {
                keep(&mut members);
                change.waiting.push((
                    s.email.clone(),
                    format!(
                        "their key changed since this device first saw it (now {}); confirm it \
                         with `stacksync trust {} FINGERPRINT` after comparing it with them",
                        public.fingerprint(),
                        s.email
                    ),
                ));
                continue;
            }
            members.push(if *read_only {
                Member::reader(public)
            } else {
                Member::writer(public)
            });
            change.added.push(s.email.clone());
        }
        change.removed = listed
            .iter()
            .filter(|m| !members.contains(m))
            .map(|m| m.identity.user)
            .collect();
        if change.added.is_empty() && change.removed.is_empty() {
            change.epoch = verified.epoch();
            return Ok(change);
        }
        let (statement, next) = Statement::next(&verified, &identity, &members, false, None)
            .map_err(vault_error("the shared folder's next key statement"))?;
        let epoch = next.epoch();
        match put_statement(conn, ws, epoch, statement).await {
            Ok(()) => {
                next.pin_members(&mut pins)
                    .map_err(vault_error("pinning the members' keys"))?;
                files.save_pins(&pins)?;
                files.save_membership(&next)?;
                change.epoch = epoch;
                return Ok(change);
            }
            // Another device of mine appended first: start from theirs.
            Err(e) if e.kind == ErrorKind::Conflict => {
                verified = bring_up_to_date(files, conn, &identity, ws, Some(verified)).await?;
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::unavailable(format!(
        "the key list of shared folder {:?} kept changing while this device updated it",
        workspace.name
    )))
}

/// The latest epoch of `workspace`'s key chain, as the server says.
pub async fn latest_epoch(conn: &dyn Connection, workspace: WorkspaceId) -> Result<u64, Error> {
    let request = Request::GetKeyStatements {
        workspace,
        after_epoch: u64::MAX,
        limit: 1,
    };
    match conn.rpc(request).await? {
        Reply::KeyStatements {
            workspace: w,
            latest_epoch,
            ..
        } if w == workspace => Ok(latest_epoch),
        other => Err(unexpected("get_key_statements", other)),
    }
}

async fn put_statement(
    conn: &dyn Connection,
    workspace: WorkspaceId,
    epoch: u64,
    statement: Vec<u8>,
) -> Result<(), Error> {
    let request = Request::PutKeyStatement {
        workspace,
        epoch,
        statement,
    };
    match conn.rpc(request).await {
        Ok(Reply::KeyStatementStored { .. }) => Ok(()),
        // The genesis another device of mine wrote first: read below.
        Err(e) if e.kind == ErrorKind::Conflict && epoch == 1 => Ok(()),
        Ok(other) => Err(unexpected("put_key_statement", other)),
        Err(e) => Err(e),
    }
}

async fn members_on_server(
    conn: &dyn Connection,
    workspace: WorkspaceId,
) -> Result<Vec<stacksync_proto::Member>, Error> {
    match conn.rpc(Request::GetMembers { workspace }).await? {
        Reply::Members { members } => Ok(members),
        other => Err(unexpected("get_members", other)),
    }
}

/// The published identities of `users`, in order (`None` for one who has
/// none, or whom the caller shares nothing with).
pub async fn identities(
    conn: &dyn Connection,
    users: Vec<UserId>,
) -> Result<Vec<Option<stacksync_proto::keys::PublishedIdentity>>, Error> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let n = users.len();
    match conn.rpc(Request::GetIdentities { users }).await? {
        Reply::Identities { identities } if identities.len() == n => Ok(identities),
        other => Err(unexpected("get_identities", other)),
    }
}
