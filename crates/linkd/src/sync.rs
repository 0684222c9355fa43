//! Settings sync: the JSON documents an account's linked devices share.
//! Each write gets the account's next sequence number, which is at once the
//! document's version (its ETag), its place in the change feed and its SSE
//! event id. Writes are conditional (RFC 9110 §13), so two devices writing
//! at once never silently overwrite each other.

pub mod document;

use serde_json::{Value, json};

use crate::ctx::Ctx;
use crate::limits::RetryAfter;
use crate::store::{
    Event, LinkedDevice, SHARED_NAMESPACE, Store, StoreError, SyncDocument, SyncPrecondition,
    SyncRows, SyncWrite, SyncWriteOutcome, Timestamp,
};

/// The collection every app of an account shares.
pub const SHARED_COLLECTION: &str = "account";
/// `/api/v1/sync/events` is the event stream, so no collection has this name.
pub const EVENTS: &str = "events";
/// Most changes one page of the change feed holds.
pub const MAX_PAGE: i64 = 1000;
pub const DEFAULT_PAGE: i64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("collection names are 1 to 64 of a-z, 0-9, _ and -, and not \"events\"")]
    BadCollection,
    #[error("keys are 1 to 128 of A-Z, a-z, 0-9, ., _ and -, and not . or ..")]
    BadKey,
    #[error("the body must be a JSON value in UTF-8")]
    NotJson,
    /// Valid JSON that the feed could not hand back as sent (document.rs).
    #[error("{0}")]
    BadDocument(String),
    #[error("the document is larger than {max} bytes")]
    TooLarge { max: u32 },
    #[error("{0}")]
    BadRequest(&'static str),
    #[error("send If-Match with the version you read, or If-None-Match: * to create")]
    PreconditionRequired,
    #[error("the document changed since you read it")]
    PreconditionFailed(Box<Option<SyncDocument>>),
    #[error("this account already holds {max} documents; delete some first")]
    TooManyDocuments { max: u32 },
    #[error("no such document")]
    NotFound,
    #[error(
        "deletions after this cursor are no longer kept; read the collection again from since=0 \
         and replace what you hold"
    )]
    ResyncRequired,
    #[error("too many writes from this device")]
    RateLimited(RetryAfter),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a device's `{collection}` lives: its app's own namespace, except
/// for the shared `account` collection.
pub fn namespace<'a>(device: &'a LinkedDevice, collection: &str) -> &'a str {
    if collection == SHARED_COLLECTION {
        SHARED_NAMESPACE
    } else {
        &device.client_id
    }
}

/// The namespaces a device sees in its event stream.
pub fn visible_namespaces(device: &LinkedDevice) -> [&str; 2] {
    [&device.client_id, SHARED_NAMESPACE]
}

pub fn check_collection(name: &str) -> Result<(), SyncError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && name != EVENTS;
    ok.then_some(()).ok_or(SyncError::BadCollection)
}

pub fn check_key(key: &str) -> Result<(), SyncError> {
    let ok = (1..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && key != "."
        && key != "..";
    ok.then_some(()).ok_or(SyncError::BadKey)
}

/// RFC 9110 §8.8.3: a strong entity tag, the version in quotes.
pub fn etag(seq: i64) -> String {
    format!("\"{seq}\"")
}

/// The versions named by an entity-tag list (`"7", W/"8"`), or `None` when
/// it is `*` or malformed. Weak tags are dropped: If-Match uses the strong
/// comparison (RFC 9110 §13.1.1), and ours are never weak.
fn parse_tags(value: &str) -> Result<Vec<i64>, SyncError> {
    let bad = || SyncError::BadRequest("malformed entity tag (expected \"<version>\")");
    let mut out = Vec::new();
    for tag in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (weak, tag) = match tag.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, tag),
        };
        let inner = tag
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .ok_or_else(bad)?;
        if weak {
            continue;
        }
        // A well-formed tag that is not one of ours matches nothing.
        if let Ok(v) = inner.parse::<i64>() {
            out.push(v);
        }
    }
    Ok(out)
}

/// The precondition of a write from its `If-Match` and `If-None-Match`
/// header values. Sync never accepts an unconditional write: that is how
/// updates get lost (RFC 9110 §13.1; RFC 6585 §3, 428).
pub fn precondition(
    if_match: Option<&str>,
    if_none_match: Option<&str>,
) -> Result<SyncPrecondition, SyncError> {
    match (if_match, if_none_match) {
        (Some(_), Some(_)) => Err(SyncError::BadRequest(
            "send If-Match or If-None-Match, not both",
        )),
        (Some(m), None) if m.trim() == "*" => Ok(SyncPrecondition::Present),
        (Some(m), None) => Ok(SyncPrecondition::Versions(parse_tags(m)?)),
        (None, Some(n)) if n.trim() == "*" => Ok(SyncPrecondition::Absent),
        (None, Some(_)) => Err(SyncError::BadRequest(
            "a write takes If-None-Match: * only (create if absent)",
        )),
        (None, None) => Err(SyncError::PreconditionRequired),
    }
}

/// Whether `If-None-Match` on a read names the current version, so the
/// device already has it (RFC 9110 §13.1.2: weak comparison).
pub fn not_modified(if_none_match: Option<&str>, seq: i64) -> bool {
    let Some(value) = if_none_match else {
        return false;
    };
    if value.trim() == "*" {
        return true;
    }
    value
        .split(',')
        .map(str::trim)
        .any(|tag| tag.strip_prefix("W/").unwrap_or(tag) == etag(seq))
}

/// A live document, as a device reads it.
pub async fn get(
    store: &dyn Store,
    device: &LinkedDevice,
    collection: &str,
    key: &str,
) -> Result<SyncDocument, SyncError> {
    check_collection(collection)?;
    check_key(key)?;
    store
        .sync_get(
            &device.account_id,
            namespace(device, collection),
            collection,
            key,
        )
        .await?
        .filter(|d| !d.deleted)
        .ok_or(SyncError::NotFound)
}

/// Writes (`body` given) or deletes a document if `precondition` holds,
/// then wakes every stream of the account. The device's write limit is
/// taken before the document is parsed or the store is asked.
pub async fn write(
    ctx: &Ctx<'_>,
    device: &LinkedDevice,
    collection: &str,
    key: &str,
    body: Option<&[u8]>,
    precondition: SyncPrecondition,
) -> Result<SyncDocument, SyncError> {
    let (store, config, now) = (ctx.store, ctx.config, ctx.now);
    check_collection(collection)?;
    check_key(key)?;
    ctx.limits
        .sync_writes_per_device
        .hit(&device.id, now)
        .map_err(SyncError::RateLimited)?;
    let body = match body {
        None => None,
        Some(bytes) => {
            if bytes.len() > config.sync_max_document_bytes as usize {
                return Err(SyncError::TooLarge {
                    max: config.sync_max_document_bytes,
                });
            }
            let text = std::str::from_utf8(bytes).map_err(|_| SyncError::NotJson)?;
            // The parser the feed reads with (`change_json`), so whatever
            // is stored reads back.
            document::parse(text).map_err(|e| match e {
                document::DocumentError::NotJson(_) => SyncError::NotJson,
                document::DocumentError::Refused(why) => SyncError::BadDocument(why),
            })?;
            Some(text.to_string())
        }
    };
    let outcome = store
        .sync_write(&SyncWrite {
            account_id: device.account_id.clone(),
            namespace: namespace(device, collection).to_string(),
            collection: collection.to_string(),
            key: key.to_string(),
            body,
            precondition,
            device_id: Some(device.id.clone()),
            now,
            max_documents: i64::from(config.sync_max_documents),
        })
        .await?;
    match outcome {
        SyncWriteOutcome::Written(doc) => {
            wake(store, &device.account_id).await;
            Ok(doc)
        }
        SyncWriteOutcome::PreconditionFailed(current) => {
            Err(SyncError::PreconditionFailed(Box::new(current)))
        }
        SyncWriteOutcome::TooManyDocuments => Err(SyncError::TooManyDocuments {
            max: config.sync_max_documents,
        }),
    }
}

/// What a conditional write does, as [`decide_write`] judges it.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteDecision {
    /// Write this document (the new version, with its sequence number),
    /// then purge the account's `purge_tombstones` oldest tombstones to
    /// make room for it.
    Write {
        doc: SyncDocument,
        purge_tombstones: i64,
    },
    /// Do not write; answer this.
    Refuse(SyncWriteOutcome),
    /// The write would create a document: ask again with the rows the
    /// account holds.
    CountRows,
}

/// The rules of a settings write, in one place: the store calls this
/// inside the transaction that writes, with the current row (after taking
/// the account's sequence number `seq`, which serialises the account's
/// writes), so the decision, the write and the purge it asks for are
/// atomic.
///
/// RFC 9110 §13.1.1 (If-Match) and §13.1.2 (If-None-Match) are judged
/// against the live document, a tombstone counting as none; deleting what
/// does not exist fails its precondition too.
///
/// The limit counts live documents and tombstones, so what an account
/// stores is bounded by `max_documents` rows. A person is never blocked by
/// their own deletions: a new document that needs room purges the oldest
/// tombstones (devices whose cursor is older then resync, see
/// [`check_cursor`]); only `max_documents` live documents refuse it.
pub fn decide_write(
    write: &SyncWrite,
    seq: i64,
    current: Option<&SyncDocument>,
    rows: Option<SyncRows>,
) -> WriteDecision {
    let live = current.filter(|d| !d.deleted);
    let holds = match &write.precondition {
        SyncPrecondition::Absent => live.is_none(),
        SyncPrecondition::Present => live.is_some(),
        SyncPrecondition::Versions(versions) => live.is_some_and(|d| versions.contains(&d.seq)),
    };
    if !holds || (write.body.is_none() && live.is_none()) {
        return WriteDecision::Refuse(SyncWriteOutcome::PreconditionFailed(current.cloned()));
    }
    let mut purge_tombstones = 0;
    if write.body.is_some() && live.is_none() {
        let Some(rows) = rows else {
            return WriteDecision::CountRows;
        };
        if rows.live >= write.max_documents {
            return WriteDecision::Refuse(SyncWriteOutcome::TooManyDocuments);
        }
        // Reviving a tombstone reuses its row; anything else adds one.
        // With fewer live documents than the limit, the tombstones left
        // after the write always cover the excess.
        let rows_after = rows.live + rows.tombstones + i64::from(current.is_none());
        purge_tombstones = (rows_after - write.max_documents).max(0);
    }
    WriteDecision::Write {
        doc: SyncDocument {
            account_id: write.account_id.clone(),
            namespace: write.namespace.clone(),
            collection: write.collection.clone(),
            key: write.key.clone(),
            body: write.body.clone(),
            size: write.body.as_ref().map_or(0, |b| b.len() as i64),
            seq,
            deleted: write.body.is_none(),
            updated_at: write.now,
            updated_by: write.device_id.clone(),
        },
        purge_tombstones,
    }
}

/// Whether a device reading changes after `since` can be answered: not
/// when tombstones after its cursor were purged (the account's purge
/// horizon, `purged_through`, is above it), since it would never hear of
/// those deletions. `since = 0` reads everything that exists and is
/// always fine.
pub fn check_cursor(since: i64, purged_through: i64) -> Result<(), SyncError> {
    if since > 0 && since < purged_through {
        Err(SyncError::ResyncRequired)
    } else {
        Ok(())
    }
}

/// Tells every stream of the account (on every instance) to look again.
/// The write is already durable; a lost wake-up only delays the stream
/// until its next periodic check.
pub async fn wake(store: &dyn Store, account_id: &str) {
    if let Err(e) = store
        .publish(Event::SettingsChanged {
            account_id: account_id.to_string(),
        })
        .await
    {
        tracing::warn!(error = %e, "could not publish a settings change");
    }
}

/// One page of a collection's changes after `since`.
pub async fn changes(
    store: &dyn Store,
    device: &LinkedDevice,
    collection: &str,
    since: i64,
    limit: i64,
) -> Result<Vec<SyncDocument>, SyncError> {
    check_collection(collection)?;
    changes_in(
        store,
        &device.account_id,
        &[namespace(device, collection)],
        Some(collection),
        since,
        limit.clamp(1, MAX_PAGE),
    )
    .await
}

/// The next batch of every change `device` may see after `since`, for its
/// event stream.
pub async fn visible_changes(
    store: &dyn Store,
    device: &LinkedDevice,
    since: i64,
    limit: i64,
) -> Result<Vec<SyncDocument>, SyncError> {
    changes_in(
        store,
        &device.account_id,
        &visible_namespaces(device),
        None,
        since,
        limit,
    )
    .await
}

/// Changes after `since`, refused when tombstones after it were purged.
/// The horizon is read after the changes: a purge commits its deletions
/// and its horizon together, so one that removed a row this read missed
/// is seen by the later read.
async fn changes_in(
    store: &dyn Store,
    account_id: &str,
    namespaces: &[&str],
    collection: Option<&str>,
    since: i64,
    limit: i64,
) -> Result<Vec<SyncDocument>, SyncError> {
    let docs = store
        .sync_changes(account_id, namespaces, collection, since, limit)
        .await?;
    check_resume(store, account_id, since).await?;
    Ok(docs)
}

/// Whether a device may resume from `since` (see [`check_cursor`]).
pub async fn check_resume(
    store: &dyn Store,
    account_id: &str,
    since: i64,
) -> Result<(), SyncError> {
    if since == 0 {
        return Ok(());
    }
    check_cursor(since, store.sync_purged_through(account_id).await?)
}

/// A change as devices receive it, in the feed and in the event stream.
pub fn change_json(doc: &SyncDocument) -> Value {
    let value = doc.body.as_deref().map(|b| {
        document::parse(b).unwrap_or_else(|e| {
            // Writes pass this same parser, so only a row written by hand
            // (or before the limits) fails; it is shown as null rather
            // than breaking every device's feed.
            tracing::error!(error = %e, seq = doc.seq, "stored sync document is not JSON");
            Value::Null
        })
    });
    json!({
        "seq": doc.seq,
        "collection": doc.collection,
        "key": doc.key,
        "etag": etag(doc.seq),
        "deleted": doc.deleted,
        "value": value,
        "updated_at": doc.updated_at,
    })
}

/// The person deletes one app's collection from their account page.
pub async fn delete_collection(
    store: &dyn Store,
    account_id: &str,
    namespace: &str,
    collection: &str,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let n = store
        .sync_delete_collection(account_id, namespace, collection, now)
        .await?;
    if n > 0 {
        wake(store, account_id).await;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_collection("watch-list_2").is_ok());
        for bad in ["", "Upper", "a/b", "events", "é", &"a".repeat(65)] {
            assert!(check_collection(bad).is_err(), "{bad:?}");
        }
        assert!(check_key("Episode.4_b-c").is_ok());
        for bad in ["", ".", "..", "a b", "a/b", "%2e", &"k".repeat(129)] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn writes_are_decided_on_the_current_document() {
        let write = |body: Option<&str>, precondition| SyncWrite {
            account_id: "a".into(),
            namespace: "tv".into(),
            collection: "c".into(),
            key: "k".into(),
            body: body.map(String::from),
            precondition,
            device_id: None,
            now: 5,
            max_documents: 2,
        };
        let doc = |seq, deleted: bool| SyncDocument {
            account_id: "a".into(),
            namespace: "tv".into(),
            collection: "c".into(),
            key: "k".into(),
            body: (!deleted).then(|| "[]".into()),
            size: if deleted { 0 } else { 2 },
            seq,
            deleted,
            updated_at: 1,
            updated_by: None,
        };
        use SyncPrecondition::*;
        let create = write(Some("{}"), Absent);
        let rows = |live, tombstones| Some(SyncRows { live, tombstones });
        // A tombstone counts as no document; creating asks for the count.
        assert_eq!(
            decide_write(&create, 9, Some(&doc(3, true)), None),
            WriteDecision::CountRows
        );
        assert_eq!(
            decide_write(&create, 9, None, rows(2, 0)),
            WriteDecision::Refuse(SyncWriteOutcome::TooManyDocuments)
        );
        let WriteDecision::Write {
            doc: made,
            purge_tombstones: 0,
        } = decide_write(&create, 9, None, rows(1, 0))
        else {
            panic!("room for one more, nothing to purge");
        };
        assert_eq!((made.seq, made.size, made.deleted), (9, 2, false));
        // If-None-Match: * fails on a live document, If-Match on a wrong
        // version or a tombstone; a delete of nothing fails too.
        let live = doc(3, false);
        assert_eq!(
            decide_write(&create, 9, Some(&live), None),
            WriteDecision::Refuse(SyncWriteOutcome::PreconditionFailed(Some(live.clone())))
        );
        let stale = write(Some("{}"), Versions(vec![2]));
        assert!(matches!(
            decide_write(&stale, 9, Some(&live), None),
            WriteDecision::Refuse(SyncWriteOutcome::PreconditionFailed(_))
        ));
        assert!(matches!(
            decide_write(&write(None, Present), 9, Some(&doc(3, true)), None),
            WriteDecision::Refuse(SyncWriteOutcome::PreconditionFailed(_))
        ));
        // Replacing a live document needs no count.
        let WriteDecision::Write { doc: gone, .. } =
            decide_write(&write(None, Versions(vec![3])), 9, Some(&live), None)
        else {
            panic!("the version matches");
        };
        assert!(gone.deleted && gone.body.is_none());
    }

    #[test]
    fn tombstones_count_against_the_limit_and_make_room() {
        let create = SyncWrite {
            account_id: "a".into(),
            namespace: "tv".into(),
            collection: "c".into(),
            key: "k".into(),
            body: Some("1".into()),
            precondition: SyncPrecondition::Absent,
            device_id: None,
            now: 5,
            max_documents: 3,
        };
        let tombstone = SyncDocument {
            account_id: "a".into(),
            namespace: "tv".into(),
            collection: "c".into(),
            key: "k".into(),
            body: None,
            size: 0,
            seq: 4,
            deleted: true,
            updated_at: 1,
            updated_by: None,
        };
        let purge = |current: Option<&SyncDocument>, live, tombstones| match decide_write(
            &create,
            9,
            current,
            Some(SyncRows { live, tombstones }),
        ) {
            WriteDecision::Write {
                purge_tombstones, ..
            } => Some(purge_tombstones),
            WriteDecision::Refuse(SyncWriteOutcome::TooManyDocuments) => None,
            other => panic!("{other:?}"),
        };
        // A new row beyond the limit purges one tombstone per row over it.
        assert_eq!(purge(None, 1, 1), Some(0));
        assert_eq!(purge(None, 1, 2), Some(1));
        assert_eq!(purge(None, 0, 3), Some(1));
        // Rows over a lowered limit are purged down to it.
        assert_eq!(purge(None, 2, 5), Some(5));
        // Reviving a tombstone reuses its row.
        assert_eq!(purge(Some(&tombstone), 1, 2), Some(0));
        assert_eq!(purge(Some(&tombstone), 2, 4), Some(3));
        // Only live documents refuse, however many tombstones there are.
        assert_eq!(purge(None, 3, 0), None);
        assert_eq!(purge(Some(&tombstone), 3, 1), None);
    }

    #[test]
    fn a_cursor_below_the_purge_horizon_must_resync() {
        assert!(check_cursor(0, 50).is_ok(), "since=0 reads everything");
        assert!(
            check_cursor(50, 50).is_ok(),
            "it saw the last purged deletion"
        );
        assert!(check_cursor(60, 50).is_ok());
        assert!(check_cursor(7, 0).is_ok(), "nothing purged yet");
        assert!(matches!(
            check_cursor(49, 50),
            Err(SyncError::ResyncRequired)
        ));
    }

    #[test]
    fn preconditions_follow_rfc_9110() {
        use SyncPrecondition::*;
        assert!(matches!(
            precondition(None, None),
            Err(SyncError::PreconditionRequired)
        ));
        assert_eq!(precondition(None, Some("*")).unwrap(), Absent);
        assert_eq!(precondition(Some(" * "), None).unwrap(), Present);
        assert_eq!(
            precondition(Some("\"7\", W/\"8\", \"x\""), None).unwrap(),
            Versions(vec![7])
        );
        assert!(precondition(Some("7"), None).is_err());
        assert!(precondition(Some("\"7\""), Some("*")).is_err());
        assert!(precondition(None, Some("\"7\"")).is_err());
        assert!(not_modified(Some("W/\"3\", \"4\""), 4));
        assert!(!not_modified(Some("\"3\""), 4));
        assert!(!not_modified(None, 4));
    }
}
