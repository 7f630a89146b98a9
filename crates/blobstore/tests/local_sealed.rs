//! The conformance suite on a local store that encrypts at rest
//! (server-side encryption), plus what encryption at rest must show on
//! disk: no plaintext in any stored file, objects that cannot be moved,
//! swapped or cut, stores that read what was written before a key was
//! given or rotated, and a clear refusal without the key.

mod conformance;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use conformance::{Backend, data, id_of};
use stacksync_blobstore::{
    AtRestKeys, BlobErrorKind, BlobStore, ByteRange, LocalStore, StorageUser,
};

const KEY: [u8; 32] = [0x5a; 32];

async fn sealed_backend(root: &Path, keys: AtRestKeys) -> Backend {
    let owner = LocalStore::open_sealed(root, keys).await.unwrap();
    let other_user = StorageUser::new("test2:tester2").unwrap();
    let other = owner.as_user(other_user.clone());
    Backend {
        owner: Arc::new(owner),
        other: Arc::new(other),
        other_user,
        _keep: None,
    }
}

async fn make() -> Option<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let mut backend = sealed_backend(dir.path(), AtRestKeys::from_bytes(KEY, &[])).await;
    backend._keep = Some(Box::new(dir));
    Some(backend)
}

conformance_tests!(make());

fn object_file(root: &Path, container: &str, id: &stacksync_proto::ChunkId) -> std::path::PathBuf {
    let hex = id.to_hex();
    root.join(container)
        .join("objects")
        .join(&hex[..2])
        .join(&hex[2..4])
        .join(hex)
}

/// Every file under `root`, read whole.
fn every_file(root: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn read(
    store: &dyn BlobStore,
    c: &stacksync_blobstore::ContainerName,
    id: &stacksync_proto::ChunkId,
    start: u64,
    end: Option<u64>,
) -> stacksync_blobstore::Result<Bytes> {
    stacksync_blobstore::collect(store.get(c, id, Some(ByteRange { start, end })).await?).await
}

#[tokio::test]
async fn no_plaintext_reaches_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let b = sealed_backend(dir.path(), AtRestKeys::from_bytes(KEY, &[])).await;
    assert!(b.owner.encrypts_at_rest());
    let c = conformance::fresh_container(&b).await;
    let marker = b"the quarterly numbers nobody may read";
    let mut bodies = Vec::new();
    for i in 0..20u64 {
        // Highly repetitive bodies: whatever leaks, leaks here.
        let mut body = marker.repeat(1 + (i as usize * 997) % 5000);
        body.extend_from_slice(&data(i, 3_000));
        let body = Bytes::from(body);
        b.owner
            .put_bytes(&c, &id_of(&body), body.clone())
            .await
            .unwrap();
        bodies.push(body);
    }
    let files = every_file(dir.path());
    assert!(files.len() >= 20);
    for (path, bytes) in &files {
        assert!(
            !contains(bytes, &marker[..16]),
            "plaintext in {}",
            path.display()
        );
        for body in &bodies {
            // Nor the checksum a plain store would write (a fingerprint).
            let plain_checksum = blake3::hash(body);
            assert!(
                !contains(bytes, plain_checksum.as_bytes()),
                "fingerprint in {}",
                path.display()
            );
        }
    }
    for body in &bodies {
        assert_eq!(&b.owner.get_bytes(&c, &id_of(body)).await.unwrap(), body);
    }
}

#[tokio::test]
async fn sealed_objects_cannot_be_moved_swapped_cut_or_altered() {
    let dir = tempfile::tempdir().unwrap();
    let b = sealed_backend(dir.path(), AtRestKeys::from_bytes(KEY, &[])).await;
    let c = conformance::fresh_container(&b).await;
    let d = conformance::fresh_container(&b).await;
    let one = data(1, 300_000);
    let two = data(2, 300_000);
    let (id1, id2) = (id_of(&one), id_of(&two));
    b.owner.put_bytes(&c, &id1, one.clone()).await.unwrap();
    b.owner.put_bytes(&c, &id2, two.clone()).await.unwrap();
    let (p1, p2) = (
        object_file(dir.path(), c.as_str(), &id1),
        object_file(dir.path(), c.as_str(), &id2),
    );
    let (raw1, raw2) = (std::fs::read(&p1).unwrap(), std::fs::read(&p2).unwrap());

    // Swapped between two names: neither reads, whole or in part.
    std::fs::write(&p1, &raw2).unwrap();
    std::fs::write(&p2, &raw1).unwrap();
    for id in [&id1, &id2] {
        assert_eq!(
            b.owner.get_bytes(&c, id).await.unwrap_err().kind,
            BlobErrorKind::Integrity
        );
        assert_eq!(
            read(b.owner.as_ref(), &c, id, 10, Some(20))
                .await
                .unwrap_err()
                .kind,
            BlobErrorKind::Integrity
        );
    }
    std::fs::write(&p1, &raw1).unwrap();
    std::fs::write(&p2, &raw2).unwrap();
    assert_eq!(b.owner.get_bytes(&c, &id1).await.unwrap(), one);

    // Copied into another container under the same name.
    let moved = object_file(dir.path(), d.as_str(), &id1);
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::write(&moved, &raw1).unwrap();
    assert_eq!(
        b.owner.get_bytes(&d, &id1).await.unwrap_err().kind,
        BlobErrorKind::Integrity
    );

    // One bit flipped: unlike a plain store, a range read sees it too.
    let mut flipped = raw1.clone();
    let at = flipped.len() - 40;
    flipped[at] ^= 0x01;
    std::fs::write(&p1, &flipped).unwrap();
    assert_eq!(
        b.owner.get_bytes(&c, &id1).await.unwrap_err().kind,
        BlobErrorKind::Integrity
    );
    assert_eq!(
        read(b.owner.as_ref(), &c, &id1, 299_000, None)
            .await
            .unwrap_err()
            .kind,
        BlobErrorKind::Integrity
    );
    // Damage elsewhere does not stop a range read of intact segments.
    assert_eq!(
        read(b.owner.as_ref(), &c, &id1, 0, Some(1000))
            .await
            .unwrap(),
        one.slice(0..1000)
    );

    // Cut at a segment boundary (whole segments dropped from the end), with
    // the length in the header lowered to match: the last kept segment is
    // not marked last.
    let segment = 64 * 1024 + 16;
    let mut cut = raw1[..80 + 2 * segment].to_vec();
    cut[72..80].copy_from_slice(&(2u64 * 64 * 1024).to_le_bytes());
    std::fs::write(&p1, &cut).unwrap();
    assert_eq!(
        b.owner.get_bytes(&c, &id1).await.unwrap_err().kind,
        BlobErrorKind::Integrity
    );
    assert_eq!(
        read(b.owner.as_ref(), &c, &id1, 70_000, Some(80_000))
            .await
            .unwrap_err()
            .kind,
        BlobErrorKind::Integrity
    );
    // Cut without touching the header: refused where the bytes are missing.
    std::fs::write(&p1, &raw1[..raw1.len() - 100]).unwrap();
    assert_eq!(
        b.owner.get_bytes(&c, &id1).await.unwrap_err().kind,
        BlobErrorKind::Integrity
    );
    assert_eq!(
        read(b.owner.as_ref(), &c, &id1, 10, Some(20))
            .await
            .unwrap(),
        one.slice(10..20)
    );
}

#[tokio::test]
async fn ranges_across_segments_read_exactly_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let b = sealed_backend(dir.path(), AtRestKeys::from_bytes(KEY, &[])).await;
    let c = conformance::fresh_container(&b).await;
    let seg = 64 * 1024u64;
    let body = data(7, (3 * seg + 123) as usize);
    let id = id_of(&body);
    b.owner
        .put(&c, &id, conformance::pieces(body.clone(), 7_777))
        .await
        .unwrap();
    assert_eq!(b.owner.head(&c, &id).await.unwrap().size, body.len() as u64);
    let len = body.len() as u64;
    for (start, end) in [
        (0, 1),
        (seg - 1, seg + 1),
        (seg, 2 * seg),
        (1, len - 1),
        (3 * seg, len),
        (3 * seg + 122, len),
        (len - 1, len + 500),
        (len, len + 10),
    ] {
        let got = read(b.owner.as_ref(), &c, &id, start, Some(end))
            .await
            .unwrap();
        let want = body.slice(start.min(len) as usize..end.min(len) as usize);
        assert_eq!(got, want, "range {start}..{end}");
    }
}

#[tokio::test]
async fn keys_given_later_or_rotated_keep_everything_readable() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Written before the operator turned encryption at rest on.
    let plain_store = LocalStore::open(root).await.unwrap();
    let b = Backend {
        owner: Arc::new(plain_store.clone()),
        other: Arc::new(plain_store.clone()),
        other_user: StorageUser::new("x:y").unwrap(),
        _keep: None,
    };
    let c = conformance::fresh_container(&b).await;
    let old = data(31, 100_000);
    plain_store
        .put_bytes(&c, &id_of(&old), old.clone())
        .await
        .unwrap();

    let first = LocalStore::open_sealed(root, AtRestKeys::from_bytes(KEY, &[]))
        .await
        .unwrap();
    assert_eq!(first.get_bytes(&c, &id_of(&old)).await.unwrap(), old);
    // A retry of the same bytes over the plain object succeeds; other bytes do not.
    first
        .put_bytes(&c, &id_of(&old), old.clone())
        .await
        .unwrap();
    assert_eq!(
        first
            .put_bytes(&c, &id_of(&old), data(32, 100_000))
            .await
            .unwrap_err()
            .kind,
        BlobErrorKind::Conflict
    );
    let middle = data(33, 200_000);
    first
        .put_bytes(&c, &id_of(&middle), middle.clone())
        .await
        .unwrap();

    // Rotation: a new current key, the old one kept for reading.
    let rotated = LocalStore::open_sealed(root, AtRestKeys::from_bytes([9; 32], &[KEY]))
        .await
        .unwrap();
    assert_eq!(rotated.get_bytes(&c, &id_of(&old)).await.unwrap(), old);
    assert_eq!(
        rotated.get_bytes(&c, &id_of(&middle)).await.unwrap(),
        middle
    );
    rotated
        .put_bytes(&c, &id_of(&middle), middle.clone())
        .await
        .unwrap();
    assert_eq!(
        rotated
            .put_bytes(&c, &id_of(&middle), data(34, 200_000))
            .await
            .unwrap_err()
            .kind,
        BlobErrorKind::Conflict
    );
    let new = data(35, 50_000);
    rotated
        .put_bytes(&c, &id_of(&new), new.clone())
        .await
        .unwrap();

    // Without the old key, what it sealed is refused (clearly), the rest reads.
    let forgot = LocalStore::open_sealed(root, AtRestKeys::from_bytes([9; 32], &[]))
        .await
        .unwrap();
    let err = forgot.get_bytes(&c, &id_of(&middle)).await.unwrap_err();
    assert_eq!(err.kind, BlobErrorKind::Integrity);
    assert!(err.to_string().contains("at-rest key"), "{err}");
    assert_eq!(forgot.get_bytes(&c, &id_of(&new)).await.unwrap(), new);
    // A store with no key at all says so.
    let err = plain_store.get_bytes(&c, &id_of(&new)).await.unwrap_err();
    assert!(err.to_string().contains("no at-rest key"), "{err}");
    assert!(!plain_store.encrypts_at_rest());
}

/// Rotation made complete: `reseal` rewrites what the old key (or no key)
/// wrote under the current one, after which the old key can be retired;
/// contents and names are unchanged and a second pass has nothing to do.
#[tokio::test]
async fn reseal_lets_an_old_key_be_retired() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let plain = LocalStore::open(root).await.unwrap();
    let b = Backend {
        owner: Arc::new(plain.clone()),
        other: Arc::new(plain.clone()),
        other_user: StorageUser::new("x:y").unwrap(),
        _keep: None,
    };
    let c = conformance::fresh_container(&b).await;
    let d = conformance::fresh_container(&b).await;
    let first = data(50, 70_000);
    plain
        .put_bytes(&c, &id_of(&first), first.clone())
        .await
        .unwrap();
    let old = LocalStore::open_sealed(root, AtRestKeys::from_bytes(KEY, &[]))
        .await
        .unwrap();
    let second = data(51, 200_000);
    old.put_bytes(&d, &id_of(&second), second.clone())
        .await
        .unwrap();
    let empty = Bytes::new();
    old.put_bytes(&d, &id_of(&empty), empty.clone())
        .await
        .unwrap();

    let rotated = LocalStore::open_sealed(root, AtRestKeys::from_bytes([9; 32], &[KEY]))
        .await
        .unwrap();
    let third = data(52, 10_000);
    rotated
        .put_bytes(&c, &id_of(&third), third.clone())
        .await
        .unwrap();
    let done = rotated.reseal().await.unwrap();
    assert_eq!((done.containers, done.objects, done.resealed), (2, 4, 3));
    assert_eq!(rotated.reseal().await.unwrap().resealed, 0);

    let retired = LocalStore::open_sealed(root, AtRestKeys::from_bytes([9; 32], &[]))
        .await
        .unwrap();
    for (container, body) in [(&c, &first), (&d, &second), (&d, &empty), (&c, &third)] {
        assert_eq!(
            &retired.get_bytes(container, &id_of(body)).await.unwrap(),
            body
        );
    }
    assert!(
        plain.reseal().await.is_err(),
        "no key, nothing to reseal with"
    );
    let stranger = retired.as_user(StorageUser::new("x:y").unwrap());
    assert_eq!(
        stranger.reseal().await.unwrap_err().kind,
        BlobErrorKind::Forbidden
    );
}
