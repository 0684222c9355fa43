//! What can go wrong talking to the server, and how an RFC 6749 §5.2
//! error body becomes an [`Error`].

use serde::Deserialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not reach the server: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the person denied this device")]
    Denied,
    #[error("the code expired before anyone approved it")]
    Expired,
    #[error("the server refused: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Server {
        status: u16,
        error: String,
        description: Option<String>,
    },
    #[error("the server's answer did not follow the protocol: {0}")]
    Protocol(String),
    /// 410 `resync_required` from the change feed or the event stream:
    /// deletions after the cursor are no longer kept on the server. Read
    /// the collection again from `since = 0` (or watch from `Some(0)`) and
    /// replace what the device holds with what that returns.
    #[error("the sync cursor is too old; read everything again from 0")]
    ResyncRequired,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: String,
    error_description: Option<String>,
}

pub(crate) async fn server_error(response: reqwest::Response) -> Error {
    let status = response.status().as_u16();
    match response.json::<ErrorBody>().await {
        Ok(body) if status == 410 && body.error == "resync_required" => Error::ResyncRequired,
        Ok(body) => Error::Server {
            status,
            error: body.error,
            description: body.error_description,
        },
        Err(_) => Error::Protocol(format!("HTTP {status} without an OAuth error body")),
    }
}

/// The body of a successful answer, as JSON; an unsuccessful answer
/// becomes its RFC 6749 §5.2 error. `what` names the answer if the body
/// is not what the protocol says.
pub(crate) async fn answer<T: DeserializeOwned>(
    response: reqwest::Response,
    what: &str,
) -> Result<T, Error> {
    if !response.status().is_success() {
        return Err(server_error(response).await);
    }
    json(response, what).await
}

/// The body as JSON; `what` names the answer if it is not.
pub(crate) async fn json<T: DeserializeOwned>(
    response: reqwest::Response,
    what: &str,
) -> Result<T, Error> {
    response
        .json()
        .await
        .map_err(|e| Error::Protocol(format!("{what}: {e}")))
}
