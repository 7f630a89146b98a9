//! Fuzzing entry points for what this crate decodes from a peer's bytes:
//! wire envelopes (plain, compact, compressed) holding requests, replies
//! and notifications, and brief commit replies. They must never panic,
//! whatever the input, and check with `assert!` what a decoder promises;
//! the `fuzz/` cargo-fuzz project and `tests/fuzz.rs` both call them.

use std::io::Read;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::account::{EncryptionMode, Workspace};
use crate::brief::{self, BriefCommitResult};
use crate::error::Error;
use crate::ids::{ChunkId, ContentHash, DeviceId, ItemId, UserId, WorkspaceId};
use crate::item::{
    ChangesPage, ChunkRef, CommitOutcome, CommitRequest, CommitResult, ItemCommitResult, ItemName,
    ItemStatus, PackSpan, ProposedItem,
};
use crate::notify::Notification;
use crate::rpc::{Reply, Request, RpcRequest, RpcResponse};
use crate::wire::{self, MAX_MESSAGE_BYTES, Peer};
use crate::wire_dictionary::DICTIONARY;

/// Decodes `data` as every message type that travels in an envelope
/// (request, response, notification) and checks each one accepted:
/// encoding it again in every form decodes to the same value, and a
/// compressed message never held more than [`MAX_MESSAGE_BYTES`].
/// Returns how many types accepted it.
pub fn wire_message(data: &[u8]) -> usize {
    let accepted = [
        decodes_stably::<RpcRequest>(data),
        decodes_stably::<RpcResponse>(data),
        decodes_stably::<Notification>(data),
    ];
    let n = accepted.iter().filter(|a| **a).count();
    if n > 0 && wire::is_compressed(data) {
        assert_inflated_within_cap(data);
    }
    n
}

/// Decodes `data` as a notification, as every transport does with what a
/// notification socket or queue delivers; checks it as [`wire_message`].
pub fn notification(data: &[u8]) -> bool {
    let ok = decodes_stably::<Notification>(data);
    if ok && wire::is_compressed(data) {
        assert_inflated_within_cap(data);
    }
    ok
}

/// `data` as `T`; when accepted, the value survives every encoding.
fn decodes_stably<T>(data: &[u8]) -> bool
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let Ok((value, peer)) = wire::decode_from::<T>(data) else {
        return false;
    };
    if wire::is_compressed(data) {
        assert!(peer.reads_compact(), "a compressed sender reads compact");
    }
    let plain = wire::encode(&value);
    assert!(!wire::is_compressed(&plain));
    let (again, plain_peer) = wire::decode_from::<T>(&plain).expect("our own encoding decodes");
    assert_eq!(again, value, "decode(encode(x)) != x");
    assert_eq!(
        plain_peer,
        Peer::default(),
        "encode says nothing of its reader"
    );
    for to in [Peer::default(), Peer::CURRENT] {
        let bytes = wire::encode_for(&value, to);
        assert!(to.reads_compact() || !wire::is_compressed(&bytes));
        let (again, from) = wire::decode_from::<T>(&bytes).expect("our own encoding decodes");
        assert_eq!(again, value, "decode(encode_for(x)) != x");
        assert_eq!(from, Peer::CURRENT, "encode_for says what this side reads");
    }
    true
}

/// The envelope inside an accepted compressed message is what its header
/// declares, and never more than the cap: inflated here independently,
/// reading at most one byte past the cap.
fn assert_inflated_within_cap(data: &[u8]) {
    assert!(
        data.len() >= 6 && data[..2] == [0, b'Z'],
        "accepted a bad header"
    );
    let declared = u32::from_le_bytes([data[2], data[3], data[4], data[5]]) as usize;
    assert!(
        declared <= MAX_MESSAGE_BYTES,
        "accepted a declared length over the cap"
    );
    let mut inflated = Vec::new();
    let read = zstd::stream::read::Decoder::with_dictionary(&data[6..], DICTIONARY).and_then(|d| {
        d.take(MAX_MESSAGE_BYTES as u64 + 1)
            .read_to_end(&mut inflated)
    });
    assert!(read.is_ok(), "accepted a frame that does not inflate");
    assert_eq!(
        inflated.len(),
        declared,
        "accepted a frame that lies about its length"
    );
}

/// Splits `data` into a request and a reply (the first two bytes, little
/// endian, say how long the request is) and plays the brief commit reply
/// protocol on them: a brief reply expands only for a commit, to as many
/// results as it proposed; a full reply shortened and expanded again is
/// itself, and so is a reply that went through the wire in between.
/// Returns whether a commit result came out.
pub fn brief_reply(data: &[u8]) -> bool {
    let (request, reply) = split(data);
    let Ok(request) = wire::decode::<RpcRequest>(request) else {
        return false;
    };
    let Ok(response) = wire::decode::<RpcResponse>(reply) else {
        return false;
    };
    let Ok(reply) = response.result.clone() else {
        return false;
    };
    let request = request.request;
    let expanded = brief::expand_reply(&request, reply.clone());
    let commit = match &request {
        Request::Commit(c) => c,
        _ => {
            match (&reply, &expanded) {
                (Reply::CommitBrief(_), Ok(_)) => panic!("a brief reply answered a non-commit"),
                (Reply::CommitBrief(_), Err(_)) => {}
                (other, Ok(same)) => assert_eq!(same, other, "expand_reply changed a reply"),
                (_, Err(e)) => panic!("expand_reply refused a plain reply: {e}"),
            }
            return false;
        }
    };
    let full = match expanded {
        Ok(Reply::Commit(full)) => full,
        Ok(other) => {
            assert!(!matches!(reply, Reply::CommitBrief(_)));
            assert_eq!(other, reply, "expand_reply changed a reply");
            return false;
        }
        Err(_) => {
            if let Reply::CommitBrief(b) = &reply {
                assert_ne!(
                    b.results.len(),
                    commit.items.len(),
                    "refused a well-sized brief reply"
                );
            }
            return false;
        }
    };
    if let Reply::CommitBrief(b) = &reply {
        assert_eq!(full.results.len(), commit.items.len());
        assert_eq!(b.results.len(), full.results.len());
    }
    // Shortening then expanding is the identity, on the wire or not.
    let brief_result = brief::shorten(commit, full.clone());
    assert_eq!(brief_result.results.len(), full.results.len());
    if full.results.len() == commit.items.len() {
        let back = brief::expand(commit, brief_result.clone()).expect("a brief of the right size");
        assert_eq!(back, full, "expand(shorten(x)) != x");
        let sent = brief::shorten_response(
            &request,
            RpcResponse {
                request_id: response.request_id,
                result: Ok(Reply::Commit(full.clone())),
            },
            Peer::CURRENT,
        );
        let bytes = wire::encode_for(&sent, Peer::CURRENT);
        let received: RpcResponse = wire::decode(&bytes).expect("our own encoding decodes");
        let reply = received.result.expect("sent as Ok");
        assert!(matches!(reply, Reply::CommitBrief(_)));
        let back = brief::expand_reply(&request, reply).expect("our own brief reply expands");
        assert_eq!(
            back,
            Reply::Commit(full),
            "brief reply over the wire changed"
        );
    } else {
        assert!(brief::expand(commit, brief_result).is_err());
    }
    true
}

fn split(data: &[u8]) -> (&[u8], &[u8]) {
    if data.len() < 2 {
        return (data, &[]);
    }
    let n = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    data[2..].split_at(n)
}

/// Joins a request and a reply as [`brief_reply`] reads them.
pub fn join(request: &[u8], reply: &[u8]) -> Vec<u8> {
    let n = u16::try_from(request.len()).unwrap_or(u16::MAX);
    let mut out = n.to_le_bytes().to_vec();
    out.extend_from_slice(request);
    out.extend_from_slice(reply);
    out
}

/// Writes `seeds` as files into the folder `STACKSYNC_FUZZ_SEEDS` names,
/// if it is set (`scripts/fuzz` sets it to a target's corpus): called once
/// by each libFuzzer target before it reads its corpus.
pub fn write_seeds(seeds: &[Vec<u8>]) {
    let Some(dir) = std::env::var_os("STACKSYNC_FUZZ_SEEDS") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    // Written again on every run: some seeds hold keys made afresh by
    // each process (the vault's identities), which only it can open.
    for (i, seed) in seeds.iter().enumerate() {
        let _ = std::fs::write(dir.join(format!("seed-{i:03}")), seed);
    }
}

fn id(n: u8) -> ChunkId {
    ChunkId([n; 32])
}

fn uuid(n: u64) -> uuid::Uuid {
    uuid::Uuid::from_u64_pair(0x0123_4567_89ab_cdef, n)
}

fn proposal(n: u64, status: ItemStatus, version: u64) -> ProposedItem {
    ProposedItem {
        id: ItemId(uuid(n)),
        parent: None,
        name: ItemName::new(format!("file {n}.txt")).expect("a valid name"),
        is_folder: false,
        mimetype: None,
        status,
        version,
        content_hash: Some(ContentHash([7; 32])),
        size: 3,
        client_modified: 1_700_000_000_000,
        chunks: vec![ChunkRef {
            id: id(9),
            size: 3,
            span: Some(PackSpan::new(id(1), 40, 40).expect("in range")),
        }],
        record: None,
    }
}

/// A commit of three proposals and its result: one stored as proposed,
/// one with its status normalized, one in conflict.
pub fn sample_commit() -> (CommitRequest, CommitResult) {
    let request = CommitRequest {
        workspace: WorkspaceId(uuid(100)),
        device: DeviceId(uuid(101)),
        items: vec![
            proposal(1, ItemStatus::New, 1),
            proposal(2, ItemStatus::Changed, 2),
            proposal(3, ItemStatus::Changed, 5),
        ],
    };
    let meta = |p: &ProposedItem, status| {
        p.committed(
            request.workspace,
            request.device,
            status,
            8,
            1_800_000_000_000,
        )
    };
    let results = vec![
        ItemCommitResult {
            id: request.items[0].id,
            version: 1,
            outcome: CommitOutcome::Committed {
                meta: meta(&request.items[0], ItemStatus::New),
            },
        },
        ItemCommitResult {
            id: request.items[1].id,
            version: 2,
            outcome: CommitOutcome::Committed {
                meta: meta(&request.items[1], ItemStatus::Renamed),
            },
        },
        ItemCommitResult {
            id: request.items[2].id,
            version: 5,
            outcome: CommitOutcome::Conflict {
                current: meta(&request.items[2], ItemStatus::Changed),
            },
        },
    ];
    let result = CommitResult {
        workspace: request.workspace,
        device: request.device,
        results,
        revision: 8,
    };
    (request, result)
}

fn workspace() -> Workspace {
    Workspace {
        id: WorkspaceId(uuid(100)),
        owner: UserId(uuid(102)),
        name: "shared".into(),
        is_shared: true,
        encryption: EncryptionMode::ClientSide,
        container: "ws-shared".into(),
        latest_revision: 8,
        mount_parent: Some(ItemId(uuid(1))),
        read_only: true,
    }
}

/// Valid messages of every kind this crate decodes, in plain and compact
/// forms: what the fuzzers mutate.
pub fn seeds() -> Vec<Vec<u8>> {
    let (commit, result) = sample_commit();
    let meta = match &result.results[0].outcome {
        CommitOutcome::Committed { meta } => meta.clone(),
        _ => unreachable!("the first result is committed"),
    };
    let requests = [
        Request::Login {
            email: "a@example.org".into(),
            password: "pw".into(),
        },
        Request::GetChanges {
            workspace: commit.workspace,
            since: 7,
            limit: 1000,
        },
        Request::Commit(commit.clone()),
        Request::LocateChunks {
            workspace: commit.workspace,
            ids: vec![id(1), id(2)],
            bases: true,
        },
        Request::PutKeyStatement {
            workspace: commit.workspace,
            epoch: 2,
            statement: vec![1, 2, 3, 255],
        },
    ];
    let replies: Vec<Result<Reply, Error>> = vec![
        Ok(Reply::Changes(ChangesPage {
            workspace: commit.workspace,
            items: vec![meta.clone()],
            cursor: 8,
            has_more: false,
        })),
        Ok(Reply::Commit(result.clone())),
        Ok(Reply::CommitBrief(brief::shorten(&commit, result.clone()))),
        Ok(Reply::ChunkLocations {
            chunks: vec![None, Some(meta.chunks[0])],
        }),
        Err(Error::conflict(meta.clone())),
        Err(Error::too_many_requests("slow down", 3)),
    ];
    let notifications = [
        Notification::Commit {
            workspace: commit.workspace,
            device: commit.device,
            revision: 8,
            items: vec![meta],
        },
        Notification::WorkspaceJoined {
            workspace: workspace(),
        },
        Notification::KeysChanged {
            workspace: commit.workspace,
            epoch: 3,
        },
        Notification::Resync,
    ];
    let mut out = Vec::new();
    let mut every_form = |bytes: &dyn Fn(Peer) -> Vec<u8>, plain: Vec<u8>| {
        out.push(plain);
        out.push(bytes(Peer::default()));
        out.push(bytes(Peer::CURRENT));
    };
    for r in requests {
        let message = RpcRequest {
            request_id: uuid(7),
            token: "token".into(),
            request: r,
        };
        every_form(&|p| wire::encode_for(&message, p), wire::encode(&message));
    }
    for r in replies {
        let message = RpcResponse {
            request_id: uuid(7),
            result: r,
        };
        every_form(&|p| wire::encode_for(&message, p), wire::encode(&message));
    }
    for n in notifications {
        every_form(&|p| wire::encode_for(&n, p), wire::encode(&n));
    }
    out
}

/// Valid inputs of [`brief_reply`]: a commit with its full and brief
/// replies, plain and compressed.
pub fn brief_seeds() -> Vec<Vec<u8>> {
    let (commit, result) = sample_commit();
    let request = RpcRequest {
        request_id: uuid(7),
        token: String::new(),
        request: Request::Commit(commit.clone()),
    };
    let brief: BriefCommitResult = brief::shorten(&commit, result.clone());
    let mut out = Vec::new();
    for reply in [Reply::Commit(result), Reply::CommitBrief(brief)] {
        let response = RpcResponse {
            request_id: uuid(7),
            result: Ok(reply),
        };
        for peer in [Peer::default(), Peer::CURRENT] {
            out.push(join(
                &wire::encode_for(&request, peer),
                &wire::encode_for(&response, peer),
            ));
        }
    }
    out
}

/// Tokens [`mutate`] splices in: the values a JSON decoder must handle at
/// any place, and the boundaries of the numbers it reads.
const TOKENS: &[&str] = &[
    "null",
    "0",
    "-1",
    "1e999",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775808",
    "\"\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "[]",
    "{}",
    "true",
    ",",
    ":",
    "\"v\":2",
    "\"c\":9",
    "\"a\":{\"r\":1,\"t\":1}",
    "\"f\":{}",
];

/// One mutation of a valid input, chosen by plain numbers (so that
/// proptest, which the library does not link, can draw them): `op` picks
/// the kind, `at` the place (modulo the length), `x` the value.
#[derive(Debug, Clone, Copy)]
pub struct Mutation {
    /// Which kind of change.
    pub op: u8,
    /// Where (taken modulo the input's length).
    pub at: usize,
    /// With what.
    pub x: u64,
}

/// Applies `mutations` to `data` in order: flips, cuts, inserted and
/// removed bytes, overwritten 32-bit numbers, spliced JSON tokens and
/// duplicated runs.
pub fn mutate(data: &mut Vec<u8>, mutations: &[Mutation]) {
    for m in mutations {
        let len = data.len();
        if len == 0 {
            data.push(m.x as u8);
            continue;
        }
        let at = m.at % len;
        match m.op % 7 {
            0 => data[at] ^= (m.x as u8) | 1,
            1 => data.truncate(at),
            2 => data.insert(at, m.x as u8),
            3 => {
                data.remove(at);
            }
            4 => {
                let end = (at + 4).min(len);
                data[at..end].copy_from_slice(&(m.x as u32).to_le_bytes()[..end - at]);
            }
            5 => {
                let token = TOKENS[m.x as usize % TOKENS.len()].as_bytes();
                // Replaces what was there up to the next delimiter.
                let end = data[at..]
                    .iter()
                    .position(|b| matches!(b, b',' | b'}' | b']' | b':'))
                    .map_or(len, |p| at + p);
                data.splice(at..end, token.iter().copied());
            }
            _ => {
                let n = (m.x as usize % 64).min(len - at);
                let run = data[at..at + n].to_vec();
                let to = (m.x >> 8) as usize % len;
                data.splice(to..to, run);
            }
        }
    }
}
