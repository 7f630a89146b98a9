//! End-to-end, with the real binary: the invitations waiting for an
//! account's answer, and declining one (`stacksync invitations`,
//! `stacksync decline`).

mod common;

use common::{Backend, Cluster};
use stacksync_gateway_client::GatewayClient;
use stacksync_proto::EncryptionMode;
use stacksync_proto::rpc::{Reply, Request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_are_listed_and_declined() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let ana = cluster.add_user("ana@example.org", None);
    let bob = cluster.add_user("bob@example.org", None);
    let a = cluster.client("ana-laptop", &ana);
    let b = cluster.client("bob-laptop", &bob);
    a.write("project/plan.txt", b"the plan");
    a.sync();

    // Ana shares `project` with bob (the `share` command is to come).
    let rpc = GatewayClient::login(&cluster.url, &ana, "secret-pw")
        .await
        .expect("ana logs in");
    let Ok(Reply::Workspaces { workspaces }) = rpc.rpc(Request::GetWorkspaces).await else {
        panic!("ana's workspaces");
    };
    let ws = workspaces[0].id;
    let Ok(Reply::Changes(page)) = rpc
        .rpc(Request::GetChanges {
            workspace: ws,
            since: 0,
            limit: 100,
        })
        .await
    else {
        panic!("ana's tree");
    };
    let project = page
        .items
        .iter()
        .find(|m| m.name.as_str() == "project")
        .expect("the folder is on the server")
        .id;
    let Ok(Reply::ShareProposal { proposal, .. }) = rpc
        .rpc(Request::CreateShareProposal {
            workspace: ws,
            folder: project,
            emails: vec![bob.clone()],
            encryption: EncryptionMode::Plain,
            read_only: false,
        })
        .await
    else {
        panic!("ana proposes");
    };

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
