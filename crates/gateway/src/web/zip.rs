//! `GET /zip/{id}`: a folder and everything in it as one zip file,
//! streamed as it is made (stored entries with data descriptors, `async_zip`), so neither side holds the archive. Files are read one at
//! a time through the same content path as downloads; end-to-end
//! encrypted folders (whose bytes the server cannot read) are left out.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use stacksync_proto::{EncryptionMode, Error};
use stacksync_service::{ApiNode, MAX_LIST_PAGE, Service};
use tokio_util::io::ReaderStream;
use uuid::Uuid;

use super::Browser;
use crate::AppState;

/// Most entries in one archive.
const MAX_ZIP_ENTRIES: usize = 200_000;

/// What goes into the archive, in order: a folder (path ending in `/`) or
/// a file.
struct Member {
    path: String,
    node: Option<ApiNode>,
}

/// Everything under `top`, folders before what they hold.
async fn members(
    service: &Service,
    user: stacksync_proto::UserId,
    top: ApiNode,
) -> Result<Vec<Member>, Error> {
    let mut out = Vec::new();
    let mut folders = vec![(String::new(), top)];
    while let Some((prefix, folder)) = folders.pop() {
        if folder.workspace().encryption == EncryptionMode::ClientSide {
            continue;
        }
        let mut cursor: Option<String> = None;
        loop {
            let page = service
                .api_children(user, &folder, false, MAX_LIST_PAGE, cursor.as_deref())
                .await?;
            for child in page.children {
                let name = match &child {
                    ApiNode::SharedRoot { workspace } => workspace.name.clone(),
                    ApiNode::Item { meta, .. } => meta.name.as_str().to_owned(),
                    ApiNode::Root { .. } => continue,
                };
                let path = format!("{prefix}{name}");
                if child.is_folder() {
                    out.push(Member {
                        path: format!("{path}/"),
                        node: None,
                    });
                    folders.push((format!("{path}/"), child));
                } else {
                    out.push(Member {
                        path,
                        node: Some(child),
                    });
                }
                if out.len() > MAX_ZIP_ENTRIES {
                    return Err(Error::new(
                        stacksync_proto::ErrorKind::TooLarge,
                        format!(
                            "the folder holds more than {MAX_ZIP_ENTRIES} entries: download parts of it"
                        ),
                    ));
                }
            }
            cursor = page.cursor;
            if cursor.is_none() {
                break;
            }
        }
    }
    Ok(out)
}

/// `GET /zip/{id}` (`root`: the top folder).
pub(crate) async fn folder_zip(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(b) = Browser::of(&state, &headers).await else {
        return super::see_other("/", &[]);
    };
    let id = if id == "root" {
        None
    } else {
        match id.parse::<Uuid>() {
            Ok(id) => Some(id),
            Err(_) => return (StatusCode::NOT_FOUND, "no such folder").into_response(),
        }
    };
    let service = state.service.clone();
    let node = match service.api_node(b.user, id).await {
        Ok(n) if n.is_folder() => n,
        Ok(_) => return (StatusCode::BAD_REQUEST, "not a folder").into_response(),
        Err(e) => {
            let status =
                StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::NOT_FOUND);
            return (status, e.message).into_response();
        }
    };
    let name = match &node {
        ApiNode::Root { .. } => "StackSync".to_owned(),
        ApiNode::SharedRoot { workspace } => workspace.name.clone(),
        ApiNode::Item { meta, .. } => meta.name.as_str().to_owned(),
    };
    let list = match members(&service, b.user, node).await {
        Ok(l) => l,
        Err(e) => {
            let status =
                StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            return (status, e.message).into_response();
        }
    };
    let (reader, writer) = tokio::io::duplex(256 * 1024);
    tokio::spawn(async move {
        if let Err(e) = write_zip(&service, list, writer).await {
            // The client sees a cut-off archive, which no unzip accepts.
            tracing::warn!(error = %e, "a zip download stopped");
        }
    });
    let mut r = Body::from_stream(ReaderStream::new(reader)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    if let Ok(v) = HeaderValue::from_str(&crate::served::disposition(
        "attachment",
        &format!("{name}.zip"),
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

async fn write_zip(
    service: &Service,
    list: Vec<Member>,
    out: tokio::io::DuplexStream,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use async_zip::tokio::write::ZipFileWriter;
    use async_zip::{Compression, ZipEntryBuilder};
    use futures::AsyncWriteExt;

    let mut zip = ZipFileWriter::with_tokio(out);
    for m in list {
        let entry = ZipEntryBuilder::new(m.path.into(), Compression::Stored);
        match m.node {
            None => zip.write_entry_whole(entry, &[]).await?,
            Some(node) => {
                let mut content = service.api_content(&node, None).await?;
                let mut sink = zip.write_entry_stream(entry).await?;
                while let Some(bytes) = content.body.next().await {
                    sink.write_all(&bytes?).await?;
                }
                sink.close().await?;
            }
        }
    }
    zip.close().await?;
    Ok(())
}
