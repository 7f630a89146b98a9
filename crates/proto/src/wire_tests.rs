use super::*;
use crate::WorkspaceId;
use crate::rpc::{Request, RpcRequest};

fn sample() -> RpcRequest {
    RpcRequest {
        request_id: uuid::Uuid::nil(),
        token: "t".into(),
        request: Request::GetChanges {
            workspace: WorkspaceId::NIL,
            since: 7,
            limit: 100,
        },
    }
}

/// A request large enough to be compressed.
fn large() -> RpcRequest {
    RpcRequest {
        request_id: uuid::Uuid::nil(),
        token: "t".into(),
        request: Request::Unshare {
            workspace: WorkspaceId::NIL,
            emails: (0..50).map(|i| format!("user{i}@example.org")).collect(),
        },
    }
}

/// `plain` (a JSON envelope) in the compressed form, declaring `declared`.
fn compressed_declaring(plain: &[u8], declared: u32) -> Vec<u8> {
    let mut out = vec![0, b'Z'];
    out.extend_from_slice(&declared.to_le_bytes());
    out.extend_from_slice(&zstd::bulk::compress(plain, 3).unwrap());
    out
}

#[test]
fn round_trip() {
    let bytes = encode(&sample());
    assert_eq!(decode::<RpcRequest>(&bytes).unwrap(), sample());
}

#[test]
fn unknown_fields_from_newer_peers_are_ignored() {
    let mut v: serde_json::Value = serde_json::from_slice(&encode(&sample())).unwrap();
    v["body"]["future_field"] = serde_json::json!(42);
    v["body"]["request"]["another"] = serde_json::json!("x");
    let bytes = serde_json::to_vec(&v).unwrap();
    assert_eq!(decode::<RpcRequest>(&bytes).unwrap(), sample());
}

#[test]
fn future_versions_and_garbage_are_refused() {
    let mut v: serde_json::Value = serde_json::from_slice(&encode(&sample())).unwrap();
    v["v"] = serde_json::json!(PROTOCOL_VERSION + 1);
    let future = serde_json::to_vec(&v).unwrap();
    let err = decode::<RpcRequest>(&future).unwrap_err();
    assert_eq!(err.kind, ErrorKind::UnsupportedVersion);
    // A compressed message from the future is refused the same way.
    let packed = compressed_declaring(&future, future.len() as u32);
    assert_eq!(
        decode::<RpcRequest>(&packed).unwrap_err().kind,
        ErrorKind::UnsupportedVersion
    );
    assert_eq!(
        decode::<RpcRequest>(b"{").unwrap_err().kind,
        ErrorKind::BadRequest
    );
    assert_eq!(
        decode::<RpcRequest>(b"{\"v\":1,\"body\":{}}")
            .unwrap_err()
            .kind,
        ErrorKind::BadRequest
    );
    let huge = vec![b' '; MAX_MESSAGE_BYTES + 1];
    assert_eq!(
        decode::<RpcRequest>(&huge).unwrap_err().kind,
        ErrorKind::TooLarge
    );
}

#[test]
fn plain_envelopes_say_what_their_sender_reads() {
    let (_, peer) = decode_from::<RpcRequest>(&encode_for(&sample(), Peer::default())).unwrap();
    assert_eq!(peer, Peer::CURRENT);
    // Broadcasts (notifications) say nothing, and keep their old bytes.
    let (_, peer) = decode_from::<RpcRequest>(&encode(&sample())).unwrap();
    assert_eq!(peer, Peer::default());
    // An older peer's envelope has no `c`: it reads plain JSON only.
    let old = br#"{"v":1,"body":{"request_id":"00000000-0000-0000-0000-000000000000","token":"t","request":{"op":"get_account"}}}"#;
    let (_, peer) = decode_from::<RpcRequest>(old).unwrap();
    assert_eq!(peer, Peer::default());
    assert!(!peer.reads_compact());
}

#[test]
fn compressed_messages_go_only_to_peers_that_read_them() {
    let plain = encode_for(&large(), Peer::default());
    assert!(!is_compressed(&plain), "an old peer gets plain JSON");
    assert_eq!(decode::<RpcRequest>(&plain).unwrap(), large());

    let packed = encode_for(&large(), Peer::CURRENT);
    assert!(is_compressed(&packed));
    assert!(
        packed.len() < plain.len() / 2,
        "{} vs {}",
        packed.len(),
        plain.len()
    );
    let (back, peer) = decode_from::<RpcRequest>(&packed).unwrap();
    assert_eq!(back, large());
    assert!(
        peer.reads_compact(),
        "a compressed message proves its sender reads them"
    );

    // Tiny messages stay plain: compression would not pay.
    assert!(!is_compressed(&encode_for(&7u8, Peer::CURRENT)));
    // Small ones shrink too, thanks to the dictionary.
    let small = encode_for(&sample(), Peer::CURRENT);
    let plain_small = encode_for(&sample(), Peer::default());
    assert!(is_compressed(&small));
    assert!(
        small.len() * 2 < plain_small.len(),
        "{} vs {}",
        small.len(),
        plain_small.len()
    );
    assert_eq!(decode::<RpcRequest>(&small).unwrap(), sample());
    // What an older reader does with a compressed message: refuses it.
    assert!(serde_json::from_slice::<serde_json::Value>(&packed).is_err());
}

#[test]
fn hostile_compressed_messages_get_clear_errors() {
    let plain = encode(&large());
    let good = compressed_declaring(&plain, plain.len() as u32);
    let kind = |bytes: &[u8]| decode::<RpcRequest>(bytes).unwrap_err().kind;

    // A NUL byte that does not start a compressed message; a cut header.
    assert_eq!(kind(b"\0X\0\0\0\0"), ErrorKind::BadRequest);
    assert_eq!(kind(&good[..4]), ErrorKind::BadRequest);
    // A frame cut short, or trailing garbage in place of the frame.
    assert_eq!(kind(&good[..good.len() - 3]), ErrorKind::BadRequest);
    let mut garbage = good[..6].to_vec();
    garbage.extend_from_slice(b"not zstd at all");
    assert_eq!(kind(&garbage), ErrorKind::BadRequest);
    // A header that lies about the length, either way.
    assert_eq!(
        kind(&compressed_declaring(&plain, plain.len() as u32 + 1)),
        ErrorKind::BadRequest
    );
    assert_eq!(
        kind(&compressed_declaring(&plain, plain.len() as u32 - 1)),
        ErrorKind::BadRequest
    );
    // A declared length over the cap is refused before decompressing.
    let mut over = good.clone();
    over[2..6].copy_from_slice(&(MAX_MESSAGE_BYTES as u32 + 1).to_le_bytes());
    let err = decode::<RpcRequest>(&over).unwrap_err();
    assert_eq!(err.kind, ErrorKind::TooLarge, "{err}");
}

#[test]
fn compression_bombs_stop_at_the_size_limit() {
    // 64 MiB of zeros squeeze into a few kilobytes; decompressing them
    // whole would take four times the largest message.
    let bomb = vec![0u8; 4 * MAX_MESSAGE_BYTES];
    for declared in [100, MAX_MESSAGE_BYTES as u32] {
        let packed = compressed_declaring(&bomb, declared);
        assert!(packed.len() < MAX_MESSAGE_BYTES / 100);
        let err = decode::<RpcRequest>(&packed).unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRequest, "{err}");
        assert!(err.message.contains("or more"), "{err}");
    }
}

#[test]
fn older_peers_mean_read_write_members() {
    use crate::{Invitation, Member, Workspace};
    let ids = "\"00000000-0000-0000-0000-000000000001\"";
    // What an older client sends and an older server answers: no
    // `read_only` anywhere. It means what it always did: read-write.
    let old_request = format!(
        r#"{{"v":1,"body":{{"request_id":{ids},"token":"t","request":{{"op":"create_share_proposal","workspace":{ids},"folder":{ids},"emails":["b@x.org"],"encryption":"plain"}}}}}}"#
    );
    let request = decode::<RpcRequest>(old_request.as_bytes()).unwrap();
    assert!(
        matches!(
            request.request,
            Request::CreateShareProposal {
                read_only: false,
                ..
            }
        ),
        "{request:?}"
    );
    let workspace: Workspace = serde_json::from_str(&format!(
        r#"{{"id":{ids},"owner":{ids},"name":"w","is_shared":true,"encryption":"plain","container":"c","latest_revision":3}}"#
    ))
    .unwrap();
    assert!(!workspace.read_only);
    let invitation: Invitation = serde_json::from_str(&format!(
        r#"{{"proposal":{ids},"folder_name":"f","from":"a@x.org","created_at":1,"encryption":"plain"}}"#
    ))
    .unwrap();
    assert!(!invitation.read_only);
    let member: Member = serde_json::from_str(&format!(
        r#"{{"user":{ids},"name":"b","email":"b@x.org","is_owner":false,"joined_at":1}}"#
    ))
    .unwrap();
    assert!(!member.read_only);
    // And a read-only role survives the trip.
    let ro = Workspace {
        read_only: true,
        ..workspace
    };
    assert_eq!(decode::<Workspace>(&encode(&ro)).unwrap(), ro);
    let ro = Member {
        read_only: true,
        ..member
    };
    assert_eq!(decode::<Member>(&encode(&ro)).unwrap(), ro);
}
