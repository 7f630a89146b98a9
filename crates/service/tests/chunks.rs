//! Chunk objects through the service: packs up to their size limit, exact
//! range reads (one chunk out of a pack), and chunk locations over the bus.

mod common;

use bytes::Bytes;
use common::{Env, file};
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{ChunkId, ChunkRef, CommitRequest, ErrorKind, ItemId, PackSpan};
use stacksync_service::{ByteRange, ServiceError};

fn range(start: u64, end: u64) -> Option<ByteRange> {
    Some(ByteRange {
        start,
        end: Some(end),
    })
}

async fn packs_and_ranges(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let ws = alice.private.id;
    let pack = ChunkId([0x42; 32]);
    let data: Bytes = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    env.service
        .put_chunk(alice.id, ws, &pack, data.clone())
        .await
        .unwrap();
    let read = |r| env.service.get_chunk(alice.id, ws, &pack, r);
    assert_eq!(read(None).await.unwrap(), data);
    assert_eq!(read(range(10, 20)).await.unwrap(), data.slice(10..20));
    assert_eq!(
        read(range(99_000, 100_000)).await.unwrap(),
        data.slice(99_000..)
    );
    // Past the end: an error that says how large the object is.
    for (start, end) in [(99_990, 100_010), (100_000, 100_001), (200_000, 200_001)] {
        match read(range(start, end)).await {
            Err(ServiceError::RangeNotSatisfiable { size, .. }) => assert_eq!(size, 100_000),
            other => panic!("{start}..{end}: {other:?}"),
        }
    }
    // Empty or open ranges are not chunk reads.
    for r in [
        range(5, 5),
        range(7, 3),
        Some(ByteRange {
            start: 0,
            end: None,
        }),
    ] {
        let e = read(r).await.unwrap_err();
        assert_eq!(e.to_proto().kind, ErrorKind::BadRequest, "{r:?}");
    }
    let missing = env
        .service
        .get_chunk(alice.id, ws, &ChunkId([1; 32]), range(0, 1))
        .await
        .unwrap_err();
    assert_eq!(missing.to_proto().kind, ErrorKind::NotFound);

    // A pack of the largest size is stored; one byte more is refused.
    let max = PackSpan::MAX_PACK_BYTES as usize;
    let big = Bytes::from(vec![7u8; max]);
    env.service
        .put_chunk(alice.id, ws, &ChunkId([0x43; 32]), big)
        .await
        .unwrap();
    let too_big = env
        .service
        .put_chunk(
            alice.id,
            ws,
            &ChunkId([0x44; 32]),
            Bytes::from(vec![7u8; max + 1]),
        )
        .await
        .unwrap_err();
    assert_eq!(too_big.kind, ErrorKind::TooLarge);
    assert_eq!(
        env.service
            .has_chunks(alice.id, ws, &[ChunkId([0x43; 32]), ChunkId([0x44; 32])])
            .await
            .unwrap(),
        vec![true, false]
    );
}
both_combos!(packs_and_ranges);

async fn chunks_are_located_over_the_bus(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let ws = alice.private.id;
    let stored = ChunkRef {
        id: ChunkId([1; 32]),
        size: 10,
        span: Some(PackSpan {
            pack: ChunkId([2; 32]),
            offset: 64,
            len: 50,
            base: None,
        }),
    };
    // The pack is stored first: a location must point into a stored pack.
    env.service
        .put_chunk(alice.id, ws, &ChunkId([2; 32]), Bytes::from(vec![0u8; 200]))
        .await
        .unwrap();
    let mut f = file(ItemId::new(), None, "f.txt", 1, "f");
    f.size = 10;
    f.chunks = vec![stored];
    env.call(
        &alice.token,
        Request::Commit(CommitRequest {
            workspace: ws,
            device: alice.device,
            items: vec![f],
        }),
    )
    .await
    .unwrap();
    let unknown = ChunkId([3; 32]);
    let locate = |ids: Vec<ChunkId>| {
        env.call(
            &alice.token,
            Request::LocateChunks {
                workspace: ws,
                ids,
                bases: false,
            },
        )
    };
    let Ok(Reply::ChunkLocations { chunks }) = locate(vec![unknown, stored.id]).await else {
        panic!("alice locates her chunks");
    };
    assert_eq!(chunks, vec![None, Some(stored)]);
    let mut full = vec![unknown; Request::MAX_LOCATE_IDS];
    full[999] = stored.id;
    let Ok(Reply::ChunkLocations { chunks }) = locate(full.clone()).await else {
        panic!("the largest request is answered");
    };
    assert_eq!((chunks.len(), chunks[999]), (1000, Some(stored)));
    full.push(unknown);
    let e = locate(full).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest, "{e}");
}
both_combos!(chunks_are_located_over_the_bus);
