//! `stacksync admin device ...`, `admin workspace ...` and `admin stats`:
//! what the installation holds, read from the metadata store, and signing
//! a device out (through the service, as the website does).

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};
use stacksync_metastore::{DeviceSummary, WorkspaceSummary};
use stacksync_proto::{DeviceId, WorkspaceId};
use stacksync_service::Service;

use crate::admin_output::{emit, human_bytes, table, when};

/// `stacksync admin device ...`.
#[derive(Subcommand, Debug)]
pub enum DeviceCommand {
    /// Lists devices (most recently seen first): id, user, name, system,
    /// version, last address and time, live sessions.
    List {
        /// Only this user's devices.
        #[arg(long)]
        user: Option<String>,
    },
    /// Ends every session of a device (as signing it out on the website
    /// does): it must log in again.
    Revoke {
        /// The device's id (see `admin device list`).
        device_id: String,
    },
}

/// `stacksync admin workspace ...`.
#[derive(Subcommand, Debug)]
pub enum WorkspaceCommand {
    /// Lists workspaces: id, owner, kind, encryption, members, items,
    /// bytes logical and stored.
    List {
        /// Only the workspaces this user is a member of.
        #[arg(long)]
        user: Option<String>,
    },
    /// One workspace: owner, members (read-only or not), encryption,
    /// items, bytes logical and stored, container.
    Show {
        /// The workspace's id (see `admin workspace list`).
        id: String,
    },
}

/// A device as `--json` prints it.
pub fn device_json(d: &DeviceSummary) -> Value {
    json!({
        "id": d.device.id.to_string(),
        "user": d.device.user.to_string(),
        "email": d.email,
        "name": d.device.name,
        "os": d.device.os,
        "app_version": d.device.app_version,
        "last_ip": d.device.last_ip,
        "last_access": d.device.last_access,
        "live_sessions": d.live_sessions,
    })
}

/// Devices as a table.
pub fn device_table(devices: &[DeviceSummary]) -> String {
    let rows: Vec<Vec<String>> = devices
        .iter()
        .map(|d| {
            vec![
                d.device.id.to_string(),
                d.email.clone(),
                d.device.name.clone(),
                d.device.os.clone(),
                d.device.app_version.clone(),
                d.device.last_ip.clone().unwrap_or_else(|| "-".into()),
                when(d.device.last_access),
                d.live_sessions.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "USER",
            "NAME",
            "OS",
            "VERSION",
            "LAST IP",
            "LAST SEEN",
            "SESSIONS",
        ],
        &rows,
    )
}

/// A workspace as `--json` prints it.
pub fn workspace_json(w: &WorkspaceSummary) -> Value {
    json!({
        "id": w.id.to_string(),
        "owner": w.owner.to_string(),
        "owner_email": w.owner_email,
        "name": w.name,
        "shared": w.is_shared,
        "encryption": w.encryption.as_str(),
        "container": w.container,
        "latest_revision": w.latest_revision,
        "member_count": w.members,
        "live_items": w.live_items,
        "logical_bytes": w.logical_bytes,
        "stored_objects": w.stored_objects,
        "stored_bytes": w.stored_bytes,
    })
}

/// Workspaces as a table.
pub fn workspace_table(workspaces: &[WorkspaceSummary]) -> String {
    let rows: Vec<Vec<String>> = workspaces
        .iter()
        .map(|w| {
            vec![
                w.id.to_string(),
                w.owner_email.clone(),
                w.name.clone(),
                if w.is_shared { "shared" } else { "private" }.into(),
                w.encryption.as_str().into(),
                w.members.to_string(),
                w.live_items.to_string(),
                human_bytes(w.logical_bytes),
                human_bytes(w.stored_bytes),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "OWNER",
            "NAME",
            "KIND",
            "ENCRYPTION",
            "MEMBERS",
            "ITEMS",
            "LOGICAL",
            "STORED",
        ],
        &rows,
    )
}

/// Runs `admin device ...`.
pub async fn device(service: &Service, what: DeviceCommand, json: bool) -> anyhow::Result<()> {
    match what {
        DeviceCommand::List { user } => {
            let user = match user {
                Some(email) => Some(service.user_id(&email).await?),
                None => None,
            };
            let devices = service.store().admin_devices(user).await?;
            emit(json, devices.iter().map(device_json).collect(), || {
                device_table(&devices)
            });
        }
        DeviceCommand::Revoke { device_id } => {
            let id: DeviceId = device_id
                .parse()
                .ok()
                .with_context(|| format!("{device_id:?} is not a device id"))?;
            let device = service
                .store()
                .device(id)
                .await?
                .with_context(|| format!("no device {id}"))?;
            let ended = service
                .sign_out_device(device.user, id)
                .await
                .with_context(|| format!("signing device {id} out"))?;
            emit(
                json,
                json!({"device": id.to_string(), "user": device.user.to_string(), "ended_sessions": ended}),
                || {
                    format!(
                        "device {id} ({}) signed out; {ended} session(s) ended",
                        device.name
                    )
                },
            );
        }
    }
    Ok(())
}

/// Runs `admin workspace ...`.
pub async fn workspace(
    service: &Service,
    what: WorkspaceCommand,
    json: bool,
) -> anyhow::Result<()> {
    match what {
        WorkspaceCommand::List { user } => {
            let user = match user {
                Some(email) => Some(service.user_id(&email).await?),
                None => None,
            };
            let workspaces = service.store().admin_workspaces(user).await?;
            emit(
                json,
                workspaces.iter().map(workspace_json).collect(),
                || workspace_table(&workspaces),
            );
        }
        WorkspaceCommand::Show { id } => {
            let ws: WorkspaceId = id
                .parse()
                .ok()
                .with_context(|| format!("{id:?} is not a workspace id"))?;
            let w = service.store().admin_workspace(ws).await?;
            let members = service.store().members(ws).await?;
            let mut value = workspace_json(&w);
            value["members"] = members
                .iter()
                .map(|m| {
                    json!({
                        "user": m.user.to_string(),
                        "email": m.email,
                        "name": m.name,
                        "owner": m.is_owner,
                        "read_only": m.read_only,
                        "joined_at": m.joined_at,
                    })
                })
                .collect();
            emit(json, value, || {
                let mut out = format!(
                    "workspace {}\n  name: {}\n  owner: {}\n  kind: {}\n  encryption: {}\n  \
                     container: {}\n  revision: {}\n  live items: {}\n  bytes: {} logical, {} stored in {} object(s)\n",
                    w.id,
                    w.name,
                    w.owner_email,
                    if w.is_shared { "shared" } else { "private" },
                    w.encryption.as_str(),
                    w.container,
                    w.latest_revision,
                    w.live_items,
                    human_bytes(w.logical_bytes),
                    human_bytes(w.stored_bytes),
                    w.stored_objects,
                );
                out.push_str(&format!("\nmembers ({}):\n", members.len()));
                let rows: Vec<Vec<String>> = members
                    .iter()
                    .map(|m| {
                        vec![
                            m.email.clone(),
                            m.name.clone(),
                            if m.is_owner { "owner" } else { "member" }.into(),
                            if m.read_only {
                                "read-only"
                            } else {
                                "read-write"
                            }
                            .into(),
                            when(m.joined_at),
                        ]
                    })
                    .collect();
                out.push_str(&table(
                    &["EMAIL", "NAME", "ROLE", "ACCESS", "JOINED"],
                    &rows,
                ));
                out
            });
        }
    }
    Ok(())
}

/// Runs `admin stats`.
pub async fn stats(service: &Service, json: bool) -> anyhow::Result<()> {
    let s = service.store().installation_stats().await?;
    let ratio = s.dedup_ratio();
    emit(
        json,
        json!({
            "users": s.users,
            "devices": s.devices,
            "workspaces": s.workspaces,
            "live_items": s.live_items,
            "versions": s.versions,
            "stored_objects": s.stored_objects,
            "stored_bytes": s.stored_bytes,
            "logical_bytes": s.logical_bytes,
            "dedup_ratio": ratio,
        }),
        || {
            format!(
                "users: {}\ndevices: {}\nworkspaces: {}\nlive items: {}\nversions: {}\n\
                 stored: {} in {} object(s) (object ledger)\nlogical: {} (latest versions of live files)\n\
                 dedup ratio: {}",
                s.users,
                s.devices,
                s.workspaces,
                s.live_items,
                s.versions,
                human_bytes(s.stored_bytes),
                s.stored_objects,
                human_bytes(s.logical_bytes),
                ratio.map_or_else(|| "-".into(), |r| format!("{r:.2}")),
            )
        },
    );
    Ok(())
}
