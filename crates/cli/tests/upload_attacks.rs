//! Network attacks on object uploads, against a real `stacksync server`
//! process on loopback (embedded backends):
//!
//! * finding 4: an unauthenticated upload is refused before its body is
//!   read, so a dozen stalled uploads of a declared 32 MiB body cost the
//!   server no memory (it used to buffer each body before checking the
//!   token: 11 to 387 MiB);
//! * finding 8: a member's upload over another member's object in a shared
//!   workspace is a conflict, and the original stays intact and decodes.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Backend, Cluster};
use stacksync_content::ChunkCodec;
use stacksync_gateway_client::GatewayClient;
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{
    ChunkId, CommitRequest, DeviceId, EncryptionMode, ErrorKind, ItemId, ItemName, ItemStatus,
    ProposedItem, Workspace, WorkspaceId,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest any single wait may take (a deadline, not a measurement).
const DEADLINE: Duration = Duration::from_secs(30);
/// The declared body of each hostile upload: the largest pack.
const DECLARED: usize = 32 * 1024 * 1024;

/// A kernel-reported size of the process, in KiB (`VmRSS`, `VmHWM`).
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc is readable");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// The `host:port` of the server's URL.
fn host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// Request head of a PUT of `DECLARED` bytes into a workspace, with
/// `authorization` (or none).
fn put_head(authorization: Option<&str>) -> String {
    let ws = WorkspaceId::new();
    let id = ChunkId([0x33; 32]).to_hex();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!(
        "PUT /api/v1/workspaces/{ws}/chunks/{id} HTTP/1.1\r\nHost: x\r\n{auth}\
         Content-Type: application/octet-stream\r\nContent-Length: {DECLARED}\r\n\r\n"
    )
}

/// The status code of the answer on `conn`, read until the head is complete.
async fn status_of(conn: &mut TcpStream) -> u16 {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(DEADLINE, conn.read(&mut buf))
            .await
            .expect("the server answers before the deadline")
            .expect("the connection reads");
        assert!(n > 0, "the server closed without answering: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got);
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unauthenticated_uploads_are_refused_before_the_body() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    for auth in [None, Some("Bearer not-a-session-token")] {
        let mut conn = TcpStream::connect(host_port(&cluster.url)).await.unwrap();
        conn.write_all(put_head(auth).as_bytes()).await.unwrap();
        // Not one byte of the body is sent: the answer must not wait for it.
        assert_eq!(status_of(&mut conn).await, 401, "{auth:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_unauthenticated_uploads_keep_memory_bounded() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let pid = cluster.server_pid();
    let before = proc_kib(pid, "VmRSS");
    let piece = Bytes::from(vec![0x55u8; 1024 * 1024]);
    let mut open = Vec::new();
    for i in 0..12 {
        let mut conn = TcpStream::connect(host_port(&cluster.url)).await.unwrap();
        let auth = (i % 2 == 1).then_some("Bearer not-a-session-token");
        conn.write_all(put_head(auth).as_bytes()).await.unwrap();
        // Push all but the last MiB of the body, then stall. A server that
        // does not read stops the pushing (writes block once the socket
        // buffers are full, or fail once it closes): that is the point.
        for _ in 0..DECLARED / piece.len() - 1 {
            match tokio::time::timeout(Duration::from_secs(2), conn.write_all(&piece)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => break,
            }
        }
        open.push(conn);
    }
    let peak = proc_kib(pid, "VmHWM");
    let now = proc_kib(pid, "VmRSS");
    let grown_mib = peak.saturating_sub(before) / 1024;
    eprintln!(
        "server RSS {} MiB before, {} MiB with 12 stalled uploads open, peak {} MiB",
        before / 1024,
        now / 1024,
        peak / 1024
    );
    // 12 buffered bodies would be 12 x 31 MiB; a bounded server grows by
    // a few socket buffers at most.
    assert!(
        grown_mib < 64,
        "the server grew by {grown_mib} MiB under 12 stalled unauthenticated uploads"
    );
    drop(open);
}

fn name(s: &str) -> ItemName {
    ItemName::new(s).unwrap()
}

async fn login(cluster: &Cluster, email: &str) -> GatewayClient {
    GatewayClient::login(&cluster.url, email, "secret-pw")
        .await
        .expect("the user logs in")
}

async fn device(client: &GatewayClient) -> DeviceId {
    let Ok(Reply::Device(d)) = client
        .rpc(Request::UpdateDevice {
            id: None,
            name: "laptop".into(),
            os: "linux".into(),
            app_version: "test".into(),
        })
        .await
    else {
        panic!("the device registers");
    };
    d.id
}

async fn private_workspace(client: &GatewayClient) -> Workspace {
    let Ok(Reply::Workspaces { workspaces }) = client.rpc(Request::GetWorkspaces).await else {
        panic!("the workspaces are listed");
    };
    workspaces
        .into_iter()
        .find(|w| !w.is_shared)
        .expect("a private workspace")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_members_upload_over_anothers_object_is_a_conflict() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let ann_email = cluster.add_user("ann@example.org", None);
    let bob_email = cluster.add_user("bob@example.org", None);
    let ann = login(&cluster, &ann_email).await;
    let bob = login(&cluster, &bob_email).await;
    let ann_device = device(&ann).await;
    let private = private_workspace(&ann).await;
    let folder = ItemId::new();
    ann.rpc(Request::Commit(CommitRequest {
        workspace: private.id,
        device: ann_device,
        items: vec![ProposedItem {
            id: folder,
            parent: None,
            name: name("Together"),
            is_folder: true,
            mimetype: None,
            status: ItemStatus::New,
            version: 1,
            content_hash: None,
            size: 0,
            client_modified: 1,
            chunks: vec![],
            record: None,
        }],
    }))
    .await
    .expect("the folder is committed");
    let Ok(Reply::ShareProposal { proposal, .. }) = ann
        .rpc(Request::CreateShareProposal {
            workspace: private.id,
            folder,
            emails: vec![bob_email.clone()],
            encryption: EncryptionMode::Plain,
            read_only: false,
        })
        .await
    else {
        panic!("ann proposes a share");
    };
    let Ok(Reply::ShareAnswered {
        workspace: Some(shared),
    }) = bob
        .rpc(Request::AnswerShareProposal {
            proposal,
            accept: true,
        })
        .await
    else {
        panic!("bob accepts");
    };

    let chunk = ChunkCodec::compressed()
        .encode(
            "ann's work, many versions depend on it\n"
                .repeat(100)
                .as_bytes(),
        )
        .unwrap();
    let original = Bytes::from(chunk.bytes.clone());
    ann.put_chunk(shared.id, &chunk.id, original.clone())
        .await
        .expect("ann stores her chunk");
    // Bob's upload of other bytes under Ann's object: 409, nothing replaced.
    let forged = Bytes::from_static(b"bob was here");
    let e = bob
        .put_chunk(shared.id, &chunk.id, forged)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict, "{e:?}");
    // A retry of the same bytes (a lost answer) is still fine.
    ann.put_chunk(shared.id, &chunk.id, original.clone())
        .await
        .expect("a retry of the same upload succeeds");
    let stored = bob.get_chunk(shared.id, &chunk.id).await.unwrap();
    assert_eq!(stored, original);
    let plain = ChunkCodec::plain().decode(&chunk.id, &stored).unwrap();
    assert_eq!(plain.len(), chunk.plaintext_len as usize);
}
