//! End-to-end, with the real binary: sharing a folder (`stacksync share`
//! and what it refuses), the invitations waiting for an account's answer,
//! and declining one (`stacksync invitations`, `stacksync decline`).

mod common;

use common::{Backend, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_are_listed_and_declined() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let ana = cluster.add_user("ana@example.org", None);
    let bob = cluster.add_user("bob@example.org", None);
    let a = cluster.client("ana-laptop", &ana);
    let b = cluster.client("bob-laptop", &bob);
    a.write("project/plan.txt", b"the plan");
    a.sync();

    // Ana shares `project` with bob; bad shares are refused.
    let share = |args: &[&str]| a.run(&[&["share"][..], args].concat());
    let out = share(&[a.path("project").to_str().unwrap(), "--with", &bob]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let proposal: uuid::Uuid = said
        .split("(invitation ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no invitation id in {said:?}"));
    for (args, why) in [
        (
            vec![a.path("nowhere").to_str().unwrap().to_owned()],
            "not a synced folder",
        ),
        (
            vec![a.path("project/plan.txt").to_str().unwrap().to_owned()],
            "not a synced folder",
        ),
        (
            vec![a.folder.to_str().unwrap().to_owned()],
            "cannot be shared",
        ),
        (vec!["/etc".to_owned()], "not inside the synced folder"),
    ] {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend(["--with", bob.as_str()]);
        let out = share(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was shared");
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }

    let stdout = |args: &[&str]| {
        let out = b.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    // Not a terminal: one id per line, for scripts.
    assert_eq!(stdout(&["invitations"]), format!("{proposal}\n"));
    let listed: serde_json::Value =
        serde_json::from_str(&stdout(&["invitations", "--json"])).expect("JSON");
    assert_eq!(listed[0]["proposal"], proposal.to_string());
    assert_eq!(listed[0]["folder_name"], "project");
    assert_eq!(listed[0]["from"], "ana@example.org");
    // Ana is offered nothing.
    let out = a.run(&["invitations"]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());

    for (bad, why) in [
        ("not-an-id", "is not an invitation id"),
        (
            "0190b8c4-0000-7000-8000-000000000000",
            "no invitation for you",
        ),
    ] {
        let out = b.run(&["decline", bad]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "declining {bad} succeeded");
        assert!(stderr.contains(why), "{bad}: {stderr}");
    }
    assert_eq!(stdout(&["invitations"]), format!("{proposal}\n"));
    assert_eq!(
        stdout(&["decline", &proposal.to_string()]),
        format!("declined {proposal}\n")
    );
    assert_eq!(stdout(&["invitations"]), "");
    // A retried decline is answered as the first.
    assert_eq!(
        stdout(&["decline", &proposal.to_string()]),
        format!("declined {proposal}\n")
    );
    assert_eq!(stdout(&["invitations"]), "");
}
