//! Brief commit replies. A device that commits knows everything about the
//! versions it proposed except what the service adds: the revision, the
//! server's time and, when the service normalized it, the status. When a
//! committed version is exactly the proposal plus those three, the reply
//! says only them ([`BriefItem::Accepted`]) instead of echoing the whole
//! metadata back; anything else (a conflict, a refusal, a chunk location
//! the service chose) travels in full. The device rebuilds the full
//! [`CommitResult`] from its own request ([`expand`]), so what the engine
//! sees is the same either way.
//!
//! Only peers that read compact messages ([`crate::wire::Peer`]) receive
//! brief replies; the transports shorten ([`shorten_response`]) and expand
//! ([`expand_reply`]), the service never sees them.

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::error::Error;
use crate::ids::{DeviceId, WorkspaceId};
use crate::item::{
    CommitOutcome, CommitRequest, CommitResult, ItemCommitResult, ItemMeta, ItemStatus,
    ProposedItem,
};
use crate::rpc::{Reply, Request, RpcResponse};
use crate::wire::Peer;

/// A [`CommitResult`] with its accepted proposals left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BriefCommitResult {
    pub workspace: WorkspaceId,
    pub device: DeviceId,
    /// The workspace revision after the commit.
    pub revision: u64,
    /// One per proposed item, in the request's order.
    pub results: Vec<BriefItem>,
}

/// The result for one proposed item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BriefItem {
    /// Committed exactly as proposed, with these additions.
    #[serde(rename = "a")]
    Accepted {
        #[serde(rename = "r")]
        revision: u64,
        #[serde(rename = "t")]
        server_modified: Millis,
        /// The stored status, when it is not the proposed one.
        #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
        status: Option<ItemStatus>,
    },
    /// Anything else, in full.
    #[serde(rename = "f")]
    Full(Box<ItemCommitResult>),
}

impl ProposedItem {
    /// The version this proposal becomes when the service stores it as is.
    pub fn committed(
        &self,
        workspace: WorkspaceId,
        device: DeviceId,
        status: ItemStatus,
        revision: u64,
        server_modified: Millis,
    ) -> ItemMeta {
        ItemMeta {
            id: self.id,
            workspace,
            parent: self.parent,
            name: self.name.clone(),
            is_folder: self.is_folder,
            mimetype: self.mimetype.clone(),
            status,
            version: self.version,
            content_hash: self.content_hash,
            size: self.size,
            client_modified: self.client_modified,
            server_modified,
            device,
            revision,
            chunks: self.chunks.clone(),
            record: self.record.clone(),
        }
    }
}

/// `result`, the answer to `request`, made brief: each committed version
/// the proposal and the additions rebuild exactly is left out.
pub fn shorten(request: &CommitRequest, result: CommitResult) -> BriefCommitResult {
    let aligned = request.items.len() == result.results.len();
    let results = result
        .results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let proposal = request.items.get(i).filter(|_| aligned);
            match (proposal, &r.outcome) {
                (Some(p), CommitOutcome::Committed { meta })
                    if p.id == r.id
                        && p.version == r.version
                        && *meta
                            == p.committed(
                                request.workspace,
                                request.device,
                                meta.status,
                                meta.revision,
                                meta.server_modified,
                            ) =>
                {
                    BriefItem::Accepted {
                        revision: meta.revision,
                        server_modified: meta.server_modified,
                        status: (meta.status != p.status).then_some(meta.status),
                    }
                }
                _ => BriefItem::Full(Box::new(r)),
            }
        })
        .collect();
    BriefCommitResult {
        workspace: result.workspace,
        device: result.device,
        revision: result.revision,
        results,
    }
}

/// The full result that `brief` stands for, rebuilt from `request`.
pub fn expand(request: &CommitRequest, brief: BriefCommitResult) -> Result<CommitResult, Error> {
    if brief.results.len() != request.items.len() {
        return Err(Error::internal(format!(
            "a brief reply to a commit of {} items holds {} results",
            request.items.len(),
            brief.results.len()
        )));
    }
    let results = request
        .items
        .iter()
        .zip(brief.results)
        .map(|(p, r)| match r {
            BriefItem::Full(full) => *full,
            BriefItem::Accepted {
                revision,
                server_modified,
                status,
            } => ItemCommitResult {
                id: p.id,
                version: p.version,
                outcome: CommitOutcome::Committed {
                    meta: p.committed(
                        request.workspace,
                        request.device,
                        status.unwrap_or(p.status),
                        revision,
                        server_modified,
                    ),
                },
            },
        })
        .collect();
    Ok(CommitResult {
        workspace: brief.workspace,
        device: brief.device,
        results,
        revision: brief.revision,
    })
}

/// The answer to `request` as it goes to `peer`: a commit's result brief
/// when the peer reads it, anything else unchanged.
pub fn shorten_response(request: &Request, response: RpcResponse, peer: Peer) -> RpcResponse {
    match (request, response.result) {
        (Request::Commit(commit), Ok(Reply::Commit(result))) if peer.reads_compact() => {
            RpcResponse {
                request_id: response.request_id,
                result: Ok(Reply::CommitBrief(shorten(commit, result))),
            }
        }
        (_, result) => RpcResponse {
            request_id: response.request_id,
            result,
        },
    }
}

/// `reply` to `request` with a brief commit result expanded; anything else
/// unchanged.
pub fn expand_reply(request: &Request, reply: Reply) -> Result<Reply, Error> {
    match (request, reply) {
        (Request::Commit(commit), Reply::CommitBrief(brief)) => {
            Ok(Reply::Commit(expand(commit, brief)?))
        }
        (_, Reply::CommitBrief(_)) => Err(Error::internal(
            "a brief commit result answered a request that was not a commit",
        )),
        (_, other) => Ok(other),
    }
}

#[cfg(test)]
#[path = "brief_tests.rs"]
mod tests;
