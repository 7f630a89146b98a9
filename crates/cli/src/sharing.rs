//! The sharing commands that need no synced folder: the invitations that
//! wait for this account's answer, and declining one.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, bail};
use stacksync_client::Profile;
use stacksync_proto::rpc::{Reply, Request};
use uuid::Uuid;

use crate::client::{connect, shown};

/// `stacksync invitations`: on a terminal, a table (id, folder, from,
/// when); otherwise one id per line, for scripts; `--json` gives every
/// field.
pub async fn invitations(home: &Path, json: bool) -> anyhow::Result<()> {
    let profile = Profile::load(home)?;
    let conn = connect(&profile).await?;
    let invitations = match conn.rpc(Request::GetInvitations).await? {
        Reply::Invitations { invitations } => invitations,
        other => bail!("the server answered the invitations with {other:?}"),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&invitations)?);
    } else if std::io::stdout().is_terminal() {
        if invitations.is_empty() {
            println!("no invitations");
            return Ok(());
        }
        println!(
            "{:<36}  {:<19}  {:<24}  folder",
            "id", "proposed (UTC)", "from"
        );
        for i in &invitations {
            println!(
                "{:<36}  {:<19}  {:<24}  {}",
                i.proposal,
                stacksync_engine::conflict::format_utc(i.created_at),
                shown(&i.from),
                shown(&i.folder_name)
            );
        }
    } else {
        for i in &invitations {
            println!("{}", i.proposal);
        }
    }
    Ok(())
}

/// `stacksync decline ID`.
pub async fn decline(home: &Path, id: &str) -> anyhow::Result<()> {
    let proposal = Uuid::parse_str(id.trim())
        .with_context(|| format!("{} is not an invitation id", shown(id)))?;
    let profile = Profile::load(home)?;
    let conn = connect(&profile).await?;
    match conn
        .rpc(Request::AnswerShareProposal {
            proposal,
            accept: false,
        })
        .await
        .with_context(|| format!("declining invitation {proposal}"))?
    {
        Reply::ShareAnswered { workspace: None } => {
            println!("declined {proposal}");
            Ok(())
        }
        other => bail!("the server answered the decline with {other:?}"),
    }
}
