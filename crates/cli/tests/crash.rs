//! Crash tests (issue #6): the client SIGKILLed during uploads, downloads
//! and commits, at many points, restarts and converges with no corrupted
//! or lost file.
//!
//! Each test starts `stacksync sync --once` and kills it (SIGKILL, through
//! `std::process::Child::kill`) after spread delays; a bandwidth limit
//! makes transfers slow enough for kills to land inside them. Between kills
//! the user keeps working. Then a last run must succeed, and both devices
//! must hold exactly the bytes the user saved: nothing lost, nothing
//! corrupted, nothing duplicated, no engine temporary left behind. Where a
//! kill lands is never asserted (only the outcome), but every test prints
//! how many kills landed while the client was still running, with the last
//! thing the client logged, and requires that some did: otherwise it
//! proves nothing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Backend, Client, Cluster, assert_converged, random_bytes, tree};
use sqlx::Connection;

/// What the user saved: relative path -> bytes.
type Saved = BTreeMap<String, Vec<u8>>;

/// How often a run about to be killed is checked for having exited.
const POLL: Duration = Duration::from_millis(2);

/// Longest a run waits for its kill condition before the test gives up.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Prefix shared by every name the engine uses for its own temporaries.
const ENGINE_TEMP: &str = ".stacksync-";

/// Kills tried and kills that landed while the client was still running.
#[derive(Default)]
struct Kills {
    tried: usize,
    landed: usize,
}

impl Kills {
    fn report_and_check(&self, what: &str) {
        eprintln!(
            "{what}: {} of {} kills landed mid-sync",
            self.landed, self.tried
        );
        assert!(
            self.landed > 0,
            "{what}: no kill landed while the client was running, so the test proved nothing"
        );
    }
}

/// Runs `sync --once` with `extra` arguments until `stop` holds, then
/// SIGKILLs it. A run that exits first must have succeeded (a client that
/// fails after an earlier crash has not recovered). Returns whether the kill
/// landed while the client was running.
fn sync_killed_when(
    client: &Client,
    extra: &[&str],
    kills: &mut Kills,
    mut stop: impl FnMut() -> bool,
) -> bool {
    let log_path = client.home.with_extension("crash.log");
    let log = std::fs::File::create(&log_path).expect("a log file");
    let mut args = vec!["sync", "--once", "--quiet"];
    args.extend_from_slice(extra);
    let started = Instant::now();
    let mut child = client
        .command(&args)
        // Debug logs only so that a kill can say where it landed.
        .env(
            "RUST_LOG",
            "warn,stacksync_engine=debug,stacksync_client=debug",
        )
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the client starts");
    kills.tried += 1;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for the client") {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            assert!(
                status.success(),
                "{}: sync --once failed on its own ({status}) after an earlier kill; log:\n{log}",
                client.name
            );
            eprintln!(
                "  run {}: finished by itself after {:?}",
                kills.tried,
                started.elapsed()
            );
            return false;
        }
        if stop() {
            break;
        }
        assert!(
            started.elapsed() < RUN_LIMIT,
            "{}: the run neither finished nor met its kill condition within {RUN_LIMIT:?}",
            client.name
        );
        std::thread::sleep(POLL);
    }
    // SIGKILL: no destructor, no flush, no signal handler runs.
    child.kill().expect("SIGKILL is delivered");
    let status = child.wait().expect("the killed client is reaped");
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let last = log.lines().last().unwrap_or("(nothing logged)");
    let last: String = last.chars().take(160).collect();
    kills.landed += 1;
    eprintln!(
        "  run {}: killed after {:?} ({status}); last log line: {last}",
        kills.tried,
        started.elapsed()
    );
    true
}

/// [`sync_killed_when`] with a delay.
fn sync_killed_after(client: &Client, extra: &[&str], delay: Duration, kills: &mut Kills) -> bool {
    let deadline = Instant::now() + delay;
    sync_killed_when(client, extra, kills, || Instant::now() >= deadline)
}

/// Runs `sync --once` until the server has accepted a commit from it (its
/// revision grew), waits `after`, and SIGKILLs it: the kill lands around
/// the window between the server's reply and the client saving its state.
fn sync_killed_after_commit(
    client: &Client,
    extra: &[&str],
    db: &mut ServerDb,
    after: Duration,
    kills: &mut Kills,
) -> bool {
    let start = db.revision();
    let mut committed_at: Option<Instant> = None;
    sync_killed_when(client, extra, kills, || match committed_at {
        Some(t) => t.elapsed() >= after,
        None => {
            if db.revision() > start {
                committed_at = Some(Instant::now());
                after.is_zero()
            } else {
                false
            }
        }
    })
}

/// A read-only look at the server's metadata database: when a commit has
/// become durable, and how many live items the server holds.
struct ServerDb {
    conn: sqlx::AnyConnection,
}

impl ServerDb {
    async fn open(cluster: &Cluster) -> ServerDb {
        sqlx::any::install_default_drivers();
        let text = std::fs::read_to_string(&cluster.config).expect("the server config");
        let config: toml::Table = text.parse().expect("the server config is TOML");
        let url = config
            .get("database")
            .and_then(|d| d.get("url"))
            .and_then(|u| u.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let path = cluster.dir.path().join("server").join("meta.sqlite");
                format!("sqlite://{}?mode=ro", path.display())
            });
        let conn = sqlx::AnyConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("opening the server database {url}: {e}"));
        ServerDb { conn }
    }

    fn scalar(&mut self, sql: &'static str) -> i64 {
        let conn = &mut self.conn;
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(conn)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            })
        })
    }

    /// The latest revision of any workspace.
    fn revision(&mut self) -> i64 {
        self.scalar("SELECT COALESCE(MAX(revision), 0) FROM items")
    }

    /// Items (files and folders) not deleted, in every workspace.
    fn live_items(&mut self) -> i64 {
        self.scalar("SELECT COUNT(*) FROM items WHERE status <> 'DELETED'")
    }
}

/// Asserts the server holds one live item per entry of the client's
/// folder: a commit applied twice would leave a second item.
fn assert_no_duplicate_items(db: &mut ServerDb, client: &Client) {
    let entries = tree(&client.folder).len() as i64;
    let live = db.live_items();
    assert_eq!(
        live, entries,
        "the server holds {live} live items for a folder of {entries} entries"
    );
}

/// `count` delays growing geometrically from `first` to `last`.
fn spread(first: Duration, last: Duration, count: usize) -> Vec<Duration> {
    let (a, b) = (first.as_secs_f64(), last.as_secs_f64());
    (0..count)
        .map(|i| {
            let t = i as f64 / (count - 1).max(1) as f64;
            Duration::from_secs_f64(a * (b / a).powf(t))
        })
        .collect()
}

/// A folder as seen by the user: files with their bytes, folders, and the
/// paths of engine temporaries (which are never user content).
#[derive(Default)]
struct Listing {
    files: Saved,
    folders: Vec<String>,
    temps: Vec<String>,
}

fn listing(root: &Path) -> Listing {
    fn walk(root: &Path, dir: &Path, out: &mut Listing) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let ft = e.file_type().unwrap();
            if e.file_name().to_string_lossy().starts_with(ENGINE_TEMP) {
                out.temps.push(rel.clone());
                if ft.is_dir() {
                    walk(root, &path, out);
                }
                continue;
            }
            if ft.is_dir() {
                out.folders.push(rel);
                walk(root, &path, out);
            } else {
                out.files.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = Listing::default();
    walk(root, root, &mut out);
    out
}

/// Asserts the client's folder holds exactly the saved files, byte for
/// byte, no conflicted copy and no engine temporary.
fn assert_holds(client: &Client, saved: &Saved) {
    let l = listing(&client.folder);
    assert!(
        l.temps.is_empty(),
        "{}: engine temporaries left after a successful sync: {:?}",
        client.name,
        l.temps
    );
    let conflicted: Vec<_> = l
        .files
        .keys()
        .chain(&l.folders)
        .filter(|p| p.contains("(conflicted copy"))
        .collect();
    assert!(
        conflicted.is_empty(),
        "{}: conflicted copies appeared though only one device wrote: {conflicted:?}",
        client.name
    );
    let lost: Vec<_> = saved.keys().filter(|p| !l.files.contains_key(*p)).collect();
    let extra: Vec<_> = l.files.keys().filter(|p| !saved.contains_key(*p)).collect();
    assert!(
        lost.is_empty() && extra.is_empty(),
        "{}: files lost {lost:?}; files that should not exist {extra:?}",
        client.name
    );
    for (path, bytes) in saved {
        let got = &l.files[path];
        assert!(
            got == bytes,
            "{}: {path} is corrupted: {} bytes (BLAKE3 {}) instead of {} bytes (BLAKE3 {})",
            client.name,
            got.len(),
            blake3::hash(got).to_hex(),
            bytes.len(),
            blake3::hash(bytes).to_hex()
        );
    }
}

/// The user's edits on one device, mirrored in what they saved.
struct User<'a> {
    client: &'a Client,
    saved: Saved,
}

impl User<'_> {
    fn save(&mut self, rel: &str, data: Vec<u8>) {
        self.client.write(rel, &data);
        self.saved.insert(rel.to_owned(), data);
    }

    fn delete(&mut self, rel: &str) {
        std::fs::remove_file(self.client.path(rel)).unwrap();
        self.saved.remove(rel).expect("deleting a saved file");
    }

    /// Renames a file or a folder (with everything in it).
    fn rename(&mut self, from: &str, to: &str) {
        let dest = self.client.path(to);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::rename(self.client.path(from), dest).unwrap();
        let moved: Vec<String> = self
            .saved
            .keys()
            .filter(|k| *k == from || k.starts_with(&format!("{from}/")))
            .cloned()
            .collect();
        assert!(
            !moved.is_empty(),
            "renaming {from}, which holds no saved file"
        );
        for k in moved {
            let data = self.saved.remove(&k).unwrap();
            self.saved.insert(format!("{to}{}", &k[from.len()..]), data);
        }
    }
}

/// The final check of every test: `writer` finishes its sync, does nothing
/// more on a second run, and a fresh device gets exactly the same tree.
fn finish_and_check(cluster: &Cluster, email: &str, user: &User, reader: Option<&Client>) {
    let a = user.client;
    let first = a.sync();
    eprintln!(
        "{}: final sync: {} operation(s), {} bytes up, {} chunk(s) already there",
        a.name, first.applied, first.bytes_uploaded, first.chunks_deduplicated
    );
    assert_eq!(
        first.conflicts, 0,
        "{}: conflicts in the final sync",
        a.name
    );
    assert_holds(a, &user.saved);
    let again = a.sync();
    assert_eq!(
        (again.applied, again.bytes_uploaded),
        (0, 0),
        "{}: a second run still had work: the crashes left something inconsistent",
        a.name
    );
    let fresh = cluster.client("fresh", email);
    for b in reader.into_iter().chain([&fresh]) {
        let down = b.sync();
        assert_eq!(down.conflicts, 0, "{}: conflicts while downloading", b.name);
        assert_holds(b, &user.saved);
        assert_converged(&[a, b]);
    }
}

async fn killed_uploads_converge(backend: Backend) {
    let cluster = Cluster::start(&backend).await;
    let email = cluster.add_user("ana@example.org", None);
    let a = cluster.client("laptop", &email);
    let mut user = User {
        client: &a,
        saved: Saved::new(),
    };
    for i in 0..200u64 {
        let len = 200 + (i as usize * 977) % 12_000;
        user.save(
            &format!("docs/d{}/note-{i}.txt", i % 10),
            random_bytes(len, i),
        );
    }
    user.save("media/a.bin", random_bytes(3 * 1024 * 1024 + 11, 1001));
    user.save("media/b.bin", random_bytes(2 * 1024 * 1024 + 5, 1002));
    user.save("media/c.bin", random_bytes(4 * 1024 * 1024 + 3, 1003));

    let mut kills = Kills::default();
    let delays = spread(Duration::from_millis(60), Duration::from_millis(3500), 12);
    for (i, delay) in delays.into_iter().enumerate() {
        sync_killed_after(&a, &["--upload-limit", "1024"], delay, &mut kills);
        // The user keeps working between crashes.
        let n = (i * 17) % 200;
        user.save(
            &format!("docs/d{}/note-{n}.txt", n % 10),
            random_bytes(3000 + i, 5000 + i as u64),
        );
        match i {
            3 => user.rename("docs/d1/note-11.txt", "moved/note-11.txt"),
            5 => user.delete("docs/d2/note-12.txt"),
            7 => {
                let mut b = user.saved["media/b.bin"].clone();
                b.splice(1_000_000..1_000_000, *b"edited in the middle");
                user.save("media/b.bin", b);
            }
            9 => user.save("media/d.bin", random_bytes(1536 * 1024, 1004)),
            10 => user.rename("docs/d3", "archive/d3"),
            _ => {}
        }
    }
    // Kills right after the server accepted a commit (no limit, so the
    // remaining uploads finish), with the user still working in between.
    let mut db = ServerDb::open(&cluster).await;
    for (i, ms) in [0u64, 2, 5, 20].into_iter().enumerate() {
        sync_killed_after_commit(&a, &[], &mut db, Duration::from_millis(ms), &mut kills);
        user.save(
            &format!("after-commit/{i}.txt"),
            random_bytes(5000, 6000 + i as u64),
        );
        user.save(
            "media/a.bin",
            random_bytes(3 * 1024 * 1024 + i, 7000 + i as u64),
        );
    }
    kills.report_and_check("upload");
    finish_and_check(&cluster, &email, &user, None);
    assert_no_duplicate_items(&mut db, &a);
}

/// Kills during uploads of many small and a few multi-MiB files; the user
/// edits, renames and deletes between kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_uploads_converge_embedded() {
    killed_uploads_converge(Backend::Embedded).await;
}

/// The same on PostgreSQL + RabbitMQ + Swift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_uploads_converge_full() {
    let Some(backend) = Backend::full() else {
        return;
    };
    killed_uploads_converge(backend).await;
}

/// Every version ever saved under each path.
type Versions = BTreeMap<String, Vec<Vec<u8>>>;

/// Asserts every file `client` shows under a real name is a version the
/// writer saved there: never a partial or corrupt file.
fn assert_only_saved_versions(client: &Client, versions: &Versions, when: &str) {
    let l = listing(&client.folder);
    for (path, bytes) in &l.files {
        let known = versions.get(path);
        assert!(
            known.is_some_and(|v| v.contains(bytes)),
            "{when}: {}/{path} ({} bytes) is not a version the writer saved{}",
            client.name,
            bytes.len(),
            match known {
                Some(v) => format!(
                    " (saved sizes: {:?})",
                    v.iter().map(Vec::len).collect::<Vec<_>>()
                ),
                None => " (no such path was ever saved)".into(),
            }
        );
    }
    eprintln!(
        "  {when}: {} file(s) shown, all intact; {} engine temporary(ies)",
        l.files.len(),
        l.temps.len()
    );
}

/// How many files a folder shows under real (non-temporary) names.
fn user_files(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with(ENGINE_TEMP))
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => user_files(&e.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

/// Kills during downloads: between kills, every file the downloading device
/// shows under its real name is a version the writer saved, never a
/// partial or corrupt one; the writer keeps editing meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_downloads_never_show_partial_files() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let email = cluster.add_user("ana@example.org", None);
    let a = cluster.client("laptop", &email);
    let b = cluster.client("desktop", &email);
    let mut user = User {
        client: &a,
        saved: Saved::new(),
    };
    for i in 0..120u64 {
        let len = 100 + (i as usize * 1237) % 20_000;
        user.save(
            &format!("docs/d{}/note-{i}.txt", i % 6),
            random_bytes(len, i),
        );
    }
    user.save("media/a.bin", random_bytes(3 * 1024 * 1024 + 11, 2001));
    user.save("media/b.bin", random_bytes(2 * 1024 * 1024 + 5, 2002));
    user.save("media/c.bin", random_bytes(4 * 1024 * 1024 + 3, 2003));
    a.sync();
    // Every version ever saved under each path: what B may show there.
    let mut versions = Versions::new();
    let remember = |versions: &mut Versions, saved: &Saved| {
        for (p, d) in saved {
            let v = versions.entry(p.clone()).or_default();
            if !v.contains(d) {
                v.push(d.clone());
            }
        }
    };
    remember(&mut versions, &user.saved);

    let mut kills = Kills::default();
    let delays = spread(Duration::from_millis(60), Duration::from_millis(3500), 12);
    for (i, delay) in delays.into_iter().enumerate() {
        sync_killed_after(&b, &["--download-limit", "2048"], delay, &mut kills);
        assert_only_saved_versions(&b, &versions, &format!("after kill {}", i + 1));
        // The writer keeps working; B's download target moves under it.
        let edited = match i {
            2 => {
                user.save("media/a.bin", random_bytes(3 * 1024 * 1024 + 99, 2004));
                true
            }
            4 => {
                user.delete("docs/d0/note-6.txt");
                user.save("docs/d0/note-0.txt", b"rewritten".to_vec());
                true
            }
            6 => {
                let mut c = user.saved["media/c.bin"].clone();
                c.extend_from_slice(&random_bytes(700_000, 2005));
                user.save("media/c.bin", c);
                true
            }
            8 => {
                user.rename("docs/d5", "old/d5");
                true
            }
            _ => false,
        };
        if edited {
            a.sync();
            remember(&mut versions, &user.saved);
        }
    }
    // Kills while B puts downloaded files in place: the writer adds a batch
    // of files, and B is killed as soon as it shows a few of them under
    // their real names.
    for (k, step) in [1usize, 5, 15, 25].into_iter().enumerate() {
        for j in 0..30u64 {
            let seed = 8000 + 100 * k as u64 + j;
            user.save(
                &format!("batch{k}/f{j}.bin"),
                random_bytes(20_000 + j as usize * 999, seed),
            );
        }
        a.sync();
        remember(&mut versions, &user.saved);
        let target = user_files(&b.folder) + step;
        sync_killed_when(&b, &["--download-limit", "2048"], &mut kills, || {
            user_files(&b.folder) >= target
        });
        assert_only_saved_versions(&b, &versions, &format!("after a kill at {target} files"));
    }
    kills.report_and_check("download");
    finish_and_check(&cluster, &email, &user, Some(&b));
}

/// Kills at short delays (5-300 ms) of a commit-heavy sync: hundreds of
/// tiny files in nested folders, each its own commit. A commit applied
/// twice would show up as a doubled name or a conflicted copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_commits_apply_once() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let email = cluster.add_user("ana@example.org", None);
    let a = cluster.client("laptop", &email);
    let b = cluster.client("desktop", &email);
    let mut user = User {
        client: &a,
        saved: Saved::new(),
    };
    let mut n = 0u64;
    for x in 0..5 {
        for y in 0..4 {
            for z in 0..3 {
                for _ in 0..5 {
                    n += 1;
                    user.save(
                        &format!("tree/l{x}/m{y}/n{z}/f{n}.txt"),
                        format!("tiny file {n}").into_bytes(),
                    );
                }
            }
        }
    }
    std::fs::create_dir_all(a.path("tree/empty/also empty")).unwrap();

    let mut kills = Kills::default();
    let delays = spread(Duration::from_millis(5), Duration::from_millis(300), 24);
    for (i, delay) in delays.into_iter().enumerate() {
        sync_killed_after(&a, &[], delay, &mut kills);
        // A little new work for every run, so later runs commit too.
        for j in 0..4 {
            n += 1;
            user.save(
                &format!("more/k{i}/deep/f{j}.txt"),
                format!("added after kill {i}: {n}").into_bytes(),
            );
        }
        match i % 4 {
            0 => user.rename(
                &format!("tree/l{}/m{}", i % 5, (i / 4) % 4),
                &format!("renamed/r{i}"),
            ),
            1 => user.save(&format!("more/k{}/deep/f0.txt", i - 1), b"edited".to_vec()),
            2 => user.delete(&format!("more/k{}/deep/f1.txt", i - 2)),
            _ => {}
        }
        // B syncs now and then (unkilled), so it also reads a feed the
        // crashes wrote to.
        if i % 8 == 7 {
            b.sync();
        }
    }
    // Kills right after the server accepted a commit, at growing delays,
    // so they land before, during and after the client saves its state.
    let mut db = ServerDb::open(&cluster).await;
    for (i, ms) in [0u64, 0, 1, 2, 3, 5, 8, 12, 20, 30, 50, 80]
        .into_iter()
        .enumerate()
    {
        for j in 0..6 {
            n += 1;
            user.save(
                &format!("late/k{i}/sub{}/f{j}.txt", j % 2),
                format!("added before commit kill {i}: {n}").into_bytes(),
            );
        }
        if i % 3 == 1 {
            user.rename(&format!("late/k{}", i - 1), &format!("late/moved{i}"));
        }
        sync_killed_after_commit(&a, &[], &mut db, Duration::from_millis(ms), &mut kills);
    }
    kills.report_and_check("commit");
    finish_and_check(&cluster, &email, &user, Some(&b));
    assert_no_duplicate_items(&mut db, &a);
}

/// Number of chunk objects the embedded server stores.
fn stored_chunks(server_data: &Path) -> usize {
    fn count(dir: &Path, under_objects: bool) -> usize {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .filter_map(Result::ok)
            .map(|e| {
                let path = e.path();
                if path.is_dir() {
                    count(&path, under_objects || e.file_name() == "objects")
                } else {
                    usize::from(under_objects)
                }
            })
            .sum()
    }
    count(&server_data.join("blobs"), false)
}

/// A kill in the middle of a large upload: the next run sends only what
/// the server does not have yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_upload_sends_less() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let email = cluster.add_user("ana@example.org", None);
    let a = cluster.client("laptop", &email);
    let size = 8 * 1024 * 1024 + 7;
    let data = random_bytes(size, 3001);
    let mut user = User {
        client: &a,
        saved: Saved::new(),
    };
    user.save("big.bin", data);
    let server = cluster.dir.path().join("server");
    let before = stored_chunks(&server);
    let mut kills = Kills::default();
    // Killed as soon as the server stores a chunk of the file: mid-upload.
    sync_killed_when(&a, &["--upload-limit", "1024"], &mut kills, || {
        stored_chunks(&server) > before
    });
    kills.report_and_check("resume");
    let stored = stored_chunks(&server) - before;
    let resumed = a.sync();
    eprintln!(
        "resume: {stored} chunk(s) stored before the kill; the next run uploaded {} of {size} bytes \
         in {} chunk(s), {} chunk(s) already there",
        resumed.bytes_uploaded, resumed.chunks_uploaded, resumed.chunks_deduplicated
    );
    assert!(
        resumed.bytes_uploaded < size as u64,
        "the resumed upload sent {} bytes, not less than the {size}-byte file",
        resumed.bytes_uploaded
    );
    assert!(
        resumed.chunks_deduplicated >= 1,
        "no chunk stored before the kill was skipped: {resumed:?}"
    );
    finish_and_check(&cluster, &email, &user, None);
    assert_no_duplicate_items(&mut ServerDb::open(&cluster).await, &a);
}
