//! `stacksync admin` with the real binary, on SQLite and on PostgreSQL
//! (issue 24): users (list, show, quota, storage user, disable, enable,
//! reset-password, remove), devices (list, revoke), workspaces (list,
//! show), stats, OAuth apps, gc and reseal, each with `--json`; a quota
//! change holds the next upload; removing a user takes their workspaces,
//! share proposals and stored objects, and leaves another user's shared
//! folder they were a member of, with their files in it; the owner of a
//! shared folder is removed only with `--delete-shared`, which deletes the
//! folder for its members, who keep their copies and go on syncing the
//! rest.

mod common;

use std::process::Output;

use common::{BIN, Backend, Client, Cluster, random_bytes};
use serde_json::Value;

/// Which metadata database the server runs on (blobs stay local, the bus
/// in-process: this suite is about the database's queries).
enum Db {
    Sqlite,
    /// The administrator URL of a PostgreSQL server.
    Postgres(String),
}

impl Db {
    /// PostgreSQL from `STACKSYNC_TEST_POSTGRES`; without it, a failure
    /// under `CI=true` and a skip otherwise.
    fn postgres() -> Option<Db> {
        match std::env::var("STACKSYNC_TEST_POSTGRES") {
            Ok(url) if !url.is_empty() => Some(Db::Postgres(url)),
            _ if std::env::var("CI").as_deref() == Ok("true") => {
                panic!(
                    "STACKSYNC_TEST_POSTGRES is not set under CI=true: the admin tests on PostgreSQL must run"
                )
            }
            _ => {
                eprintln!(
                    "SKIP: STACKSYNC_TEST_POSTGRES is not set; admin test on PostgreSQL skipped"
                );
                None
            }
        }
    }
}

/// A scratch PostgreSQL database, dropped at the end.
struct ScratchDb {
    admin: String,
    name: String,
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .arg(&self.admin)
            .args([
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// A server on `db`; the scratch database (PostgreSQL) lives as long as
/// the returned guard.
async fn start(db: &Db) -> (Cluster, Option<ScratchDb>) {
    match db {
        Db::Sqlite => (Cluster::start(&Backend::Embedded).await, None),
        Db::Postgres(admin) => {
            use sqlx::Connection;
            sqlx::any::install_default_drivers();
            let name = format!("stacksync_t_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::AnyConnection::connect(admin)
                .await
                .expect("PostgreSQL accepts connections");
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("a scratch database can be created");
            let _ = conn.close().await;
            let guard = ScratchDb {
                admin: admin.clone(),
                name: name.clone(),
            };
            let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
            let extra = format!("\n[database]\nurl = \"{base}/{name}\"\n");
            (
                Cluster::start_with(&Backend::Embedded, &extra).await,
                Some(guard),
            )
        }
    }
}

macro_rules! on_both_databases {
    ($scenario:ident) => {
        mod $scenario {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(Db::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = Db::postgres() else {
                    return;
                };
                super::$scenario(db).await;
            }
        }
    };
}

on_both_databases!(users_devices_workspaces_and_stats);
on_both_databases!(a_quota_change_holds_the_next_upload);
on_both_databases!(removing_a_user);
on_both_databases!(removing_the_owner_of_a_shared_folder);

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `stacksync admin --config CONFIG ARGS...`.
fn admin_run(cluster: &Cluster, args: &[&str]) -> Output {
    std::process::Command::new(BIN)
        .args(["admin", "--config"])
        .arg(&cluster.config)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("admin runs")
}

/// `admin ARGS... --json`, which must succeed and print one JSON value.
fn admin_json(cluster: &Cluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = admin_run(cluster, &all);
    assert!(out.status.success(), "admin {args:?}: {}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("admin {args:?}: {text:?}: {e}"))
}

/// `admin ARGS...` for people, which must succeed; its output.
fn admin_text(cluster: &Cluster, args: &[&str]) -> String {
    let out = admin_run(cluster, args);
    assert!(out.status.success(), "admin {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `admin ARGS...`, which must fail; its error output.
fn admin_refused(cluster: &Cluster, args: &[&str]) -> String {
    let out = admin_run(cluster, args);
    assert!(!out.status.success(), "admin {args:?} worked");
    stderr(&out)
}

fn ok(c: &Client, args: &[&str]) -> String {
    let out = c.run(args);
    assert!(
        out.status.success(),
        "{}: {args:?}: {}",
        c.name,
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn array(v: &Value) -> &Vec<Value> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}"))
}

fn find<'a>(list: &'a Value, key: &str, want: &str) -> &'a Value {
    array(list)
        .iter()
        .find(|x| x[key] == want)
        .unwrap_or_else(|| panic!("no {key} = {want} in {list}"))
}

async fn users_devices_workspaces_and_stats(db: Db) {
    let (cluster, _db) = start(&db).await;
    let added = admin_json(
        &cluster,
        &[
            "user",
            "add",
            "ana@example.org",
            "--password",
            "secret-pw",
            "--quota",
            "2GiB",
        ],
    );
    assert_eq!(added["email"], "ana@example.org", "{added}");
    let ana_id = added["id"].as_str().expect("an id").to_owned();
    cluster.add_user("bo@example.org", None);
    let a = cluster.client("ana-laptop", "ana@example.org");
    let b = cluster.client("bo-laptop", "bo@example.org");
    let big = random_bytes(200_000, 1);
    a.write("big.bin", &big);
    a.write("docs/note.txt", b"a note");
    // The same bytes twice: stored once.
    a.write("docs/copy.bin", &big);
    a.sync();
    b.write("bo.txt", b"bo's");
    b.sync();

    // Users.
    let users = admin_json(&cluster, &["user", "list"]);
    assert_eq!(array(&users).len(), 2, "{users}");
    assert_eq!(users[0]["email"], "ana@example.org", "sorted by email");
    assert_eq!(users[0]["id"], ana_id.as_str());
    assert_eq!(users[0]["quota_limit"], 2u64 << 30);
    assert_eq!(users[0]["disabled"], false);
    assert_eq!(users[0]["device_count"], 1);
    assert!(users[0]["quota_used"].as_u64().unwrap() > 0, "{users}");
    let table = admin_text(&cluster, &["user", "list"]);
    assert!(table.starts_with("EMAIL"), "{table}");
    assert!(table.contains("bo@example.org"), "{table}");
    let shown = admin_json(&cluster, &["user", "show", "ana@example.org"]);
    assert_eq!(array(&shown["devices"]).len(), 1, "{shown}");
    assert_eq!(shown["devices"][0]["name"], "ana-laptop");
    assert_eq!(array(&shown["workspaces"]).len(), 1, "{shown}");
    assert!(admin_text(&cluster, &["user", "show", "ana@example.org"]).contains("ana-laptop"));
    assert!(admin_refused(&cluster, &["user", "show", "nobody@example.org"]).contains("no user"));

    // Quota, as sizes are typed.
    let q = admin_json(&cluster, &["user", "quota", "ana@example.org", "50GiB"]);
    assert_eq!(q["quota_limit"], 50u64 << 30, "{q}");
    let q = admin_json(&cluster, &["user", "quota", "ana@example.org", "1500000"]);
    assert_eq!(q["quota_limit"], 1_500_000, "{q}");
    assert!(
        admin_refused(&cluster, &["user", "quota", "ana@example.org", "lots"])
            .contains("not a size")
    );

    // Storage user: set, shown, cleared.
    let s = admin_json(
        &cluster,
        &["user", "storage-user", "ana@example.org", "test:ana"],
    );
    assert_eq!(s["storage_user"], "test:ana", "{s}");
    assert_eq!(s["previous"], Value::Null);
    let s = admin_json(&cluster, &["user", "storage-user", "ana@example.org"]);
    assert_eq!(s["storage_user"], "test:ana", "{s}");
    let s = admin_json(
        &cluster,
        &["user", "storage-user", "ana@example.org", "--clear"],
    );
    assert_eq!(s["previous"], "test:ana", "{s}");
    assert_eq!(
        admin_text(&cluster, &["user", "storage-user", "ana@example.org"]).trim(),
        "-"
    );

    // Workspaces and their figures.
    let mine = admin_json(
        &cluster,
        &["workspace", "list", "--user", "ana@example.org"],
    );
    assert_eq!(array(&mine).len(), 1, "{mine}");
    let ws = &mine[0];
    assert_eq!(ws["owner_email"], "ana@example.org");
    assert_eq!(ws["shared"], false);
    assert_eq!(
        ws["live_items"], 4,
        "big.bin, docs, docs/note.txt, docs/copy.bin: {ws}"
    );
    assert_eq!(ws["logical_bytes"], 2 * 200_000 + 6, "{ws}");
    let stored = ws["stored_bytes"].as_u64().unwrap();
    assert!(stored > 0 && stored < 2 * 200_000, "deduplicated: {ws}");
    let all = admin_json(&cluster, &["workspace", "list"]);
    assert_eq!(array(&all).len(), 2, "{all}");
    let id = ws["id"].as_str().unwrap();
    let one = admin_json(&cluster, &["workspace", "show", id]);
    assert_eq!(one["encryption"], "plain", "{one}");
    assert_eq!(one["container"], ws["container"]);
    assert_eq!(one["members"][0]["email"], "ana@example.org");
    assert_eq!(one["members"][0]["owner"], true);
    assert_eq!(one["members"][0]["read_only"], false);
    assert!(admin_text(&cluster, &["workspace", "show", id]).contains("members (1)"));
    assert!(
        admin_refused(&cluster, &["workspace", "show", "not-an-id"]).contains("not a workspace id")
    );

    // The totals agree with the workspaces.
    let stats = admin_json(&cluster, &["stats"]);
    assert_eq!(stats["users"], 2, "{stats}");
    assert_eq!(stats["devices"], 2);
    assert_eq!(stats["workspaces"], 2);
    assert_eq!(stats["live_items"], 5);
    assert_eq!(stats["versions"], 5);
    let sum = |k: &str| {
        array(&all)
            .iter()
            .map(|w| w[k].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(stats["stored_bytes"], sum("stored_bytes"));
    assert_eq!(stats["logical_bytes"], sum("logical_bytes"));
    let ratio = stats["dedup_ratio"].as_f64().unwrap();
    let want = sum("logical_bytes") as f64 / sum("stored_bytes") as f64;
    assert!((ratio - want).abs() < 1e-9 && ratio > 1.0, "{stats}");
    assert!(admin_text(&cluster, &["stats"]).contains("dedup ratio"));

    // Devices: listed, and one signed out (the other user's goes on).
    let devices = admin_json(&cluster, &["device", "list"]);
    assert_eq!(array(&devices).len(), 2, "{devices}");
    let anas = admin_json(&cluster, &["device", "list", "--user", "ana@example.org"]);
    assert_eq!(array(&anas).len(), 1, "{anas}");
    let laptop = find(&devices, "name", "ana-laptop");
    assert_eq!(laptop["email"], "ana@example.org");
    assert!(laptop["live_sessions"].as_u64().unwrap() >= 1, "{laptop}");
    let revoked = admin_json(
        &cluster,
        &["device", "revoke", laptop["id"].as_str().unwrap()],
    );
    assert!(
        revoked["ended_sessions"].as_u64().unwrap() >= 1,
        "{revoked}"
    );
    let refused = a.run(&["sync", "--once"]);
    assert!(!refused.status.success(), "a signed-out device syncs");
    assert!(
        stderr(&refused).contains("log in again"),
        "{}",
        stderr(&refused)
    );
    b.sync();
    let after = admin_json(&cluster, &["device", "list", "--user", "ana@example.org"]);
    assert_eq!(after[0]["live_sessions"], 0, "{after}");
    assert!(
        admin_refused(
            &cluster,
            &["device", "revoke", "0190b8c4-0000-7000-8000-000000000000"]
        )
        .contains("no device")
    );

    // Disable, enable, reset-password.
    let d = admin_json(&cluster, &["user", "disable", "bo@example.org"]);
    assert_eq!(d["disabled"], true);
    assert_eq!(d["ended_sessions"], 1, "{d}");
    assert_eq!(admin_json(&cluster, &["user", "list"])[1]["disabled"], true);
    let e = admin_json(&cluster, &["user", "enable", "bo@example.org"]);
    assert_eq!(e["disabled"], false);
    ok(&b, &["login", "--password", "secret-pw"]);
    let r = admin_json(
        &cluster,
        &[
            "user",
            "reset-password",
            "bo@example.org",
            "--password",
            "new-pw",
        ],
    );
    assert_eq!(r["ended_sessions"], 1, "{r}");
    ok(&b, &["login", "--password", "new-pw"]);
    b.sync();

    // OAuth apps.
    let app = admin_json(
        &cluster,
        &[
            "oauth",
            "add",
            "Notes",
            "--callback",
            "https://notes.example/cb",
        ],
    );
    let key = app["key"].as_str().unwrap().to_owned();
    assert!(!app["secret"].as_str().unwrap().is_empty());
    let apps = admin_json(&cluster, &["oauth", "list"]);
    assert_eq!(
        find(&apps, "key", &key)["callback"],
        "https://notes.example/cb"
    );
    assert_eq!(
        admin_json(&cluster, &["oauth", "remove", &key])["removed"],
        key.as_str()
    );
    assert!(array(&admin_json(&cluster, &["oauth", "list"])).is_empty());

    // Collection and resealing report in JSON too.
    let gc = admin_json(&cluster, &["gc", "--dry-run"]);
    assert_eq!(gc["dry_run"], true, "{gc}");
    let resealed = admin_json(&cluster, &["storage", "reseal"]);
    assert!(resealed["objects"].as_u64().unwrap() > 0, "{resealed}");
    assert_eq!(
        resealed["resealed"], 0,
        "nothing was sealed under an old key"
    );
}

async fn a_quota_change_holds_the_next_upload(db: Db) {
    let (cluster, _db) = start(&db).await;
    cluster.add_user("eve@example.org", None);
    let c = cluster.client("eve-laptop", "eve@example.org");
    c.write("first.bin", &random_bytes(300_000, 2));
    let s = c.sync();
    assert!(s.refused.is_empty(), "{s:?}");
    let used = admin_json(&cluster, &["user", "show", "eve@example.org"])["quota_used"]
        .as_u64()
        .unwrap();
    assert!(used >= 300_000, "{used}");

    // Lowered under what the next file needs: refused, nothing deleted.
    admin_json(
        &cluster,
        &[
            "user",
            "quota",
            "eve@example.org",
            &(used + 100_000).to_string(),
        ],
    );
    c.write("second.bin", &random_bytes(400_000, 3));
    let s = c.sync();
    assert_eq!(s.refused.len(), 1, "{s:?}");
    assert!(
        s.refused[0]["reason"].as_str().unwrap().contains("quota"),
        "{s:?}"
    );
    let shown = admin_json(&cluster, &["user", "show", "eve@example.org"]);
    assert_eq!(
        shown["quota_used"], used,
        "nothing more was stored: {shown}"
    );

    // Raised: the next upload goes through.
    admin_json(&cluster, &["user", "quota", "eve@example.org", "1GiB"]);
    c.write("second.bin", &random_bytes(400_001, 4));
    let s = c.sync();
    assert!(s.refused.is_empty(), "{s:?}");
    assert!(s.bytes_uploaded >= 400_000, "{s:?}");
    let shown = admin_json(&cluster, &["user", "show", "eve@example.org"]);
    assert!(
        shown["quota_used"].as_u64().unwrap() >= used + 400_000,
        "{shown}"
    );
}

async fn removing_a_user(db: Db) {
    let (cluster, _db) = start(&db).await;
    cluster.add_user("ana@example.org", None);
    cluster.add_user("bo@example.org", None);
    let a = cluster.client("ana-laptop", "ana@example.org");
    let b = cluster.client("bo-laptop", "bo@example.org");
    a.write("mine/private.bin", &random_bytes(100_000, 5));
    a.write("offer/plan.txt", b"ana's plan");
    a.sync();
    b.write("team/readme.txt", b"bo's team folder");
    b.sync();

    // Bo shares `team` with ana, who accepts and writes into it; ana
    // offers `offer` to bo, who does not answer.
    ok(
        &b,
        &[
            "share",
            b.path("team").to_str().unwrap(),
            "--with",
            "ana@example.org",
        ],
    );
    let id = ok(&a, &["invitations"]).trim().to_owned();
    ok(&a, &["accept", &id]);
    a.sync();
    a.write("team/from-ana.txt", b"written by ana");
    a.sync();
    b.sync();
    assert_eq!(b.read("team/from-ana.txt"), b"written by ana");
    ok(
        &a,
        &[
            "share",
            a.path("offer").to_str().unwrap(),
            "--with",
            "bo@example.org",
        ],
    );
    assert_eq!(ok(&b, &["invitations"]).lines().count(), 1);

    let anas = admin_json(
        &cluster,
        &["workspace", "list", "--user", "ana@example.org"],
    );
    assert_eq!(
        array(&anas).len(),
        2,
        "her private one and bo's team: {anas}"
    );
    let private = find(&anas, "owner_email", "ana@example.org");
    let team = find(&anas, "owner_email", "bo@example.org");
    let container = cluster
        .dir
        .path()
        .join("server/blobs")
        .join(private["container"].as_str().unwrap());
    assert!(container.exists(), "{}", container.display());
    let team_id = team["id"].as_str().unwrap().to_owned();
    let private_id = private["id"].as_str().unwrap().to_owned();

    let removed = admin_json(&cluster, &["user", "remove", "ana@example.org"]);
    assert_eq!(array(&removed["deleted_containers"]).len(), 1, "{removed}");
    assert_eq!(removed["left_workspaces"][0], team_id.as_str(), "{removed}");
    assert!(array(&removed["storage_errors"]).is_empty(), "{removed}");

    // Her workspace and its stored objects are gone; so is her offer.
    assert!(!container.exists(), "her container is deleted");
    assert!(admin_refused(&cluster, &["workspace", "show", &private_id]).contains("no workspace"));
    assert_eq!(
        ok(&b, &["invitations"]),
        "",
        "her share proposal went with her"
    );
    let users = admin_json(&cluster, &["user", "list"]);
    assert_eq!(array(&users).len(), 1, "{users}");
    assert!(
        array(&admin_json(
            &cluster,
            &["device", "list", "--user", "bo@example.org"]
        ))
        .len()
            == 1
    );
    assert!(
        admin_refused(&cluster, &["device", "list", "--user", "ana@example.org"])
            .contains("no user")
    );

    // Bo's shared folder stays, with what ana wrote in it.
    let kept = admin_json(&cluster, &["workspace", "show", &team_id]);
    assert_eq!(array(&kept["members"]).len(), 1, "{kept}");
    assert_eq!(kept["members"][0]["email"], "bo@example.org");
    assert_eq!(kept["live_items"], 2, "readme and ana's file: {kept}");
    let stats = admin_json(&cluster, &["stats"]);
    assert_eq!(stats["users"], 1, "{stats}");
    assert_eq!(stats["workspaces"], 2, "bo's private one and team: {stats}");
    b.sync();
    assert_eq!(b.read("team/from-ana.txt"), b"written by ana");
    assert_eq!(b.read("team/readme.txt"), b"bo's team folder");
    b.write("team/after.txt", b"still works");
    b.sync();
}

async fn removing_the_owner_of_a_shared_folder(db: Db) {
    let (cluster, _db) = start(&db).await;
    for email in ["ana@example.org", "bo@example.org", "carol@example.org"] {
        cluster.add_user(email, None);
    }
    let a = cluster.client("ana-laptop", "ana@example.org");
    let b = cluster.client("bo-laptop", "bo@example.org");
    let c = cluster.client("carol-laptop", "carol@example.org");
    let big = random_bytes(150_000, 6);
    a.write("plan/notes.txt", b"ana's notes");
    a.write("plan/big.bin", &big);
    a.sync();
    b.write("own/bo.txt", b"bo's own");
    b.write("crew/readme.txt", b"bo's crew folder");
    b.sync();

    // Ana shares `plan` with bo, bo shares `crew` with carol; all accept.
    let share = |owner: &Client, folder: &str, with: &str, member: &Client| {
        ok(
            owner,
            &[
                "share",
                owner.path(folder).to_str().unwrap(),
                "--with",
                with,
            ],
        );
        let id = ok(member, &["invitations"]).trim().to_owned();
        ok(member, &["accept", &id]);
        member.sync();
    };
    share(&a, "plan", "bo@example.org", &b);
    share(&b, "crew", "carol@example.org", &c);
    assert_eq!(b.read("plan/notes.txt"), b"ana's notes");
    assert_eq!(b.read("plan/big.bin"), big);
    assert_eq!(c.read("crew/readme.txt"), b"bo's crew folder");

    let anas = admin_json(
        &cluster,
        &["workspace", "list", "--user", "ana@example.org"],
    );
    let plan = array(&anas)
        .iter()
        .find(|w| w["shared"] == true)
        .unwrap_or_else(|| panic!("her shared folder: {anas}"))
        .clone();
    let plan_id = plan["id"].as_str().unwrap().to_owned();
    let blobs = cluster.dir.path().join("server/blobs");
    let plan_container = blobs.join(plan["container"].as_str().unwrap());
    assert!(plan_container.exists(), "{}", plan_container.display());

    // Without the flag: refused, naming the folder and its member, and
    // saying what to do; nothing changed.
    let refused = admin_refused(&cluster, &["user", "remove", "ana@example.org"]);
    for said in [
        plan_id.as_str(),
        "bo@example.org",
        "--delete-shared",
        "user disable ana@example.org",
    ] {
        assert!(refused.contains(said), "{said}: {refused}");
    }
    assert_eq!(array(&admin_json(&cluster, &["user", "list"])).len(), 3);
    let shown = admin_json(&cluster, &["workspace", "show", &plan_id]);
    assert_eq!(array(&shown["members"]).len(), 2, "{shown}");
    b.write("plan/from-bo.txt", b"written by bo");
    b.sync();
    a.sync();
    assert_eq!(a.read("plan/from-bo.txt"), b"written by bo");

    // With it: the folder goes for everyone, its objects with it.
    let removed = admin_json(
        &cluster,
        &["user", "remove", "ana@example.org", "--delete-shared"],
    );
    assert_eq!(array(&removed["deleted_containers"]).len(), 1, "{removed}");
    let dissolved = array(&removed["dissolved_shared"]);
    assert_eq!(dissolved.len(), 1, "{removed}");
    assert_eq!(dissolved[0]["workspace"], plan_id.as_str(), "{removed}");
    assert_eq!(dissolved[0]["members"][0], "bo@example.org", "{removed}");
    assert!(array(&removed["storage_errors"]).is_empty(), "{removed}");
    assert!(!plan_container.exists(), "the shared folder's container");
    assert!(admin_refused(&cluster, &["workspace", "show", &plan_id]).contains("no workspace"));
    assert_eq!(array(&admin_json(&cluster, &["user", "list"])).len(), 2);

    // Bo's device goes on syncing and keeps its copy of the folder,
    // detached.
    let out = b.run(&["sync", "--once"]);
    assert!(out.status.success(), "bo syncs: {}", stderr(&out));
    assert_eq!(b.read("plan/notes.txt"), b"ana's notes");
    assert_eq!(b.read("plan/big.bin"), big);
    assert_eq!(b.read("plan/from-bo.txt"), b"written by bo");
    let status = b.status(None);
    let detached = array(&status["shared"])
        .iter()
        .find(|f| f["path"] == "plan")
        .unwrap_or_else(|| panic!("plan is listed: {status}"));
    assert_eq!(detached["state"], "detached", "{status}");

    // His own files and his own shared folder keep syncing; nothing of
    // the detached copy goes anywhere.
    b.write("own/bo.txt", b"bo's own, v2");
    b.write("crew/after.txt", b"after ana left");
    b.write("plan/late.txt", b"too late");
    b.sync();
    c.sync();
    assert_eq!(c.read("crew/after.txt"), b"after ana left");
    c.write("crew/from-carol.txt", b"carol's");
    c.sync();
    b.sync();
    assert_eq!(b.read("crew/from-carol.txt"), b"carol's");
    let b2 = cluster.client("bo-desktop", "bo@example.org");
    b2.sync();
    assert_eq!(b2.read("own/bo.txt"), b"bo's own, v2");
    assert_eq!(b2.read("crew/from-carol.txt"), b"carol's");
    assert!(
        !b2.path("plan").exists(),
        "the detached copy stays on bo-laptop"
    );
}
