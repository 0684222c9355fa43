//! `/api/v1/sync/...`: linked devices read and write the account's settings
//! documents with conditional requests (RFC 9110 §13), page through
//! changes, and follow them live as server-sent events.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::oauth::bearer::{Authenticated, BearerRejection};
use crate::state::AppState;
use crate::store::{Event, LinkedDevice, SyncDocument};
use crate::streams::{StreamSlot, StreamsFull};
use crate::sync::{self, SyncError};
use crate::tokens::access::Bearer;
use crate::{scopes, web};

/// How often an open event stream checks, without being woken, that its
/// device is still linked and its token not revoked.
const RECHECK_EVERY: Duration = Duration::from_secs(5);
/// Changes read from the store per batch while streaming.
const STREAM_BATCH: i64 = 100;

/// What a sync request can fail with, as an RFC 6749-style JSON error.
pub enum ApiError {
    Bearer(BearerRejection),
    Sync(SyncError),
    /// Opening one more event stream would break a cap (streams.rs).
    Streams(StreamsFull),
}

impl From<BearerRejection> for ApiError {
    fn from(e: BearerRejection) -> Self {
        ApiError::Bearer(e)
    }
}

impl From<SyncError> for ApiError {
    fn from(e: SyncError) -> Self {
        ApiError::Sync(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = match self {
            ApiError::Bearer(b) => return b.into_response(),
            ApiError::Streams(full) => {
                let body =
                    json!({ "error": "too_many_streams", "error_description": full.to_string() });
                let headers = [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))];
                return (StatusCode::TOO_MANY_REQUESTS, headers, Json(body)).into_response();
            }
            ApiError::Sync(e) => e,
        };
        let (status, error) = match &e {
            SyncError::BadCollection
            | SyncError::BadKey
            | SyncError::NotJson
            | SyncError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            SyncError::BadDocument(_) => (StatusCode::BAD_REQUEST, "invalid_document"),
            SyncError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "document_too_large"),
            SyncError::PreconditionRequired => {
                (StatusCode::PRECONDITION_REQUIRED, "precondition_required")
            }
            SyncError::PreconditionFailed(_) => {
                (StatusCode::PRECONDITION_FAILED, "precondition_failed")
            }
            SyncError::TooManyDocuments { .. } => (StatusCode::CONFLICT, "too_many_documents"),
            SyncError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            // RFC 9110 §15.5.11: what the cursor pointed after is gone for
            // good; the device reads the collection again from 0.
            SyncError::ResyncRequired => (StatusCode::GONE, "resync_required"),
            SyncError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "slow_down"),
            SyncError::Store(store) => {
                tracing::error!(error = %store, "store error in the sync API");
                (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
            }
        };
        let description = match &e {
            SyncError::Store(_) => "try again shortly".to_string(),
            other => other.to_string(),
        };
        let mut body = json!({ "error": error, "error_description": description });
        let mut headers = HeaderMap::new();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match &e {
            // The winner's version, so the device can merge and retry
            // with it as If-Match.
            SyncError::PreconditionFailed(current) => {
                let live = current.as_ref().as_ref().filter(|d| !d.deleted);
                body["current"] = live.map(sync::change_json).unwrap_or(json!(null));
                if let Some(doc) = live
                    && let Ok(v) = HeaderValue::from_str(&sync::etag(doc.seq))
                {
                    headers.insert(header::ETAG, v);
                }
            }
            SyncError::RateLimited(wait) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(wait.0.max(1)));
            }
            _ => {}
        }
        (status, headers, Json(body)).into_response()
    }
}

/// The device behind a token that carries the `sync` scope.
fn sync_device(bearer: &Bearer) -> Result<&LinkedDevice, ApiError> {
    if scopes::contains(&bearer.claims.scope, scopes::SYNC) {
        Ok(&bearer.device)
    } else {
        Err(BearerRejection::insufficient_scope("the access token lacks the sync scope").into())
    }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn path_error(_: PathRejection) -> ApiError {
    SyncError::BadRequest("the path is not a valid collection or key").into()
}

fn document_response(status: StatusCode, doc: &SyncDocument) -> Response {
    let mut response = (
        status,
        Json(json!({
            "collection": doc.collection,
            "key": doc.key,
            "etag": sync::etag(doc.seq),
            "seq": doc.seq,
        })),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&sync::etag(doc.seq)) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// `GET /api/v1/sync/{collection}/{key}`: the document as stored, with its
/// version as a strong ETag (RFC 9110 §8.8.3); `If-None-Match` → 304.
pub async fn get_document(
    State(state): State<AppState>,
    Authenticated(bearer): Authenticated,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let device = sync_device(&bearer)?;
    let Path((collection, key)) = path.map_err(path_error)?;
    let doc = sync::get(state.store.as_ref(), device, &collection, &key).await?;
    let tag = HeaderValue::from_str(&sync::etag(doc.seq)).ok();
    let mut response = if sync::not_modified(header_str(&headers, header::IF_NONE_MATCH), doc.seq) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/json")],
            doc.body.unwrap_or_default(),
        )
            .into_response()
    };
    let out = response.headers_mut();
    if let Some(tag) = tag {
        out.insert(header::ETAG, tag);
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `PUT /api/v1/sync/{collection}/{key}` with `If-Match` (update) or
/// `If-None-Match: *` (create). 201 when created, 200 when updated.
pub async fn put_document(
    State(state): State<AppState>,
    Authenticated(bearer): Authenticated,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let device = sync_device(&bearer)?;
    let Path((collection, key)) = path.map_err(path_error)?;
    sync::check_collection(&collection)?;
    sync::check_key(&key)?;
    let headers = request.headers();
    let precondition = sync::precondition(
        header_str(headers, header::IF_MATCH),
        header_str(headers, header::IF_NONE_MATCH),
    )?;
    let creating = precondition == crate::store::SyncPrecondition::Absent;
    let max = state.config.sync_max_document_bytes;
    let declared = header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > u64::from(max)) {
        return Err(SyncError::TooLarge { max }.into());
    }
    // The route has no default body limit; this read is the limit.
    let body = axum::body::to_bytes(request.into_body(), max as usize)
        .await
        .map_err(|_| SyncError::TooLarge { max })?;
    let doc = sync::write(
        &state.ctx(),
        device,
        &collection,
        &key,
        Some(&body),
        precondition,
    )
    .await?;
    let status = if creating {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(document_response(status, &doc))
}

/// `DELETE /api/v1/sync/{collection}/{key}` with `If-Match`. Leaves a
/// tombstone so other devices see the deletion in the change feed.
pub async fn delete_document(
    State(state): State<AppState>,
    Authenticated(bearer): Authenticated,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let device = sync_device(&bearer)?;
    let Path((collection, key)) = path.map_err(path_error)?;
    let precondition = match header_str(&headers, header::IF_MATCH) {
        Some(m) => sync::precondition(Some(m), None)?,
        None => return Err(SyncError::PreconditionRequired.into()),
    };
    let doc = sync::write(&state.ctx(), device, &collection, &key, None, precondition).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&sync::etag(doc.seq)) {
        response.headers_mut().insert(header::ETAG, v);
    }
    Ok(response)
}

fn parse_cursor(value: Option<&str>) -> Result<Option<i64>, SyncError> {
    match value {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or(SyncError::BadRequest(
                "the cursor must be a whole number ≥ 0",
            )),
    }
}

/// `GET /api/v1/sync/{collection}?since=<cursor>&limit=<n>`: documents and
/// deletions changed after the cursor, oldest first. `next` is the cursor
/// for the following page; `more` says whether to ask again at once.
pub async fn changes(
    State(state): State<AppState>,
    Authenticated(bearer): Authenticated,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let device = sync_device(&bearer)?;
    let Path(collection) = path.map_err(path_error)?;
    let q = query.as_deref();
    let since = parse_cursor(web::query_param(q, "since").as_deref())?.unwrap_or(0);
    let limit = match web::query_param(q, "limit") {
        None => sync::DEFAULT_PAGE,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=sync::MAX_PAGE).contains(n))
            .ok_or(SyncError::BadRequest("limit must be 1 to 1000"))?,
    };
    // One more than asked tells whether another page follows.
    let mut docs =
        sync::changes(state.store.as_ref(), device, &collection, since, limit + 1).await?;
    let more = docs.len() as i64 > limit;
    docs.truncate(limit as usize);
    let next = docs.last().map_or(since, |d| d.seq);
    let changes: Vec<_> = docs.iter().map(sync::change_json).collect();
    let mut response =
        Json(json!({ "changes": changes, "next": next, "more": more })).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /api/v1/sync/events`: every change this device may see (its app's
/// collections and the shared one), as server-sent events whose id is the
/// change's sequence number. A reconnecting client sends the last id it saw
/// as `Last-Event-ID` (HTML Living Standard §9.2, server-sent events) and
/// gets exactly the changes after it; `?since=` does the same for clients
/// that cannot set headers. With neither, the stream starts from now.
pub async fn events(
    State(state): State<AppState>,
    Authenticated(bearer): Authenticated,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    sync_device(&bearer)?;
    // Taken first, before any store work; held by the stream and given
    // back when it ends, however it ends.
    let slot = state
        .streams
        .open(&bearer.device.id, &bearer.device.account_id)
        .map_err(ApiError::Streams)?;
    let resume = match header_str(&headers, header::HeaderName::from_static("last-event-id")) {
        Some(id) => parse_cursor(Some(id))?,
        None => parse_cursor(web::query_param(query.as_deref(), "since").as_deref())?,
    };
    // Subscribe before the first read, so no change falls between them.
    let wakeups = state.store.subscribe();
    let last = match resume {
        Some(seq) => {
            // Refused before the stream starts, while an error can still
            // be an answer; later purges end the stream (`Follow::next`).
            sync::check_resume(state.store.as_ref(), &bearer.device.account_id, seq).await?;
            seq
        }
        None => state
            .store
            .sync_head(&bearer.device.account_id)
            .await
            .map_err(SyncError::Store)?,
    };
    let mut tick = tokio::time::interval(RECHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let follow = Follow {
        _slot: slot,
        closing: state.closing(),
        state,
        bearer,
        last,
        wakeups,
        tick,
        pending: VecDeque::new(),
    };
    let stream = futures_util::stream::unfold(follow, Follow::next);
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// One open event stream.
struct Follow {
    _slot: StreamSlot,
    state: AppState,
    bearer: Bearer,
    /// The sequence number of the last change sent.
    last: i64,
    wakeups: tokio::sync::broadcast::Receiver<Event>,
    tick: tokio::time::Interval,
    closing: tokio::sync::watch::Receiver<bool>,
    pending: VecDeque<SyncDocument>,
}

impl Follow {
    /// The next event, or `None` to end the stream: the device was unlinked,
    /// its token was revoked or expired, the store failed (the device
    /// reconnects with `Last-Event-ID`), or the server is shutting down.
    async fn next(mut self) -> Option<(Result<SseEvent, Infallible>, Self)> {
        loop {
            if let Some(doc) = self.pending.pop_front() {
                self.last = doc.seq;
                let event = SseEvent::default()
                    .id(doc.seq.to_string())
                    .event("change")
                    .data(sync::change_json(&doc).to_string());
                return Some((Ok(event), self));
            }
            if !self.still_allowed().await {
                return None;
            }
            match sync::visible_changes(
                self.state.store.as_ref(),
                &self.bearer.device,
                self.last,
                STREAM_BATCH,
            )
            .await
            {
                Ok(docs) if !docs.is_empty() => {
                    self.pending.extend(docs);
                    continue;
                }
                Ok(_) => {}
                // Tombstones after the last change sent were purged (the
                // device fell behind a burst of writes): end the stream;
                // the device reconnects with Last-Event-ID and hears 410.
                Err(SyncError::ResyncRequired) => return None,
                Err(e) => {
                    tracing::warn!(error = %e, "ending a sync event stream: store error");
                    return None;
                }
            }
            if !self.wait().await {
                return None;
            }
        }
    }

    /// Waits for a change to this account, a missed batch of wake-ups, or
    /// the periodic re-check. False when the stream must end.
    async fn wait(&mut self) -> bool {
        let account = self.bearer.device.account_id.clone();
        loop {
            tokio::select! {
                received = self.wakeups.recv() => match received {
                    Ok(Event::SettingsChanged { account_id }) if account_id == account => return true,
                    Ok(_) => {}
                    // Fell behind: some wake-ups were dropped; re-read.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
                },
                _ = self.tick.tick() => return true,
                _ = self.closing.wait_for(|closing| *closing) => return false,
            }
        }
    }

    /// Unlinking a device, revoking its token, or the token expiring ends
    /// its stream; the Bearer check ran only when the stream opened.
    async fn still_allowed(&self) -> bool {
        if self.state.clock.now() >= self.bearer.claims.exp {
            return false;
        }
        match self
            .state
            .store
            .active_device_for_token(&self.bearer.device.id, &self.bearer.claims.jti)
            .await
        {
            Ok(device) => device.is_some(),
            Err(e) => {
                tracing::warn!(error = %e, "ending a sync event stream: store error");
                false
            }
        }
    }
}
