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
use stacksync_client::mounts::{self, place};
use stacksync_client::status::relative_to_folder;
use stacksync_client::{Connection, Profile, SqliteStateStore};
use stacksync_engine::{RelPath, SyncState};
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{EncryptionMode, ItemId, ItemName, Workspace};
use uuid::Uuid;

use crate::client::{absolute, connect, shown};

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
    if encrypted {
        bail!(
            "client-side encrypted shared folders are not available in this version; share without --encrypted"
        );
    }
    let profile = Profile::load(home)?;
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

/// `stacksync members PATH [--json]`.
pub async fn members(home: &Path, path: &Path, json: bool) -> anyhow::Result<()> {
    let profile = Profile::load(home)?;
    let rel = in_folder(&profile, path)?;
    let conn = connect(&profile).await?;
    let (ws, at) = shared_at(&profile, &conn, &rel).await?;
    let members = match conn.rpc(Request::GetMembers { workspace: ws.id }).await? {
        Reply::Members { members } => members,
        other => bail!("the server answered the members with {other:?}"),
    };
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
