//! Two real folders (each with its own `LocalFs` and `SqliteStateStore`)
//! syncing through the engine's `FakeServer`, chunks packed into one shared
//! `LocalStore`: create, edit, rename, delete and a concurrent edit, each
//! converging, and every commit naming only chunks already stored.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use stacksync_blobstore::{BlobStore, ContainerName};
use stacksync_client::{
    BlobTransport, ChunkTransport, ChunkedContentStore, LocalFs, SqliteStateStore,
};
use stacksync_content::ChunkCodec;
use stacksync_engine::io::RandomIds;
use stacksync_engine::sim::{DeviceLink, FakeClock, FakeServer};
use stacksync_engine::{ByteReader, ContentStore, Engine, EngineConfig, EngineIo, Remote};
use stacksync_proto::{
    ChangesPage, ChunkRef, CommitResult, DeviceId, Error, ProposedItem, WorkspaceId,
};

use common::{blob_store, bytes, small_chunks};

/// The server connection of a device, checking what the fake server cannot:
/// before a commit is applied, every chunk it names must be readable where
/// it says it is (in its pack, or as an object of its own) in the shared
/// `LocalStore`, and decode to its id; the chunk is then registered with
/// the fake server, which refuses commits naming chunks it never saw. A
/// commit sent before the content store flushed its packs fails here. For
/// the compressed codec a chunk's id is the BLAKE3 of its plaintext, which
/// is also how the fake server names a chunk uploaded as one piece.
struct CheckingRemote {
    link: DeviceLink,
    chunks: BlobTransport,
    codec: ChunkCodec,
}

impl CheckingRemote {
    async fn register(&self, chunk: &ChunkRef) -> Result<(), Error> {
        let encoded = match chunk.span {
            Some(s) => self.chunks.get_range(&s.pack, s.offset, s.len).await,
            None => self.chunks.get_chunk(&chunk.id).await,
        }
        .map_err(|e| {
            Error::internal(format!(
                "commit names chunk {} that is not stored: {e}",
                chunk.id
            ))
        })?;
        let plain = self
            .codec
            .decode(&chunk.id, &encoded)
            .map_err(|e| Error::internal(format!("chunk {} is damaged: {e}", chunk.id)))?;
        let up = self
            .link
            .upload(ByteReader::new(std::io::Cursor::new(plain)))
            .await?;
        assert_eq!(
            up.chunks.len(),
            1,
            "a chunk fits the fake server's piece size"
        );
        assert_eq!(
            up.chunks[0].id, chunk.id,
            "the fake server names chunks alike"
        );
        Ok(())
    }
}

#[async_trait]
impl Remote for CheckingRemote {
    async fn get_changes(&self, since: u64, limit: u32) -> Result<ChangesPage, Error> {
        self.link.get_changes(since, limit).await
    }

    async fn commit(&self, items: Vec<ProposedItem>) -> Result<CommitResult, Error> {
        for chunk in items.iter().flat_map(|i| &i.chunks) {
            self.register(chunk).await?;
        }
        self.link.flush().await?;
        self.link.commit(items).await
    }
}

struct Device {
    name: &'static str,
    folder: PathBuf,
    engine: Engine,
    content: ChunkedContentStore,
}

impl Device {
    async fn new(
        name: &'static str,
        base: &Path,
        server: &FakeServer,
        store: &Arc<dyn BlobStore>,
        container: &ContainerName,
    ) -> Device {
        let folder = base.join(name);
        std::fs::create_dir_all(&folder).unwrap();
        let state = SqliteStateStore::open(&base.join(format!("{name}.sqlite")), WorkspaceId::NIL)
            .await
            .unwrap();
        let chunks = BlobTransport::new(Arc::clone(store), container.clone());
        let remote = CheckingRemote {
            link: server.device(DeviceId::new()),
            chunks: chunks.clone(),
            codec: ChunkCodec::compressed(),
        };
        let content =
            ChunkedContentStore::new(ChunkCodec::compressed(), Arc::new(chunks), small_chunks())
                .unwrap();
        let io = EngineIo {
            fs: Arc::new(LocalFs::open(&folder).unwrap()),
            remote: Arc::new(remote),
            content: Arc::new(content.clone()),
            clock: Arc::new(FakeClock::default()),
            ids: Arc::new(RandomIds),
            store: Arc::new(state),
        };
        let config = EngineConfig {
            device_name: name.to_string(),
            ..EngineConfig::default()
        };
        let engine = Engine::open(io, config).await.unwrap();
        Device {
            name,
            folder,
            engine,
            content,
        }
    }

    async fn sync(&mut self) {
        let report = self
            .engine
            .sync()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.name));
        assert!(report.converged, "{}: {report:?}", self.name);
        assert!(report.skipped.is_empty(), "{}: {report:?}", self.name);
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.folder.join(rel)
    }

    /// Every file and folder under the root: path to content (`None` for
    /// folders).
    fn tree(&self) -> BTreeMap<String, Option<Vec<u8>>> {
        let mut out = BTreeMap::new();
        walk(&self.folder, "", &mut out);
        out
    }
}

fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Option<Vec<u8>>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        if entry.file_type().unwrap().is_dir() {
            out.insert(name.clone(), None);
            walk(&entry.path(), &format!("{name}/"), out);
        } else {
            out.insert(name, Some(std::fs::read(entry.path()).unwrap()));
        }
    }
}

async fn converge(a: &mut Device, b: &mut Device) {
    a.sync().await;
    b.sync().await;
    a.sync().await;
    assert_eq!(a.tree(), b.tree(), "folders differ");
}

#[tokio::test]
async fn two_folders_converge_through_create_edit_rename_delete_and_conflict() {
    let base = tempfile::tempdir().unwrap();
    let (store, container) = blob_store(&base.path().join("blobs")).await;
    // Pieces as large as the test chunker's largest chunk.
    let server = FakeServer::new(65536);
    let mut a = Device::new("laptop", base.path(), &server, &store, &container).await;
    let mut b = Device::new("desktop", base.path(), &server, &store, &container).await;

    // Create: a folder, a small file, a many-chunk file.
    std::fs::create_dir(a.path("docs")).unwrap();
    std::fs::write(a.path("docs/notes.txt"), b"first draft").unwrap();
    let big = bytes("big", 300_000);
    std::fs::write(a.path("big.bin"), &big).unwrap();
    converge(&mut a, &mut b).await;
    assert_eq!(std::fs::read(b.path("big.bin")).unwrap(), big);
    assert_eq!(
        std::fs::read(b.path("docs/notes.txt")).unwrap(),
        b"first draft"
    );

    // Edit on the other side (a different size, so no stamp can match).
    std::fs::write(b.path("docs/notes.txt"), b"second draft, longer").unwrap();
    converge(&mut b, &mut a).await;
    assert_eq!(
        std::fs::read(a.path("docs/notes.txt")).unwrap(),
        b"second draft, longer"
    );

    // Rename, and a move into the folder.
    std::fs::rename(a.path("docs/notes.txt"), a.path("docs/renamed.txt")).unwrap();
    std::fs::rename(a.path("big.bin"), a.path("docs/big.bin")).unwrap();
    let before_moves = a
        .content
        .stats()
        .chunks_uploaded
        .load(std::sync::atomic::Ordering::Relaxed);
    converge(&mut a, &mut b).await;
    assert!(!b.path("docs/notes.txt").exists());
    assert_eq!(std::fs::read(b.path("docs/big.bin")).unwrap(), big);
    assert_eq!(
        a.content
            .stats()
            .chunks_uploaded
            .load(std::sync::atomic::Ordering::Relaxed),
        before_moves,
        "a move uploads no content"
    );

    // Delete.
    std::fs::remove_file(b.path("docs/big.bin")).unwrap();
    converge(&mut b, &mut a).await;
    assert!(!a.path("docs/big.bin").exists());

    // Concurrent edit: both change the same file before syncing.
    std::fs::write(a.path("docs/renamed.txt"), b"edit from the laptop").unwrap();
    std::fs::write(b.path("docs/renamed.txt"), b"edit from the desktop!!").unwrap();
    converge(&mut a, &mut b).await;
    let tree = a.tree();
    let copies: Vec<&String> = tree
        .keys()
        .filter(|k| k.contains("conflicted copy"))
        .collect();
    assert_eq!(copies.len(), 1, "exactly one conflicted copy: {tree:?}");
    let mut contents: Vec<&[u8]> = [copies[0].as_str(), "docs/renamed.txt"]
        .iter()
        .map(|k| tree[*k].as_deref().expect("a file"))
        .collect();
    contents.sort();
    assert_eq!(
        contents,
        vec![
            &b"edit from the desktop!!"[..],
            &b"edit from the laptop"[..]
        ],
        "both edits are kept"
    );
    assert_eq!(tree.len(), 3, "docs, the file and its copy: {tree:?}");
}
