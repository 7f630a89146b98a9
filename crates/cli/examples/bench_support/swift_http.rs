//! Plain OpenStack Swift over HTTP, the API bench's baseline: TempAuth (v1)
//! as `test:tester`, a container of the bench's own, objects written with
//! a streamed body and read back streamed and hashed, with the same HTTP
//! client code as the API's requests (`api_client`).

use anyhow::{Context, bail};
use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};

use super::api_client::{Received, percent_encode, receive, streamed_body};

/// A logged-in Swift account, reached at `storage_url`.
#[derive(Clone)]
pub struct Swift {
    pub http: reqwest::Client,
    pub storage_url: String,
    token: String,
}

impl Swift {
    /// Logs in at `auth_url` (`.../auth/v1.0`). A storage URL on another
    /// proxy than `auth_url`'s is rebased onto `auth_url`'s, so that every
    /// request goes to the proxy logged in at.
    pub async fn login(
        http: &reqwest::Client,
        auth_url: &str,
        user: &str,
        key: &str,
    ) -> anyhow::Result<Swift> {
        let answer = http
            .get(auth_url)
            .header("X-Auth-User", user)
            .header("X-Auth-Key", key)
            .send()
            .await
            .with_context(|| format!("TempAuth at {auth_url}"))?;
        if !answer.status().is_success() {
            bail!("TempAuth at {auth_url}: {}", answer.status());
        }
        let header = |name: &str| {
            answer
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .with_context(|| format!("no {name} from TempAuth at {auth_url}"))
        };
        let token = header("X-Auth-Token")?;
        let storage = header("X-Storage-Url")?;
        let origin = |url: &str| {
            let after = url.split_once("://").map_or(url, |(_, r)| r);
            let end = after.find('/').unwrap_or(after.len());
            url.len() - after.len() + end
        };
        let path = &storage[origin(&storage)..];
        let storage_url = format!("{}{path}", &auth_url[..origin(auth_url)]);
        Ok(Swift {
            http: http.clone(),
            storage_url,
            token,
        })
    }

    fn url(&self, container: &str, object: Option<&str>) -> String {
        match object {
            Some(o) => format!(
                "{}/{}/{}",
                self.storage_url,
                percent_encode(container),
                percent_encode(o)
            ),
            None => format!("{}/{}", self.storage_url, percent_encode(container)),
        }
    }

    pub async fn create_container(&self, container: &str) -> anyhow::Result<()> {
        let answer = self
            .http
            .put(self.url(container, None))
            .header("X-Auth-Token", &self.token)
            .header(CONTENT_LENGTH, 0)
            .send()
            .await
            .context("PUT container")?;
        if !answer.status().is_success() {
            bail!("PUT container {container}: {}", answer.status());
        }
        Ok(())
    }

    /// PUT of `data`, streamed, with its length.
    pub async fn put(&self, container: &str, object: &str, data: &Bytes) -> anyhow::Result<()> {
        let answer = self
            .http
            .put(self.url(container, Some(object)))
            .header("X-Auth-Token", &self.token)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, HeaderValue::from(data.len() as u64))
            .body(streamed_body(data))
            .send()
            .await
            .context("PUT object")?;
        if answer.status() != reqwest::StatusCode::CREATED {
            bail!(
                "PUT {container}/{object}: {}: {}",
                answer.status(),
                answer.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// GET of an object, streamed and hashed.
    pub async fn get(&self, container: &str, object: &str) -> anyhow::Result<Received> {
        let answer = self
            .http
            .get(self.url(container, Some(object)))
            .header("X-Auth-Token", &self.token)
            .send()
            .await
            .context("GET object")?;
        if answer.status() != reqwest::StatusCode::OK {
            bail!("GET {container}/{object}: {}", answer.status());
        }
        receive(answer).await
    }

    /// HEAD of an object (its metadata only).
    pub async fn head(&self, container: &str, object: &str) -> anyhow::Result<()> {
        let answer = self
            .http
            .head(self.url(container, Some(object)))
            .header("X-Auth-Token", &self.token)
            .send()
            .await
            .context("HEAD object")?;
        if answer.status() != reqwest::StatusCode::OK {
            bail!("HEAD {container}/{object}: {}", answer.status());
        }
        Ok(())
    }

    /// DELETE of an object or (without one) of an empty container; best
    /// effort.
    pub async fn delete(&self, container: &str, object: Option<&str>) {
        let _ = self
            .http
            .delete(self.url(container, object))
            .header("X-Auth-Token", &self.token)
            .send()
            .await;
    }
}
