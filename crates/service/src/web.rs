//! The website's own operations beyond the REST API: signing a browser in
//! and out, and the devices page (the user's desktop devices, browser
//! sessions and apps, each of which can be signed out).

use std::net::IpAddr;

use stacksync_metastore::{LiveSession, Revocation, SessionKind};
use stacksync_proto::{Device, Error, Millis, UserId};

use crate::error::ServiceError;
use crate::{Service, Session};

/// Length of a session's public id (a prefix of its token's hash): enough
/// to tell a user's sessions apart, useless to anyone else.
const SESSION_ID_LEN: usize = 16;

/// A session as the devices page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    /// Its public id (a prefix of the token's hash).
    pub id: String,
    /// A browser (true) or a desktop device.
    pub web: bool,
    /// A browser's description.
    pub label: String,
    /// The desktop device it registered, if any.
    pub device: Option<Device>,
    /// When it was opened (milliseconds since the epoch).
    pub created_at: Millis,
    /// When it ends.
    pub expires_at: Millis,
    /// Whether it is the session asking.
    pub current: bool,
}

fn public_id(token_hash: &str) -> String {
    token_hash.chars().take(SESSION_ID_LEN).collect()
}

fn to_proto(e: impl Into<ServiceError>) -> Error {
    e.into().to_proto()
}

impl Service {
    /// Checks a password through the one throttled check and opens a
    /// browser session labelled `label` (from the `User-Agent`).
    pub async fn web_sign_in(
        &self,
        email: &str,
        password: &str,
        peer: Option<IpAddr>,
        label: &str,
    ) -> Result<Session, Error> {
        let user = self.check_password(email, password, peer).await?;
        self.open_session_of(user, SessionKind::Web, label)
            .await
            .map_err(to_proto)
    }

    /// `user`'s live sessions, newest first, with the devices they
    /// registered; `current_token_hash` marks the one asking.
    pub async fn web_sessions(
        &self,
        user: UserId,
        current_token_hash: &str,
    ) -> Result<Vec<SessionView>, Error> {
        let sessions = self.store().live_sessions(user).await.map_err(to_proto)?;
        let devices = self.store().devices_of(user).await.map_err(to_proto)?;
        Ok(sessions
            .into_iter()
            .map(|s: LiveSession| SessionView {
                id: public_id(&s.token_hash),
                web: s.kind == SessionKind::Web,
                device: s
                    .device
                    .and_then(|d| devices.iter().find(|dev| dev.id == d).cloned()),
                label: s.label,
                created_at: s.created_at,
                expires_at: s.expires_at,
                current: s.token_hash == current_token_hash,
            })
            .collect())
    }

    /// Ends `user`'s session whose public id is `id` (a browser, or every
    /// session of a desktop device); `NotFound` when no session of theirs
    /// has it. Returns how many sessions ended.
    pub async fn web_sign_out_session(&self, user: UserId, id: &str) -> Result<u64, Error> {
        if id.len() != SESSION_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::not_found("no such session"));
        }
        let sessions = self.store().live_sessions(user).await.map_err(to_proto)?;
        let Some(target) = sessions.iter().find(|s| public_id(&s.token_hash) == id) else {
            return Err(Error::not_found("no such session"));
        };
        match target.device {
            Some(device) => self.sign_out_device(user, device).await,
            None => {
                self.revoke_sessions(user, Revocation::Only(&target.token_hash))
                    .await
            }
        }
    }
}

impl Service {
    /// The invitations waiting for `user`'s answer, oldest first.
    pub async fn api_invitations(
        &self,
        user: UserId,
    ) -> Result<Vec<stacksync_proto::Invitation>, Error> {
        self.store()
            .pending_invitations(user, stacksync_proto::rpc::Reply::MAX_INVITATIONS)
            .await
            .map_err(to_proto)
    }

    /// Accepts or declines an invitation waiting for `user`. An end-to-end
    /// encrypted folder is accepted on a device, which holds the keys.
    pub async fn api_answer_invitation(
        &self,
        user: UserId,
        proposal: uuid::Uuid,
        accept: bool,
    ) -> Result<(), Error> {
        // Someone else's invitation, an answered one and none at all look
        // the same: not found.
        let pending = self.api_invitations(user).await?;
        let Some(invitation) = pending.iter().find(|i| i.proposal == proposal) else {
            return Err(Error::not_found("no such invitation"));
        };
        if accept && invitation.encryption == stacksync_proto::EncryptionMode::ClientSide {
            return Err(Error::forbidden(
                "this folder is end-to-end encrypted: accept it on a desktop device, \
                 which holds your keys",
            ));
        }
        self.answer_share_proposal(user, proposal, accept)
            .await
            .map(drop)
            .map_err(to_proto)
    }

    /// `user`'s shared folders (their own and others'), with their members.
    pub async fn api_shared_folders(
        &self,
        user: UserId,
    ) -> Result<Vec<(stacksync_proto::Workspace, Vec<stacksync_proto::Member>)>, Error> {
        let all = self.store().workspaces_of(user).await.map_err(to_proto)?;
        let mut out = Vec::new();
        for ws in all.into_iter().filter(|w| w.is_shared) {
            let members = self.store().members(ws.id).await.map_err(to_proto)?;
            out.push((ws, members));
        }
        Ok(out)
    }
}
