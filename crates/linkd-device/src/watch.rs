//! The live sync change stream: linkd's server-sent events (HTML Living
//! Standard §9.2), read with the `sse-stream` crate, and resuming after the
//! last change seen with `Last-Event-ID`.

use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use sse_stream::{Sse, SseStream};

use crate::error::server_error;
use crate::{Device, Error, SyncChange};

/// The event blocks of a stream, whatever carries them: the HTTP body, or
/// the chunks a unit test feeds in.
type Blocks = Pin<Box<dyn Stream<Item = Result<Sse, sse_stream::Error>> + Send + Sync>>;

impl Device {
    /// Follows every change this device may see, as they happen. Pass the
    /// `seq` of the last change handled to resume after it (sent as
    /// `Last-Event-ID`); `None` starts from now. [`Error::ResyncRequired`]
    /// when deletions after it were purged: watch again from `Some(0)`,
    /// which first sends every document that exists.
    pub async fn sync_watch(
        &self,
        access_token: &str,
        after: Option<i64>,
    ) -> Result<SyncWatch, Error> {
        // No overall timeout for a stream that stays open; the server sends
        // a keep-alive every 15 s, so silence for longer means it is gone.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(20))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("linkd-device/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let url = self.sync_url("events");
        let mut request = self
            .authorized(http.get(&url), "GET", &url, access_token)
            .header("accept", "text/event-stream");
        if let Some(seq) = after {
            request = request.header("last-event-id", seq.to_string());
        }
        let response = request.send().await?;
        if !response.status().is_success() {
            return Err(server_error(response).await);
        }
        Ok(SyncWatch {
            blocks: Box::pin(SseStream::new(reqwest::Body::from(response))),
        })
    }
}

/// An open sync event stream.
pub struct SyncWatch {
    blocks: Blocks,
}

impl SyncWatch {
    /// The next change; `None` when the server ended the stream (the token
    /// expired or the device was unlinked): reconnect from the last `seq`.
    pub async fn next(&mut self) -> Result<Option<SyncChange>, Error> {
        while let Some(block) = self.blocks.next().await {
            // Keep-alives are comments, and other event types are for
            // other readers: only `change` events carry a change.
            if let Sse {
                event: Some(event),
                data: Some(data),
                ..
            } = block.map_err(stream_error)?
                && event == "change"
            {
                return serde_json::from_str(&data)
                    .map(Some)
                    .map_err(|e| Error::Protocol(format!("sync event: {e}")));
            }
        }
        Ok(None)
    }
}

/// A failed read of the body stays the transport error it was (a read
/// timeout, a reset connection); anything else is a malformed stream.
fn stream_error(error: sse_stream::Error) -> Error {
    match error {
        sse_stream::Error::Body(inner) => match inner.downcast::<reqwest::Error>() {
            Ok(http) => Error::Http(*http),
            Err(other) => Error::Protocol(format!("sync stream: {other}")),
        },
        other => Error::Protocol(format!("sync stream: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream whose body arrives in exactly these chunks.
    fn watch(chunks: &[&'static [u8]]) -> SyncWatch {
        let chunks = chunks
            .iter()
            .map(|c| Ok::<_, std::convert::Infallible>(bytes::Bytes::from_static(c)))
            .collect::<Vec<_>>();
        SyncWatch {
            blocks: Box::pin(sse_stream::SseByteStream::new(futures_util::stream::iter(
                chunks,
            ))),
        }
    }

    fn change(seq: i64) -> SyncChange {
        SyncChange {
            seq,
            collection: "prefs".into(),
            key: "k".into(),
            etag: format!("\"{seq}\""),
            deleted: false,
            value: serde_json::json!({"a": 1}),
            updated_at: 7,
        }
    }

    #[tokio::test]
    async fn changes_are_read_across_chunks_and_line_endings() {
        // A keep-alive comment, a CRLF split between chunks, a CR-only
        // line end, data over two lines, and a plain message to skip.
        let mut w = watch(&[
            b": keep-alive\n\nid: 3\r\nevent: change\r",
            b"\ndata: {\"seq\":3,\"collection\":\"prefs\",\"key\":\"k\",\r\ndata: ",
            b"\"etag\":\"\\\"3\\\"\",\"deleted\":false,\"value\":{\"a\":1},\"updated_at\":7}\r\n\r\n",
            b"data:x\n\nid: 9\n\n",
            b"event:change\rdata:{\"seq\":4,\"collection\":\"prefs\",\"key\":\"k\",",
            b"\"etag\":\"\\\"4\\\"\",\"deleted\":false,\"value\":{\"a\":1},\"updated_at\":7}\r\r",
        ]);
        assert_eq!(w.next().await.unwrap(), Some(change(3)));
        assert_eq!(w.next().await.unwrap(), Some(change(4)));
        assert_eq!(w.next().await.unwrap(), None, "the server ended the stream");
    }

    #[tokio::test]
    async fn an_unfinished_event_at_the_end_is_not_a_change() {
        let mut w = watch(&[b"event: change\ndata: {\"seq\":5"]);
        assert_eq!(w.next().await.unwrap(), None);
    }

    /// The message of the protocol error the stream ends in.
    async fn protocol_error(chunks: &[&'static [u8]]) -> String {
        match watch(chunks).next().await {
            Err(Error::Protocol(message)) => message,
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_change_that_is_not_json_is_a_protocol_error() {
        let message = protocol_error(&[b"event: change\ndata: {oops\n\n"]).await;
        assert!(message.starts_with("sync event: "), "{message}");
    }

    #[tokio::test]
    async fn a_change_that_is_not_utf8_is_a_protocol_error() {
        let message = protocol_error(&[b"event: change\ndata: \xff\xfe\n\n"]).await;
        assert!(message.starts_with("sync stream: "), "{message}");
    }
}
