//! End-to-end, with the real binary and daemons: a folder shared between
//! two accounts (`share`, `invitations`, `accept`, `members`, `unshare`),
//! on the embedded default and on PostgreSQL + RabbitMQ + Swift (the owner
//! through the gateway, the member directly over RabbitMQ and Swift).
//! The invitation reaches the member's daemon by push; accepted into a
//! folder of the member's choice, the folder's edits, renames, deletes and
//! a concurrent edit (one conflicted copy) flow both ways; the owner keeps
//! their copy where it was; a third device of the member gets the share;
//! after the unshare the member keeps a detached copy whose edits never
//! reach the owner.

#[macro_use]
mod common;

use std::time::Duration;

use common::{Backend, Client, Cluster, eventually, tree};
use stacksync_blobstore::{
    BlobErrorKind, BlobStore, ContainerName, SwiftAuth, SwiftConfig, SwiftStore,
};
use stacksync_gateway_client::GatewayClient;
use stacksync_proto::rpc::{Reply, Request};

const LIMIT: Duration = Duration::from_secs(60);

fn ok(c: &Client, args: &[&str]) -> String {
    let out = c.run(args);
    assert!(
        out.status.success(),
        "{}: {args:?} failed: {}",
        c.name,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn read(c: &Client, rel: &str) -> Option<Vec<u8>> {
    std::fs::read(c.path(rel)).ok()
}

/// The files under `rel` in `c`'s folder.
fn subtree(c: &Client, rel: &str) -> std::collections::BTreeMap<String, Option<String>> {
    tree(&c.path(rel))
}

async fn a_shared_folder_between_two_accounts(backend: Backend) {
    let cluster = Cluster::start(&backend).await;
    // Ana reaches the service through the gateway only: on Swift, bob's
    // storage user is his alone.
    let ana = cluster.add_gateway_user("ana@example.org");
    let bob = cluster.add_user("bob@example.org", None);
    let a = cluster.client("ana-laptop", &ana);
    let new_bob = |name: &str| match cluster.direct {
        Some(_) => cluster.direct_client(name, &bob),
        None => cluster.client(name, &bob),
    };
    let mut b = new_bob("bob-laptop");
    a.write("project/plan.txt", b"the plan");
    a.write("project/sub/notes.txt", b"notes");
    a.write("private.txt", b"ana's own");
    a.sync();
    b.write("docs/mine.txt", b"bob's own");
    b.sync();

    // The invitation reaches bob's daemon by push.
    b.start_daemon();
    eventually(LIMIT, "bob's daemon is up", || {
        b.status(None)["daemon_running"] == true
    })
    .await;
    let shared = ok(
        &a,
        &["share", a.path("project").to_str().unwrap(), "--with", &bob],
    );
    assert!(shared.contains("invited bob@example.org"), "{shared}");
    eventually(LIMIT, "the proposal reaches bob's daemon", || {
        b.daemon_log()
            .contains("a folder was shared with this account")
    })
    .await;
    let id = ok(&b, &["invitations"]).trim().to_owned();
    assert_eq!(id.lines().count(), 1, "{id}");
    // Sharing it again, or the synced folder itself, is refused.
    let out = a.run(&["share", a.folder.to_str().unwrap(), "--with", &bob]);
    assert!(!out.status.success());

    // Bob accepts into a folder of his, under a name of his choice.
    let accepted = ok(
        &b,
        &[
            "accept",
            &id,
            "--as",
            "ana-project",
            "--into",
            b.path("docs").to_str().unwrap(),
        ],
    );
    assert!(accepted.contains("docs/ana-project"), "{accepted}");
    eventually(LIMIT, "the shared folder reaches bob", || {
        read(&b, "docs/ana-project/sub/notes.txt").as_deref() == Some(&b"notes"[..])
    })
    .await;
    assert_eq!(ok(&b, &["invitations"]), "");

    // The owner's copy stays where it was, now a mount of the shared folder.
    let summary = a.sync();
    assert_eq!(
        summary.bytes_uploaded, 0,
        "the hand-over re-uploads nothing"
    );
    assert_eq!(
        read(&a, "project/plan.txt").as_deref(),
        Some(&b"the plan"[..])
    );
    assert_eq!(read(&a, "private.txt").as_deref(), Some(&b"ana's own"[..]));
    let status = a.status(None);
    let folders = status["shared"].as_array().expect("shared folders listed");
    assert_eq!(folders.len(), 1, "{status}");
    assert_eq!(folders[0]["path"], "project");
    assert_eq!(folders[0]["owner"], true);
    assert_eq!(folders[0]["members"][0], "bob@example.org");
    let members = ok(&a, &["members", a.path("project/sub").to_str().unwrap()]);
    assert!(
        members.contains("ana@example.org") && members.contains("bob@example.org"),
        "{members}"
    );
    // Bob's own files are not shared, and ana's are not bob's.
    assert!(!a.path("docs").exists() && !b.path("private.txt").exists());

    // Edits, renames and deletes flow both ways.
    a.write("project/plan.txt", b"the plan, v2");
    a.sync();
    eventually(LIMIT, "ana's edit reaches bob", || {
        read(&b, "docs/ana-project/plan.txt").as_deref() == Some(&b"the plan, v2"[..])
    })
    .await;
    b.write("docs/ana-project/sub/notes.txt", b"notes, by bob");
    b.write("docs/ana-project/from-bob.txt", b"hello ana");
    eventually(LIMIT, "bob's daemon uploads his edits", || {
        let s = b.status(Some("docs/ana-project"));
        s["target"]["status"] == "synced"
    })
    .await;
    a.sync();
    assert_eq!(
        read(&a, "project/sub/notes.txt").as_deref(),
        Some(&b"notes, by bob"[..])
    );
    assert_eq!(
        read(&a, "project/from-bob.txt").as_deref(),
        Some(&b"hello ana"[..])
    );
    std::fs::rename(a.path("project/sub"), a.path("project/renamed")).unwrap();
    a.sync();
    eventually(LIMIT, "the rename reaches bob", || {
        read(&b, "docs/ana-project/renamed/notes.txt").is_some()
            && !b.path("docs/ana-project/sub").exists()
    })
    .await;
    std::fs::remove_file(b.path("docs/ana-project/from-bob.txt")).unwrap();
    eventually(LIMIT, "bob's delete is synced", || {
        b.status(Some("docs/ana-project"))["target"]["status"] == "synced"
            && !b.path("docs/ana-project/from-bob.txt").exists()
    })
    .await;
    a.sync();
    assert!(!a.path("project/from-bob.txt").exists());

    // A concurrent edit: exactly one conflicted copy, the same on both.
    b.stop_daemon().await;
    a.write("project/plan.txt", b"ana's version");
    b.write("docs/ana-project/plan.txt", b"bob's version");
    a.sync();
    let summary = b.sync();
    assert_eq!(summary.conflicts, 1);
    a.sync();
    assert_eq!(subtree(&a, "project"), subtree(&b, "docs/ana-project"));
    let copies: Vec<String> = subtree(&a, "project")
        .into_keys()
        .filter(|p| p.contains("conflicted copy"))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");

    // A third device of bob's gets the share at the same place.
    let b2 = new_bob("bob-desktop");
    b2.sync();
    assert_eq!(
        subtree(&b2, "docs/ana-project"),
        subtree(&b, "docs/ana-project")
    );
    assert_eq!(
        read(&b2, "docs/mine.txt").as_deref(),
        Some(&b"bob's own"[..])
    );

    // Bob renames and moves his mount point on one device: only his own
    // view changes (his other device follows, ana's is untouched), and
    // nothing of it is copied into his private files.
    std::fs::create_dir_all(b.path("work")).unwrap();
    b.sync();
    std::fs::rename(b.path("docs/ana-project"), b.path("work/from-ana")).unwrap();
    b.sync();
    b2.sync();
    for c in [&b, &b2] {
        assert!(!c.path("docs/ana-project").exists(), "{}", c.name);
        assert_eq!(
            read(c, "work/from-ana/renamed/notes.txt").as_deref(),
            Some(&b"notes, by bob"[..]),
            "{}",
            c.name
        );
    }
    b.write("work/from-ana/after-move.txt", b"still shared");
    b.sync();
    a.sync();
    assert_eq!(
        read(&a, "project/after-move.txt").as_deref(),
        Some(&b"still shared"[..])
    );
    let status = b.status(None);
    assert_eq!(status["shared"][0]["path"], "work/from-ana", "{status}");
    let bob_fresh = new_bob("bob-phone");
    bob_fresh.sync();
    assert!(bob_fresh.path("work/from-ana/after-move.txt").exists());
    assert!(!bob_fresh.path("docs/ana-project").exists());
    std::fs::rename(b.path("work/from-ana"), b.path("docs/ana-project")).unwrap();
    b.sync();
    b2.sync();
    assert!(b2.path("docs/ana-project/after-move.txt").exists());

    // On Swift, bob's own storage credentials read the shared container
    // now (and only read it), and are refused once he is removed.
    let swift = match &backend {
        Backend::Full { swift_auth, .. } => Some(swift_probe(&cluster, swift_auth, &bob).await),
        Backend::Embedded => None,
    };
    if let Some(probe) = &swift {
        probe
            .read()
            .await
            .expect("a member's storage user reads the shared container");
    }

    // Ana unshares: bob keeps a detached copy; his later edits reach
    // nobody, and his private files still sync.
    let removed = ok(
        &a,
        &[
            "unshare",
            a.path("project").to_str().unwrap(),
            "--with",
            &bob,
        ],
    );
    assert!(removed.contains("removed bob@example.org"), "{removed}");
    // The used invitation does not let him back in.
    let again = b.run(&["accept", &id]);
    assert!(!again.status.success(), "a removed member accepted again");
    if let Some(probe) = &swift {
        let refused = probe
            .read()
            .await
            .expect_err("a removed member still reads");
        assert_eq!(refused, BlobErrorKind::Forbidden);
    }
    b.sync();
    let status = b.status(None);
    let folders = status["shared"].as_array().expect("listed");
    assert_eq!(folders.len(), 1, "{status}");
    assert_eq!(folders[0]["path"], "docs/ana-project");
    assert_eq!(folders[0]["state"], "detached");
    assert_eq!(
        read(&b, "docs/ana-project/renamed/notes.txt").as_deref(),
        Some(&b"notes, by bob"[..])
    );
    b.write("docs/ana-project/renamed/notes.txt", b"too late");
    b.write("docs/mine.txt", b"bob's own, v2");
    b.sync();
    b2.sync();
    a.sync();
    assert_eq!(
        read(&a, "project/renamed/notes.txt").as_deref(),
        Some(&b"notes, by bob"[..])
    );
    assert_eq!(
        read(&b2, "docs/mine.txt").as_deref(),
        Some(&b"bob's own, v2"[..])
    );
    assert_eq!(
        read(&b2, "docs/ana-project/renamed/notes.txt").as_deref(),
        Some(&b"notes, by bob"[..]),
        "the other device keeps its detached copy as it was"
    );
    // Bob was the last member: `project` is ana's own folder again, where
    // it was, and nothing was sent again for it.
    let status = a.status(None);
    assert!(
        status["shared"].as_array().is_none_or(|v| v.is_empty()),
        "{status}"
    );
    assert_eq!(a.sync().bytes_uploaded, 0);
    let a2 = cluster.client("ana-desktop", &ana);
    a2.sync();
    assert_eq!(subtree(&a2, "project"), subtree(&a, "project"));
    a.write("project/plan.txt", b"ana's own again");
    a.sync();
    a2.sync();
    assert_eq!(
        read(&a2, "project/plan.txt").as_deref(),
        Some(&b"ana's own again"[..])
    );

    // Nothing of the detached copy went into bob's private workspace.
    let b3 = new_bob("bob-tablet");
    b3.sync();
    assert!(!b3.path("docs/ana-project").exists());
    assert_eq!(
        read(&b3, "docs/mine.txt").as_deref(),
        Some(&b"bob's own, v2"[..])
    );
}

on_both_backends!(a_shared_folder_between_two_accounts);

/// Reads an object of bob's shared folder's container with bob's own Swift
/// credentials.
struct SwiftProbe {
    bob: SwiftStore,
    container: ContainerName,
    object: stacksync_proto::ChunkId,
}

impl SwiftProbe {
    async fn read(&self) -> Result<(), BlobErrorKind> {
        self.bob
            .get_bytes(&self.container, &self.object)
            .await
            .map(drop)
            .map_err(|e| e.kind)
    }
}

async fn swift_probe(cluster: &Cluster, auth_url: &str, bob: &str) -> SwiftProbe {
    let rpc = GatewayClient::login(&cluster.url, bob, "secret-pw")
        .await
        .expect("bob logs in");
    let Ok(Reply::Workspaces { workspaces }) = rpc.rpc(Request::GetWorkspaces).await else {
        panic!("bob's workspaces");
    };
    let shared = workspaces
        .iter()
        .find(|w| w.is_shared)
        .expect("bob is in a shared workspace");
    let container = ContainerName::new(&shared.container).expect("a container name");
    let store = |user: &str, key: &str| {
        let mut config = SwiftConfig::new(SwiftAuth::V1 {
            auth_url: auth_url.to_owned(),
            user: user.to_owned(),
            key: key.to_owned(),
        });
        config.account = Some("AUTH_test".into());
        SwiftStore::new(config).expect("a Swift configuration")
    };
    let owner = store("test:tester", "testing");
    let object = *owner
        .list(&container)
        .await
        .expect("the installation lists the container")
        .first()
        .expect("the shared container holds objects");
    SwiftProbe {
        bob: store("test2:tester2", "testing2"),
        container,
        object,
    }
}

/// Ana shares `project` with bob and bob accepts it on `bob`'s devices;
/// returns the invitation id.
fn share_project(a: &Client, b: &Client, bob: &str) -> String {
    ok(
        a,
        &["share", a.path("project").to_str().unwrap(), "--with", bob],
    );
    let id = ok(b, &["invitations"]).trim().to_owned();
    assert_eq!(id.lines().count(), 1, "{id}");
    id
}

/// The owner keeps editing while the member accepts: nothing the owner
/// typed is lost. Two devices of the member accepting the same invitation
/// at once make one membership, and both sync the folder.
async fn accepting_while_the_owner_edits(backend: Backend) {
    let cluster = Cluster::start(&backend).await;
    let ana = cluster.add_gateway_user("ana@example.org");
    let bob = cluster.add_user("bob@example.org", None);
    let mut a = cluster.client("ana-laptop", &ana);
    let new_bob = |name: &str| match cluster.direct {
        Some(_) => cluster.direct_client(name, &bob),
        None => cluster.client(name, &bob),
    };
    let (b1, b2) = (new_bob("bob-laptop"), new_bob("bob-desktop"));
    a.write("project/plan.txt", b"v0");
    a.sync();
    a.start_daemon();
    let id = share_project(&a, &b1, &bob);
    // Both of bob's devices accept at once, while ana's daemon syncs her
    // edits of the folder.
    let accept = |c: &Client| {
        c.command(&["accept", &id])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("accept runs")
    };
    let (p1, p2) = (accept(&b1), accept(&b2));
    for i in 1..=20 {
        a.write("project/plan.txt", format!("v{i}").as_bytes());
        a.write(
            &format!("project/during-{i}.txt"),
            format!("typed {i}").as_bytes(),
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for p in [p1, p2] {
        let out = p.wait_with_output().expect("accept ends");
        assert!(
            out.status.success(),
            "accept failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let last = std::cell::RefCell::new(serde_json::Value::Null);
    let settled = tokio::time::timeout(
        LIMIT,
        eventually(LIMIT * 2, "ana's daemon settles", || {
            let s = a.status(None);
            // Synced, and no conflicted copy: ana's edits during the
            // hand-over are new versions of her files.
            let done = s["target"]["status"] == "synced"
                && s["shared"][0]["members"][0] == "bob@example.org";
            *last.borrow_mut() = s;
            done
        }),
    )
    .await;
    assert!(
        settled.is_ok(),
        "ana's daemon did not settle: {}\n{}",
        last.borrow(),
        a.daemon_log()
    );
    a.stop_daemon().await;
    a.sync();
    b1.sync();
    b2.sync();
    a.sync();
    assert_eq!(read(&a, "project/plan.txt").as_deref(), Some(&b"v20"[..]));
    for i in 1..=20 {
        let want = format!("typed {i}");
        for c in [&a, &b1, &b2] {
            assert_eq!(
                read(c, &format!("project/during-{i}.txt")).as_deref(),
                Some(want.as_bytes()),
                "{}: edit {i} lost",
                c.name
            );
        }
    }
    assert_eq!(subtree(&a, "project"), subtree(&b1, "project"));
    assert_eq!(subtree(&b1, "project"), subtree(&b2, "project"));
    let rpc = GatewayClient::login(&cluster.url, &ana, "secret-pw")
        .await
        .expect("ana logs in");
    let Ok(Reply::Workspaces { workspaces }) = rpc.rpc(Request::GetWorkspaces).await else {
        panic!("ana's workspaces");
    };
    let shared = workspaces.iter().find(|w| w.is_shared).expect("shared");
    let Ok(Reply::Members { members }) = rpc
        .rpc(Request::GetMembers {
            workspace: shared.id,
        })
        .await
    else {
        panic!("members");
    };
    let bobs = members.iter().filter(|m| m.email == bob).count();
    assert_eq!((members.len(), bobs), (2, 1), "{members:?}");
}

on_both_backends!(accepting_while_the_owner_edits);

/// A 100 MiB folder moved from the private tree into a shared folder, out
/// again and back in: only the first move uploads its chunks (the target
/// workspace has them afterwards: its history keeps them), and no move
/// loses a byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_across_workspaces_upload_only_what_the_target_lacks() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let ana = cluster.add_user("ana@example.org", None);
    let bob = cluster.add_user("bob@example.org", None);
    let a = cluster.client("ana-laptop", &ana);
    let b = cluster.client("bob-laptop", &bob);
    let big = common::random_bytes(100 * 1024 * 1024, 7);
    a.write("project/readme.txt", b"shared");
    a.write("media/film.bin", &big);
    a.write("media/poster.txt", b"poster");
    a.sync();
    let id = share_project(&a, &b, &bob);
    ok(&b, &["accept", &id]);
    b.sync();
    assert_eq!(a.sync().bytes_uploaded, 0);

    let step = |what: &str, from: &str, to: &str| {
        std::fs::rename(a.path(from), a.path(to)).unwrap();
        let up = a.sync().bytes_uploaded;
        b.sync();
        let ana_fresh = cluster.client(&format!("ana-{what}"), &ana);
        ana_fresh.sync();
        for c in [&a, &ana_fresh] {
            assert_eq!(
                read(c, &format!("{to}/poster.txt")).as_deref(),
                Some(&b"poster"[..])
            );
            assert!(
                read(c, &format!("{to}/film.bin")).as_deref() == Some(&big[..]),
                "{what}: {} lost the film",
                c.name
            );
            assert!(
                !c.path(from).exists(),
                "{what}: {} still has {from}",
                c.name
            );
        }
        up
    };
    let first = step("into", "media", "project/media");
    assert!(
        first >= 100 * 1024 * 1024,
        "the shared folder lacked them: {first}"
    );
    assert!(read(&b, "project/media/film.bin").as_deref() == Some(&big[..]));
    let out = step("out", "project/media", "media");
    assert!(
        out < 1024 * 1024,
        "the private workspace had every chunk: {out} bytes sent"
    );
    assert!(!b.path("project/media").exists());
    let back = step("back", "media", "project/media");
    assert!(
        back < 1024 * 1024,
        "the shared workspace had every chunk: {back} bytes sent"
    );
    assert!(read(&b, "project/media/film.bin").as_deref() == Some(&big[..]));
}

/// A read-only member reads the shared folder; an edit of theirs is not
/// uploaded but kept beside the shared file as a conflicted copy, reported
/// once by `status`; the owner's file is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_member_keeps_edits_to_themselves() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let ana = cluster.add_user("ana@example.org", None);
    let bob = cluster.add_user("bob@example.org", None);
    let a = cluster.client("ana-laptop", &ana);
    let b = cluster.client("bob-laptop", &bob);
    a.write("project/plan.txt", b"the plan");
    a.sync();
    ok(
        &a,
        &[
            "share",
            a.path("project").to_str().unwrap(),
            "--with",
            &bob,
            "--read-only",
        ],
    );
    let id = ok(&b, &["invitations"]).trim().to_owned();
    ok(&b, &["accept", &id]);
    b.sync();
    a.sync();
    assert_eq!(
        read(&b, "project/plan.txt").as_deref(),
        Some(&b"the plan"[..])
    );
    let status = b.status(None);
    assert_eq!(status["shared"][0]["read_only"], true, "{status}");

    b.write("project/plan.txt", b"bob's change");
    b.write("project/new.txt", b"bob's new file");
    let summary = b.sync();
    assert_eq!(
        summary.bytes_uploaded, 0,
        "a read-only member uploads nothing"
    );
    assert_eq!(
        read(&b, "project/plan.txt").as_deref(),
        Some(&b"the plan"[..])
    );
    let copies: Vec<String> = subtree(&b, "project")
        .into_keys()
        .filter(|p| p.contains("conflicted copy"))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(
        read(&b, &format!("project/{}", copies[0])).as_deref(),
        Some(&b"bob's change"[..])
    );
    let s = b.status(Some("project/new.txt"));
    assert_eq!(s["target"]["status"], "error", "{s}");
    assert!(
        s["target"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("read-only")),
        "{s}"
    );
    // A second sync does nothing more.
    assert_eq!(b.sync().applied, 0);
    a.sync();
    assert_eq!(
        read(&a, "project/plan.txt").as_deref(),
        Some(&b"the plan"[..])
    );
    assert!(!a.path("project/new.txt").exists());
    // The owner's edits still reach the read-only member.
    a.write("project/plan.txt", b"the plan, v2");
    a.sync();
    b.sync();
    assert_eq!(
        read(&b, "project/plan.txt").as_deref(),
        Some(&b"the plan, v2"[..])
    );
}

/// A member's device that has a folder of its own where a shared folder
/// is mounted does not merge the two (which would upload the member's
/// files to everyone): the mount waits, `status` says why, and the
/// member's folder stays theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_in_the_way_is_never_merged_into_a_shared_one() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let ana = cluster.add_user("ana@example.org", None);
    let bob = cluster.add_user("bob@example.org", None);
    let a = cluster.client("ana-laptop", &ana);
    let b1 = cluster.client("bob-laptop", &bob);
    let b2 = cluster.client("bob-desktop", &bob);
    a.write("project/plan.txt", b"the plan");
    a.sync();
    let id = share_project(&a, &b1, &bob);
    b2.write("project/diary.txt", b"bob's private diary");
    ok(&b1, &["accept", &id]);
    b1.sync();
    b2.sync();
    assert_eq!(
        read(&b2, "project/diary.txt").as_deref(),
        Some(&b"bob's private diary"[..])
    );
    assert!(
        !b2.path("project/plan.txt").exists(),
        "merged into bob's own folder"
    );
    let status = b2.status(None);
    let shared = status["shared"].as_array().expect("listed");
    assert_eq!(shared.len(), 1, "{status}");
    assert_eq!(shared[0]["state"], "paused", "{status}");
    assert!(
        shared[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("already exists")),
        "{status}"
    );
    b1.sync();
    a.sync();
    assert!(
        !a.path("project/diary.txt").exists(),
        "bob's diary reached ana"
    );
    assert!(
        !b1.path("project/diary.txt").exists(),
        "bob's diary went into the shared folder"
    );
}
