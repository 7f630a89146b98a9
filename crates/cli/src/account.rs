//! The client's session commands: `logout [--everywhere]`, `password`, and
//! ending the session a new `login` replaces. Wiring only: the server ends
//! sessions (`Request::Logout`, `Request::ChangePassword`).

use std::path::Path;

use anyhow::{Context, bail};
use stacksync_client::Profile;
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{Error, ErrorKind};

use crate::client::{connect, connect_with, gateway_connection};
use crate::secret;

/// Whether `e` says the session was refused (ended, expired, unknown).
fn unauthenticated(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<Error>()
            .is_some_and(|e| e.kind == ErrorKind::Unauthenticated)
    })
}

/// `stacksync logout`: ends this device's session (or, `everywhere`, every
/// session of the account) on the server, then forgets the token. If the
/// server cannot be told, the token is kept so that the logout can be
/// retried: forgetting it would leave a live session nobody can end.
pub async fn logout(home: &Path, everywhere: bool) -> anyhow::Result<()> {
    let profile = Profile::load(home)?;
    if profile.load_token()?.is_none() {
        if everywhere {
            bail!("this device is not logged in: log in again to sign out everywhere");
        }
        println!("not logged in");
        return Ok(());
    }
    let ended = async {
        let conn = connect(&profile).await?;
        conn.rpc(Request::Logout { everywhere })
            .await
            .map_err(anyhow::Error::from)
    }
    .await;
    match ended {
        Ok(Reply::LoggedOut { sessions }) => {
            profile.remove_token()?;
            if everywhere {
                println!("logged out everywhere: {sessions} session(s) ended");
            } else {
                println!("logged out");
            }
            Ok(())
        }
        Ok(other) => bail!("the server answered the logout with {other:?}"),
        // The session had ended already: nothing is left to end here.
        Err(e) if unauthenticated(&e) && !everywhere => {
            profile.remove_token()?;
            println!("logged out (the session had already ended)");
            Ok(())
        }
        Err(e) if unauthenticated(&e) => {
            Err(e.context("this device's session has ended: log in again to sign out everywhere"))
        }
        Err(e) => {
            Err(e.context("could not end the session on the server; the token is kept, try again"))
        }
    }
}

/// `stacksync password`: reads the current and the new password (one per
/// line) and changes it; the server ends every other session.
pub async fn change_password(home: &Path, file: Option<&Path>) -> anyhow::Result<()> {
    let profile = Profile::load(home)?;
    let mut lines = secret::read_lines(file, 2)
        .context("expected the current password on the first line and the new one on the second")?;
    let new_password = lines.pop().unwrap_or_default();
    let current_password = lines.pop().unwrap_or_default();
    if new_password.is_empty() {
        bail!("the new password (second line) is empty");
    }
    // The passwords travel to the gateway (HTTPS), never on the bus.
    let token = profile.load_token()?.context(
        "this device is not logged in (logged out?): log in again with `stacksync login --password ...`",
    )?;
    let conn = gateway_connection(&profile, token)?;
    match conn
        .rpc(Request::ChangePassword {
            current_password,
            new_password,
        })
        .await
        .context("changing the password")?
    {
        Reply::PasswordChanged { other_sessions } => {
            println!("password changed; {other_sessions} other session(s) signed out");
            Ok(())
        }
        other => bail!("the server answered the password change with {other:?}"),
    }
}

/// Ends the session a new login replaced; a failure is only reported (the
/// new session works either way, and the old one expires).
pub async fn end_replaced_session(profile: &Profile, old_token: String) {
    let ended = async {
        let conn = connect_with(profile, old_token).await?;
        conn.rpc(Request::Logout { everywhere: false })
            .await
            .map_err(anyhow::Error::from)
    }
    .await;
    match ended {
        Ok(_) => {}
        Err(e) if unauthenticated(&e) => {}
        Err(e) => eprintln!("warning: the previous session could not be ended: {e:#}"),
    }
}
