//! The [`BlobStore`] operations of [`SwiftStore`], one Swift request (or a
//! few) each.

use std::collections::HashSet;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use reqwest::StatusCode;
use stacksync_proto::ChunkId;

use super::body::{ReplayBody, etag_of, md5_hex, response_stream};
use super::{SwiftStore, status_error};
use crate::error::{BlobError, BlobErrorKind, Result};
use crate::names::{ContainerName, StorageUser};
use crate::store::{
    Access, BlobStore, ByteRange, ByteStream, ContainerAcl, MAX_OBJECT_SIZE, ObjectInfo,
};

/// Objects per listing page (Swift's maximum).
const LIST_PAGE: usize = 10_000;
const READ_ACL: &str = "X-Container-Read";
const WRITE_ACL: &str = "X-Container-Write";

fn container_url(base: &str, c: &ContainerName) -> String {
    // Names are validated to URL-safe characters; no escaping needed.
    format!("{base}/{c}")
}

fn object_url(base: &str, c: &ContainerName, id: &ChunkId) -> String {
    format!("{base}/{c}/{}", id.to_hex())
}

fn content_length(resp: &reqwest::Response, what: &str) -> Result<u64> {
    resp.headers()
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            BlobError::new(
                BlobErrorKind::Protocol,
                format!("{what}: no Content-Length"),
            )
        })
}

/// The comma-separated entries of an ACL header, as Swift stores them.
fn acl_entries(resp: &reqwest::Response, name: &str) -> Vec<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Percent-encodes everything but RFC 3986 unreserved characters: the
/// listing marker is an object name Swift returned, which may hold anything.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(serde::Deserialize)]
struct ListEntry {
    name: String,
}

impl SwiftStore {
    /// PUTs an object unless its name exists (`If-None-Match: *`, which
    /// Swift answers with 412 when it does): objects are written once, so a
    /// member who may write a container still cannot replace what another
    /// stored. A name that exists with the same bytes (our own earlier
    /// attempt, whose answer was lost) is success; other bytes are a
    /// `Conflict`.
    async fn put_with(
        &self,
        c: &ContainerName,
        id: &ChunkId,
        replay: ReplayBody,
        known: Option<(u64, String)>,
    ) -> Result<ObjectInfo> {
        let what = format!("PUT object {id} in {c}");
        let (resp, permit) = self
            .send(&what, Some(&replay), |http, s| {
                let mut req = http
                    .put(object_url(&s.storage_url, c, id))
                    .header("X-Auth-Token", &s.token)
                    .header(reqwest::header::IF_NONE_MATCH, "*");
                if let Some((len, md5)) = &known {
                    // Swift then refuses (422) a body that does not match, so
                    // a corrupted upload never becomes visible.
                    req = req
                        .header(reqwest::header::CONTENT_LENGTH, *len)
                        .header(reqwest::header::ETAG, md5);
                }
                req.body(replay.attempt())
            })
            .await?;
        // The HEAD or DELETE below needs a permit of its own.
        drop(permit);
        match resp.status() {
            StatusCode::CREATED => {}
            // 412: the name exists. 202: a concurrent PUT of the same name
            // with a newer timestamp won. Either way what is stored now
            // decides: ours (a retry, or the same bytes from elsewhere) or
            // someone else's.
            StatusCode::PRECONDITION_FAILED | StatusCode::ACCEPTED => {
                let (size, md5) = replay.digest_rest().await?;
                return self.same_as_stored(c, id, size, &md5).await;
            }
            other => return Err(status_error(other, &what)),
        }
        let (size, md5) = replay.finish().await?;
        if etag_of(&resp).as_deref() != Some(md5.as_str()) {
            // Swift stored something other than what we sent: remove it so
            // no wrong bytes stay under a content-addressed name.
            let _ = self.delete(c, id).await;
            return Err(BlobError::new(
                BlobErrorKind::Integrity,
                format!(
                    "{what}: ETag {:?} does not match body MD5 {md5}",
                    etag_of(&resp)
                ),
            ));
        }
        Ok(ObjectInfo { id: *id, size })
    }

    /// Success if the stored object is `size` bytes with MD5 `md5` (Swift's
    /// ETag of a plain object), else a `Conflict`.
    async fn same_as_stored(
        &self,
        c: &ContainerName,
        id: &ChunkId,
        size: u64,
        md5: &str,
    ) -> Result<ObjectInfo> {
        let what = format!("HEAD object {id} in {c}");
        let (resp, _permit) = self
            .send(&what, None, |http, s| {
                http.head(object_url(&s.storage_url, c, id))
                    .header("X-Auth-Token", &s.token)
            })
            .await?;
        if resp.status() != StatusCode::OK {
            return Err(status_error(resp.status(), &what));
        }
        let stored_size = content_length(&resp, &what)?;
        if stored_size == size && etag_of(&resp).as_deref() == Some(md5) {
            return Ok(ObjectInfo { id: *id, size });
        }
        Err(BlobError::new(
            BlobErrorKind::Conflict,
            format!(
                "object {id} in {c} exists with other bytes ({stored_size} bytes, ETag {:?}); \
                 objects are written once",
                etag_of(&resp)
            ),
        ))
    }

    /// The raw ACL entries, kept whole so that rewriting one user's entry
    /// preserves entries this crate does not model.
    async fn raw_acl(&self, c: &ContainerName) -> Result<(Vec<String>, Vec<String>)> {
        let what = format!("HEAD container {c}");
        let (resp, _permit) = self
            .send(&what, None, |http, s| {
                http.head(container_url(&s.storage_url, c))
                    .header("X-Auth-Token", &s.token)
            })
            .await?;
        if !resp.status().is_success() {
            return Err(status_error(resp.status(), &what));
        }
        Ok((acl_entries(&resp, READ_ACL), acl_entries(&resp, WRITE_ACL)))
    }

    async fn change_acl(
        &self,
        c: &ContainerName,
        user: &StorageUser,
        access: Access,
        add: bool,
    ) -> Result<()> {
        let (mut read, mut write) = self.raw_acl(c).await?;
        let mut headers = Vec::new();
        for (list, name, on) in [
            (&mut read, READ_ACL, access.reads()),
            (&mut write, WRITE_ACL, access.writes()),
        ] {
            if !on {
                continue;
            }
            list.retain(|e| e != user.as_str());
            if add {
                list.push(user.as_str().to_owned());
            }
            if list.is_empty() {
                headers.push((format!("X-Remove-{}", &name[2..]), "x".to_owned()));
            } else {
                headers.push((name.to_owned(), list.join(",")));
            }
        }
        let what = format!("POST ACL of container {c}");
        let (resp, _permit) = self
            .send(&what, None, |http, s| {
                let mut req = http
                    .post(container_url(&s.storage_url, c))
                    .header("X-Auth-Token", &s.token);
                for (k, v) in &headers {
                    req = req.header(k.as_str(), v.as_str());
                }
                req
            })
            .await?;
        if !resp.status().is_success() {
            return Err(status_error(resp.status(), &what));
        }
        Ok(())
    }
}

#[async_trait]
impl BlobStore for SwiftStore {
    fn encrypts_at_rest(&self) -> bool {
        self.at_rest.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn ready(&self) -> Result<()> {
        let what = "HEAD account";
        let (resp, _permit) = self
            .send(what, None, |http, s| {
                http.head(s.storage_url.as_str())
                    .header("X-Auth-Token", &s.token)
            })
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            other => Err(status_error(other, what)),
        }
    }

    async fn create_container(&self, c: &ContainerName) -> Result<()> {
        let what = format!("PUT container {c}");
        let (resp, _permit) = self
            .send(&what, None, |http, s| {
                http.put(container_url(&s.storage_url, c))
                    .header("X-Auth-Token", &s.token)
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED | StatusCode::ACCEPTED | StatusCode::NO_CONTENT => Ok(()),
            other => Err(status_error(other, &what)),
        }
    }

    async fn delete_container(&self, c: &ContainerName) -> Result<()> {
        let what = format!("DELETE container {c}");
        let (resp, _permit) = self
            .send(&what, None, |http, s| {
                http.delete(container_url(&s.storage_url, c))
                    .header("X-Auth-Token", &s.token)
            })
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            other => Err(status_error(other, &what)),
        }
    }

    async fn put(&self, c: &ContainerName, id: &ChunkId, body: ByteStream) -> Result<ObjectInfo> {
        self.put_with(c, id, ReplayBody::new(body), None).await
    }

    async fn put_bytes(&self, c: &ContainerName, id: &ChunkId, data: Bytes) -> Result<ObjectInfo> {
        if data.len() as u64 > MAX_OBJECT_SIZE {
            return Err(BlobError::new(
                BlobErrorKind::TooLarge,
                format!("object {id} exceeds {MAX_OBJECT_SIZE} bytes"),
            ));
        }
        let known = (data.len() as u64, md5_hex(data.clone()).await?);
        self.put_with(
            c,
            id,
            ReplayBody::new(crate::store::single_piece(data)),
            Some(known),
        )
        .await
    }

    async fn get(
        &self,
        c: &ContainerName,
        id: &ChunkId,
        range: Option<ByteRange>,
    ) -> Result<ByteStream> {
        let what = format!("GET object {id} in {c}");
        if let Some(ByteRange {
            start,
            end: Some(end),
        }) = range
            && end <= start
        {
            // Swift ignores an inverted range and sends everything; the
            // answer is empty, once the object is known to be readable.
            self.head(c, id).await?;
            return Ok(Box::pin(futures::stream::empty()));
        }
        let header = range.map(|r| match r.end {
            Some(end) => format!("bytes={}-{}", r.start, end - 1),
            None => format!("bytes={}-", r.start),
        });
        let (resp, permit) = self
            .send(&what, None, |http, s| {
                let req = http
                    .get(object_url(&s.storage_url, c, id))
                    .header("X-Auth-Token", &s.token);
                match &header {
                    Some(h) => req.header(reqwest::header::RANGE, h),
                    None => req,
                }
            })
            .await?;
        match resp.status() {
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => {
                // The ETag is the MD5 of the whole object, so only a whole
                // GET can be checked against it; manifests have other ETags.
                let manifest = resp.headers().contains_key("X-Static-Large-Object")
                    || resp.headers().contains_key("X-Object-Manifest");
                let whole = resp.status() == StatusCode::OK;
                let expected = if whole && !manifest {
                    etag_of(&resp)
                } else {
                    None
                };
                Ok(response_stream(resp, expected, what, permit))
            }
            StatusCode::RANGE_NOT_SATISFIABLE => Ok(Box::pin(futures::stream::empty())),
            other => Err(status_error(other, &what)),
        }
    }

    async fn get_bytes(&self, c: &ContainerName, id: &ChunkId) -> Result<Bytes> {
        // A connection lost in the middle of the body is retried too (the
        // request-level retry in `send` only covers the answer's head).
        let mut attempt = 1;
        loop {
            let result = async { crate::store::collect(self.get(c, id, None).await?).await }.await;
            match result {
                Err(e)
                    if e.kind == BlobErrorKind::Unavailable
                        && attempt < self.config.retry.max_attempts =>
                {
                    tokio::time::sleep(self.config.retry.delay(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn head(&self, c: &ContainerName, id: &ChunkId) -> Result<ObjectInfo> {
        let what = format!("HEAD object {id} in {c}");
        let (resp, _permit) = self
            .send(&what, None, |http, s| {
                http.head(object_url(&s.storage_url, c, id))
                    .header("X-Auth-Token", &s.token)
            })
            .await?;
        if resp.status() != StatusCode::OK {
            return Err(status_error(resp.status(), &what));
        }
        Ok(ObjectInfo {
            id: *id,
            size: content_length(&resp, &what)?,
        })
    }

    /// Note: if the answer to a DELETE is lost and the retry finds the
    /// object gone, this reports `NotFound` although the delete succeeded.
    async fn delete(&self, c: &ContainerName, id: &ChunkId) -> Result<()> {
        let what = format!("DELETE object {id} in {c}");
        let (resp, _permit) = self
            .send(&what, None, |http, s| {
                http.delete(object_url(&s.storage_url, c, id))
                    .header("X-Auth-Token", &s.token)
            })
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            other => Err(status_error(other, &what)),
        }
    }

    async fn list(&self, c: &ContainerName) -> Result<Vec<ChunkId>> {
        let what = format!("GET container {c}");
        let mut out = Vec::new();
        let mut marker = String::new();
        loop {
            let (resp, _permit) = self
                .send(&what, None, |http, s| {
                    let base = container_url(&s.storage_url, c);
                    let marker = percent_encode(&marker);
                    http.get(format!(
                        "{base}?format=json&limit={LIST_PAGE}&marker={marker}"
                    ))
                    .header("X-Auth-Token", &s.token)
                })
                .await?;
            let page: Vec<ListEntry> = match resp.status() {
                StatusCode::NO_CONTENT => Vec::new(),
                StatusCode::OK => resp.json().await.map_err(|e| {
                    BlobError::with_source(
                        BlobErrorKind::Protocol,
                        format!("{what}: bad listing"),
                        e,
                    )
                })?,
                other => return Err(status_error(other, &what)),
            };
            let full = page.len() >= LIST_PAGE;
            if let Some(last) = page.last() {
                marker = last.name.clone();
            }
            // Objects not named by a chunk id are not ours to report.
            out.extend(page.iter().filter_map(|e| ChunkId::from_hex(&e.name).ok()));
            if !full {
                break;
            }
        }
        out.sort();
        Ok(out)
    }

    async fn existing(&self, c: &ContainerName, ids: &[ChunkId]) -> Result<HashSet<ChunkId>> {
        // One HEAD per id, in parallel (bounded by the store's semaphore):
        // a batch is small next to a container listing.
        futures::stream::iter(ids.iter().copied())
            .map(|id| async move {
                match self.head(c, &id).await {
                    Ok(_) => Ok(Some(id)),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(self.config.max_concurrency.max(1))
            .try_filter_map(|found| async move { Ok(found) })
            .try_collect()
            .await
    }

    async fn grant(&self, c: &ContainerName, user: &StorageUser, access: Access) -> Result<()> {
        self.change_acl(c, user, access, true).await
    }

    async fn revoke(&self, c: &ContainerName, user: &StorageUser, access: Access) -> Result<()> {
        self.change_acl(c, user, access, false).await
    }

    async fn acl(&self, c: &ContainerName) -> Result<ContainerAcl> {
        let (read, write) = self.raw_acl(c).await?;
        // Entries that are not storage users (referrer rules) are not reported.
        let users = |list: Vec<String>| {
            let mut v: Vec<StorageUser> = list
                .iter()
                .filter_map(|e| StorageUser::new(e).ok())
                .collect();
            v.sort();
            v
        };
        Ok(ContainerAcl {
            read: users(read),
            write: users(write),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_encoding() {
        assert_eq!(super::percent_encode("ab-_.~9"), "ab-_.~9");
        assert_eq!(super::percent_encode("a b/é&"), "a%20b%2F%C3%A9%26");
    }
}
