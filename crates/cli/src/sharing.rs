//! The sharing commands: `share`, `invitations`, `accept`, `decline`,
//! `members`, `unshare`, `leave`. Each is one or two requests to the
//! service; a running daemon (or the next `sync`) mounts, moves or
//! detaches the shared folders on the notifications they cause. Paths are
//! resolved against what the server says now (the account's workspaces
//! and the private workspace's tree as this device last synced it), never
//! against a cached table only.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use stacksync_client::connection::workspaces;
use stacksync_client::e2ee::keys::{Invitee, identities, open_workspace, share_keys};
use stacksync_client::e2ee::{KeyFiles, Pin, PublicIdentity};
use stacksync_client::mounts::{self, place};
use stacksync_client::status::{self, relative_to_folder};
use stacksync_client::{Connection, Profile, STATUS_SOCKET, SqliteStateStore};
use stacksync_engine::{RelPath, SyncState};
use stacksync_proto::ids::shared_workspace_id;
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{EncryptionMode, ItemId, ItemName, Workspace};
use uuid::Uuid;

use crate::client::{absolute, connect, open, quiet_options, shown};

/// The private workspace's state as this device last saved it.
async fn private_state(profile: &Profile) -> anyhow::Result<SyncState> {
    let ws = profile
        .config
        .workspace
        .context("this device has not synced yet: run `stacksync sync --once` first")?;
    let store = SqliteStateStore::open(&profile.state_db_path(), ws).await?;
    let state = store.load_state().await?;
    store.close().await;
    Ok(state.unwrap_or_default())
}

/// `path` (as the user gave it) relative to the synced folder.
fn in_folder(profile: &Profile, path: &Path) -> anyhow::Result<RelPath> {
    Ok(relative_to_folder(
        &profile.config.folder,
        &absolute(path)?,
    )?)
}

/// The shared workspace mounted at or above `rel`, and its mount point.
async fn shared_at(
    profile: &Profile,
    conn: &Arc<dyn Connection>,
    rel: &RelPath,
) -> anyhow::Result<(Workspace, RelPath)> {
    let list = workspaces(conn.as_ref()).await?;
    let state = private_state(profile).await?;
    let (placed, _) = place(&list, &state);
    placed
        .into_iter()
        .filter(|(_, at)| rel.starts_with(at))
        .max_by_key(|(_, at)| at.depth())
        .and_then(|(id, at)| list.into_iter().find(|w| w.id == id).map(|w| (w, at)))
        .with_context(|| {
            format!(
                "{} is not in a shared folder (`stacksync status` lists them)",
                shown(&rel.to_string())
            )
        })
}

/// The private folder at `rel`, synced with the server as it is now.
fn private_folder(state: &SyncState, rel: &RelPath) -> anyhow::Result<ItemId> {
    let id = state
        .synced
        .iter()
        .find(|(id, s)| s.is_folder && state.synced_path(**id).as_ref() == Some(rel))
        .map(|(id, _)| *id)
        .with_context(|| {
            format!(
                "{} is not a synced folder of yours (not synced yet? run `stacksync sync --once` first)",
                shown(&rel.to_string())
            )
        })?;
    if state.remote.live(id).is_none_or(|m| !m.is_folder) {
        bail!(
            "{} is no longer on the server as a folder; sync first",
            shown(&rel.to_string())
        );
    }
    Ok(id)
}

/// `stacksync share PATH --with EMAIL... [--read-only] [--encrypted]`.
pub async fn share(
    home: &Path,
    path: &Path,
    with: &[String],
    read_only: bool,
    encrypted: bool,
) -> anyhow::Result<()> {
    if with.is_empty() {
        bail!("say whom to share with: --with EMAIL");
    }
    let profile = Profile::load(home)?;
    if encrypted && KeyFiles::new(home).load_identity()?.is_none() {
        bail!(
            "an end-to-end encrypted share needs this device's encryption identity: run `stacksync setup --force ... --passphrase PASSPHRASE` with the account's encryption passphrase"
        );
    }
    let rel = in_folder(&profile, path)?;
    if rel.is_root() {
        bail!("the synced folder itself cannot be shared; share a folder inside it");
    }
    let conn = connect(&profile).await?;
    if let Ok((ws, at)) = shared_at(&profile, &conn, &rel).await {
        bail!(
            "{} is {} the shared folder {} ({}); a shared folder cannot be shared again",
            shown(&rel.to_string()),
            if at == rel { "already" } else { "inside" },
            shown(&at.to_string()),
            shown(&ws.name)
        );
    }
    let state = private_state(&profile).await?;
    let folder = private_folder(&state, &rel)?;
    let workspace = profile.config.workspace.context("not synced yet")?;
    let abs = mounts::absolute(&profile.config.folder, &rel);
    let has_files = std::fs::read_dir(&abs).is_ok_and(|mut d| d.next().is_some())
        || state
            .remote
            .iter()
            .any(|m| m.parent == Some(folder) && m.status.is_live());
    if encrypted && has_files {
        return share_encrypted_with_files(home, &profile, &rel, with, read_only).await;
    }
    if encrypted {
        // An end-to-end encrypted share is a workspace of the owner's at
        // once: this device's daemon (or next sync) mounts it and writes
        // its keys; each invitee gets them once they accept.
        let (proposal, shared_to) =
            propose_encrypted(home, &profile, &rel, folder, with, read_only).await?;
        println!(
            "{} is now an end-to-end encrypted shared folder; invited {}{} (invitation {proposal}): each gets its key from this account's devices once they accept (they need an encryption passphrase of their own: `stacksync setup ... --passphrase`); compare fingerprints with `stacksync members {} --fingerprints`",
            shown(&rel.to_string()),
            shared_to.join(", "),
            if read_only { " (read-only)" } else { "" },
            shown(&rel.to_string())
        );
        return Ok(());
    }
    let request = Request::CreateShareProposal {
        workspace,
        folder,
        emails: with.to_vec(),
        encryption: EncryptionMode::Plain,
        read_only,
    };
    match conn
        .rpc(request)
        .await
        .with_context(|| format!("sharing {}", shown(&rel.to_string())))?
    {
        Reply::ShareProposal {
            proposal,
            shared_to,
        } => {
            println!(
                "invited {} to {}{} (invitation {proposal}); it becomes a shared folder when accepted",
                shared_to.join(", "),
                shown(&rel.to_string()),
                if read_only { " (read-only)" } else { "" }
            );
            Ok(())
        }
        other => bail!("the server answered the share with {other:?}"),
    }
}

/// `share --encrypted` of a folder that has files. The server never moves
/// plain files into an end-to-end encrypted workspace, so this device does
/// it, with the sync engine, in steps that each leave every file on disk:
/// the folder is renamed aside and an empty one made in its place (synced:
/// the files keep their ids, moved); the empty one is shared, which makes
/// it an encrypted workspace of the owner's at once, mounted here with its
/// first key statement; the files move into it and that workspace syncs
/// first, uploading them encrypted; only then is the folder aside removed
/// and the private workspace synced, which deletes the plain copies on the
/// server (they stay in its version history, where they were before). A
/// crash between steps leaves the files in one of the two folders, synced
/// by the next `sync`. With a daemon running, the daemon syncs each step
/// instead ([`share_encrypted_through_the_daemon`]).
async fn share_encrypted_with_files(
    home: &Path,
    profile: &Profile,
    rel: &RelPath,
    with: &[String],
    read_only: bool,
) -> anyhow::Result<()> {
    let aside = aside_name(profile, rel)?;
    let daemon = status::query(&home.join(STATUS_SOCKET), None)
        .await
        .ok()
        .flatten()
        .is_some();
    if daemon {
        return share_encrypted_through_the_daemon(home, profile, rel, &aside, with, read_only)
            .await;
    }
    let root = &profile.config.folder;
    let abs = mounts::absolute(root, rel);
    let aside_abs = mounts::absolute(root, &aside);
    let mut client = open(home, quiet_options()).await?;
    client
        .sync_until_done()
        .await
        .context("syncing before the share")?;
    std::fs::rename(&abs, &aside_abs)
        .with_context(|| format!("moving the files aside to {}", aside_abs.display()))?;
    std::fs::create_dir(&abs).with_context(|| format!("creating {}", abs.display()))?;
    client
        .sync_until_done()
        .await
        .context("syncing the new, empty folder")?;
    let folder = private_folder(client.private_state(), rel)?;
    let (proposal, shared_to) =
        propose_encrypted(home, profile, rel, folder, with, read_only).await?;
    let shared = shared_workspace_id(proposal);
    client
        .refresh_mounts()
        .await
        .context("mounting the new shared folder")?;
    match client.workspace_at(rel) {
        Some((ws, at)) if ws.id == shared && &at == rel => {}
        _ => bail!(
            "the new encrypted shared folder is not mounted at {} yet; your files are in {}: run `stacksync sync --once`, then move them in",
            shown(&rel.to_string()),
            shown(&aside.to_string())
        ),
    }
    for entry in std::fs::read_dir(&aside_abs)? {
        let entry = entry?;
        std::fs::rename(entry.path(), abs.join(entry.file_name()))
            .with_context(|| format!("moving {} in", entry.path().display()))?;
    }
    client
        .sync_workspace(shared)
        .await
        .context("uploading the files encrypted")?;
    std::fs::remove_dir(&aside_abs).with_context(|| format!("removing {}", aside_abs.display()))?;
    client
        .sync_until_done()
        .await
        .context("deleting the plain copies")?;
    encrypted_share_done(rel, proposal, &shared_to, read_only);
    Ok(())
}

/// A free name beside `rel` for its files while they move.
fn aside_name(profile: &Profile, rel: &RelPath) -> anyhow::Result<RelPath> {
    let (Some(name), Some(parent)) = (rel.name(), rel.parent()) else {
        bail!("the synced folder itself cannot be shared");
    };
    let root = &profile.config.folder;
    (1..1000)
        .filter_map(|i| {
            let n = if i == 1 {
                format!("{name} (moving into the encrypted share)")
            } else {
                format!("{name} (moving into the encrypted share {i})")
            };
            ItemName::new(n).ok()
        })
        .map(|n| parent.join(&n))
        .find(|p| mounts::absolute(root, p).symlink_metadata().is_err())
        .context("no free name to move the folder's files aside")
}

/// Proposes the empty private `folder` at `rel` as an end-to-end encrypted
/// share and notes the invitees on this device (the only people its
/// devices give the key to). Returns the proposal and who was invited.
async fn propose_encrypted(
    home: &Path,
    profile: &Profile,
    rel: &RelPath,
    folder: ItemId,
    with: &[String],
    read_only: bool,
) -> anyhow::Result<(Uuid, Vec<String>)> {
    let workspace = profile.config.workspace.context("not synced yet")?;
    let conn = connect(profile).await?;
    let (proposal, shared_to) = match conn
        .rpc(Request::CreateShareProposal {
            workspace,
            folder,
            emails: with.to_vec(),
            encryption: EncryptionMode::ClientSide,
            read_only,
        })
        .await
        .with_context(|| format!("sharing {}", shown(&rel.to_string())))?
    {
        Reply::ShareProposal {
            proposal,
            shared_to,
        } => (proposal, shared_to),
        other => bail!("the server answered the share with {other:?}"),
    };
    let invitees: Vec<Invitee> = shared_to
        .iter()
        .map(|e| Invitee::new(e, read_only))
        .collect();
    KeyFiles::new(home).record_invited(shared_workspace_id(proposal), &invitees)?;
    Ok((proposal, shared_to))
}

fn encrypted_share_done(rel: &RelPath, proposal: Uuid, shared_to: &[String], read_only: bool) {
    println!(
        "{} is now end-to-end encrypted: its files were uploaded again encrypted and the plain copies deleted on the server (they stay in your version history)",
        shown(&rel.to_string())
    );
    println!(
        "invited {} to {}{} (invitation {proposal}); each gets the folder's key from this account's devices once they accept (they need an encryption passphrase of their own)",
        shared_to.join(", "),
        shown(&rel.to_string()),
        if read_only { " (read-only)" } else { "" }
    );
}

/// How long each step waits for the running daemon.
const DAEMON_STEP: std::time::Duration = std::time::Duration::from_secs(600);

/// Polls `done` until it says yes, or fails saying `what` and where the
/// files are.
async fn wait_for_daemon<F, Fut>(what: &str, files_at: &RelPath, mut done: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let start = std::time::Instant::now();
    while !done().await? {
        if start.elapsed() > DAEMON_STEP {
            bail!(
                "the running daemon did not {what} within {} s; your files are safe in {}: finish by hand once it has",
                DAEMON_STEP.as_secs(),
                shown(&files_at.to_string())
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    Ok(())
}

/// The steps of [`share_encrypted_with_files`] with a daemon running,
/// which syncs each of them: the files go aside and an empty folder takes
/// their place; once the daemon has synced both, the empty folder is
/// shared and the daemon mounts it as the new encrypted workspace; the
/// files are then hard-linked in (no copy of their bytes) and, only once
/// the daemon reports them synced there (committed encrypted), the folder
/// aside is removed, which the daemon turns into the deletion of the plain
/// copies.
async fn share_encrypted_through_the_daemon(
    home: &Path,
    profile: &Profile,
    rel: &RelPath,
    aside: &RelPath,
    with: &[String],
    read_only: bool,
) -> anyhow::Result<()> {
    let root = &profile.config.folder;
    let abs = mounts::absolute(root, rel);
    let aside_abs = mounts::absolute(root, aside);
    let before = private_folder(&private_state(profile).await?, rel)?;
    std::fs::rename(&abs, &aside_abs)
        .with_context(|| format!("moving the files aside to {}", aside_abs.display()))?;
    std::fs::create_dir(&abs).with_context(|| format!("creating {}", abs.display()))?;
    let folder = std::cell::Cell::new(None);
    wait_for_daemon("sync the empty folder", aside, || async {
        let state = private_state(profile).await?;
        let moved = private_folder(&state, aside).ok() == Some(before);
        folder.set(
            private_folder(&state, rel)
                .ok()
                .filter(|id| *id != before && moved),
        );
        Ok(folder.get().is_some())
    })
    .await?;
    let folder = folder.get().expect("waited for it");
    let (proposal, shared_to) =
        propose_encrypted(home, profile, rel, folder, with, read_only).await?;
    let shared = shared_workspace_id(proposal);
    let at = rel.to_string();
    wait_for_daemon("mount the new encrypted shared folder", aside, || async {
        let table = mounts::MountTable::load(home)?;
        Ok(table
            .mounts
            .iter()
            .any(|m| m.workspace == shared && m.path == at))
    })
    .await?;
    link_tree(&aside_abs, &abs)?;
    let socket = home.join(STATUS_SOCKET);
    wait_for_daemon("upload the files encrypted", aside, || async {
        let report = status::query(&socket, Some(abs.clone()))
            .await
            .map_err(|e| anyhow::anyhow!(e))?
            .context("the daemon stopped")?;
        Ok(report.target.status == status::FileStatus::Synced)
    })
    .await?;
    std::fs::remove_dir_all(&aside_abs)
        .with_context(|| format!("removing {}", aside_abs.display()))?;
    wait_for_daemon("delete the plain copies", aside, || async {
        let state = private_state(profile).await?;
        Ok(private_folder(&state, aside).is_err())
    })
    .await?;
    encrypted_share_done(rel, proposal, &shared_to, read_only);
    Ok(())
}

/// Recreates the tree under `from` at `to`: folders made, files
/// hard-linked (the same bytes, no copy), symlinks copied as links.
fn link_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::create_dir(&dst).with_context(|| format!("creating {}", dst.display()))?;
            link_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)
                .with_context(|| format!("linking {}", dst.display()))?;
        } else {
            std::fs::hard_link(&src, &dst)
                .with_context(|| format!("linking {} in", src.display()))?;
        }
    }
    Ok(())
}

/// `stacksync accept ID [--as NAME] [--into DIR]`.
pub async fn accept(
    home: &Path,
    id: &str,
    name: Option<&str>,
    into: Option<&Path>,
) -> anyhow::Result<()> {
    let proposal = Uuid::parse_str(id.trim())
        .with_context(|| format!("{} is not an invitation id", shown(id)))?;
    let profile = Profile::load(home)?;
    let conn = connect(&profile).await?;
    let invitations = match conn.rpc(Request::GetInvitations).await? {
        Reply::Invitations { invitations } => invitations,
        other => bail!("the server answered the invitations with {other:?}"),
    };
    let invitation = invitations.iter().find(|i| i.proposal == proposal);
    // Where it goes: a synced private folder (not a shared one), or the root.
    let (parent, parent_path) = match into {
        None => (None, RelPath::root()),
        Some(dir) => {
            let rel = in_folder(&profile, dir)?;
            if rel.is_root() {
                (None, rel)
            } else {
                if let Ok((_, at)) = shared_at(&profile, &conn, &rel).await {
                    bail!(
                        "{} is in the shared folder {}: a shared folder goes into a folder of your own",
                        shown(&rel.to_string()),
                        shown(&at.to_string())
                    );
                }
                let state = private_state(&profile).await?;
                (Some(private_folder(&state, &rel)?), rel)
            }
        }
    };
    let wanted = match (name, invitation) {
        (Some(n), _) => n.to_owned(),
        (None, Some(i)) => i.folder_name.clone(),
        // Accepted already on another device (a retry): the server keeps
        // the name it has.
        (None, None) => String::new(),
    };
    let chosen = if wanted.is_empty() {
        None
    } else {
        let base = ItemName::new(&wanted)
            .map_err(|e| anyhow::anyhow!("{} cannot be a folder name: {e}", shown(&wanted)))?;
        let taken = |n: &ItemName| {
            mounts::absolute(&profile.config.folder, &parent_path.join(n))
                .symlink_metadata()
                .is_ok()
        };
        if !taken(&base) {
            Some(base)
        } else if name.is_some() {
            bail!(
                "{} already exists; choose another name with --as",
                shown(&parent_path.join(&base).to_string())
            );
        } else {
            let free = (2..1000)
                .filter_map(|i| ItemName::new(format!("{wanted} ({i})")).ok())
                .find(|n| !taken(n))
                .context("no free name for the shared folder; choose one with --as")?;
            Some(free)
        }
    };
    let workspace = match conn
        .rpc(Request::AnswerShareProposal {
            proposal,
            accept: true,
        })
        .await
        .with_context(|| format!("accepting invitation {proposal}"))?
    {
        Reply::ShareAnswered {
            workspace: Some(ws),
        } => ws,
        other => bail!("the server answered the acceptance with {other:?}"),
    };
    let mut shown_name = workspace.name.clone();
    if let Some(chosen) = chosen
        && (chosen.as_str() != workspace.name || parent != workspace.mount_parent)
    {
        match conn
            .rpc(Request::UpdateWorkspace {
                workspace: workspace.id,
                name: chosen.to_string(),
                mount_parent: parent,
            })
            .await
            .context("placing the shared folder")?
        {
            Reply::Workspace(ws) => shown_name = ws.name,
            other => bail!("the server answered the placement with {other:?}"),
        }
    }
    let at = ItemName::new(&shown_name)
        .map(|n| parent_path.join(&n).to_string())
        .unwrap_or(shown_name);
    println!(
        "accepted: the shared folder is synced at {} (by the running daemon now, or by the next `stacksync sync`)",
        shown(&at)
    );
    Ok(())
}

/// `stacksync members PATH [--json] [--fingerprints]`.
pub async fn members(
    home: &Path,
    path: &Path,
    json: bool,
    fingerprints: bool,
) -> anyhow::Result<()> {
    let profile = Profile::load(home)?;
    let rel = in_folder(&profile, path)?;
    let conn = connect(&profile).await?;
    let (ws, at) = shared_at(&profile, &conn, &rel).await?;
    let members = match conn.rpc(Request::GetMembers { workspace: ws.id }).await? {
        Reply::Members { members } => members,
        other => bail!("the server answered the members with {other:?}"),
    };
    if fingerprints {
        return member_keys(home, &conn, &ws, &at, &members, json).await;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&members)?);
        return Ok(());
    }
    println!("{} ({}):", shown(&at.to_string()), shown(&ws.name));
    for m in &members {
        let role = if m.is_owner {
            "owner"
        } else if m.read_only {
            "read-only"
        } else {
            "member"
        };
        println!(
            "  {:<32}  {:<9}  joined {}",
            shown(&m.email),
            role,
            stacksync_engine::conflict::format_utc(m.joined_at)
        );
    }
    Ok(())
}

/// One member's key, as `members --fingerprints` shows it.
#[derive(serde::Serialize)]
struct MemberKey {
    email: String,
    /// The fingerprint of the key the folder's verified key list gives
    /// them; `None` while they have no key.
    fingerprint: Option<String>,
    /// "pinned", "first use", "changed" (not the key this device pinned),
    /// or "no key yet".
    pin: &'static str,
}

/// `members PATH --fingerprints`: the verified key list of an end-to-end
/// encrypted shared folder, member by member.
async fn member_keys(
    home: &Path,
    conn: &Arc<dyn Connection>,
    ws: &Workspace,
    at: &RelPath,
    members: &[stacksync_proto::Member],
    json: bool,
) -> anyhow::Result<()> {
    if ws.encryption != EncryptionMode::ClientSide {
        bail!(
            "{} is not end-to-end encrypted: its members have no keys to compare",
            shown(&at.to_string())
        );
    }
    let files = KeyFiles::new(home);
    let keys = open_workspace(&files, conn.as_ref(), ws)
        .await
        .context("verifying the shared folder's key list")?;
    let mut rows = Vec::new();
    for m in members {
        let listed = keys.membership.member(&m.user);
        let (fingerprint, pin) = match listed {
            None => (None, "no key yet"),
            Some(l) => (
                Some(l.identity.fingerprint().to_string()),
                match files.pin_state(&l.identity)? {
                    Pin::Known => "pinned",
                    Pin::FirstUse => "first use",
                    Pin::Changed { .. } => "changed",
                },
            ),
        };
        rows.push(MemberKey {
            email: m.email.clone(),
            fingerprint,
            pin,
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{} ({}), key list epoch {}, key generation {}:",
        shown(&at.to_string()),
        shown(&ws.name),
        keys.membership.epoch(),
        keys.membership.generation().0
    );
    for r in &rows {
        println!(
            "  {:<32}  {:<39}  {}",
            shown(&r.email),
            r.fingerprint.as_deref().unwrap_or("-"),
            r.pin
        );
    }
    Ok(())
}

/// `stacksync trust EMAIL FINGERPRINT`: pins the key the server now
/// publishes for a member of one of this account's shared folders, if its
/// fingerprint is the one the user compared.
pub async fn trust(home: &Path, email: &str, fingerprint: &str) -> anyhow::Result<()> {
    let profile = Profile::load(home)?;
    let conn = connect(&profile).await?;
    let wanted = email.trim().to_lowercase();
    let mut user = None;
    for ws in workspaces(conn.as_ref())
        .await?
        .iter()
        .filter(|w| w.is_shared)
    {
        let members = match conn.rpc(Request::GetMembers { workspace: ws.id }).await? {
            Reply::Members { members } => members,
            other => bail!("the server answered the members with {other:?}"),
        };
        if let Some(m) = members.iter().find(|m| m.email.to_lowercase() == wanted) {
            user = Some(m.user);
            break;
        }
    }
    let user = user.with_context(|| {
        format!(
            "{} is not a member of any shared folder of this account",
            shown(email)
        )
    })?;
    let published = identities(conn.as_ref(), vec![user])
        .await?
        .pop()
        .flatten()
        .with_context(|| format!("{} has published no encryption key", shown(email)))?;
    let public = PublicIdentity::from_bytes(&published.identity)
        .map_err(|e| anyhow::anyhow!("{}'s published key: {e}", shown(email)))?;
    anyhow::ensure!(
        public.user == user && published.user == user,
        "the server sent another user's key for {}",
        shown(email)
    );
    let compact = |s: &str| s.split_whitespace().collect::<String>().to_lowercase();
    let shown_fp = public.fingerprint().to_string();
    if compact(&shown_fp) != compact(fingerprint) {
        bail!(
            "the key the server publishes for {} has fingerprint {shown_fp}, not the one you gave: nothing trusted",
            shown(email)
        );
    }
    KeyFiles::new(home).trust(&public)?;
    println!(
        "trusted {}'s key {shown_fp}; the owner's device gives it the shared folders' keys at its next refresh",
        shown(email)
    );
    Ok(())
}

/// `stacksync unshare PATH --with EMAIL...`.
pub async fn unshare(home: &Path, path: &Path, with: &[String]) -> anyhow::Result<()> {
    if with.is_empty() {
        bail!("say whom to remove: --with EMAIL");
    }
    let profile = Profile::load(home)?;
    let rel = in_folder(&profile, path)?;
    let conn = connect(&profile).await?;
    let (ws, at) = shared_at(&profile, &conn, &rel).await?;
    if ws.owner != profile.config.user_id {
        bail!(
            "only the owner of {} can remove members; use `stacksync leave` to leave it",
            shown(&at.to_string())
        );
    }
    match conn
        .rpc(Request::Unshare {
            workspace: ws.id,
            emails: with.to_vec(),
        })
        .await
        .with_context(|| format!("unsharing {}", shown(&at.to_string())))?
    {
        Reply::Unshared { removed } => {
            println!(
                "removed {} from {}",
                if removed.is_empty() {
                    "nobody".to_owned()
                } else {
                    removed.join(", ")
                },
                shown(&at.to_string())
            );
            if ws.encryption == EncryptionMode::ClientSide {
                // A new key generation without them, now: what is written
                // from here on is unreadable to them.
                let files = KeyFiles::new(home);
                files.forget_invited(ws.id, with)?;
                match share_keys(&files, conn.as_ref(), &ws).await {
                    Ok(change) if !change.removed.is_empty() => println!(
                        "the folder's key was replaced (key list epoch {}): what is written from now on cannot be read with the keys they had",
                        change.epoch
                    ),
                    Ok(_) => {}
                    Err(e) => eprintln!(
                        "warning: the folder's key was not replaced yet ({e}); this account's running daemon or next `stacksync sync` replaces it"
                    ),
                }
            }
            Ok(())
        }
        other => bail!("the server answered the unshare with {other:?}"),
    }
}

/// `stacksync leave PATH`.
pub async fn leave(home: &Path, path: &Path) -> anyhow::Result<()> {
    let profile = Profile::load(home)?;
    let rel = in_folder(&profile, path)?;
    let conn = connect(&profile).await?;
    let (ws, at) = shared_at(&profile, &conn, &rel).await?;
    if ws.owner == profile.config.user_id {
        bail!(
            "you own {}: remove its members with `stacksync unshare` instead",
            shown(&at.to_string())
        );
    }
    match conn
        .rpc(Request::LeaveWorkspace { workspace: ws.id })
        .await
        .with_context(|| format!("leaving {}", shown(&at.to_string())))?
    {
        Reply::Left { .. } => {
            println!(
                "left {}; its files stay in this folder, no longer synced",
                shown(&at.to_string())
            );
            Ok(())
        }
        other => bail!("the server answered the leave with {other:?}"),
    }
}

/// `stacksync invitations`: on a terminal, a table (id, folder, from,
/// when); otherwise one id per line, for scripts; `--json` gives every
/// field.
pub async fn invitations(home: &Path, json: bool) -> anyhow::Result<()> {
    let profile = Profile::load(home)?;
    let conn = connect(&profile).await?;
    let invitations = match conn.rpc(Request::GetInvitations).await? {
        Reply::Invitations { invitations } => invitations,
        other => bail!("the server answered the invitations with {other:?}"),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&invitations)?);
    } else if std::io::stdout().is_terminal() {
        if invitations.is_empty() {
            println!("no invitations");
            return Ok(());
        }
        println!(
            "{:<36}  {:<19}  {:<24}  folder",
            "id", "proposed (UTC)", "from"
        );
        for i in &invitations {
            println!(
                "{:<36}  {:<19}  {:<24}  {}",
                i.proposal,
                stacksync_engine::conflict::format_utc(i.created_at),
                shown(&i.from),
                shown(&i.folder_name)
            );
        }
    } else {
        for i in &invitations {
            println!("{}", i.proposal);
        }
    }
    Ok(())
}

/// `stacksync decline ID`.
pub async fn decline(home: &Path, id: &str) -> anyhow::Result<()> {
    let proposal = Uuid::parse_str(id.trim())
        .with_context(|| format!("{} is not an invitation id", shown(id)))?;
    let profile = Profile::load(home)?;
    let conn = connect(&profile).await?;
    match conn
        .rpc(Request::AnswerShareProposal {
            proposal,
            accept: false,
        })
        .await
        .with_context(|| format!("declining invitation {proposal}"))?
    {
        Reply::ShareAnswered { workspace: None } => {
            println!("declined {proposal}");
            Ok(())
        }
        other => bail!("the server answered the decline with {other:?}"),
    }
}
