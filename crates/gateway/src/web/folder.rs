//! The folder page: breadcrumbs, the listing (sorted, folders first),
//! the toolbar, and the dialogs the script opens.

use std::fmt::Write;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use stacksync_proto::{EncryptionMode, Error};
use stacksync_service::{ApiNode, MAX_LIST_PAGE};
use uuid::Uuid;

use super::html::{Section, esc, human_size, time_tag, user_page};
use super::pages::{PageResult, account, browser, error_page};
use super::{html_page, see_other};
use crate::AppState;

/// Most entries one folder page shows.
const MAX_ENTRIES: usize = 100_000;

/// A folder page's query: its sort order.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SortQuery {
    sort: Option<String>,
    order: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortKey {
    Name,
    Size,
    Modified,
}

/// An entry of a listing, as shown.
struct Entry {
    id: Uuid,
    name: String,
    folder: bool,
    size: u64,
    modified: i64,
    shared: bool,
}

fn entry(node: &ApiNode) -> Option<Entry> {
    match node {
        ApiNode::Root { .. } => None,
        ApiNode::SharedRoot { workspace } => Some(Entry {
            id: workspace.id.0,
            name: workspace.name.clone(),
            folder: true,
            size: 0,
            modified: 0,
            shared: true,
        }),
        ApiNode::Item { meta, .. } => Some(Entry {
            id: meta.id.0,
            name: meta.name.as_str().to_owned(),
            folder: meta.is_folder,
            size: meta.size,
            modified: meta.server_modified,
            shared: false,
        }),
    }
}

/// The folders from the top down to `node` (each id and name).
async fn trail(
    state: &AppState,
    user: stacksync_proto::UserId,
    node: &ApiNode,
) -> Vec<(Uuid, String)> {
    let mut out = Vec::new();
    let mut at = Some(node.clone());
    // Bounded: a folder tree deeper than this shows its last levels.
    for _ in 0..64 {
        let Some(here) = at.take() else { break };
        let Some(e) = entry(&here) else { break };
        out.push((e.id, e.name));
        at = match here.parent_id() {
            Some(p) => state.service.api_node(user, Some(p)).await.ok(),
            None => None,
        };
    }
    out.reverse();
    out
}

/// `GET /files`.
pub(crate) async fn root_folder(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<SortQuery>,
) -> Response {
    folder_page(&state, &headers, None, q)
        .await
        .unwrap_or_else(|r| r)
}

/// `GET /files/{id}`.
pub(crate) async fn folder(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<SortQuery>,
) -> Response {
    let Ok(id) = id.parse::<Uuid>() else {
        return error_page(&Error::not_found("no such folder"));
    };
    folder_page(&state, &headers, Some(id), q)
        .await
        .unwrap_or_else(|r| r)
}

async fn folder_page(
    state: &AppState,
    headers: &HeaderMap,
    id: Option<Uuid>,
    q: SortQuery,
) -> PageResult {
    let b = browser(state, headers).await?;
    let account = account(state, &b).await?;
    let node = state
        .service
        .api_node(b.user, id)
        .await
        .map_err(|e| error_page(&e))?;
    if !node.is_folder() {
        return Err(see_other(
            &format!("/preview/{}", id.unwrap_or_default()),
            &[],
        ));
    }
    let e2ee = node.workspace().encryption == EncryptionMode::ClientSide;
    let read_only = node.workspace().read_only;
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    if !e2ee {
        loop {
            let page = state
                .service
                .api_children(b.user, &node, false, MAX_LIST_PAGE, cursor.as_deref())
                .await
                .map_err(|e| error_page(&e))?;
            entries.extend(page.children.iter().filter_map(entry));
            cursor = page.cursor;
            if cursor.is_none() || entries.len() >= MAX_ENTRIES {
                break;
            }
        }
    }
    let key = match q.sort.as_deref() {
        Some("size") => SortKey::Size,
        Some("modified") => SortKey::Modified,
        _ => SortKey::Name,
    };
    let descending = q.order.as_deref() == Some("desc");
    entries.sort_by(|a, b| {
        let by = match key {
            SortKey::Name => natural(&a.name, &b.name),
            SortKey::Size => a.size.cmp(&b.size).then_with(|| natural(&a.name, &b.name)),
            SortKey::Modified => a
                .modified
                .cmp(&b.modified)
                .then_with(|| natural(&a.name, &b.name)),
        };
        // Folders first, whichever the order.
        b.folder
            .cmp(&a.folder)
            .then(if descending { by.reverse() } else { by })
    });
    let crumbs = trail(state, b.user, &node).await;
    let title = crumbs
        .last()
        .map(|(_, n)| n.clone())
        .unwrap_or_else(|| "Files".to_owned());
    let folder_id = id
        .map(|i| i.to_string())
        .unwrap_or_else(|| "root".to_owned());
    let here = match id {
        Some(i) => format!("/files/{i}"),
        None => "/files".to_owned(),
    };

    let mut body = String::with_capacity(entries.len() * 900 + 8192);
    body.push_str("<nav class=\"breadcrumbs\" aria-label=\"Folder path\"><ol><li><a href=\"/files\">Files</a></li>");
    for (cid, name) in &crumbs {
        let _ = write!(body, "<li><a href=\"/files/{cid}\">{}</a></li>", esc(name));
    }
    body.push_str("</ol></nav>");
    let _ = write!(
        body,
        "<div class=\"folder\" id=\"folder\" data-id=\"{folder_id}\" data-read-only=\"{read_only}\">\
         <h1>{}</h1>",
        esc(&title)
    );
    if e2ee {
        body.push_str(
            "<p class=\"notice\">This folder is end-to-end encrypted: only your devices hold \
             its key, so its files are shown on your desktop, not here.</p></div>",
        );
        return Ok(html_page(
            StatusCode::OK,
            user_page(&title, Section::Files, &account, &b.csrf(), &body),
        ));
    }
    if !read_only {
        body.push_str(
            "<div class=\"toolbar\" role=\"toolbar\" aria-label=\"Folder actions\">\
             <button type=\"button\" id=\"new-folder\">New folder</button>\
             <label class=\"button\" for=\"upload-files\">Upload files</label>\
             <input type=\"file\" id=\"upload-files\" multiple class=\"visually-hidden\">\
             <label class=\"button\" for=\"upload-folder\">Upload folder</label>\
             <input type=\"file\" id=\"upload-folder\" webkitdirectory multiple class=\"visually-hidden\">\
             <label class=\"button camera\" for=\"camera\">Take photo</label>\
             <input type=\"file\" id=\"camera\" accept=\"image/*\" capture=\"environment\" class=\"visually-hidden\">\
             <a class=\"button\" href=\"/zip/",
        );
        let _ = write!(body, "{folder_id}\" download>Download as zip</a></div>");
    } else {
        let _ = write!(
            body,
            "<p class=\"notice\">You may only read this shared folder.</p>\
             <div class=\"toolbar\"><a class=\"button\" href=\"/zip/{folder_id}\" download>Download as zip</a></div>"
        );
    }
    body.push_str(
        "<div class=\"filter\"><label for=\"filter\">Filter by name</label>\
         <input type=\"search\" id=\"filter\" placeholder=\"Filter by name\" autocomplete=\"off\"></div>\
         <section id=\"uploads\" aria-label=\"Uploads\" hidden><h2>Uploads</h2>\
         <progress id=\"upload-total\" max=\"1\" value=\"0\"></progress><ul></ul></section>",
    );
    let sort_link = |k: SortKey, label: &str| {
        let name = match k {
            SortKey::Name => "name",
            SortKey::Size => "size",
            SortKey::Modified => "modified",
        };
        let (order, aria) = if key == k {
            if descending {
                ("asc", " aria-sort=\"descending\"")
            } else {
                ("desc", " aria-sort=\"ascending\"")
            }
        } else {
            ("asc", "")
        };
        format!(
            "<th scope=\"col\" class=\"col-{name}\"{aria}><a data-sort=\"{name}\" href=\"{here}?sort={name}&amp;order={order}\">{label}</a></th>"
        )
    };
    // Phones show no table head: the same orders as links.
    body.push_str("<nav class=\"phone-sort\" aria-label=\"Sort\">Sort by");
    for (name, label) in [("name", "name"), ("size", "size"), ("modified", "date")] {
        let current = q.sort.as_deref().unwrap_or("name") == name;
        let order = if current && !descending {
            "desc"
        } else {
            "asc"
        };
        let _ = write!(
            body,
            " <a href=\"{here}?sort={name}&amp;order={order}\"{}>{label}</a>",
            if current {
                " aria-current=\"true\""
            } else {
                ""
            }
        );
    }
    body.push_str("</nav>");
    let _ = write!(
        body,
        "<table id=\"listing\"><caption class=\"visually-hidden\">Contents of {}</caption><thead><tr>{}{}{}<th scope=\"col\" class=\"col-actions\"><span class=\"visually-hidden\">Actions</span></th></tr></thead><tbody>",
        esc(&title),
        sort_link(SortKey::Name, "Name"),
        sort_link(SortKey::Size, "Size"),
        sort_link(SortKey::Modified, "Modified"),
    );
    for e in &entries {
        row(&mut body, e, read_only);
    }
    body.push_str("</tbody></table>");
    if entries.is_empty() {
        body.push_str(
            "<p class=\"empty\">This folder is empty. Drop files here to upload them.</p>",
        );
    }
    body.push_str("</div>");
    body.push_str(DIALOGS);
    Ok(html_page(
        StatusCode::OK,
        user_page(&title, Section::Files, &account, &b.csrf(), &body),
    ))
}

/// One listing row.
fn row(body: &mut String, e: &Entry, read_only: bool) {
    let name = esc(&e.name);
    let (kind, href) = if e.folder {
        ("folder", format!("/files/{}", e.id))
    } else {
        ("file", format!("/preview/{}", e.id))
    };
    let (modified_iso, _) = super::html::time(e.modified);
    let _ = write!(
        body,
        "<tr class=\"entry\" data-id=\"{id}\" data-name=\"{name}\" data-kind=\"{kind}\" data-size=\"{size}\" data-modified=\"{modified_iso}\"{shared}>\
         <td class=\"col-name\"><a class=\"name {kind}\" href=\"{href}\">{name}</a></td>\
         <td class=\"col-size\">{shown_size}</td><td class=\"col-modified\">{modified}</td><td class=\"col-actions\">",
        id = e.id,
        size = e.size,
        shared = if e.shared {
            " data-shared=\"true\""
        } else {
            ""
        },
        shown_size = if e.folder {
            String::new()
        } else {
            human_size(e.size)
        },
        modified = if e.modified > 0 {
            time_tag(e.modified)
        } else {
            String::new()
        },
    );
    let mut action = |a: &str, label: &str| {
        let _ = write!(
            body,
            "<button type=\"button\" data-action=\"{a}\" title=\"{label}\" aria-label=\"{label} {name}\"></button>"
        );
    };
    action("download", "Download");
    if !read_only {
        action("rename", "Rename");
        action("move", "Move");
        action("delete", "Delete");
    }
    if !e.folder {
        action("versions", "Versions");
    }
    if e.folder && !e.shared && !read_only {
        action("share", "Share");
    }
    action("link", "Link");
    body.push_str("</td></tr>");
}

/// Compares names as people expect: case-insensitively, numbers by value.
fn natural(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |s: &str| -> Vec<(u8, String, u128)> {
        let mut parts = Vec::new();
        let mut chars = s.chars().peekable();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_digit() {
                let mut n = String::new();
                while let Some(&d) = chars.peek() {
                    if !d.is_ascii_digit() {
                        break;
                    }
                    n.push(d);
                    chars.next();
                }
                parts.push((0, String::new(), n.parse().unwrap_or(u128::MAX)));
            } else {
                let mut t = String::new();
                while let Some(&d) = chars.peek() {
                    if d.is_ascii_digit() {
                        break;
                    }
                    t.extend(d.to_lowercase());
                    chars.next();
                }
                parts.push((1, t, 0));
            }
        }
        parts
    };
    key(a).cmp(&key(b)).then_with(|| a.cmp(b))
}

/// The dialogs the script opens (one of each per page).
const DIALOGS: &str = "\
<dialog id=\"name-dialog\" aria-labelledby=\"name-title\"><form method=\"dialog\">\
<h2 id=\"name-title\">Name</h2><label for=\"name-input\">Name</label>\
<input id=\"name-input\" name=\"name\" required autocomplete=\"off\">\
<div class=\"buttons\"><button value=\"cancel\" formnovalidate>Cancel</button><button value=\"ok\" class=\"primary\">OK</button></div></form></dialog>\
<dialog id=\"move-dialog\" aria-labelledby=\"move-title\"><form method=\"dialog\">\
<h2 id=\"move-title\">Move to</h2><label for=\"move-target\">Folder</label><select id=\"move-target\" name=\"target\"></select>\
<div class=\"buttons\"><button value=\"cancel\">Cancel</button><button value=\"ok\" class=\"primary\">Move</button></div></form></dialog>\
<dialog id=\"confirm-dialog\" aria-labelledby=\"confirm-title\"><form method=\"dialog\">\
<h2 id=\"confirm-title\">Are you sure?</h2><p class=\"text\"></p>\
<div class=\"buttons\"><button value=\"cancel\">Cancel</button><button value=\"ok\" class=\"primary danger\">Delete</button></div></form></dialog>\
<dialog id=\"share-dialog\" aria-labelledby=\"share-title\"><form method=\"dialog\">\
<h2 id=\"share-title\">Share</h2><label for=\"share-email\">Email of the person</label>\
<input id=\"share-email\" type=\"email\" name=\"email\" autocomplete=\"off\">\
<label for=\"share-access\">They may</label><select id=\"share-access\" name=\"access\">\
<option value=\"read-write\">Read and change</option><option value=\"read-only\">Only read</option></select>\
<h3>Members</h3><ul class=\"members\"></ul>\
<div class=\"buttons\"><button value=\"cancel\" formnovalidate>Close</button><button value=\"ok\" class=\"primary\">Share</button></div></form></dialog>\
<dialog id=\"link-dialog\" aria-labelledby=\"link-title\"><form method=\"dialog\">\
<h2 id=\"link-title\">Shared link</h2>\
<input type=\"text\" name=\"username\" autocomplete=\"username\" hidden aria-hidden=\"true\" tabindex=\"-1\">\
<label for=\"link-password\">Password (optional)</label><input id=\"link-password\" type=\"password\" name=\"password\" autocomplete=\"new-password\">\
<label for=\"link-expires\">Expires (optional)</label><input id=\"link-expires\" type=\"date\" name=\"expires\">\
<label class=\"check\"><input type=\"checkbox\" name=\"upload_only\" id=\"link-upload\"> Upload only (a file request)</label>\
<div class=\"made\" hidden><label for=\"link-url\">Link</label><input id=\"link-url\" readonly></div>\
<div class=\"buttons\"><button value=\"cancel\" formnovalidate>Close</button><button value=\"ok\" class=\"primary\">Create link</button></div></form></dialog>";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_naturally() {
        let mut names = vec!["file10", "File2", "file1", "a"];
        names.sort_by(|a, b| natural(a, b));
        assert_eq!(names, ["a", "file1", "File2", "file10"]);
    }
}
