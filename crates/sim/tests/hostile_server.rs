//! The hostile-server suite: the real client (engine, the end-to-end
//! encrypted remote `SealedRemote`, the chunk store with the workspace's
//! encrypted codec, the key files and their checks) against the real
//! service, with a wrapper between them that tampers with what the server
//! answers, one attack per test. Every attack must be detected and fail
//! closed: the sync fails with an error naming the item (or the keys), the
//! folder holds no file with made-up content and no partial file, and with
//! the tampering gone the same device syncs correctly (so the failure was
//! the attack, not the harness).
//!
//! Each test names the attack class of the papers it covers: "End-to-End
//! Encrypted Cloud Storage in the Wild: A Broken Ecosystem" (Hofmann and
//! Truong, CCS 2024), "MEGA: Malleable Encryption Goes Awry" (S&P 2023)
//! and "Share with Care: Breaking E2EE in Nextcloud" (EuroS&P 2024).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use stacksync_client::e2ee::keys::{encrypt_private, open_workspace, unlock_identity};
use stacksync_client::e2ee::{KeyFiles, SealedRemote};
use stacksync_client::{
    ChunkTransport, ChunkedContentStore, Connection, NotificationStream, TransferConfig,
    WorkspaceRemote,
};
use stacksync_engine::io::MemStateStore;
use stacksync_engine::sim::{FakeClock, MemFs, SeqIds};
use stacksync_engine::{Changed, Engine, EngineConfig, EngineIo};
use stacksync_proto::ids::ChunkId;
use stacksync_proto::keys::KeyStatement;
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{ChunkRef, Error, ItemMeta, UserId, Workspace};
use stacksync_sim::device::files_on;
use stacksync_sim::link::{Faults, SimConnection};
use stacksync_sim::world::World;
use stacksync_vault::{Identity, Member, Statement};

const PASSWORD: &str = "sim-password-1";
const PASSPHRASE: &str = "hostile server passphrase";

/// What the server does to a reply before the client sees it.
type ReplyTamper = Box<dyn FnMut(&Request, &mut Reply) + Send>;
/// What the server does to the bytes of an object read.
type BytesTamper = Box<dyn FnMut(&mut Vec<u8>) + Send>;

#[derive(Default)]
struct Hostile {
    reply: Mutex<Option<ReplyTamper>>,
    bytes: Mutex<Option<BytesTamper>>,
}

impl Hostile {
    fn on_reply(&self, f: impl FnMut(&Request, &mut Reply) + Send + 'static) {
        *self.reply.lock().unwrap() = Some(Box::new(f));
    }

    fn on_bytes(&self, f: impl FnMut(&mut Vec<u8>) + Send + 'static) {
        *self.bytes.lock().unwrap() = Some(Box::new(f));
    }

    fn stop(&self) {
        *self.reply.lock().unwrap() = None;
        *self.bytes.lock().unwrap() = None;
    }
}

/// The device's connection to the service, through the hostile wrapper.
struct HostileConn {
    inner: SimConnection,
    hostile: Arc<Hostile>,
}

#[async_trait]
impl Connection for HostileConn {
    async fn rpc(&self, request: Request) -> Result<Reply, Error> {
        let asked = request.clone();
        let mut reply = self.inner.rpc(request).await?;
        if let Some(f) = self.hostile.reply.lock().unwrap().as_mut() {
            f(&asked, &mut reply);
        }
        Ok(reply)
    }

    async fn chunks(&self, workspace: &Workspace) -> Result<Arc<dyn ChunkTransport>, Error> {
        Ok(Arc::new(HostileTransport {
            inner: self.inner.chunks(workspace).await?,
            hostile: Arc::clone(&self.hostile),
            workspace: workspace.id,
        }))
    }

    async fn notifications(&self) -> Result<NotificationStream, Error> {
        self.inner.notifications().await
    }
}

struct HostileTransport {
    inner: Arc<dyn ChunkTransport>,
    hostile: Arc<Hostile>,
    workspace: stacksync_proto::WorkspaceId,
}

impl HostileTransport {
    fn tamper(&self, bytes: Bytes) -> Bytes {
        match self.hostile.bytes.lock().unwrap().as_mut() {
            None => bytes,
            Some(f) => {
                let mut v = bytes.to_vec();
                f(&mut v);
                Bytes::from(v)
            }
        }
    }
}

#[async_trait]
impl ChunkTransport for HostileTransport {
    async fn has_chunks(&self, ids: &[ChunkId]) -> Result<Vec<bool>, Error> {
        self.inner.has_chunks(ids).await
    }
    async fn put_chunk(&self, id: &ChunkId, data: Bytes) -> Result<(), Error> {
        self.inner.put_chunk(id, data).await
    }
    async fn get_chunk(&self, id: &ChunkId) -> Result<Bytes, Error> {
        Ok(self.tamper(self.inner.get_chunk(id).await?))
    }
    async fn get_range(&self, id: &ChunkId, offset: u64, len: u32) -> Result<Bytes, Error> {
        Ok(self.tamper(self.inner.get_range(id, offset, len).await?))
    }
    async fn locate_chunks(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkRef>>, Error> {
        // The chunk index's answer is the server's too.
        let chunks = self.inner.locate_chunks(ids).await?;
        let asked = Request::LocateChunks {
            workspace: self.workspace,
            ids: ids.to_vec(),
            bases: false,
        };
        let mut reply = Reply::ChunkLocations { chunks };
        if let Some(f) = self.hostile.reply.lock().unwrap().as_mut() {
            f(&asked, &mut reply);
        }
        match reply {
            Reply::ChunkLocations { chunks } => Ok(chunks),
            _ => Err(Error::internal(
                "the hostile wrapper changed the reply's kind",
            )),
        }
    }
    async fn locate_bases(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkRef>>, Error> {
        self.inner.locate_bases(ids).await
    }
}

/// One device of the account: a disk, saved sync state and key files that
/// survive between syncs (each sync opens a new engine, as a restarted
/// process would), and the hostile wrapper on its connection.
struct Device {
    name: String,
    fs: MemFs,
    state: Arc<MemStateStore>,
    home: tempfile::TempDir,
    conn: Arc<HostileConn>,
    hostile: Arc<Hostile>,
    device: stacksync_proto::DeviceId,
    workspace: Workspace,
}

static SEEDS: AtomicU64 = AtomicU64::new(1);

impl Device {
    async fn new(world: &World, email: &str, name: &str, workspace: Workspace) -> Device {
        let seed = SEEDS.fetch_add(1, Ordering::SeqCst) << 24;
        let session = world.login(email, name, workspace, seed).await.unwrap();
        let hostile = Arc::new(Hostile::default());
        let conn = Arc::new(HostileConn {
            inner: SimConnection::new(
                world.service.clone(),
                session.user,
                session.token,
                seed | 1,
                Arc::new(Faults::default()),
            ),
            hostile: Arc::clone(&hostile),
        });
        Device {
            name: name.into(),
            fs: MemFs::new(),
            state: Arc::new(MemStateStore::new()),
            home: tempfile::tempdir().unwrap(),
            conn,
            hostile,
            device: session.device,
            workspace: session.workspace,
        }
    }

    fn files(&self) -> KeyFiles {
        KeyFiles::new(self.home.path())
    }

    /// Unlocks the account's identity on this device (setup --passphrase).
    async fn unlock(&self, user: UserId) -> Result<Identity, Error> {
        let identity = unlock_identity(self.conn.as_ref(), user, PASSPHRASE, PASSWORD).await?;
        self.files().save_identity(&identity)?;
        Ok(identity)
    }

    /// One `sync --once` from the saved state: open the keys, the engine,
    /// and sync everything.
    async fn sync(&self) -> Result<(), Error> {
        let keys =
            Arc::new(open_workspace(&self.files(), self.conn.as_ref(), &self.workspace).await?);
        let transport = self.conn.chunks(&self.workspace).await?;
        let content = ChunkedContentStore::new(
            keys.codec()?,
            transport,
            TransferConfig {
                pack_bytes: 64 * 1024,
                ..TransferConfig::default()
            },
        )
        .map_err(|e| Error::internal(e.to_string()))?;
        let inner = Arc::new(
            WorkspaceRemote::new(
                Arc::clone(&self.conn) as Arc<dyn Connection>,
                self.workspace.id,
                self.device,
            )
            .sealed(),
        );
        let sealed = Arc::new(SealedRemote::new(inner, keys).checking_keys(
            Arc::clone(&self.conn) as Arc<dyn Connection>,
            self.workspace.id,
        ));
        let io = EngineIo {
            fs: Arc::new(self.fs.clone()),
            remote: Arc::clone(&sealed) as Arc<dyn stacksync_engine::Remote>,
            content: Arc::new(content),
            clock: Arc::new(FakeClock::default()),
            ids: Arc::new(SeqIds::new(SEEDS.fetch_add(1, Ordering::SeqCst))),
            store: self.state.clone(),
        };
        let config = EngineConfig {
            device_name: self.name.clone(),
            ..EngineConfig::default()
        };
        let mut engine = Engine::open(io, config)
            .await
            .map_err(|e| Error::internal(e.to_string()))?;
        sealed.seed(engine.state().remote.iter())?;
        engine
            .sync_changed(Changed::Anywhere)
            .await
            .map(|_| ())
            .map_err(|e| Error::internal(e.to_string()))
    }

    /// Every file on the disk, without download temporaries.
    fn disk(&self) -> BTreeMap<String, Vec<u8>> {
        files_on(&self.fs).into_iter().collect()
    }
}

/// An encrypted account with a writer and a reader device, and a few
/// files the writer synced: `a.txt` (3 chunks), `b.txt` (3 chunks),
/// `docs/c.txt`.
struct Setup {
    world: World,
    user: UserId,
    writer: Device,
    reader: Device,
    /// What the reader must end up with once the tampering stops.
    expected: BTreeMap<String, Vec<u8>>,
}

/// Random bytes cut into several chunks by the default chunker.
fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn setup() -> Setup {
    let world = World::new(SEEDS.fetch_add(1, Ordering::SeqCst), &[1])
        .await
        .unwrap();
    let plain = world.workspaces[0].0.clone();
    let user = world.devices[0].session.user;
    let email = "user0@sim.test";
    let writer = Device::new(&world, email, "writer", plain.clone()).await;
    let identity = writer.unlock(user).await.unwrap();
    let workspace = encrypt_private(&writer.files(), writer.conn.as_ref(), plain, &identity)
        .await
        .unwrap();
    let mut writer = writer;
    writer.workspace = workspace.clone();
    let reader = Device::new(&world, email, "reader", workspace).await;
    reader.unlock(user).await.unwrap();
    let mut expected = BTreeMap::new();
    for (path, bytes) in [
        ("a.txt", data(1, 3 << 20)),
        ("b.txt", data(2, 3 << 20)),
        ("docs/c.txt", data(3, 10_000)),
    ] {
        if let Some((dir, _)) = path.rsplit_once('/') {
            writer.fs.user_mkdir_p(dir);
        }
        writer.fs.user_write(path, &bytes);
        expected.insert(path.to_owned(), bytes);
    }
    writer.sync().await.unwrap();
    Setup {
        world,
        user,
        writer,
        reader,
        expected,
    }
}

impl Setup {
    /// Another device of the account, not set up yet.
    async fn new_device(&self) -> Device {
        Device::new(
            &self.world,
            "user0@sim.test",
            "new",
            self.reader.workspace.clone(),
        )
        .await
    }

    /// The reader syncs under attack: it must fail, naming what failed,
    /// and hold nothing the server made up; then, the attack stopped, it
    /// syncs to exactly the writer's files.
    async fn fails_closed(&self, expect_in_error: &str) {
        let before = self.reader.disk();
        let err = self
            .reader
            .sync()
            .await
            .expect_err("the attack must be detected");
        assert!(
            err.message.contains(expect_in_error),
            "error {:?} does not say {expect_in_error:?}",
            err.message
        );
        let after = self.reader.disk();
        for (path, bytes) in &after {
            assert!(
                before.get(path) == Some(bytes) || self.expected.get(path) == Some(bytes),
                "{path} holds bytes that are neither what the device had nor what was written"
            );
        }
        self.reader.hostile.stop();
        self.reader.sync().await.unwrap();
        assert_eq!(self.reader.disk(), self.expected);
    }
}

/// Applies `f` to every item of every change page the reader reads.
fn on_items(d: &Device, mut f: impl FnMut(&mut Vec<ItemMeta>) + Send + 'static) {
    d.hostile.on_reply(move |_, reply| {
        if let Reply::Changes(page) = reply {
            f(&mut page.items);
        }
    });
}

/// The listed item whose record is for the file at `name`'s place: the
/// writer's synced tree knows which id is which.
async fn item_named(s: &Setup, name: &str) -> stacksync_proto::ItemId {
    use stacksync_engine::StateStore;
    let state = s
        .writer
        .state
        .load()
        .await
        .unwrap()
        .expect("the writer synced");
    state
        .synced
        .iter()
        .find(|(_, it)| it.name.as_str() == name)
        .map(|(id, _)| *id)
        .unwrap_or_else(|| panic!("{name} is synced"))
}

/// Sets the listed content hash to the digest of the (tampered) record, as
/// a server covering its tracks would, so that the record itself is what
/// gets checked.
fn relist(m: &mut ItemMeta) {
    if let (Some(r), Some(_)) = (&m.record, m.content_hash) {
        m.content_hash = Some(stacksync_proto::ContentHash(
            stacksync_vault::record::record_hash(r),
        ));
    }
}

async fn with_item(
    s: &Setup,
    name: &str,
    mut f: impl FnMut(&mut ItemMeta) + Send + 'static,
) -> stacksync_proto::ItemId {
    let id = item_named(s, name).await;
    on_items(&s.reader, move |items| {
        for m in items.iter_mut().filter(|m| m.id == id) {
            f(m);
        }
    });
    id
}

const VERIFY: &str = "fails end-to-end verification";
const LISTED: &str = "that its writer did not send";

/// MEGA / CCS 2024 class (chunk reordering, unauthenticated file
/// structure): two chunks of a file swapped in its listing.
#[tokio::test]
async fn swapped_chunks_are_refused() {
    let s = setup().await;
    with_item(&s, "a.txt", |m| m.chunks.swap(0, 1)).await;
    s.fails_closed(VERIFY).await;
}

/// CCS 2024 class (truncation / chunk removal): a chunk dropped from the
/// listing, the size made to match.
#[tokio::test]
async fn dropped_chunk_is_refused() {
    let s = setup().await;
    with_item(&s, "a.txt", |m| {
        let c = m.chunks.pop().unwrap();
        m.size -= u64::from(c.size);
    })
    .await;
    s.fails_closed(VERIFY).await;
}

/// CCS 2024 class (chunk duplication): a chunk listed twice.
#[tokio::test]
async fn duplicated_chunk_is_refused() {
    let s = setup().await;
    with_item(&s, "a.txt", |m| {
        let c = m.chunks[0];
        m.size += u64::from(c.size);
        m.chunks.insert(1, c);
    })
    .await;
    s.fails_closed(VERIFY).await;
}

/// CCS 2024 class (reordering): the whole chunk list reversed.
#[tokio::test]
async fn reordered_chunks_are_refused() {
    let s = setup().await;
    with_item(&s, "a.txt", |m| m.chunks.reverse()).await;
    s.fails_closed(VERIFY).await;
}

/// CCS 2024 / MEGA class (truncated ciphertext): every object read comes
/// back cut short.
#[tokio::test]
async fn truncated_chunk_bytes_are_refused() {
    let s = setup().await;
    s.reader.hostile.on_bytes(|b| {
        let keep = b.len() / 2;
        b.truncate(keep);
    });
    s.fails_closed("").await;
}

/// MEGA class (malleable ciphertext): one bit flipped in every object read.
#[tokio::test]
async fn flipped_bit_in_a_chunk_is_refused() {
    let s = setup().await;
    s.reader.hostile.on_bytes(|b| {
        let at = b.len() / 2;
        b[at] ^= 1;
    });
    s.fails_closed("").await;
}

/// CCS 2024 class (chunk substitution across files): the server lists a
/// chunk of another file in a file's chunk list.
#[tokio::test]
async fn chunk_of_another_file_in_the_listing_is_refused() {
    let s = setup().await;
    let other = item_named(&s, "b.txt").await;
    let first = Arc::new(Mutex::new(None::<ChunkRef>));
    let target = item_named(&s, "a.txt").await;
    on_items(&s.reader, move |items| {
        if let Some(b) = items.iter().find(|m| m.id == other) {
            *first.lock().unwrap() = Some(b.chunks[0]);
        }
        let foreign = *first.lock().unwrap();
        for m in items.iter_mut().filter(|m| m.id == target) {
            if let Some(c) = foreign {
                m.size = m.size - u64::from(m.chunks[0].size) + u64::from(c.size);
                m.chunks[0] = c;
            }
        }
    });
    s.fails_closed(VERIFY).await;
}

/// CCS 2024 class (chunk substitution): the listing is intact, but the
/// server says a chunk is stored where another file's chunk is, so the
/// bytes read for it are that other chunk; and its chunk index, asked
/// again, says the same. Once the index tells the truth again, the file
/// downloads although the device still holds the lying listing.
#[tokio::test]
async fn chunk_of_another_file_at_its_location_is_refused() {
    let s = setup().await;
    let other = item_named(&s, "b.txt").await;
    let target = item_named(&s, "a.txt").await;
    // (the chunk of a.txt, where b.txt's first chunk is stored)
    let lie: Arc<Mutex<Option<(ChunkId, stacksync_proto::PackSpan)>>> = Arc::default();
    s.reader.hostile.on_reply(move |_, reply| match reply {
        Reply::Changes(page) => {
            let Some(span) = page
                .items
                .iter()
                .find(|m| m.id == other)
                .and_then(|b| b.chunks[0].span)
            else {
                return;
            };
            for m in page.items.iter_mut().filter(|m| m.id == target) {
                m.chunks[0].span = Some(span);
                *lie.lock().unwrap() = Some((m.chunks[0].id, span));
            }
        }
        Reply::ChunkLocations { chunks } => {
            let told = *lie.lock().unwrap();
            for c in chunks.iter_mut().flatten() {
                if let Some((id, span)) = told
                    && c.id == id
                {
                    c.span = Some(span);
                }
            }
        }
        _ => {}
    });
    s.fails_closed("authentication failed").await;
}

/// CCS 2024 class (cross-workspace substitution): the bytes read for a
/// chunk are a chunk of another encrypted workspace (another account's,
/// with its own keys).
#[tokio::test]
async fn chunk_of_another_workspace_is_refused() {
    let s = setup().await;
    foreign_workspace_bytes(&s).await;
}

async fn foreign_workspace_bytes(s: &Setup) {
    let (_, other_private) = s
        .world
        .service
        .create_user("other@sim.test", "other", PASSWORD, 1 << 40, None)
        .await
        .unwrap();
    let mallory = Device::new(&s.world, "other@sim.test", "other", other_private.clone()).await;
    let identity = mallory.unlock(other_private.owner).await.unwrap();
    let ws = encrypt_private(
        &mallory.files(),
        mallory.conn.as_ref(),
        other_private,
        &identity,
    )
    .await
    .unwrap();
    let mut mallory = mallory;
    mallory.workspace = ws;
    mallory.fs.user_write("x.bin", &data(9, 200_000));
    mallory.sync().await.unwrap();
    // Every object of that workspace, as bytes the server could serve.
    let foreign = all_pack_bytes(&mallory).await;
    assert!(!foreign.is_empty());
    s.reader.hostile.on_bytes(move |b| {
        let n = b.len().min(foreign.len());
        b[..n].copy_from_slice(&foreign[..n]);
    });
    s.fails_closed("").await;
}

/// Every object of `d`'s workspace, read through its own transport.
async fn all_pack_bytes(d: &Device) -> Vec<u8> {
    let transport = d.conn.chunks(&d.workspace).await.unwrap();
    let Reply::Changes(page) = d
        .conn
        .rpc(Request::GetChanges {
            workspace: d.workspace.id,
            since: 0,
            limit: 1000,
        })
        .await
        .unwrap()
    else {
        panic!("changes")
    };
    let mut out = Vec::new();
    for m in page.items {
        for c in m.chunks {
            let span = c.span.expect("packed");
            let bytes = transport
                .get_range(&span.pack, span.offset, span.len)
                .await
                .unwrap();
            out.extend_from_slice(&bytes);
        }
    }
    out
}

/// Share with Care / CCS 2024 class (unauthenticated names, name swap):
/// the records of two files swapped between their listings.
#[tokio::test]
async fn swapped_names_are_refused() {
    let s = setup().await;
    let (a, b) = (item_named(&s, "a.txt").await, item_named(&s, "b.txt").await);
    on_items(&s.reader, move |items| {
        let ra = items.iter().find(|m| m.id == a).map(|m| m.record.clone());
        let rb = items.iter().find(|m| m.id == b).map(|m| m.record.clone());
        for m in items.iter_mut() {
            if m.id == a {
                m.record = rb.clone().flatten();
            } else if m.id == b {
                m.record = ra.clone().flatten();
            }
            relist(m);
        }
    });
    s.fails_closed(VERIFY).await;
}

/// Share with Care / CCS 2024 class (unauthenticated folder structure):
/// a file listed under another folder.
#[tokio::test]
async fn file_moved_to_another_folder_is_refused() {
    let s = setup().await;
    let docs = item_named(&s, "docs").await;
    with_item(&s, "a.txt", move |m| m.parent = Some(docs)).await;
    s.fails_closed(VERIFY).await;
}

/// CCS 2024 class (unauthenticated metadata): the listed size changed.
#[tokio::test]
async fn changed_size_is_refused() {
    let s = setup().await;
    with_item(&s, "a.txt", |m| {
        m.chunks[0].size -= 1;
        m.size -= 1;
    })
    .await;
    s.fails_closed(VERIFY).await;
}

/// CCS 2024 class (unauthenticated metadata): the listed modification time
/// changed (the real one is only in the record; the listing must say 0).
#[tokio::test]
async fn changed_modification_time_is_refused() {
    let s = setup().await;
    with_item(&s, "a.txt", |m| m.client_modified = 1_700_000_000_000).await;
    s.fails_closed(LISTED).await;
}

/// Adds to every page an item of the server's own, made from the listed
/// item `like` by `make` (under a fresh id and its sealed name).
fn inject(s: &Setup, like: stacksync_proto::ItemId, make: fn(ItemMeta) -> ItemMeta) {
    on_items(&s.reader, move |items| {
        if let Some(template) = items.iter().find(|m| m.id == like).cloned() {
            let id = stacksync_proto::ItemId::new();
            items.push(make(ItemMeta {
                id,
                name: stacksync_proto::ProposedItem::sealed_name(id),
                ..template
            }));
        }
    });
}

/// CCS 2024 / Share with Care class (file injection): the server adds an
/// item of its own with no record.
#[tokio::test]
async fn injected_file_without_record_is_refused() {
    let s = setup().await;
    let template = item_named(&s, "c.txt").await;
    inject(&s, template, |m| ItemMeta { record: None, ..m });
    s.fails_closed("without its record").await;
}

/// The same class: an injected folder carrying another item's record.
#[tokio::test]
async fn injected_folder_with_a_borrowed_record_is_refused() {
    let s = setup().await;
    let docs = item_named(&s, "docs").await;
    inject(&s, docs, |m| m);
    s.fails_closed(VERIFY).await;
}

/// CCS 2024 class (no rollback protection): after the reader saw version
/// 2 of a file, the server lists version 1 again (authentic, but old).
#[tokio::test]
async fn replayed_old_version_is_refused() {
    let s = setup().await;
    s.reader.sync().await.unwrap();
    let id = item_named(&s, "a.txt").await;
    let Reply::Versions { versions } = s
        .writer
        .conn
        .rpc(Request::GetVersions {
            workspace: s.writer.workspace.id,
            item: id,
        })
        .await
        .unwrap()
    else {
        panic!("versions")
    };
    let v1 = versions.into_iter().find(|v| v.version == 1).unwrap();
    // The writer edits another file, so the reader has a page to read.
    let mut s = s;
    let edited = data(4, 20_000);
    s.writer.fs.user_write("b.txt", &edited);
    s.writer.sync().await.unwrap();
    s.expected.insert("b.txt".into(), edited);
    // Version 2 of a.txt exists too: the writer edits it and the reader
    // sees it; then the server replays version 1.
    let a2 = data(5, 30_000);
    s.writer.fs.user_write("a.txt", &a2);
    s.writer.sync().await.unwrap();
    s.reader.sync().await.unwrap();
    s.expected.insert("a.txt".into(), a2);
    let c = data(6, 1000);
    s.writer.fs.user_write("docs/c.txt", &c);
    s.writer.sync().await.unwrap();
    s.expected.insert("docs/c.txt".into(), c);
    on_items(&s.reader, move |items| items.push(v1.clone()));
    s.fails_closed("older data").await;
}

/// CCS 2024 class (downgrade): a record whose format byte was lowered.
#[tokio::test]
async fn downgraded_record_format_is_refused() {
    let s = setup().await;
    with_item(&s, "a.txt", |m| {
        if let Some(r) = m.record.as_mut() {
            r[4] = 0;
        }
        relist(m);
    })
    .await;
    s.fails_closed("outdated or weakened format").await;
}

/// CCS 2024 class (downgrade): a chunk object whose format byte was
/// lowered to the unencrypted format.
#[tokio::test]
async fn downgraded_chunk_format_is_refused() {
    let s = setup().await;
    s.reader.hostile.on_bytes(|b| b[0] = 1);
    s.fails_closed("").await;
}

/// CCS 2024 class (key substitution by the server): the server publishes
/// another public key for the user next to the real sealed identity; a
/// new device refuses both.
#[tokio::test]
async fn replaced_public_key_is_refused_at_setup() {
    let s = setup().await;
    let d = s.new_device().await;
    let fake = Identity::generate(s.user)
        .unwrap()
        .public()
        .to_bytes()
        .to_vec();
    d.hostile.on_reply(move |_, reply| {
        if let Reply::OwnIdentity { identity, .. } = reply {
            *identity = Some(fake.clone());
        }
    });
    let err = d.unlock(s.user).await.unwrap_err();
    assert!(err.message.contains("does not match"), "{err:?}");
}

/// CCS 2024 / Share with Care class (key substitution): the server serves
/// a key chain it made itself (a genesis signed by a key it holds for the
/// same user) to a device that has not seen the workspace yet, and as the
/// next statement to one that has.
#[tokio::test]
async fn key_chain_made_by_the_server_is_refused() {
    let s = setup().await;
    let fake_owner = Identity::generate(s.user).unwrap();
    let (forged, _) = Statement::genesis(&fake_owner, s.reader.workspace.id, &[], None).unwrap();
    let forged2 = forged.clone();
    // A device that never saw the chain: the server's genesis does not list
    // this device's identity.
    s.reader.hostile.on_reply(move |_, reply| {
        if let Reply::KeyStatements {
            statements,
            latest_epoch,
            ..
        } = reply
        {
            *statements = vec![KeyStatement {
                epoch: 1,
                statement: forged.clone(),
            }];
            *latest_epoch = 1;
        }
    });
    s.fails_closed("membership").await;
    // A device that did: the forged statement as epoch 2.
    s.reader.hostile.on_reply(move |req, reply| {
        if let (
            Request::GetKeyStatements { after_epoch: 1, .. },
            Reply::KeyStatements {
                statements,
                latest_epoch,
                ..
            },
        ) = (req, reply)
        {
            *statements = vec![KeyStatement {
                epoch: 2,
                statement: forged2.clone(),
            }];
            *latest_epoch = 2;
        }
    });
    s.fails_closed("membership").await;
}

/// Share with Care class (the server drops the recipient list): an empty
/// key chain, to a device that verified one and to a new device; neither
/// makes new keys.
#[tokio::test]
async fn empty_key_chain_is_refused_and_makes_no_keys() {
    let s = setup().await;
    s.reader.sync().await.unwrap();
    let empty = |_: &Request, reply: &mut Reply| {
        if let Reply::KeyStatements {
            statements,
            latest_epoch,
            ..
        } = reply
        {
            statements.clear();
            *latest_epoch = 0;
        }
    };
    s.reader.hostile.on_reply(empty);
    s.fails_closed("rollback").await;
    let d = s.new_device().await;
    d.unlock(s.user).await.unwrap();
    d.hostile.on_reply(empty);
    let err = d.sync().await.unwrap_err();
    assert!(err.message.contains("no key statement"), "{err:?}");
    d.hostile.stop();
    // The chain on the server is still the writer's one statement.
    let Reply::KeyStatements { latest_epoch, .. } = d
        .conn
        .rpc(Request::GetKeyStatements {
            workspace: d.workspace.id,
            after_epoch: 0,
            limit: 10,
        })
        .await
        .unwrap()
    else {
        panic!("statements")
    };
    assert_eq!(latest_epoch, 1);
}

/// CCS 2024 class (shortened recipient list): the server hides the later
/// statements of a chain and says it ends earlier than the device knows.
#[tokio::test]
async fn shortened_key_chain_is_refused() {
    let s = setup().await;
    s.reader.sync().await.unwrap();
    // The owner adds a second statement (a member added and removed would
    // do the same); the reader verifies it.
    let identity = s.writer.files().load_identity().unwrap().unwrap();
    let keys = open_workspace(
        &s.writer.files(),
        s.writer.conn.as_ref(),
        &s.writer.workspace,
    )
    .await
    .unwrap();
    let alone: Vec<Member> = keys.membership.members().to_vec();
    let (next, _) = Statement::next(&keys.membership, &identity, &alone, true, None).unwrap();
    let Reply::KeyStatementStored { .. } = s
        .writer
        .conn
        .rpc(Request::PutKeyStatement {
            workspace: s.writer.workspace.id,
            epoch: 2,
            statement: next,
        })
        .await
        .unwrap()
    else {
        panic!("stored")
    };
    s.reader.sync().await.unwrap();
    s.reader.hostile.on_reply(|_, reply| {
        if let Reply::KeyStatements {
            statements,
            latest_epoch,
            ..
        } = reply
        {
            statements.retain(|st| st.epoch < 2);
            *latest_epoch = 1;
        }
    });
    s.fails_closed("rollback").await;
}

/// CCS 2024 class (downgraded KDF parameters): the sealed identity the
/// server keeps, with its Argon2 parameters lowered; a new device refuses
/// it before running Argon2.
#[tokio::test]
async fn downgraded_kdf_parameters_are_refused() {
    let s = setup().await;
    let d = s.new_device().await;
    d.hostile.on_reply(|_, reply| {
        if let Reply::OwnIdentity {
            sealed: Some(sealed),
            ..
        } = reply
        {
            lower_kdf(sealed);
        }
    });
    let err = d.unlock(s.user).await.unwrap_err();
    assert!(
        err.message.contains("outdated or weakened format"),
        "{err:?}"
    );
}

/// Lowers the Argon2 memory parameter inside a sealed identity: the
/// wrapped key starts after "SSid", the format byte, the user id and the
/// length; its parameters follow its own format byte.
fn lower_kdf(sealed: &mut [u8]) {
    let wrapped = 4 + 1 + 16 + 2;
    // memory_kib, little-endian u32, after the wrapped key's magic,
    // version, method, kind and reserved byte.
    let at = wrapped + 8;
    sealed[at..at + 4].copy_from_slice(&1024u32.to_le_bytes());
}

/// MEGA class (key malleability): one bit of a wrapped key flipped, in the
/// key statement and in the sealed identity.
#[tokio::test]
async fn flipped_bit_in_a_wrapped_key_is_refused() {
    let s = setup().await;
    s.reader.hostile.on_reply(|_, reply| {
        if let Reply::KeyStatements { statements, .. } = reply
            && let Some(st) = statements.first_mut()
        {
            let at = st.statement.len() / 2;
            st.statement[at] ^= 1;
        }
    });
    s.fails_closed("membership").await;
    let d = s.new_device().await;
    d.hostile.on_reply(|_, reply| {
        if let Reply::OwnIdentity {
            sealed: Some(sealed),
            ..
        } = reply
        {
            let at = sealed.len() - 40;
            sealed[at] ^= 1;
        }
    });
    assert!(d.unlock(s.user).await.is_err());
}

/// A device whose keys are older than the workspace's latest statement
/// (another device rotated the key meanwhile: a member was removed)
/// commits nothing under them: the commit is refused as transient before
/// anything is sealed, and goes through once the keys are opened again.
#[tokio::test]
async fn keys_older_than_the_latest_statement_commit_nothing() {
    use stacksync_engine::Remote;
    let s = setup().await;
    let d = &s.writer;
    let keys = Arc::new(
        open_workspace(&d.files(), d.conn.as_ref(), &d.workspace)
            .await
            .unwrap(),
    );
    let inner = Arc::new(
        WorkspaceRemote::new(
            Arc::clone(&d.conn) as Arc<dyn Connection>,
            d.workspace.id,
            d.device,
        )
        .sealed(),
    );
    let stale = SealedRemote::new(inner.clone(), Arc::clone(&keys))
        .checking_keys(Arc::clone(&d.conn) as Arc<dyn Connection>, d.workspace.id);
    stale.commit(Vec::new()).await.expect("current keys commit");
    // The same member, rotated to a new generation from elsewhere.
    let me = d.files().load_identity().unwrap().unwrap();
    let members: Vec<Member> = keys.membership.members().to_vec();
    let (next, _) = Statement::next(&keys.membership, &me, &members, true, None).unwrap();
    let put = Request::PutKeyStatement {
        workspace: d.workspace.id,
        epoch: keys.membership.epoch() + 1,
        statement: next,
    };
    d.conn.rpc(put).await.unwrap();
    let e = stale.commit(Vec::new()).await.expect_err("stale keys");
    assert_eq!(e.kind, stacksync_proto::ErrorKind::Unavailable, "{e}");
    assert!(e.message.contains("key list"), "{e}");
    let fresh = open_workspace(&d.files(), d.conn.as_ref(), &d.workspace)
        .await
        .unwrap();
    assert_eq!(fresh.membership.generation().0, 2);
    let current = SealedRemote::new(inner, Arc::new(fresh))
        .checking_keys(Arc::clone(&d.conn) as Arc<dyn Connection>, d.workspace.id);
    current.commit(Vec::new()).await.expect("new keys commit");
}
