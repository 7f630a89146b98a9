//! Data-driven planner tests: three small trees in, the plan out.
//!
//! Tree syntax, one item per line:
//! - remote/synced: `<id> <path> v<version> [=<content>] [#<file id>] [deleted]`
//! - local: `<path> [=<content>] [#<file id>]`
//!
//! A path ending in `/` is a folder. Ops are rendered with `#n` for item n,
//! `newN` for new local items, and positions as `parent/name`.

use std::collections::BTreeMap;

use stacksync_engine::planner::{Op, RemoteChange};
use stacksync_engine::{
    IgnoreRules, Key, LocalEntry, LocalTree, PlanInput, Pos, RelPath, Stamp, SyncState, SyncedItem,
    plan,
};
use stacksync_proto::{ContentHash, DeviceId, ItemId, ItemMeta, ItemName, ItemStatus, WorkspaceId};

fn id(n: u64) -> ItemId {
    ItemId(uuid::Uuid::from_u64_pair(0, n))
}

fn hash(s: &str) -> ContentHash {
    ContentHash(*blake3::hash(s.as_bytes()).as_bytes())
}

struct Line {
    id: Option<u64>,
    path: RelPath,
    is_folder: bool,
    version: u64,
    content: Option<String>,
    file_id: Option<u64>,
    deleted: bool,
}

fn parse(line: &str, with_id: bool) -> Line {
    let mut words = line.split_whitespace();
    let id = with_id.then(|| words.next().expect("id").parse().expect("numeric id"));
    let raw = words.next().expect("path");
    let is_folder = raw.ends_with('/');
    let path = RelPath::parse(raw.trim_end_matches('/')).expect("valid path");
    let mut l = Line {
        id,
        path,
        is_folder,
        version: 1,
        content: None,
        file_id: None,
        deleted: false,
    };
    for w in words {
        if let Some(v) = w.strip_prefix('v') {
            l.version = v.parse().expect("version");
        } else if let Some(c) = w.strip_prefix('=') {
            l.content = Some(c.to_string());
        } else if let Some(f) = w.strip_prefix('#') {
            l.file_id = Some(f.parse().expect("file id"));
        } else if w == "deleted" {
            l.deleted = true;
        } else {
            panic!("unknown word {w:?}");
        }
    }
    l
}

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty())
}

/// Items by path, to find parents.
fn items(text: &str) -> (Vec<Line>, BTreeMap<RelPath, u64>) {
    let parsed: Vec<Line> = lines(text).map(|l| parse(l, true)).collect();
    let by_path = parsed
        .iter()
        .map(|l| (l.path.clone(), l.id.expect("id")))
        .collect();
    (parsed, by_path)
}

fn parent_of(l: &Line, by_path: &BTreeMap<RelPath, u64>) -> Option<ItemId> {
    l.path
        .parent()
        .filter(|p| !p.is_root())
        .map(|p| id(by_path[&p]))
}

fn stamp(l: &Line) -> Stamp {
    Stamp {
        size: l.content.as_ref().map_or(0, |c| c.len() as u64),
        mtime: 0,
        file_id: l.file_id,
    }
}

fn state(remote: &str, synced: &str) -> SyncState {
    let mut st = SyncState::default();
    let (lines, by_path) = items(remote);
    for l in &lines {
        st.remote.apply(ItemMeta {
            id: id(l.id.expect("id")),
            workspace: WorkspaceId::NIL,
            parent: parent_of(l, &by_path),
            name: l.path.name().expect("not root").clone(),
            is_folder: l.is_folder,
            mimetype: None,
            status: if l.deleted {
                ItemStatus::Deleted
            } else {
                ItemStatus::Changed
            },
            version: l.version,
            content_hash: l.content.as_deref().map(hash),
            size: l.content.as_ref().map_or(0, |c| c.len() as u64),
            client_modified: 0,
            server_modified: 0,
            device: DeviceId::NIL,
            revision: 1,
            chunks: Vec::new(),
            record: None,
        });
    }
    let (lines, by_path) = items(synced);
    for l in &lines {
        st.synced.insert(
            id(l.id.expect("id")),
            SyncedItem {
                parent: parent_of(l, &by_path),
                name: l.path.name().expect("not root").clone(),
                is_folder: l.is_folder,
                version: l.version,
                content_hash: l.content.as_deref().map(hash),
                size: l.content.as_ref().map_or(0, |c| c.len() as u64),
                stamp: l.file_id.map(|_| stamp(l)),
            },
        );
    }
    st
}

fn local(text: &str) -> LocalTree {
    lines(text)
        .map(|line| {
            let l = parse(line, false);
            let entry = LocalEntry {
                is_folder: l.is_folder,
                stamp: stamp(&l),
                hash: l.content.as_deref().map(hash),
            };
            (l.path, entry)
        })
        .collect()
}

fn key(k: Key) -> String {
    match k {
        Key::Item(i) => format!("#{}", i.0.as_u64_pair().1),
        Key::New(n) => format!("new{n}"),
    }
}

fn pos(p: &Pos) -> String {
    format!(
        "{}/{}",
        p.parent.map(key).unwrap_or_default(),
        short(&p.name)
    )
}

fn short(n: &ItemName) -> String {
    // Conflicted copies carry a date; keep the tests readable.
    n.as_str()
        .replace(" (conflicted copy from dev 2025-01-01 000000)", "(cc)")
}

fn render(op: &Op) -> String {
    match op {
        Op::Settle { key: k } => format!("settle {}", key(*k)),
        Op::Untrack { key: k } => format!("untrack {}", key(*k)),
        Op::ConflictCopy { key: k, copy, name } => format!(
            "conflict-copy {} as {} {}",
            key(*k),
            key(*copy),
            short(name)
        ),
        Op::LocalMkdir { key: k, pos: p } => format!("mkdir {} {}", key(*k), pos(p)),
        Op::LocalMove { key: k, to } => format!("move {} {}", key(*k), pos(to)),
        Op::LocalDelete { key: k } => format!("delete-local {}", key(*k)),
        Op::Download {
            key: k,
            pos: p,
            replace,
            ..
        } => {
            format!(
                "download {} {}{}",
                key(*k),
                pos(p),
                if *replace { " replace" } else { "" }
            )
        }
        Op::Commit {
            key: k,
            change: RemoteChange::Delete,
        } => format!("delete-remote {}", key(*k)),
        Op::Commit {
            key: k,
            change: RemoteChange::Put { pos: p, upload, .. },
        } => {
            format!(
                "put {} {}{}",
                key(*k),
                pos(p),
                if *upload { " upload" } else { "" }
            )
        }
    }
}

#[track_caller]
fn check(remote: &str, synced: &str, local_text: &str, expected: &str) {
    let st = state(remote, synced);
    let tree = local(local_text);
    let ignore = IgnoreRules::defaults();
    let input = PlanInput {
        state: &st,
        local: &tree,
        ignore: &ignore,
        unsynced: &Default::default(),
        device_name: "dev",
        now: 1_735_689_600_000,
        read_only: false,
    };
    let got: Vec<String> = plan(&input).ops.iter().map(render).collect();
    let want: Vec<String> = lines(expected).map(str::to_string).collect();
    assert_eq!(got, want, "\ngot:\n{}\n", got.join("\n"));
    // Pure: the same input gives the same plan.
    assert_eq!(plan(&input), plan(&input));
}

#[test]
fn nothing_to_do() {
    check("1 a v1 =x", "1 a v1 =x #5", "a =x #5", "");
}

#[test]
fn local_new_items_are_created_parents_first() {
    check(
        "",
        "",
        "d/\nd/e/\nd/e/f =1\ng =2",
        "put new0 /d\nput new1 new0/e\nput new2 new1/f upload\nput new3 /g upload",
    );
}

#[test]
fn remote_new_items_are_fetched_parents_first() {
    check(
        "1 d/ v1\n2 d/f v1 =x\n3 e/ v1",
        "",
        "",
        "mkdir #1 /d\ndownload #2 #1/f\nmkdir #3 /e",
    );
}

#[test]
fn local_edit_is_uploaded_remote_edit_is_downloaded() {
    check("1 a v1 =x", "1 a v1 =x", "a =y", "put #1 /a upload");
    check("1 a v2 =y", "1 a v1 =x", "a =x", "download #1 /a replace");
}

#[test]
fn local_rename_by_file_id_is_a_move_not_an_upload() {
    check("1 a v1 =x", "1 a v1 =x #9", "b =x #9", "put #1 /b");
}

#[test]
fn local_rename_without_file_id_is_found_by_hash() {
    check(
        "1 d/ v1\n2 d/a v1 =x",
        "1 d/ v1\n2 d/a v1 =x",
        "d/\ne/\ne/a =x",
        "settle #1\nput new0 /e\nput #2 new0/a",
    );
}

#[test]
fn folder_move_keeps_children() {
    check(
        "1 d/ v1\n2 e/ v1\n3 d/f v1 =x",
        "1 d/ v1 #1\n2 e/ v1 #2\n3 d/f v1 =x #3",
        "e/ #2\ne/d/ #1\ne/d/f =x #3",
        "put #1 #2/d",
    );
}

#[test]
fn remote_move_is_applied_as_a_local_move() {
    check(
        "1 d/ v1\n2 d/a v2 =x",
        "1 d/ v1 #1\n2 a v1 =x",
        "d/ #1\na =x",
        "move #2 #1/a",
    );
}

#[test]
fn deletes_go_children_first() {
    check(
        "1 d/ v1\n2 d/f v1 =x",
        "1 d/ v1\n2 d/f v1 =x",
        "",
        "delete-remote #2\ndelete-remote #1",
    );
    check(
        "1 d/ v2 deleted\n2 d/f v2 =x deleted",
        "1 d/ v1\n2 d/f v1 =x",
        "d/\nd/f =x",
        "delete-local #2\ndelete-local #1",
    );
}

#[test]
fn both_edited_makes_one_conflicted_copy() {
    check(
        "1 a.txt v2 =theirs",
        "1 a.txt v1 =base",
        "a.txt =mine",
        "conflict-copy #1 as new0 a(cc).txt\ndownload #1 /a.txt\nput new0 /a(cc).txt upload",
    );
}

#[test]
fn both_made_the_same_edit_settles() {
    check("1 a v2 =same", "1 a v1 =base", "a =same", "settle #1");
}

#[test]
fn edit_against_remote_delete_keeps_the_edit() {
    check(
        "1 a v2 =base deleted",
        "1 a v1 =base",
        "a =edited",
        "put #1 /a upload",
    );
}

#[test]
fn remote_edit_against_local_delete_keeps_the_edit() {
    check("1 a v2 =edited", "1 a v1 =base", "", "download #1 /a");
}

#[test]
fn unchanged_against_delete_is_deleted() {
    check(
        "1 a v2 =base deleted",
        "1 a v1 =base",
        "a =base",
        "delete-local #1",
    );
    check("1 a v1 =base", "1 a v1 =base", "", "delete-remote #1");
}

#[test]
fn remote_child_in_locally_deleted_folder_revives_the_folder() {
    check(
        "1 d/ v1\n2 d/new v1 =n",
        "1 d/ v1",
        "",
        "mkdir #1 /d\ndownload #2 #1/new",
    );
}

#[test]
fn local_child_in_remotely_deleted_folder_restores_it() {
    check(
        "1 d/ v2 deleted",
        "1 d/ v1",
        "d/\nd/new =n",
        "put #1 /d\nput new0 #1/new upload",
    );
}

#[test]
fn both_moved_remote_wins() {
    // Locally a went to l/, remotely to r/: r/ wins.
    check(
        "2 r/ v1 #2\n3 l/ v1 #3\n1 r/a v2 =x",
        "1 a v1 =x #1\n2 r/ v1 #2\n3 l/ v1 #3",
        "r/ #2\nl/ #3\nl/a =x #1",
        "move #1 #2/a",
    );
    // Only the local side moved: the move is committed.
    check(
        "2 r/ v1 #2\n3 l/ v1 #3\n1 a v1 =x",
        "1 a v1 =x #1\n2 r/ v1 #2\n3 l/ v1 #3",
        "r/ #2\nl/ #3\nl/a =x #1",
        "put #1 #3/a",
    );
}

#[test]
fn same_new_file_on_both_sides_is_adopted() {
    check("1 a v1 =x", "", "a =x", "settle #1");
}

#[test]
fn different_new_files_with_one_name_make_a_conflicted_copy() {
    check(
        "1 a v1 =theirs",
        "",
        "a =mine",
        "conflict-copy #1 as new0 a(cc)\ndownload #1 /a\nput new0 /a(cc) upload",
    );
}

#[test]
fn local_move_onto_a_remote_new_name_renames_the_local_one() {
    check(
        "1 a v1 =x\n2 b v1 =other",
        "1 a v1 =x #1",
        "b =x #1",
        "move #1 /b(cc)\ndownload #2 /b\nput #1 /b(cc)",
    );
}

#[test]
fn swap_goes_through_a_temporary_name() {
    let got = {
        let st = state("1 a v1 =x\n2 b v1 =y", "1 a v1 =x #1\n2 b v1 =y #2");
        let tree = local("b =x #1\na =y #2");
        let ignore = IgnoreRules::defaults();
        let input = PlanInput {
            state: &st,
            local: &tree,
            ignore: &ignore,
            unsynced: &Default::default(),
            device_name: "dev",
            now: 0,
            read_only: false,
        };
        plan(&input).ops.iter().map(render).collect::<Vec<_>>()
    };
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(got[0].contains("/.stacksync-move-"), "{got:#?}");
    assert_eq!(&got[1..], ["put #2 /a", "put #1 /b"]);
}

#[test]
fn move_cycle_between_sides_is_broken() {
    // Locally b moved into a; remotely a moved into b.
    check(
        "1 b/ v1\n2 b/a/ v2",
        "1 b/ v1 #1\n2 a/ v1 #2",
        "a/ #2\na/b/ #1",
        // Both moved: the remote tree wins, which has no cycle.
        "move #1 /b\nmove #2 #1/a",
    );
}

#[test]
fn ignored_remote_items_are_not_downloaded() {
    check("1 x.tmp v1 =t\n2 ok v1 =o", "", "", "download #2 /ok");
}

#[test]
fn refused_names_are_not_retried() {
    let mut st = state("", "");
    st.refused.insert(
        RelPath::parse("bad:name").unwrap(),
        stacksync_engine::tree::Refusal {
            reason: "no".into(),
            stamp: None,
            clash: false,
        },
    );
    let tree = local("bad:name =x\nok =y");
    let ignore = IgnoreRules::defaults();
    let input = PlanInput {
        state: &st,
        local: &tree,
        ignore: &ignore,
        unsynced: &Default::default(),
        device_name: "dev",
        now: 0,
        read_only: false,
    };
    let got: Vec<String> = plan(&input).ops.iter().map(render).collect();
    assert_eq!(got, ["put new1 /ok upload"]);
}

#[test]
fn busy_files_are_left_alone() {
    let st = state("1 a v2 =theirs", "1 a v1 =base");
    let mut tree = local("a =x\nb =y");
    tree.values_mut().for_each(|e| e.hash = None);
    let ignore = IgnoreRules::defaults();
    let input = PlanInput {
        state: &st,
        local: &tree,
        ignore: &ignore,
        unsynced: &Default::default(),
        device_name: "dev",
        now: 0,
        read_only: false,
    };
    assert_eq!(plan(&input).ops, Vec::<Op>::new());
}

#[test]
fn child_moving_onto_its_deleted_parents_name_parks_first() {
    // Remotely x left folder b.txt, took its name, and the folder was
    // deleted: locally the child must leave before the folder can go.
    check(
        "1 b.txt/ v2 deleted\n2 b.txt v2 =x",
        "1 b.txt/ v1 #1\n2 b.txt/x v1 =x #2",
        "b.txt/ #1\nb.txt/x =x #2",
        "move #2 /.stacksync-move-00000000-0000-0000-0000-000000000002\ndelete-local #1\nmove #2 /b.txt",
    );
}

#[test]
fn a_reused_file_id_with_new_content_is_not_a_move() {
    // a was deleted and an unrelated file got its inode number.
    check(
        "1 a v1 =x",
        "1 a v1 =x #5",
        "b =other #5",
        "delete-remote #1\nput new0 /b upload",
    );
}

/// Like [`check`], with an ignore file and the paths the scan left out;
/// also checks the clashes reported, as `path: first words of reason`.
#[track_caller]
fn check_left_out(
    remote: &str,
    synced: &str,
    local_text: &str,
    ignore_file: &str,
    unsynced: &[&str],
    expected: &str,
    clashes: &[&str],
) {
    let st = state(remote, synced);
    let tree = local(local_text);
    let (ignore, _) = IgnoreRules::with_file(ignore_file);
    let unsynced: BTreeMap<RelPath, Option<Stamp>> = unsynced
        .iter()
        .map(|p| (RelPath::parse(p).unwrap(), None))
        .collect();
    let input = PlanInput {
        state: &st,
        local: &tree,
        ignore: &ignore,
        unsynced: &unsynced,
        device_name: "dev",
        now: 1_735_689_600_000,
        read_only: false,
    };
    let p = plan(&input);
    let got: Vec<String> = p.ops.iter().map(render).collect();
    let want: Vec<String> = lines(expected).map(str::to_string).collect();
    assert_eq!(got, want, "\ngot:\n{}\n", got.join("\n"));
    let got: Vec<String> = p.clashes.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(got, clashes, "{:#?}", p.clashes);
}

#[test]
fn finding_1_an_ignored_synced_item_is_untracked_not_deleted() {
    // Ignored where this device has it, or where the server has it.
    check_left_out(
        "1 a.txt v1 =x\n2 b/ v1\n3 b/c v1 =y",
        "1 a.txt v1 =x #1\n2 b/ v1 #2\n3 b/c v1 =y #3",
        "",
        "*.txt\nb/\n",
        &["a.txt", "b"],
        "untrack #1\nuntrack #2\nuntrack #3",
        &[],
    );
    // Edited or deleted on the server meanwhile: not applied here either.
    check_left_out(
        "1 a.txt v3 =z\n2 d.txt v2 deleted",
        "1 a.txt v1 =x #1\n2 d.txt v1 =y #2",
        "",
        "*.txt\n",
        &["a.txt", "d.txt"],
        "untrack #1\nuntrack #2",
        &[],
    );
}

#[test]
fn finding_1_unignored_equal_content_settles_and_different_content_is_a_conflict() {
    check_left_out(
        "1 same v2 =x\n2 diff v2 =new",
        "",
        "same =x #1\ndiff =old #2",
        "",
        &[],
        "settle #1\nconflict-copy #2 as new0 diff(cc)\ndownload #2 /diff\nput new0 /diff(cc) upload",
        &[],
    );
}

#[test]
fn finding_2_a_reserved_name_from_the_server_is_a_clash_not_a_delete() {
    check_left_out(
        "1 .stacksync-dl-n v2 =x\n2 .stacksync-move-m v1 =y\n3 x.tmp v1 =t",
        "1 n v1 =x #1",
        "n =x #1",
        "",
        &[],
        "",
        &["n", ".stacksync-move-m", "x.tmp"],
    );
    // The name an item has in the middle of a swap is not a clash.
    check_left_out(
        "1 .stacksync-move-00000000-0000-0000-0000-000000000001 v2 =x",
        "1 n v1 =x #1",
        "n =x #1",
        "",
        &[],
        "move #1 /.stacksync-move-00000000-0000-0000-0000-000000000001",
        &[],
    );
}

#[test]
fn finding_15_an_unsynced_entry_where_the_server_has_an_item_is_one_clash() {
    check_left_out(
        "1 d/ v1\n2 d/f v1 =x\n3 g v1 =y\n4 ok v1 =z",
        "3 g v1 =y #3",
        "",
        "",
        &["d", "g"],
        "untrack #3\ndownload #4 /ok",
        &["d", "g"],
    );
}

/// Like [`check`] on a read-only device: also checks the local-only
/// entries reported, by path, each with the read-only reason.
#[track_caller]
fn check_read_only(remote: &str, synced: &str, local_text: &str, expected: &str, kept: &[&str]) {
    let st = state(remote, synced);
    let tree = local(local_text);
    let ignore = IgnoreRules::defaults();
    let input = PlanInput {
        state: &st,
        local: &tree,
        ignore: &ignore,
        unsynced: &Default::default(),
        device_name: "dev",
        now: 1_735_689_600_000,
        read_only: true,
    };
    let p = plan(&input);
    let got: Vec<String> = p.ops.iter().map(render).collect();
    let want: Vec<String> = lines(expected).map(str::to_string).collect();
    assert_eq!(got, want, "\ngot:\n{}\n", got.join("\n"));
    let got: Vec<String> = p.clashes.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(got, kept, "{:#?}", p.clashes);
    assert!(
        p.clashes
            .iter()
            .all(|(_, why)| why == stacksync_engine::planner::READ_ONLY_REASON),
        "{:#?}",
        p.clashes
    );
}

#[test]
fn read_only_an_edit_is_kept_in_a_conflicted_copy_and_the_original_restored() {
    check_read_only(
        "1 a v1 =x",
        "1 a v1 =x #1",
        "a =mine #1",
        "conflict-copy #1 as new0 a(cc)\ndownload #1 /a",
        // The copy is reported once it is on disk, by the next plan.
        &[],
    );
    // Edited on the server too: the server's version in place.
    check_read_only(
        "1 a v2 =theirs",
        "1 a v1 =x #1",
        "a =mine #1",
        "conflict-copy #1 as new0 a(cc)\ndownload #1 /a",
        &[],
    );
    // Edited back to what the server has: nothing to keep.
    check_read_only("1 a v2 =y", "1 a v1 =x #1", "a =y #1", "settle #1", &[]);
}

#[test]
fn read_only_local_only_entries_stay_and_the_topmost_is_reported() {
    check_read_only(
        "1 a v1 =x",
        "1 a v1 =x #1",
        "a =x #1\nn =new\nd/\nd/f =x\nd/e/\na(cc) =old",
        "",
        &["a(cc)", "d", "n"],
    );
}

#[test]
fn read_only_a_local_delete_is_downloaded_again() {
    check_read_only(
        "1 a v1 =x\n2 d/ v1\n3 d/b v1 =y",
        "1 a v1 =x #1\n2 d/ v1 #2\n3 d/b v1 =y #3",
        "",
        "download #1 /a\nmkdir #2 /d\ndownload #3 #2/b",
        &[],
    );
}

#[test]
fn read_only_a_local_move_keeps_both_places() {
    // By file id and by content alike, a renamed entry is not the item.
    check_read_only(
        "1 a v1 =x\n2 d/ v1\n3 d/b v1 =y",
        "1 a v1 =x #1\n2 d/ v1 #2\n3 d/b v1 =y #3",
        "z =x #1\ne/ #2\ne/b =y #3",
        "download #1 /a\nmkdir #2 /d\ndownload #3 #2/b",
        &["e", "z"],
    );
    check_read_only("1 a v1 =x", "1 a v1 =x", "z =x", "download #1 /a", &["z"]);
    // Moved on the server meanwhile: moved here too, the copy left.
    check_read_only(
        "1 c v2 =x",
        "1 a v1 =x #1",
        "a =x #1\nz =x #1",
        "move #1 /c",
        &["z"],
    );
}

#[test]
fn read_only_an_edit_of_an_item_the_server_deleted_is_kept_here_alone() {
    check_read_only(
        "1 a v2 deleted",
        "1 a v1 =x #1",
        "a =mine #1",
        "untrack #1",
        &["a"],
    );
    // A folder the server deleted, holding a new local file: kept with
    // it; what did not change goes as usual.
    check_read_only(
        "1 d/ v2 deleted\n2 d/f v2 deleted",
        "1 d/ v1 #1\n2 d/f v1 =x #2",
        "d/ #1\nd/f =x #2\nd/n =new",
        "untrack #1\ndelete-local #2",
        &["d"],
    );
}

#[test]
fn read_only_remote_changes_apply_as_usual() {
    check_read_only(
        "1 a v2 =z\n2 b v2 deleted\n3 c2 v2 =c\n4 new v1 =n",
        "1 a v1 =x #1\n2 b v1 =y #2\n3 c v1 =c #3",
        "a =x #1\nb =y #2\nc =c #3",
        "delete-local #2\nmove #3 /c2\ndownload #4 /new\ndownload #1 /a replace",
        &[],
    );
    // The server puts a folder where a local-only file is: the file
    // steps aside (reported from there by the next plan).
    check_read_only(
        "1 x/ v1",
        "",
        "x =mine",
        "move new0 /x(cc)\nmkdir #1 /x",
        &[],
    );
}
