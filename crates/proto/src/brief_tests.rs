use super::*;
use crate::ids::{ChunkId, ContentHash, ItemId};
use crate::item::{ChunkRef, ItemName, PackSpan};
use crate::wire;

fn proposal(name: &str, status: ItemStatus, version: u64) -> ProposedItem {
    ProposedItem {
        id: ItemId::new(),
        parent: None,
        name: ItemName::new(name).unwrap(),
        is_folder: false,
        mimetype: None,
        status,
        version,
        content_hash: Some(ContentHash([7; 32])),
        size: 3,
        client_modified: 1_700_000_000_000,
        chunks: vec![ChunkRef {
            id: ChunkId([9; 32]),
            size: 3,
            span: Some(PackSpan::new(ChunkId([1; 32]), 0, 40).unwrap()),
        }],
        record: None,
    }
}

fn committed(
    request: &CommitRequest,
    p: &ProposedItem,
    status: ItemStatus,
    revision: u64,
) -> ItemCommitResult {
    ItemCommitResult {
        id: p.id,
        version: p.version,
        outcome: CommitOutcome::Committed {
            meta: p.committed(
                request.workspace,
                request.device,
                status,
                revision,
                1_800_000_000_000,
            ),
        },
    }
}

/// A commit of four proposals: one stored as is, one whose status the
/// service normalized, one stored with another chunk location, one in
/// conflict.
fn case() -> (CommitRequest, CommitResult) {
    let request = CommitRequest {
        workspace: WorkspaceId::new(),
        device: DeviceId::new(),
        items: vec![
            proposal("a", ItemStatus::New, 1),
            proposal("b", ItemStatus::Changed, 2),
            proposal("c", ItemStatus::New, 1),
            proposal("d", ItemStatus::Changed, 5),
        ],
    };
    let it = &request.items;
    let mut relocated = committed(&request, &it[2], ItemStatus::New, 12);
    if let CommitOutcome::Committed { meta } = &mut relocated.outcome {
        meta.chunks[0].span = Some(PackSpan::new(ChunkId([2; 32]), 100, 40).unwrap());
    }
    let current = it[3].committed(
        request.workspace,
        DeviceId::new(),
        ItemStatus::Changed,
        3,
        5,
    );
    let result = CommitResult {
        workspace: request.workspace,
        device: request.device,
        results: vec![
            committed(&request, &it[0], ItemStatus::New, 10),
            committed(&request, &it[1], ItemStatus::Renamed, 11),
            relocated,
            ItemCommitResult {
                id: it[3].id,
                version: 5,
                outcome: CommitOutcome::Conflict { current },
            },
        ],
        revision: 12,
    };
    (request, result)
}

#[test]
fn only_what_the_proposal_rebuilds_is_left_out() {
    let (request, result) = case();
    let brief = shorten(&request, result.clone());
    assert!(matches!(
        brief.results[0],
        BriefItem::Accepted {
            revision: 10,
            status: None,
            ..
        }
    ));
    assert!(matches!(
        brief.results[1],
        BriefItem::Accepted {
            revision: 11,
            status: Some(ItemStatus::Renamed),
            ..
        }
    ));
    assert!(
        matches!(brief.results[2], BriefItem::Full(_)),
        "another location travels in full"
    );
    assert!(
        matches!(brief.results[3], BriefItem::Full(_)),
        "a conflict travels in full"
    );
    assert_eq!(expand(&request, brief).unwrap(), result);
}

#[test]
fn brief_replies_go_only_to_peers_that_read_them_and_survive_the_wire() {
    let (request, result) = case();
    let rpc = Request::Commit(request.clone());
    let response = || RpcResponse {
        request_id: uuid::Uuid::nil(),
        result: Ok(Reply::Commit(result.clone())),
    };
    let old = shorten_response(&rpc, response(), wire::Peer::default());
    assert_eq!(old, response(), "an old peer gets the full result");

    let short = shorten_response(&rpc, response(), wire::Peer::CURRENT);
    let full_bytes = wire::encode(&response());
    let short_bytes = wire::encode(&short);
    assert!(short_bytes.len() < full_bytes.len());
    let back: RpcResponse = wire::decode(&wire::encode_for(&short, wire::Peer::CURRENT)).unwrap();
    let reply = expand_reply(&rpc, back.result.unwrap()).unwrap();
    assert_eq!(reply, Reply::Commit(result));
}

#[test]
fn a_brief_reply_that_does_not_fit_its_request_is_an_error() {
    let (request, result) = case();
    let mut brief = shorten(&request, result);
    brief.results.pop();
    assert!(expand(&request, brief.clone()).is_err());
    assert!(expand_reply(&Request::GetAccount, Reply::CommitBrief(brief)).is_err());
    // Results that do not line up with the request are never shortened.
    let (request, mut result) = case();
    result.results.pop();
    let brief = shorten(&request, result);
    assert!(
        brief
            .results
            .iter()
            .all(|r| matches!(r, BriefItem::Full(_)))
    );
}
