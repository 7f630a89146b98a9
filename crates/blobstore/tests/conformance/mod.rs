//! One conformance suite for every [`BlobStore`] backend. Each test file
//! builds a [`Backend`] and runs these functions through `conformance_tests!`.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use stacksync_blobstore::{
    Access, BlobErrorKind, BlobStore, ByteRange, ByteStream, ContainerName, StorageUser,
};
use stacksync_proto::{ChunkId, WorkspaceId};

/// Two handles on one store: the owner (who manages containers and ACLs)
/// and a second storage user who reaches the owner's containers by ACL.
pub struct Backend {
    pub owner: Arc<dyn BlobStore>,
    pub other: Arc<dyn BlobStore>,
    pub other_user: StorageUser,
    /// Whatever must live as long as the stores (e.g. a temporary folder).
    pub _keep: Option<Box<dyn std::any::Any + Send + Sync>>,
}

/// Random bytes, deterministic per seed.
pub fn data(seed: u64, len: usize) -> Bytes {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    Bytes::from(v)
}

/// The id the content crate would give these bytes (BLAKE3 of plaintext).
pub fn id_of(bytes: &[u8]) -> ChunkId {
    ChunkId(*blake3::hash(bytes).as_bytes())
}

/// A stream that yields `bytes` in pieces of `piece` bytes.
pub fn pieces(bytes: Bytes, piece: usize) -> ByteStream {
    let parts: Vec<_> = (0..bytes.len())
        .step_by(piece.max(1))
        .map(|i| Ok(bytes.slice(i..(i + piece).min(bytes.len()))))
        .collect();
    Box::pin(futures::stream::iter(parts))
}

/// A fresh container, created by the owner.
pub async fn fresh_container(b: &Backend) -> ContainerName {
    let c = ContainerName::for_workspace(WorkspaceId::new());
    b.owner
        .create_container(&c)
        .await
        .expect("create container");
    c
}

/// Deletes every object, then the container.
pub async fn cleanup(b: &Backend, c: &ContainerName) {
    for id in b.owner.list(c).await.expect("list for cleanup") {
        b.owner.delete(c, &id).await.expect("delete for cleanup");
    }
    b.owner.delete_container(c).await.expect("delete container");
}

fn kind<T: std::fmt::Debug>(r: stacksync_blobstore::Result<T>) -> BlobErrorKind {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.kind,
    }
}

pub async fn round_trip(b: &Backend) {
    let c = fresh_container(b).await;
    let body = data(1, 1024 * 1024 + 17);
    let id = id_of(&body);
    let info = b
        .owner
        .put(&c, &id, pieces(body.clone(), 100_000))
        .await
        .unwrap();
    assert_eq!(info.size, body.len() as u64);
    assert_eq!(b.owner.head(&c, &id).await.unwrap().size, body.len() as u64);
    assert_eq!(b.owner.get_bytes(&c, &id).await.unwrap(), body);
    let streamed: Vec<_> = b.owner.get(&c, &id, None).await.unwrap().collect().await;
    let joined: Vec<u8> = streamed
        .into_iter()
        .flat_map(|p| p.unwrap().to_vec())
        .collect();
    assert_eq!(joined, body);
    b.owner.delete(&c, &id).await.unwrap();
    assert_eq!(kind(b.owner.head(&c, &id).await), BlobErrorKind::NotFound);
    assert_eq!(
        kind(b.owner.get_bytes(&c, &id).await),
        BlobErrorKind::NotFound
    );
    assert_eq!(kind(b.owner.delete(&c, &id).await), BlobErrorKind::NotFound);
    cleanup(b, &c).await;
}

pub async fn empty_object(b: &Backend) {
    let c = fresh_container(b).await;
    let id = id_of(b"");
    assert_eq!(
        b.owner.put_bytes(&c, &id, Bytes::new()).await.unwrap().size,
        0
    );
    assert_eq!(b.owner.head(&c, &id).await.unwrap().size, 0);
    assert!(b.owner.get_bytes(&c, &id).await.unwrap().is_empty());
    cleanup(b, &c).await;
}

pub async fn ranges(b: &Backend) {
    let c = fresh_container(b).await;
    let body = data(2, 300_000);
    let id = id_of(&body);
    b.owner.put_bytes(&c, &id, body.clone()).await.unwrap();
    let cases: [(u64, Option<u64>, std::ops::Range<usize>); 9] = [
        (0, Some(10), 0..10),
        (5, None, 5..300_000),
        (299_999, None, 299_999..300_000),
        (100_000, Some(200_001), 100_000..200_001),
        // Across the local backend's read block (256 KiB).
        (262_100, Some(262_200), 262_100..262_200),
        (0, Some(300_000), 0..300_000),
        (0, None, 0..300_000),
        (400_000, None, 300_000..300_000),
        (7, Some(3), 0..0),
    ];
    for (start, end, expected) in cases {
        let stream = b
            .owner
            .get(&c, &id, Some(ByteRange { start, end }))
            .await
            .unwrap();
        let got = stacksync_blobstore::collect(stream).await.unwrap();
        assert_eq!(got, body.slice(expected.clone()), "range {start}..{end:?}");
    }
    cleanup(b, &c).await;
}

pub async fn list_and_existing(b: &Backend) {
    let c = fresh_container(b).await;
    assert!(b.owner.list(&c).await.unwrap().is_empty());
    let bodies: Vec<Bytes> = (0..5).map(|i| data(100 + i, 1000 + i as usize)).collect();
    let mut ids: Vec<ChunkId> = bodies.iter().map(|d| id_of(d)).collect();
    let objects = ids.iter().copied().zip(bodies.iter().cloned()).collect();
    let stored = stacksync_blobstore::put_many(b.owner.as_ref(), &c, objects, 3)
        .await
        .unwrap();
    assert_eq!(stored, bodies.iter().map(|d| d.len() as u64).sum::<u64>());
    ids.sort();
    assert_eq!(b.owner.list(&c).await.unwrap(), ids);
    let absent = id_of(b"never stored");
    let query = [ids[0], absent, ids[3], ids[3]];
    let found = b.owner.existing(&c, &query).await.unwrap();
    assert_eq!(found, [ids[0], ids[3]].into_iter().collect());
    assert!(b.owner.existing(&c, &[]).await.unwrap().is_empty());
    cleanup(b, &c).await;
}

pub async fn containers(b: &Backend) {
    let c = fresh_container(b).await;
    b.owner
        .create_container(&c)
        .await
        .expect("creating twice succeeds");
    let body = data(3, 10);
    let id = id_of(&body);
    b.owner.put_bytes(&c, &id, body).await.unwrap();
    assert_eq!(
        kind(b.owner.delete_container(&c).await),
        BlobErrorKind::Conflict
    );
    b.owner.delete(&c, &id).await.unwrap();
    b.owner.delete_container(&c).await.unwrap();
    assert_eq!(
        kind(b.owner.delete_container(&c).await),
        BlobErrorKind::NotFound
    );
    assert_eq!(kind(b.owner.list(&c).await), BlobErrorKind::NotFound);
    assert_eq!(
        kind(b.owner.get_bytes(&c, &id).await),
        BlobErrorKind::NotFound
    );
    let missing = ContainerName::for_workspace(WorkspaceId::new());
    let body = data(4, 10);
    assert_eq!(
        kind(b.owner.put_bytes(&missing, &id_of(&body), body).await),
        BlobErrorKind::NotFound
    );
}

/// Concurrent writers of the same bytes under one id (retries, or two
/// devices uploading one chunk): every write succeeds, one object.
pub async fn concurrent_writers(b: &Backend) {
    let c = fresh_container(b).await;
    let body = data(200, 200_000);
    let id = id_of(&body);
    let writes = (0..6).map(|_| b.owner.put(&c, &id, pieces(body.clone(), 16_384)));
    for r in futures::future::join_all(writes).await {
        assert_eq!(r.unwrap().size, body.len() as u64);
    }
    assert_eq!(b.owner.get_bytes(&c, &id).await.unwrap(), body);
    assert_eq!(b.owner.list(&c).await.unwrap(), vec![id]);
    cleanup(b, &c).await;
}

/// Concurrent writers of different bytes under one id: at least one wins,
/// every loser hears `Conflict`, and what is stored is a winner's whole
/// object, never a mix.
pub async fn concurrent_different_writers(b: &Backend) {
    let c = fresh_container(b).await;
    let id = id_of(b"contended");
    let versions: Vec<Bytes> = (0..6).map(|i| data(300 + i, 200_000)).collect();
    let writes = versions
        .iter()
        .map(|v| b.owner.put(&c, &id, pieces(v.clone(), 16_384)));
    let mut winners = Vec::new();
    for (v, r) in versions.iter().zip(futures::future::join_all(writes).await) {
        match r {
            Ok(_) => winners.push(v.clone()),
            Err(e) => assert_eq!(e.kind, BlobErrorKind::Conflict, "{e}"),
        }
    }
    let got = b.owner.get_bytes(&c, &id).await.unwrap();
    assert!(
        winners.contains(&got),
        "read bytes no successful writer wrote"
    );
    assert_eq!(b.owner.list(&c).await.unwrap(), vec![id]);
    cleanup(b, &c).await;
}

/// Finding 8: objects are written once. Other bytes under an existing name
/// are a `Conflict` (from the owner and from a user with write access
/// alike, streamed or whole) and the original stays intact; the same bytes
/// again (a retry after a lost answer) succeed.
pub async fn objects_are_written_once(b: &Backend) {
    let c = fresh_container(b).await;
    let original = data(20, 150_000);
    let id = id_of(&original);
    b.owner.put_bytes(&c, &id, original.clone()).await.unwrap();
    b.owner
        .grant(&c, &b.other_user, Access::ReadWrite)
        .await
        .unwrap();
    let forged = data(21, 150_000);
    let truncated = original.slice(..1000);
    for (who, store) in [("owner", &b.owner), ("other", &b.other)] {
        for body in [forged.clone(), truncated.clone(), Bytes::new()] {
            let whole = store.put_bytes(&c, &id, body.clone()).await;
            assert_eq!(kind(whole), BlobErrorKind::Conflict, "{who}, whole");
            let streamed = store.put(&c, &id, pieces(body, 7_000)).await;
            assert_eq!(kind(streamed), BlobErrorKind::Conflict, "{who}, streamed");
        }
        let again = store.put_bytes(&c, &id, original.clone()).await.unwrap();
        assert_eq!(again.size, original.len() as u64, "{who}: a retry succeeds");
        let again = store
            .put(&c, &id, pieces(original.clone(), 9_999))
            .await
            .unwrap();
        assert_eq!(again.size, original.len() as u64, "{who}: a streamed retry");
    }
    assert_eq!(b.owner.get_bytes(&c, &id).await.unwrap(), original);
    assert_eq!(b.owner.head(&c, &id).await.unwrap().size, 150_000);
    assert_eq!(b.owner.list(&c).await.unwrap(), vec![id]);
    // An object deleted (by the owner: garbage collection) can be stored again.
    b.owner.delete(&c, &id).await.unwrap();
    b.owner.put_bytes(&c, &id, forged.clone()).await.unwrap();
    assert_eq!(b.owner.get_bytes(&c, &id).await.unwrap(), forged);
    cleanup(b, &c).await;
}

/// A body stream that fails makes the put fail, and nothing is stored.
pub async fn failing_body(b: &Backend) {
    let c = fresh_container(b).await;
    let id = id_of(b"half");
    let body: ByteStream = Box::pin(futures::stream::iter(vec![
        Ok(data(5, 100_000)),
        Err(stacksync_blobstore::BlobError::new(
            BlobErrorKind::Io,
            "source broke",
        )),
    ]));
    assert!(b.owner.put(&c, &id, body).await.is_err());
    assert_eq!(kind(b.owner.head(&c, &id).await), BlobErrorKind::NotFound);
    assert!(b.owner.list(&c).await.unwrap().is_empty());
    cleanup(b, &c).await;
}

/// A second storage user is refused before the grant, may read and write
/// after it, and is refused again after the revoke.
pub async fn acl_grant_and_revoke(b: &Backend) {
    let c = fresh_container(b).await;
    let body = data(6, 4096);
    let id = id_of(&body);
    b.owner.put_bytes(&c, &id, body.clone()).await.unwrap();
    let theirs = data(7, 4096);
    let their_id = id_of(&theirs);

    assert_eq!(
        kind(b.other.get_bytes(&c, &id).await),
        BlobErrorKind::Forbidden
    );
    assert_eq!(
        kind(b.other.put_bytes(&c, &their_id, theirs.clone()).await),
        BlobErrorKind::Forbidden
    );
    assert_eq!(kind(b.other.list(&c).await), BlobErrorKind::Forbidden);
    assert_eq!(
        kind(b.other.grant(&c, &b.other_user, Access::ReadWrite).await),
        BlobErrorKind::Forbidden,
        "only the owner changes ACLs"
    );

    b.owner
        .grant(&c, &b.other_user, Access::ReadWrite)
        .await
        .unwrap();
    let acl = b.owner.acl(&c).await.unwrap();
    assert_eq!(acl.read, vec![b.other_user.clone()]);
    assert_eq!(acl.write, vec![b.other_user.clone()]);
    assert_eq!(b.other.get_bytes(&c, &id).await.unwrap(), body);
    b.other
        .put_bytes(&c, &their_id, theirs.clone())
        .await
        .unwrap();
    assert_eq!(b.owner.get_bytes(&c, &their_id).await.unwrap(), theirs);
    let mut both = vec![id, their_id];
    both.sort();
    assert_eq!(b.other.list(&c).await.unwrap(), both);

    b.owner
        .revoke(&c, &b.other_user, Access::ReadWrite)
        .await
        .unwrap();
    assert_eq!(b.owner.acl(&c).await.unwrap(), Default::default());
    assert_eq!(
        kind(b.other.get_bytes(&c, &id).await),
        BlobErrorKind::Forbidden
    );
    assert_eq!(
        kind(b.other.put_bytes(&c, &their_id, theirs).await),
        BlobErrorKind::Forbidden
    );
    assert_eq!(
        kind(b.other.delete(&c, &their_id).await),
        BlobErrorKind::Forbidden
    );
    cleanup(b, &c).await;
}

/// Read access alone lets the user read but not write; write alone the reverse.
pub async fn acl_read_only(b: &Backend) {
    let c = fresh_container(b).await;
    let body = data(8, 2048);
    let id = id_of(&body);
    b.owner.put_bytes(&c, &id, body.clone()).await.unwrap();
    b.owner
        .grant(&c, &b.other_user, Access::Read)
        .await
        .unwrap();
    assert_eq!(b.other.get_bytes(&c, &id).await.unwrap(), body);
    assert_eq!(b.other.head(&c, &id).await.unwrap().size, 2048);
    let theirs = data(9, 2048);
    assert_eq!(
        kind(b.other.put_bytes(&c, &id_of(&theirs), theirs).await),
        BlobErrorKind::Forbidden
    );
    assert_eq!(
        kind(b.other.delete(&c, &id).await),
        BlobErrorKind::Forbidden
    );
    b.owner
        .revoke(&c, &b.other_user, Access::Read)
        .await
        .unwrap();
    assert_eq!(
        kind(b.other.get_bytes(&c, &id).await),
        BlobErrorKind::Forbidden
    );
    cleanup(b, &c).await;
}

/// Runs every conformance function as its own test, given an async
/// expression that builds a `Backend` (or `None` to skip).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            round_trip, empty_object, ranges, list_and_existing, containers,
            concurrent_writers, concurrent_different_writers, objects_are_written_once,
            failing_body, acl_grant_and_revoke, acl_read_only);
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(backend) = $make.await else { return };
                conformance::$name(&backend).await;
            }
        )*
    };
}
