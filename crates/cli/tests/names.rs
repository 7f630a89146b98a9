//! End-to-end, with the real binary: a local file whose name could deceive
//! (`invoice\u{202E}txt.exe` shows as `invoiceexe.txt`) and a case-only
//! sibling (`Report.txt` beside `report.txt`, which would collide on macOS
//! and Windows) are reported, kept on disk and never synced; a decomposed
//! (NFD) name is synced under its composed name; `status` prints every
//! name escaped.

mod common;

use common::{Backend, Cluster};

/// Whether `s` holds a character that could rewrite a terminal or
/// reverse the text after it.
fn has_raw_controls(s: &str) -> bool {
    s.lines().any(|l| stacksync_proto::printable(l) != l)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deceptive_names_and_case_twins_are_reported_and_not_lost() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let email = cluster.add_user("nia@example.org", None);
    let a = cluster.client("linux", &email);
    let b = cluster.client("other", &email);
    a.write("invoice\u{202e}txt.exe", b"payload");
    a.write("Report.txt", b"upper");
    a.write("report.txt", b"lower");
    a.write("cafe\u{301}.txt", b"coffee");
    a.write("plain.txt", b"plain");

    let out = a.run(&["sync", "--once", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sync failed: {stderr}");
    assert!(
        !has_raw_controls(&stderr),
        "stderr prints a raw name: {stderr:?}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a JSON summary")).unwrap();
    let refused = summary["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{summary}");
    let twin = refused[0]["path"].as_str().unwrap().to_owned();
    assert!(twin == "Report.txt" || twin == "report.txt", "{summary}");
    let not_synced = summary["not_synced"].as_array().unwrap();
    assert_eq!(not_synced.len(), 1, "{summary}");
    let line = not_synced[0].as_str().unwrap();
    assert!(
        line.contains("invoice\\u{202e}txt.exe") && line.contains("U+202E"),
        "{line:?}"
    );

    // Nothing is lost; the decomposed name now has its composed spelling.
    assert_eq!(a.read("invoice\u{202e}txt.exe"), b"payload");
    assert_eq!(a.read("Report.txt"), b"upper");
    assert_eq!(a.read("report.txt"), b"lower");
    assert_eq!(a.read("caf\u{e9}.txt"), b"coffee");
    assert!(!a.path("cafe\u{301}.txt").exists());

    // Reported once: the next sync sends nothing again.
    let again = a.sync();
    assert_eq!(again.refused.len(), 1, "{:?}", again.refused);
    assert_eq!(again.bytes_uploaded, 0, "a refused file was re-sent");

    b.sync();
    let mut names: Vec<String> = std::fs::read_dir(&b.folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".stacksync"))
        .collect();
    names.sort();
    let kept = if twin == "Report.txt" {
        "report.txt"
    } else {
        "Report.txt"
    };
    let mut want = vec![kept, "caf\u{e9}.txt", "plain.txt"];
    want.sort();
    assert_eq!(names, want);

    // `status` shows both as errors, every name escaped.
    let out = a.run(&["status"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !has_raw_controls(&shown),
        "status prints a raw name: {shown:?}"
    );
    let error_lines: Vec<&str> = shown.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(error_lines.len(), 2, "{shown}");
    assert!(
        error_lines
            .iter()
            .any(|l| l.contains("invoice\\u{202e}txt.exe")),
        "{shown}"
    );
    assert!(error_lines.iter().any(|l| l.contains(&twin)), "{shown}");
    let st = a.status(Some(&twin));
    assert_eq!(st["target"]["status"], "error", "{st}");
}
