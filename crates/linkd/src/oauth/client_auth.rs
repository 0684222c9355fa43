//! Client authentication at the token endpoint (RFC 6749 §2.3): public
//! clients name themselves with `client_id`; confidential clients add a
//! secret by HTTP Basic or in the body, never both.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use subtle::ConstantTimeEq;

use super::OAuthError;
use super::form::OAuthRequest;
use crate::codes::secret_hash;
use crate::store::{Client, Store};

/// The credentials a request presents, before any lookup.
pub struct Presented {
    pub client_id: String,
    secret: Option<String>,
    basic: bool,
}

fn decode_basic(value: &str) -> Result<(String, String), OAuthError> {
    let bad = || OAuthError::invalid_client("the Authorization header is malformed", true);
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
        .ok_or_else(bad)?;
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    // RFC 6749 §2.3.1: both halves are form-urlencoded before joining.
    // A NUL or an undecodable byte is refused here, as the body's form
    // parser refuses it: no client id holds one, and PostgreSQL cannot
    // even compare text that does (it would fail the lookup, not miss).
    let unescape = |s: &str| -> Option<String> {
        let joined = format!("x={s}");
        form_urlencoded::parse(joined.as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .filter(|v| !v.contains(['\0', '\u{FFFD}']))
    };
    Ok((
        unescape(id).ok_or_else(bad)?,
        unescape(secret).ok_or_else(bad)?,
    ))
}

pub fn presented(req: &OAuthRequest) -> Result<Presented, OAuthError> {
    let body_id = req.form.get("client_id");
    let body_secret = req.form.get("client_secret");
    if let Some(value) = req.headers.get(axum::http::header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| {
            OAuthError::invalid_client("the Authorization header is malformed", true)
        })?;
        let (id, secret) = decode_basic(value)?;
        if body_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not both Basic and client_secret",
            ));
        }
        if body_id.is_some_and(|b| b != id) {
            return Err(OAuthError::invalid_request(
                "client_id in the body differs from the authenticated client",
            ));
        }
        return Ok(Presented {
            client_id: id,
            secret: Some(secret),
            basic: true,
        });
    }
    let client_id = body_id
        .ok_or_else(|| OAuthError::invalid_client("the client_id parameter is missing", false))?;
    Ok(Presented {
        client_id: client_id.to_string(),
        secret: body_secret.map(str::to_string),
        basic: false,
    })
}

/// Identifies and, for confidential clients, authenticates the caller.
pub async fn authenticate(store: &dyn Store, req: &OAuthRequest) -> Result<Client, OAuthError> {
    authenticate_presented(store, &presented(req)?).await
}

/// Looks up the client that credentials already taken from a request name,
/// and checks them.
pub async fn authenticate_presented(
    store: &dyn Store,
    p: &Presented,
) -> Result<Client, OAuthError> {
    let client = if p.client_id.len() > 256 {
        None
    } else {
        store.get_client(&p.client_id).await?
    };
    verify(p, client)
}

/// Checks presented credentials against the client they name (`None`:
/// no such client), for callers that read the client along with
/// something else.
pub fn verify<C: std::borrow::Borrow<Client>>(
    p: &Presented,
    client: Option<C>,
) -> Result<C, OAuthError> {
    let unknown = || OAuthError::invalid_client("client authentication failed", p.basic);
    let client = client
        .filter(|c| c.borrow().client_id == p.client_id)
        .ok_or_else(unknown)?;
    match (&client.borrow().secret_hash, &p.secret) {
        (None, None) => Ok(client),
        (Some(stored), Some(secret)) => {
            let matches: bool = secret_hash(secret)
                .as_bytes()
                .ct_eq(stored.as_bytes())
                .into();
            if matches { Ok(client) } else { Err(unknown()) }
        }
        // A confidential client without its secret, or a secret for a
        // public client: either way the caller is not who it claims.
        _ => Err(unknown()),
    }
}
