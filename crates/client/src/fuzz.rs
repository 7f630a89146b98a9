//! Fuzzing entry points for what the client decodes from the network and
//! from its own files: chunk spans cut out of fetched pack ranges (the
//! read-ahead and the download path, against a transport answering with
//! the input's bytes), upload-journal rows, the sync state's rows,
//! `mounts.toml`, the profile, and the key files of end-to-end encrypted
//! workspaces. They must never panic; the `fuzz/` cargo-fuzz project and
//! `tests/fuzz.rs` both call them.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use stacksync_content::ChunkCodec;
use stacksync_engine::{RelPath, SyncState};
use stacksync_proto::{ChunkId, ChunkRef, Error, ItemId, PackSpan, UserId, WorkspaceId};
use stacksync_vault::{Identity, Member, Pin, Statement};

use crate::e2ee::KeyFiles;
use crate::mounts::MountTable;
use crate::profile::{ProfileConfig, validate};
use crate::state::rows::{Changes, Loader, RowWrite};
use crate::transfer::journal::row_to_ref;
use crate::transfer::readahead::{RangeLimits, ReadAhead, plan_ranges};
use crate::transfer::{ChunkTransport, ChunkedContentStore, TransferConfig};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the fuzz bodies")
    })
}

/// A store whose every object is `blob`: a range read answers the bytes
/// of `blob` at that place, as many as it has (fewer than asked when it
/// ends: a hostile or broken server), and nothing is located.
struct Blob {
    blob: Bytes,
}

#[async_trait]
impl ChunkTransport for Blob {
    async fn has_chunks(&self, ids: &[ChunkId]) -> Result<Vec<bool>, Error> {
        Ok(vec![false; ids.len()])
    }
    async fn put_chunk(&self, _: &ChunkId, _: Bytes) -> Result<(), Error> {
        Ok(())
    }
    async fn get_chunk(&self, _: &ChunkId) -> Result<Bytes, Error> {
        Ok(self.blob.clone())
    }
    async fn get_range(&self, _: &ChunkId, offset: u64, len: u32) -> Result<Bytes, Error> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.blob.len());
        let end = start.saturating_add(len as usize).min(self.blob.len());
        Ok(self.blob.slice(start..end))
    }
    async fn locate_chunks(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkRef>>, Error> {
        Ok(vec![None; ids.len()])
    }
    async fn locate_bases(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkRef>>, Error> {
        Ok(vec![None; ids.len()])
    }
}

/// Bytes 0..3 choose the read-ahead's limits; then ten bytes per chunk
/// (pack, id, offset u32, len u32) until a 0xff byte or the input ends;
/// after the 0xff, the pack's bytes. Plans the range reads of those chunks
/// (each chunk inside its range, the budget kept) and reads every chunk
/// through the read-ahead: a chunk comes out as exactly its span's bytes,
/// or as an error when the pack's answer was short. Returns how many
/// chunks were read.
pub fn pack_ranges(data: &[u8]) -> usize {
    let (head, rest) = data.split_at(data.len().min(3));
    let pick = |i: usize, choices: &[u64]| {
        choices[usize::from(*head.get(i).unwrap_or(&0)) % choices.len()]
    };
    let limits = RangeLimits {
        gap: pick(0, &[0, 1, 16, 4096, 1 << 20, u64::MAX]),
        max_range: pick(1, &[1, 64, 4096, 1 << 20, PackSpan::MAX_PACK_BYTES]),
        budget: pick(2, &[0, 100, 10_000, 1 << 24, u64::MAX]),
    };
    let split = rest.iter().position(|b| *b == 0xff).unwrap_or(rest.len());
    let (records, blob) = rest.split_at(split);
    let blob = Bytes::copy_from_slice(blob.get(1..).unwrap_or_default());
    let chunks: Vec<ChunkRef> = records
        .chunks_exact(10)
        .filter_map(|r| {
            let offset = u64::from(u32::from_le_bytes([r[2], r[3], r[4], r[5]]) % (1 << 20));
            let len = u32::from_le_bytes([r[6], r[7], r[8], r[9]]) % (1 << 16);
            // Spans as every decoder makes them: checked.
            let span = PackSpan::new(ChunkId([r[0] % 4; 32]), offset, len).ok()?;
            Some(ChunkRef {
                id: ChunkId([r[1]; 32]),
                size: len,
                span: Some(span),
            })
        })
        .collect();
    let plan = plan_ranges(&chunks, limits);
    let mut spent = 0u64;
    for r in &plan {
        spent += r.len;
        let largest = r
            .chunks
            .iter()
            .map(|c| u64::from(c.1.len))
            .max()
            .unwrap_or(0);
        assert!(
            r.len <= limits.max_range.max(largest),
            "a range over the limit"
        );
        for (_, span, uses) in &r.chunks {
            assert!(*uses >= 1);
            assert_eq!(span.pack, r.pack);
            assert!(
                span.offset >= r.offset && span.end() <= r.offset + r.len,
                "a chunk outside its range"
            );
        }
    }
    assert!(
        spent <= limits.budget,
        "the read-ahead overspent its budget"
    );
    let transport: Arc<dyn ChunkTransport> = Arc::new(Blob { blob: blob.clone() });
    runtime().block_on(async {
        let ahead = ReadAhead::new(transport, None, limits, 2);
        ahead.expect(&chunks);
        let mut read = 0;
        for c in &chunks {
            let Some(taken) = ahead.take(c) else { continue };
            let span = c.span.expect("every chunk here has a span");
            match taken.bytes().await {
                Ok(bytes) => {
                    // An empty span reads as nothing wherever it is.
                    let (start, end) = (span.offset as usize, span.end() as usize);
                    if span.len > 0 {
                        assert!(end <= blob.len(), "bytes the pack never had");
                        assert_eq!(bytes, blob.slice(start..end), "not the chunk's bytes");
                    } else {
                        assert!(bytes.is_empty(), "bytes for an empty span");
                    }
                    read += 1;
                }
                Err(_) => assert!(
                    span.end() > blob.len() as u64,
                    "a chunk the pack's answer holds was not read"
                ),
            }
        }
        read
    })
}

/// Two bytes (little endian) say how long the chunk list is; the list is
/// JSON as a server sends it; the rest is every object's bytes. Downloads
/// the list (read-ahead announced first, as the engine does) with a plain
/// codec: the result is the chunks' plaintexts, each checked against its
/// id, or an error. Returns whether the download succeeded.
pub fn download(data: &[u8]) -> bool {
    let n = match data {
        [a, b, ..] => usize::from(u16::from_le_bytes([*a, *b])),
        _ => return false,
    };
    let rest = &data[2..];
    let (list, blob) = rest.split_at(n.min(rest.len()));
    let Ok(chunks) = serde_json::from_slice::<Vec<ChunkRef>>(list) else {
        return false;
    };
    if chunks.len() > 64 || chunks.iter().any(|c| c.size > 1 << 20) {
        return false;
    }
    let transport: Arc<dyn ChunkTransport> = Arc::new(Blob {
        blob: Bytes::copy_from_slice(blob),
    });
    let store = ChunkedContentStore::new(ChunkCodec::plain(), transport, TransferConfig::default())
        .expect("the default configuration is valid");
    let mut out: Vec<u8> = Vec::new();
    let result = runtime().block_on(async {
        store.expect_downloads(&chunks);
        store.download_to(&chunks, &mut out, None).await
    });
    if result.is_ok() {
        let total: u64 = chunks.iter().map(|c| u64::from(c.size)).sum();
        assert_eq!(out.len() as u64, total, "a download of the wrong length");
        let mut at = 0;
        for c in &chunks {
            let plain = &out[at..at + c.size as usize];
            assert_eq!(
                ChunkCodec::plain().chunk_id(plain),
                c.id,
                "a chunk that is not its id"
            );
            at += c.size as usize;
        }
    }
    result.is_ok()
}

/// Reads `data` as upload-journal rows (chunk, size, pack, offset, len;
/// 97 bytes each, ids of 31 to 33 bytes): a row is used only when it
/// describes a chunk a pack can hold.
pub fn journal_rows(data: &[u8]) -> usize {
    data.chunks(97)
        .filter(|r| {
            let byte = |i: usize| r.get(i).copied().unwrap_or(0);
            let int = |i: usize| {
                let mut b = [0u8; 8];
                for (k, v) in b.iter_mut().enumerate() {
                    *v = byte(i + k);
                }
                i64::from_le_bytes(b)
            };
            let id_len = |b: u8| 31 + usize::from(b % 3);
            let chunk: Vec<u8> = (0..id_len(byte(0))).map(|i| byte(1 + i)).collect();
            let pack: Vec<u8> = (0..id_len(byte(33))).map(|i| byte(34 + i)).collect();
            let Some(c) = row_to_ref((chunk, int(66), pack, int(74), int(82))) else {
                return false;
            };
            let span = c.span.expect("a journaled chunk is in a pack");
            assert!(span.check().is_ok() && span.len > 0 && c.size > 0, "{c:?}");
            assert!(span.base.is_none(), "a journaled delta");
            true
        })
        .count()
}

/// Reads `data` as rows of the sync state database: each row is a kind
/// byte, a key (one length byte) and a value (two length bytes, little
/// endian, CBOR). A state that loads saves as rows that load as the
/// same state. Returns whether it loaded.
pub fn state_rows(data: &[u8]) -> bool {
    let mut loader = Loader::with_cursor(7);
    let mut rest = data;
    while let [kind, klen, tail @ ..] = rest {
        let klen = usize::from(*klen).min(tail.len());
        let (key, tail) = tail.split_at(klen);
        let (vlen, tail) = match tail {
            [a, b, tail @ ..] => (
                usize::from(u16::from_le_bytes([*a, *b])).min(tail.len()),
                tail,
            ),
            _ => (0, tail),
        };
        let (value, tail) = tail.split_at(vlen);
        if loader.insert_row(i64::from(*kind % 8), key, value).is_err() {
            return false;
        }
        rest = tail;
    }
    let Ok(state) = loader.finish() else {
        return false;
    };
    let again = reload(&state);
    assert_eq!(again, state, "a state saved and loaded again changed");
    true
}

fn reload(state: &SyncState) -> SyncState {
    let rows = Changes::everything(state)
        .rows()
        .expect("a loaded state encodes");
    let mut loader = Loader::with_cursor(state.cursor);
    for row in rows {
        let RowWrite::Put { kind, key, value } = row else {
            panic!("saving everything deletes nothing");
        };
        loader
            .insert_row(kind.code(), &key, &value)
            .expect("a saved row loads");
    }
    loader.finish().expect("a saved state loads")
}

/// Rows in [`state_rows`]'s form for `state`.
pub fn state_seed(state: &SyncState) -> Vec<u8> {
    let mut out = Vec::new();
    for row in Changes::everything(state).rows().expect("a state encodes") {
        if let RowWrite::Put { kind, key, value } = row {
            out.push(kind.code() as u8);
            out.push(key.len() as u8);
            out.extend_from_slice(&key);
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
            out.extend_from_slice(&value);
        }
    }
    out
}

/// Reads `data` as `mounts.toml`: a table that parses writes back to the
/// same table, and each mount (and detached folder) holds its own path.
pub fn mounts(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(table) = toml::from_str::<MountTable>(text) else {
        return false;
    };
    let written = toml::to_string(&table).expect("a loaded table encodes");
    let back: MountTable = toml::from_str(&written).expect("a written table loads");
    assert_eq!(back, table, "mounts.toml changed on a round trip");
    let excluded = table.excluded();
    for m in &table.mounts {
        if let Ok(at) = RelPath::parse(&m.path) {
            let (found, rest) = table.mount_of(&at).expect("a mount holds its own path");
            assert_eq!(RelPath::parse(&found.path).ok(), Some(at.clone()));
            assert!(rest.is_root());
            assert!(at.is_root() || excluded.contains(&at));
        }
    }
    for d in &table.detached {
        if let Ok(at) = RelPath::parse(&d.path) {
            assert!(
                table.detached_at(&at).is_some(),
                "a detached folder not found"
            );
        }
    }
    true
}

/// Reads `data` as the profile's `config.toml`: what parses and validates
/// writes back to the same configuration.
pub fn profile(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(config) = toml::from_str::<ProfileConfig>(text) else {
        return false;
    };
    let valid = validate(&config).is_ok();
    let written = toml::to_string(&config).expect("a loaded profile encodes");
    let back: ProfileConfig = toml::from_str(&written).expect("a written profile loads");
    assert_eq!(back, config, "the profile changed on a round trip");
    assert_eq!(validate(&back).is_ok(), valid);
    valid
}

/// The device key every key file of [`key_files`] is sealed under.
pub const FUZZ_DEVICE_KEY: [u8; 32] = [0x5a; 32];

/// The workspace the key files are about.
pub const FUZZ_WORKSPACE: WorkspaceId = WorkspaceId(uuid::Uuid::from_u64_pair(1, 2));

struct Keys {
    identity: Identity,
    genesis: Vec<u8>,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let identity =
            Identity::generate(UserId(uuid::Uuid::from_u64_pair(3, 4))).expect("an identity");
        let other =
            Identity::generate(UserId(uuid::Uuid::from_u64_pair(5, 6))).expect("an identity");
        let (genesis, _) = Statement::genesis(
            &identity,
            FUZZ_WORKSPACE,
            &[Member::writer(other.public())],
            None,
        )
        .expect("a statement");
        Keys { identity, genesis }
    })
}

/// A profile folder of this thread's own, holding the device key.
fn home() -> PathBuf {
    thread_local! {
        static HOME: PathBuf = {
            let id = format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_ascii_alphanumeric(), "");
            let home = std::env::temp_dir().join(format!("stacksync-fuzz-keys-{}-{id}", std::process::id()));
            std::fs::create_dir_all(&home).expect("a temp dir");
            home
        };
    }
    HOME.with(Clone::clone)
}

/// The key file [`key_files`] writes for the selector `kind`.
fn key_file(kind: u8) -> String {
    match kind % 4 {
        0 => format!("invited-{FUZZ_WORKSPACE}.txt"),
        1 => "pins.vault".to_owned(),
        2 => "identity.vault".to_owned(),
        _ => format!("membership-{FUZZ_WORKSPACE}.vault"),
    }
}

/// The first byte picks a key file of the profile folder (the invitees of
/// a workspace, the pinned keys, this device's identity, a workspace's
/// last membership), the rest is its content; the client reads it as it
/// does. What reads is saved again and reads the same. Returns whether it
/// read.
pub fn key_files(data: &[u8]) -> bool {
    let Some((&kind, content)) = data.split_first() else {
        return false;
    };
    let home = home();
    for name in (0..4).map(key_file) {
        let _ = std::fs::remove_file(home.join(name));
    }
    std::fs::write(home.join("vault.key"), FUZZ_DEVICE_KEY).expect("the device key is written");
    std::fs::write(home.join(key_file(kind)), content).expect("the key file is written");
    let files = KeyFiles::new(&home);
    match kind % 4 {
        0 => {
            let Ok(invited) = files.invited(FUZZ_WORKSPACE) else {
                return false;
            };
            files
                .record_invited(FUZZ_WORKSPACE, &[])
                .expect("invitees are saved again");
            let again = files.invited(FUZZ_WORKSPACE).expect("saved invitees read");
            assert_eq!(again, invited, "invitees changed on a round trip");
            true
        }
        1 => {
            let me = keys().identity.public();
            let Ok(_) = files.pin_state(&me) else {
                return false;
            };
            files.trust(&me).expect("pins that read are saved again");
            assert_eq!(
                files.pin_state(&me).ok(),
                Some(Pin::Known),
                "a trusted key is not known"
            );
            true
        }
        2 => {
            let Ok(Some(identity)) = files.load_identity() else {
                return false;
            };
            files
                .save_identity(&identity)
                .expect("an identity that opens is saved again");
            let again = files.load_identity().expect("a saved identity opens");
            assert_eq!(again.map(|i| i.public()), Some(identity.public()));
            true
        }
        _ => {
            // A membership is read with this device's identity.
            let identity = keys()
                .identity
                .seal_local(&FUZZ_DEVICE_KEY)
                .expect("sealed");
            std::fs::write(home.join(key_file(2)), identity).expect("the identity is written");
            matches!(files.offline_keys(FUZZ_WORKSPACE), Ok(Some(_)))
        }
    }
}

/// Valid key files for [`key_files`]: invitees, pins, an identity and a
/// membership, sealed under [`FUZZ_DEVICE_KEY`].
pub fn key_file_seeds() -> Vec<Vec<u8>> {
    let k = keys();
    let mut pins = stacksync_vault::PinStore::new();
    pins.confirm_change(&k.identity.public());
    let verified = stacksync_vault::membership::verify(&k.genesis, &k.identity, None, &pins)
        .expect("the genesis verifies");
    [
        (0u8, b"rw alice@example.org\nro Bob@Example.org\n".to_vec()),
        (1, pins.encode()),
        (2, k.identity.seal_local(&FUZZ_DEVICE_KEY).expect("sealed")),
        (3, verified.seal_local(&FUZZ_DEVICE_KEY).expect("sealed")),
    ]
    .into_iter()
    .map(|(kind, bytes)| [vec![kind], bytes].concat())
    .collect()
}

/// Valid inputs of [`pack_ranges`] and [`download`]: three chunks packed
/// together, one of them named twice.
pub fn transfer_seeds() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let codec = ChunkCodec::plain();
    let mut pack = Vec::new();
    let mut chunks = Vec::new();
    for (i, text) in [
        "first chunk, ".repeat(20),
        "second".into(),
        "third: 0123456789".repeat(9),
    ]
    .iter()
    .enumerate()
    {
        let enc = codec.encode(text.as_bytes()).expect("plain encoding");
        let span = PackSpan::new(ChunkId([9; 32]), pack.len() as u64, enc.bytes.len() as u32)
            .expect("small");
        pack.extend_from_slice(&enc.bytes);
        chunks.push(ChunkRef {
            id: enc.id,
            size: text.len() as u32,
            span: Some(span),
        });
        if i == 1 {
            chunks.push(*chunks.last().expect("just pushed"));
        }
    }
    let list = serde_json::to_vec(&chunks).expect("chunk refs encode");
    let download = [(list.len() as u16).to_le_bytes().as_slice(), &list, &pack].concat();
    let mut ranges = Vec::new();
    for limits in [[3u8, 3, 3], [2, 2, 3], [0, 1, 3]] {
        let mut v = limits.to_vec();
        for c in &chunks {
            let s = c.span.expect("packed");
            v.push(0);
            v.push(c.id.0[0]);
            v.extend_from_slice(&(s.offset as u32).to_le_bytes());
            v.extend_from_slice(&s.len.to_le_bytes());
        }
        v.push(0xff);
        v.extend_from_slice(&pack[..pack.len() - 10 * usize::from(limits[0] == 0)]);
        ranges.push(v);
    }
    (ranges, vec![download])
}

/// Valid rows for [`state_rows`]: a state with an item of each kind.
pub fn state_seeds() -> Vec<Vec<u8>> {
    use stacksync_engine::tree::{PendingCommit, Refusal, SyncedItem};
    let mut state = SyncState::default();
    let (commit, result) = stacksync_proto::fuzz::sample_commit();
    let _ = commit;
    for r in &result.results {
        if let stacksync_proto::CommitOutcome::Committed { meta } = &r.outcome {
            state
                .synced
                .insert(meta.id, SyncedItem::from_meta(meta, None));
            state.remote.apply(meta.clone());
        }
    }
    state.refused.insert(
        RelPath::parse("a/refused name").expect("a path"),
        Refusal {
            reason: "no".into(),
            stamp: None,
            clash: true,
        },
    );
    state.pending.insert(
        ItemId(uuid::Uuid::from_u64_pair(9, 9)),
        PendingCommit {
            version: 2,
            parent: None,
            name: stacksync_proto::ItemName::new("p").expect("a name"),
            is_folder: false,
            content_hash: None,
            size: 0,
            deleted: true,
            stamp: None,
        },
    );
    state
        .temps
        .insert(RelPath::parse(".stacksync-dl-1").expect("a path"));
    vec![state_seed(&state), Vec::new()]
}

/// Valid `mounts.toml` and profile files.
pub fn toml_seeds() -> Vec<Vec<u8>> {
    [
        r#"private_encryption = "client_side"

[[mount]]
workspace = "01234567-89ab-cdef-0123-456789abcdef"
path = "Shared/Team"
owner = true
members = ["a@example.org"]
file_id = 42
encryption = "client_side"

[[mount]]
workspace = "01234567-89ab-cdef-0123-456789abcde0"
path = "Shared/Team/inner"

[[detached]]
workspace = "01234567-89ab-cdef-0123-456789abcde1"
path = "Old"

[[waiting]]
workspace = "01234567-89ab-cdef-0123-456789abcde2"
path = "Busy"
reason = "a file is there"
"#,
        r#"server_url = "http://127.0.0.1:8080"
email = "a@example.org"
device_id = "01234567-89ab-cdef-0123-456789abcdef"
folder = "/home/a/StackSync"
device_name = "laptop"
"#,
        r#"server_url = ""
email = "a@example.org"
device_id = "01234567-89ab-cdef-0123-456789abcdef"
folder = "/home/a/StackSync"
transport = "direct"
user_id = "01234567-89ab-cdef-0123-456789abcde0"
workspace = "01234567-89ab-cdef-0123-456789abcde1"

[direct]
amqp_url = "amqps://mq.example:5671/%2f"
namespace = "stacksync"
swift_auth_url = "http://127.0.0.1:8080/auth/v1.0"
swift_user = "acct:user"
swift_account = "AUTH_stacksync"
"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}
