//! The trash, versions, preview, sharing and links pages.

use std::fmt::Write;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use stacksync_proto::{EncryptionMode, Error};
use stacksync_service::ApiNode;
use uuid::Uuid;

use super::html::{Section, esc, human_size, time_tag, user_page};
use super::pages::{PageResult, account, browser, error_page};
use super::{html_page, see_other};
use crate::AppState;

/// `GET /trash`.
pub(crate) async fn trash(State(state): State<AppState>, headers: HeaderMap) -> Response {
    trash_page(&state, &headers).await.unwrap_or_else(|r| r)
}

async fn trash_page(state: &AppState, headers: &HeaderMap) -> PageResult {
    let b = browser(state, headers).await?;
    let account = account(state, &b).await?;
    let items = state
        .service
        .api_trash(b.user)
        .await
        .map_err(|e| error_page(&e))?;
    let mut body = String::from(
        "<h1>Trash</h1><p class=\"hint\">Deleted files and folders, newest first. \
         Restoring a folder brings back what was deleted with it.</p>",
    );
    if items.is_empty() {
        body.push_str("<p class=\"empty\">The trash is empty.</p>");
    }
    body.push_str("<table id=\"trash\"><thead><tr><th scope=\"col\">Name</th><th scope=\"col\" class=\"col-size\">Size</th><th scope=\"col\" class=\"col-modified\">Deleted</th><th scope=\"col\"><span class=\"visually-hidden\">Actions</span></th></tr></thead><tbody>");
    for node in &items {
        let ApiNode::Item { meta, workspace } = node else {
            continue;
        };
        let name = esc(meta.name.as_str());
        let kind = if meta.is_folder { "folder" } else { "file" };
        let place = if workspace.is_shared {
            format!(" <span class=\"where\">in {}</span>", esc(&workspace.name))
        } else {
            String::new()
        };
        let _ = write!(
            body,
            "<tr class=\"entry\" data-id=\"{id}\" data-name=\"{name}\" data-kind=\"{kind}\">\
             <td><span class=\"name {kind}\">{name}</span>{place}</td><td class=\"col-size\">{size}</td><td class=\"col-modified\">{when}</td>\
             <td class=\"col-actions\"><button type=\"button\" class=\"text\" data-action=\"restore\" aria-label=\"Restore {name}\">Restore</button></td></tr>",
            id = meta.id,
            size = if meta.is_folder {
                String::new()
            } else {
                human_size(previous_size(state, b.user, meta).await)
            },
            when = time_tag(meta.server_modified),
        );
    }
    body.push_str("</tbody></table>");
    Ok(html_page(
        StatusCode::OK,
        user_page("Trash", Section::Trash, &account, &b.csrf(), &body),
    ))
}

/// The size a deleted file had (its deletion records 0).
async fn previous_size(
    state: &AppState,
    user: stacksync_proto::UserId,
    meta: &stacksync_proto::ItemMeta,
) -> u64 {
    if meta.version < 2 {
        return 0;
    }
    match state
        .service
        .api_version(user, meta.id.0, meta.version - 1)
        .await
    {
        Ok(ApiNode::Item { meta, .. }) => meta.size,
        _ => 0,
    }
}

// ---------------------------------------------------------------- versions

/// `GET /versions/{id}`.
pub(crate) async fn versions(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    versions_page(&state, &headers, &id)
        .await
        .unwrap_or_else(|r| r)
}

async fn versions_page(state: &AppState, headers: &HeaderMap, id: &str) -> PageResult {
    let b = browser(state, headers).await?;
    let account = account(state, &b).await?;
    let id: Uuid = id
        .parse()
        .map_err(|_| error_page(&Error::not_found("no such file")))?;
    let versions = state
        .service
        .api_versions(b.user, id, false)
        .await
        .map_err(|e| error_page(&e))?;
    let latest = versions.last().and_then(|n| match n {
        ApiNode::Item { meta, .. } => Some(meta.clone()),
        _ => None,
    });
    let Some(latest) = latest else {
        return Err(error_page(&Error::not_found("no such file")));
    };
    let name = esc(latest.name.as_str());
    let parent = match latest.parent {
        Some(p) => format!("/files/{p}"),
        None => "/files".to_owned(),
    };
    let mut body = format!(
        "<nav class=\"breadcrumbs\" aria-label=\"Back\"><ol><li><a href=\"{parent}\">Back to the folder</a></li></ol></nav>\
         <h1>Versions of {name}</h1><div id=\"file\" data-id=\"{id}\"></div>\
         <table id=\"versions\"><thead><tr><th scope=\"col\">Version</th><th scope=\"col\">Saved</th><th scope=\"col\" class=\"col-size\">Size</th><th scope=\"col\"><span class=\"visually-hidden\">Actions</span></th></tr></thead><tbody>"
    );
    for node in versions.iter().rev() {
        let ApiNode::Item { meta, .. } = node else {
            continue;
        };
        let v = meta.version;
        let live = meta.status.is_live();
        let _ = write!(
            body,
            "<tr class=\"version\" data-version=\"{v}\"><td>{v}{note}</td><td>{when}</td><td class=\"col-size\">{size}</td><td class=\"col-actions\">",
            note = if !live {
                " <span class=\"tag\">deleted</span>"
            } else if v == latest.version {
                " <span class=\"tag\">current</span>"
            } else {
                ""
            },
            when = time_tag(meta.server_modified),
            size = if live {
                human_size(meta.size)
            } else {
                String::new()
            },
        );
        if live {
            let _ = write!(
                body,
                "<a class=\"download button\" href=\"/api/v2/file/{id}/version/{v}/data?download=1\" download>Download</a>"
            );
            if v != latest.version {
                let _ = write!(
                    body,
                    "<button type=\"button\" data-action=\"restore\" data-version=\"{v}\" aria-label=\"Restore version {v}\">Restore</button>"
                );
            }
        }
        body.push_str("</td></tr>");
    }
    body.push_str("</tbody></table>");
    Ok(html_page(
        StatusCode::OK,
        user_page(
            &format!("Versions of {}", latest.name.as_str()),
            Section::Files,
            &account,
            &b.csrf(),
            &body,
        ),
    ))
}

// ---------------------------------------------------------------- preview

/// What the browser can show of a file, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shown {
    Image,
    Pdf,
    Text,
    Audio,
    Video,
    Nothing,
}

/// How the preview page shows a file of this name (what it is served as
/// is `served.rs`'s to say; text is fetched and shown as text).
pub(crate) fn shown_as(name: &str) -> Shown {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" | "jpg" | "jpeg" | "gif" | "webp" | "avif" | "bmp" => Shown::Image,
        "pdf" => Shown::Pdf,
        "txt" | "md" | "csv" | "log" | "json" | "toml" | "yaml" | "yml" | "rs" | "py" | "c"
        | "h" | "js" | "css" | "sh" | "ini" | "conf" | "xml" | "html" | "htm" | "svg" => {
            Shown::Text
        }
        "mp3" | "ogg" | "oga" | "wav" | "flac" | "m4a" => Shown::Audio,
        "mp4" | "m4v" | "webm" | "ogv" => Shown::Video,
        _ => Shown::Nothing,
    }
}

/// `GET /preview/{id}`.
pub(crate) async fn preview(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    preview_page(&state, &headers, &id)
        .await
        .unwrap_or_else(|r| r)
}

async fn preview_page(state: &AppState, headers: &HeaderMap, id: &str) -> PageResult {
    let b = browser(state, headers).await?;
    let account = account(state, &b).await?;
    let id: Uuid = id
        .parse()
        .map_err(|_| error_page(&Error::not_found("no such file")))?;
    let node = state
        .service
        .api_node(b.user, Some(id))
        .await
        .map_err(|e| error_page(&e))?;
    let ApiNode::Item { meta, workspace } = &node else {
        return Err(see_other(&format!("/files/{id}"), &[]));
    };
    if meta.is_folder {
        return Err(see_other(&format!("/files/{id}"), &[]));
    }
    if !meta.status.is_live() {
        return Err(error_page(&Error::not_found("this file was deleted")));
    }
    let name = esc(meta.name.as_str());
    let data = format!("/api/v2/file/{id}/data");
    let parent = match node.parent_id() {
        Some(p) => format!("/files/{p}"),
        None => "/files".to_owned(),
    };
    let shown = shown_as(meta.name.as_str());
    let view = if workspace.encryption == EncryptionMode::ClientSide {
        String::new()
    } else {
        match shown {
            Shown::Image => format!("<img src=\"{data}\" alt=\"{name}\">"),
            Shown::Pdf => {
                format!("<iframe src=\"{data}\" title=\"{name}\" class=\"pdf\"></iframe>")
            }
            Shown::Text if meta.size <= 2_000_000 => format!(
                "<pre id=\"text-preview\" data-src=\"{data}\" tabindex=\"0\">Loading…</pre>"
            ),
            Shown::Audio => format!("<audio controls src=\"{data}\"></audio>"),
            Shown::Video => format!("<video controls src=\"{data}\"></video>"),
            _ => "<p class=\"empty\">No preview for this kind of file.</p>".to_owned(),
        }
    };
    let body = format!(
        "<nav class=\"breadcrumbs\" aria-label=\"Back\"><ol><li><a href=\"{parent}\">Back to the folder</a></li></ol></nav>\
         <h1>{name}</h1><p class=\"meta\">{size}, saved {when} (version {v})</p>\
         <div class=\"toolbar\"><a id=\"download\" class=\"button primary\" href=\"{data}?download=1\" download=\"{name}\">Download</a>\
         <a class=\"button\" href=\"/versions/{id}\">Versions</a></div>\
         <div class=\"preview\">{view}</div>",
        size = human_size(meta.size),
        when = time_tag(meta.server_modified),
        v = meta.version,
    );
    Ok(html_page(
        StatusCode::OK,
        user_page(
            meta.name.as_str(),
            Section::Files,
            &account,
            &b.csrf(),
            &body,
        ),
    ))
}

// ---------------------------------------------------------------- sharing

/// `GET /shared`.
pub(crate) async fn shared(State(state): State<AppState>, headers: HeaderMap) -> Response {
    shared_page(&state, &headers).await.unwrap_or_else(|r| r)
}

async fn shared_page(state: &AppState, headers: &HeaderMap) -> PageResult {
    let b = browser(state, headers).await?;
    let account = account(state, &b).await?;
    let invitations = state
        .service
        .api_invitations(b.user)
        .await
        .map_err(|e| error_page(&e))?;
    let folders = state
        .service
        .api_shared_folders(b.user)
        .await
        .map_err(|e| error_page(&e))?;
    let mut body = String::from("<h1>Sharing</h1><h2>Invitations</h2>");
    if invitations.is_empty() {
        body.push_str("<p class=\"empty\">No invitation is waiting for you.</p>");
    } else {
        body.push_str("<table id=\"invitations\"><thead><tr><th scope=\"col\">Folder</th><th scope=\"col\">From</th><th scope=\"col\">Access</th><th scope=\"col\"><span class=\"visually-hidden\">Actions</span></th></tr></thead><tbody>");
        for i in &invitations {
            let _ = write!(
                body,
                "<tr class=\"invitation\" data-id=\"{id}\"><td>{name}</td><td>{from}</td><td>{access}</td>\
                 <td class=\"col-actions\"><button type=\"button\" class=\"primary\" data-action=\"accept\">Accept</button>\
                 <button type=\"button\" data-action=\"decline\">Decline</button></td></tr>",
                id = i.proposal,
                name = esc(&i.folder_name),
                from = esc(&i.from),
                access = if i.read_only {
                    "read only"
                } else {
                    "read and change"
                },
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("<h2>Shared folders</h2>");
    if folders.is_empty() {
        body.push_str(
            "<p class=\"empty\">Nothing is shared yet. Share a folder from its row in your files.</p>",
        );
    }
    body.push_str("<table id=\"shares\"><tbody>");
    for (ws, members) in &folders {
        let owner = ws.owner == b.user;
        let _ = write!(
            body,
            "<tr class=\"share\" data-id=\"{id}\"><td><a class=\"name folder\" href=\"/files/{id}\">{name}</a>{note}</td><td><ul class=\"members\">",
            id = ws.id,
            name = esc(&ws.name),
            note = if ws.read_only {
                " <span class=\"tag\">read only</span>"
            } else {
                ""
            },
        );
        for m in members {
            let _ = write!(
                body,
                "<li data-email=\"{email}\">{who}{role}{unshare}</li>",
                email = esc(&m.email),
                who = if m.name.is_empty() {
                    esc(&m.email)
                } else {
                    format!("{} &lt;{}&gt;", esc(&m.name), esc(&m.email))
                },
                role = if m.user == ws.owner {
                    " <span class=\"tag\">owner</span>"
                } else if m.read_only {
                    " <span class=\"tag\">read only</span>"
                } else {
                    ""
                },
                unshare = if owner && m.user != ws.owner {
                    format!(
                        " <button type=\"button\" data-action=\"unshare\" data-email=\"{e}\" aria-label=\"Remove {e}\">Remove</button>",
                        e = esc(&m.email)
                    )
                } else {
                    String::new()
                },
            );
        }
        body.push_str("</ul></td></tr>");
    }
    body.push_str("</tbody></table>");
    Ok(html_page(
        StatusCode::OK,
        user_page("Sharing", Section::Shared, &account, &b.csrf(), &body),
    ))
}

// ---------------------------------------------------------------- links

/// `GET /links`: the script fills the table from `GET /api/v2/links`.
pub(crate) async fn links(State(state): State<AppState>, headers: HeaderMap) -> Response {
    links_page(&state, &headers).await.unwrap_or_else(|r| r)
}

async fn links_page(state: &AppState, headers: &HeaderMap) -> PageResult {
    let b = browser(state, headers).await?;
    let account = account(state, &b).await?;
    let body = "<h1>Shared links</h1><p class=\"hint\">Anyone with a link can open what it \
                points to (or, for a file request, upload into it). Make links from the rows of \
                your files.</p><table id=\"links\"><thead><tr><th scope=\"col\">Item</th><th scope=\"col\">Access</th><th scope=\"col\">Expires</th><th scope=\"col\"><span class=\"visually-hidden\">Actions</span></th></tr></thead><tbody></tbody></table>\
                <p class=\"empty\" hidden>You have no shared links.</p>";
    Ok(html_page(
        StatusCode::OK,
        user_page("Links", Section::Links, &account, &b.csrf(), body),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_harmless_types_are_shown() {
        assert_eq!(shown_as("a.PNG"), Shown::Image);
        assert_eq!(shown_as("page.html"), Shown::Text);
        assert_eq!(shown_as("x.svg"), Shown::Text);
        assert_eq!(shown_as("x.exe"), Shown::Nothing);
    }
}
