//! linkd's settings sync for linked devices: documents with versions
//! (conditional writes, RFC 9110 §13.1) and the change feed. The live
//! change stream is in `watch`.

use serde::Deserialize;

use crate::error::{answer, json, server_error};
use crate::{Device, Error};

/// A settings document as read from linkd's sync API.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncDocument {
    /// The version, as the server's entity tag (`"42"`); send it back as
    /// `If-Match` to update.
    pub etag: String,
    pub value: serde_json::Value,
}

/// What a sync write requires (RFC 9110 §13.1).
#[derive(Debug, Clone, Copy)]
pub enum SyncPrecondition<'a> {
    /// Create: only if the document does not exist (`If-None-Match: *`).
    Create,
    /// Update: only if the document is still at this version (`If-Match`).
    Match(&'a str),
}

/// One change in the feed or the event stream.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SyncChange {
    pub seq: i64,
    pub collection: String,
    pub key: String,
    pub etag: String,
    pub deleted: bool,
    pub value: serde_json::Value,
    pub updated_at: i64,
}

/// One page of a collection's changes.
#[derive(Debug, Clone, Deserialize)]
pub struct SyncChanges {
    pub changes: Vec<SyncChange>,
    /// The cursor to ask from next.
    pub next: i64,
    /// Another page follows at once.
    pub more: bool,
}

/// How a conditional write ended.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncWrite {
    /// Stored; the new version.
    Written { etag: String },
    /// 412: someone else wrote first. `current` is their version (`None`
    /// when the document no longer exists): merge, then write again with
    /// `SyncPrecondition::Match(&current.etag)`.
    Conflict { current: Option<SyncChange> },
}

impl Device {
    pub(crate) fn sync_url(&self, path: &str) -> String {
        format!("{}/api/v1/sync/{path}", self.endpoints.issuer)
    }

    /// Reads a document; `None` when there is none.
    pub async fn sync_get(
        &self,
        access_token: &str,
        collection: &str,
        key: &str,
    ) -> Result<Option<SyncDocument>, Error> {
        let response = {
            let url = self.sync_url(&format!("{collection}/{key}"));
            self.authorized(self.http.get(&url), "GET", &url, access_token)
        }
        .send()
        .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(server_error(response).await);
        }
        let etag = etag_of(&response)?;
        let value = json(response, "sync document").await?;
        Ok(Some(SyncDocument { etag, value }))
    }

    /// Creates or updates a document, only if `precondition` holds.
    pub async fn sync_put(
        &self,
        access_token: &str,
        collection: &str,
        key: &str,
        value: &serde_json::Value,
        precondition: SyncPrecondition<'_>,
    ) -> Result<SyncWrite, Error> {
        let request = {
            let url = self.sync_url(&format!("{collection}/{key}"));
            self.authorized(self.http.put(&url), "PUT", &url, access_token)
        }
        .json(value);
        let request = match precondition {
            SyncPrecondition::Create => request.header("if-none-match", "*"),
            SyncPrecondition::Match(etag) => request.header("if-match", etag),
        };
        sync_write_outcome(request.send().await?).await
    }

    /// Deletes a document, only if it is still at version `etag`.
    pub async fn sync_delete(
        &self,
        access_token: &str,
        collection: &str,
        key: &str,
        etag: &str,
    ) -> Result<SyncWrite, Error> {
        let response = {
            let url = self.sync_url(&format!("{collection}/{key}"));
            self.authorized(self.http.delete(&url), "DELETE", &url, access_token)
        }
        .header("if-match", etag)
        .send()
        .await?;
        sync_write_outcome(response).await
    }

    /// The collection's changes after `since` (0: from the beginning).
    /// [`Error::ResyncRequired`] when deletions after `since` were purged:
    /// ask again from 0.
    pub async fn sync_changes(
        &self,
        access_token: &str,
        collection: &str,
        since: i64,
    ) -> Result<SyncChanges, Error> {
        let response = {
            let url = self.sync_url(&format!("{collection}?since={since}"));
            self.authorized(self.http.get(&url), "GET", &url, access_token)
        }
        .send()
        .await?;
        answer(response, "sync changes").await
    }
}

fn etag_of(response: &reqwest::Response) -> Result<String, Error> {
    response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| Error::Protocol("sync answer without an ETag".into()))
}

async fn sync_write_outcome(response: reqwest::Response) -> Result<SyncWrite, Error> {
    if response.status() == reqwest::StatusCode::PRECONDITION_FAILED {
        #[derive(Deserialize)]
        struct Conflict {
            current: Option<SyncChange>,
        }
        let body: Conflict = json(response, "sync conflict").await?;
        return Ok(SyncWrite::Conflict {
            current: body.current,
        });
    }
    if !response.status().is_success() {
        return Err(server_error(response).await);
    }
    Ok(SyncWrite::Written {
        etag: etag_of(&response)?,
    })
}
