//! What a workspace's encryption setting allows, in one place: proposals,
//! restores and shares are checked here against the setting before the
//! metadata store applies anything.
//!
//! * End-to-end encrypted (`EncryptionMode::ClientSide`): every proposed
//!   version carries the record its writer sealed; its name on the server
//!   is its id ([`ProposedItem::sealed_name`]) and it has no MIME type, so
//!   the server never learns a name or a type. The server cannot restore a
//!   version there (it cannot seal a record): a client restores by
//!   committing the old content under a new record of its own.
//! * Plain and server-side encryption: no version carries a record (none
//!   of the workspace's members could open one).
//! * Sharing: the server never shares a folder of an end-to-end encrypted
//!   workspace (its members' keys are the clients'; encrypted sharing of
//!   existing files is client-driven and not built yet), and a share that
//!   is to be end-to-end encrypted must start from an empty folder: the
//!   server would otherwise move items whose names and contents it holds
//!   in plain text into a workspace where nothing may be plain. Nor does
//!   it move an end-to-end encrypted shared folder back into its owner's
//!   workspace when its last member leaves ([`may_move_back`]).
//!
//! A refused proposal is refused alone, as the commit rules refuse one
//! (`CommitOutcome::Refused`), and the rest of its batch is applied, under
//! the very setting it was checked against (`MetaStore::commit_in_mode`
//! refuses the batch if the setting changed meanwhile).

use stacksync_proto::{
    CommitOutcome, CommitRequest, CommitResult, EncryptionMode, Error, ItemCommitResult, ItemId,
    ProposedItem, Workspace,
};

use crate::Service;
use crate::error::ServiceError;

/// Why `p` may not be committed to `ws` as it is, if it may not.
pub(crate) fn check_proposal(ws: &Workspace, p: &ProposedItem) -> Result<(), Error> {
    let refuse = |why: String| Err(Error::bad_request(format!("item {}: {why}", p.id)));
    match ws.encryption {
        EncryptionMode::ClientSide => {
            if p.record.is_none() {
                return refuse(format!(
                    "workspace {} is end-to-end encrypted: every version carries its sealed \
                     record",
                    ws.id
                ));
            }
            // The name itself is left out of the message: it may be the
            // very thing the client meant to keep from the server.
            if p.name != ProposedItem::sealed_name(p.id) {
                return refuse(format!(
                    "workspace {} is end-to-end encrypted: an item's name on the server is its \
                     id, and its real name goes in its sealed record",
                    ws.id
                ));
            }
            if p.mimetype.is_some() {
                return refuse(format!(
                    "workspace {} is end-to-end encrypted: a version has no MIME type on the \
                     server",
                    ws.id
                ));
            }
            Ok(())
        }
        EncryptionMode::Plain | EncryptionMode::ServerSide => match p.record {
            Some(_) => refuse(format!(
                "workspace {} is not end-to-end encrypted: a version there carries no sealed \
                 record",
                ws.id
            )),
            None => Ok(()),
        },
    }
}

/// Refuses a restore by the server where it cannot make the version.
pub(crate) fn check_restore(ws: &Workspace) -> Result<(), Error> {
    if ws.encryption == EncryptionMode::ClientSide {
        return Err(Error::bad_request(format!(
            "workspace {} is end-to-end encrypted: the server cannot restore a version there \
             (it cannot seal the version's record); restore by committing the old content as \
             a new version",
            ws.id
        )));
    }
    Ok(())
}

/// Refuses sharing a folder of `source` under the setting `shared` (the
/// one the shared workspace would get) where the server cannot do it
/// safely; `folder_has_items` says whether anything would move with it.
pub(crate) fn check_share(
    source: &Workspace,
    shared: EncryptionMode,
    folder_has_items: bool,
) -> Result<(), Error> {
    if source.encryption == EncryptionMode::ClientSide {
        return Err(Error::bad_request(format!(
            "workspace {} is end-to-end encrypted: the server cannot share its folders \
             (encrypted sharing is done by the clients, and is not built yet)",
            source.id
        )));
    }
    if shared == EncryptionMode::ClientSide && folder_has_items {
        return Err(Error::bad_request(
            "an end-to-end encrypted share starts from an empty folder: the files in this one \
             are stored readable by the server, which would move them as they are (encrypting \
             existing files for a share is done by the clients, and is not built yet)",
        ));
    }
    Ok(())
}

/// Whether the items of the shared workspace `shared` may move back into
/// its owner's `private` one when its last member leaves. Not when either
/// is end-to-end encrypted: sealed items would land where they cannot be
/// read (another workspace's keys, or a workspace that takes no records),
/// or plain ones where nothing may be plain. Such a workspace stays its
/// owner's alone.
pub(crate) fn may_move_back(shared: &Workspace, private: &Workspace) -> bool {
    shared.encryption != EncryptionMode::ClientSide
        && private.encryption != EncryptionMode::ClientSide
}

impl Service {
    /// [`check_share`] for `folder` of `source`, looking into the folder
    /// only when it matters.
    pub(crate) async fn check_share_encryption(
        &self,
        source: &Workspace,
        folder: ItemId,
        shared: EncryptionMode,
    ) -> Result<(), ServiceError> {
        let has_items = shared == EncryptionMode::ClientSide
            && self.store().folder_has_items(source.id, folder).await?;
        Ok(check_share(source, shared, has_items)?)
    }
}

/// A batch split by [`check_proposal`]: what may go to the store, and the
/// refusals to put back in their places in the reply.
pub(crate) struct Screened {
    /// The proposals that passed, in order, as one request.
    pub passed: CommitRequest,
    /// For each proposal of the original batch, its refusal if refused.
    refused: Vec<Option<ItemCommitResult>>,
}

impl Screened {
    /// Splits `commit` for workspace `ws`. A batch larger than the store
    /// takes goes on whole, for the store to refuse whole.
    pub fn new(ws: &Workspace, commit: CommitRequest) -> Screened {
        if commit.items.len() > CommitRequest::MAX_ITEMS {
            return Screened {
                refused: Vec::new(),
                passed: commit,
            };
        }
        let CommitRequest {
            workspace,
            device,
            items,
        } = commit;
        let mut passed = Vec::with_capacity(items.len());
        let mut refused = Vec::with_capacity(items.len());
        for p in items {
            match check_proposal(ws, &p) {
                Ok(()) => {
                    refused.push(None);
                    passed.push(p);
                }
                Err(error) => refused.push(Some(ItemCommitResult {
                    id: p.id,
                    version: p.version,
                    outcome: CommitOutcome::Refused { error },
                })),
            }
        }
        Screened {
            passed: CommitRequest {
                workspace,
                device,
                items: passed,
            },
            refused,
        }
    }

    /// The reply to the original batch: the store's `result` for the
    /// proposals that passed, each refusal in its place.
    pub fn merge(self, result: CommitResult) -> Result<CommitResult, Error> {
        if self.refused.iter().all(Option::is_none) {
            return Ok(result);
        }
        if result.results.len() != self.passed.items.len() {
            return Err(Error::internal(format!(
                "a commit of {} items returned {} results",
                self.passed.items.len(),
                result.results.len()
            )));
        }
        let mut stored = result.results.into_iter();
        let results = self
            .refused
            .into_iter()
            // Counted above: one stored result per proposal that passed.
            .filter_map(|refusal| refusal.or_else(|| stored.next()))
            .collect();
        Ok(CommitResult { results, ..result })
    }
}
