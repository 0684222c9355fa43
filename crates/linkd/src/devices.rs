//! Linked devices after the link: checking their access tokens, refresh
//! token rotation with reuse detection (RFC 6749 §6, RFC 9700 §4.14),
//! revocation (RFC 7009), introspection (RFC 7662), renaming and unlinking.

use serde_json::{Value, json};

use crate::codes::{random_secret, secret_hash};
use crate::device_flow::{self, Grant, PollError, TokenSet, clean_device_name};
use crate::store::{
    Activity, ActivityKind, Client, LinkedDevice, RefreshToken, Store, StoreError, Timestamp,
};
use crate::tokens::{AccessClaims, Keys, TokenError};
use crate::{Config, scopes};

/// A verified access token and the still-linked device it belongs to.
#[derive(Debug)]
pub struct Bearer {
    pub claims: AccessClaims,
    pub device: LinkedDevice,
}

#[derive(Debug, thiserror::Error)]
pub enum BearerError {
    #[error("no access token was presented")]
    Missing,
    #[error("the access token is invalid: {0}")]
    Invalid(#[from] TokenError),
    #[error("the access token was revoked or its device unlinked")]
    Revoked,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks an access token the way every linkd API does: signature, issuer,
/// audience and expiry, then that its device is still linked and the token
/// itself was not revoked. Unlinking therefore cuts a token off at once.
pub async fn authenticate_bearer(
    store: &dyn Store,
    keys: &Keys,
    config: &Config,
    now: Timestamp,
    token: &str,
) -> Result<Bearer, BearerError> {
    if token.is_empty() {
        return Err(BearerError::Missing);
    }
    if token.len() > 8192 {
        return Err(BearerError::Invalid(TokenError::Malformed));
    }
    let issuer = config.issuer();
    let claims = keys.verify_access_token(token, &issuer, &issuer, now)?;
    let device = store
        .active_device_for_token(&claims.sid, &claims.jti)
        .await?
        .filter(|d| d.account_id == claims.sub)
        .ok_or(BearerError::Revoked)?;
    Ok(Bearer { claims, device })
}

/// Unlinks a device and notes it in the person's activity. False when it
/// was already unlinked.
pub async fn unlink(
    store: &dyn Store,
    device: &LinkedDevice,
    ip: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let unlinked = store.revoke_linked_device(&device.id, now).await?;
    if unlinked {
        record(store, device, ActivityKind::Unlinked, ip, now).await?;
    }
    Ok(unlinked)
}

/// Unlinks every device of an account (when an operator disables it):
/// the same path as the person's own Unlink, so tokens stop at once.
pub async fn unlink_all(
    store: &dyn Store,
    account_id: &str,
    ip: &str,
    now: Timestamp,
) -> Result<usize, StoreError> {
    let mut count = 0;
    for device in store.list_linked_devices(account_id).await? {
        if unlink(store, &device, ip, now).await? {
            count += 1;
        }
    }
    Ok(count)
}

pub async fn record(
    store: &dyn Store,
    device: &LinkedDevice,
    kind: ActivityKind,
    ip: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    store
        .insert_activity(&Activity {
            account_id: device.account_id.clone(),
            kind,
            client_id: device.client_id.clone(),
            app_name: device.app_name.clone(),
            device: Some(device.label.clone()),
            ip: ip.to_string(),
            at: now,
        })
        .await
}

#[derive(Debug, thiserror::Error)]
pub enum RenameError {
    #[error(
        "the name must have 1 to {} visible characters",
        device_flow::MAX_DEVICE_NAME_CHARS
    )]
    BadName,
    #[error("no such device")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Renames one of the account's devices.
pub async fn rename(
    store: &dyn Store,
    account_id: &str,
    device_id: &str,
    name: &str,
) -> Result<String, RenameError> {
    if name.chars().count() > device_flow::MAX_DEVICE_NAME_CHARS {
        return Err(RenameError::BadName);
    }
    let label = clean_device_name(Some(name)).ok_or(RenameError::BadName)?;
    if store
        .rename_linked_device(device_id, account_id, &label)
        .await?
    {
        Ok(label)
    } else {
        Err(RenameError::NotFound)
    }
}

/// How a refresh request ends.
#[derive(Debug)]
pub enum RefreshOutcome {
    Tokens(Box<TokenSet>),
    /// RFC 6749 §5.2 invalid_grant, with the reason for the description.
    InvalidGrant(&'static str),
    InvalidScope(String),
}

/// The refresh_token grant (RFC 6749 §6). Each use rotates the token; a
/// token that was already rotated coming back means it leaked, so the
/// device's whole token family is revoked (RFC 9700 §4.14.2) and the
/// person sees it in their activity.
#[allow(clippy::too_many_arguments)]
pub async fn refresh(
    store: &dyn Store,
    keys: &Keys,
    config: &Config,
    now: Timestamp,
    client: &Client,
    presented: &str,
    requested_scope: Option<&str>,
    ip: &str,
) -> Result<RefreshOutcome, PollError> {
    use RefreshOutcome::InvalidGrant;
    if presented.len() > 256 {
        return Ok(InvalidGrant("the refresh token is not valid"));
    }
    let hash = secret_hash(presented);
    let Some(token) = store.get_refresh_token(&hash).await? else {
        return Ok(InvalidGrant("the refresh token is not valid"));
    };
    let Some(device) = store.get_linked_device(&token.device_id).await? else {
        return Ok(InvalidGrant("the refresh token is not valid"));
    };
    // RFC 6749 §6: a refresh token is bound to the client it was issued to.
    if device.client_id != client.client_id {
        return Ok(InvalidGrant("the refresh token is not valid"));
    }
    if device.revoked_at.is_some() {
        return Ok(InvalidGrant("this device was unlinked"));
    }
    if token.rotated_at.is_some() {
        revoke_family(store, &device, ip, now).await?;
        return Ok(InvalidGrant(
            "the refresh token was already used; this device was unlinked for safety",
        ));
    }
    if token.expires_at <= now {
        return Ok(InvalidGrant("the refresh token has expired"));
    }
    let absolute_end = device.linked_at + i64::from(config.refresh_absolute_lifetime);
    if absolute_end <= now {
        return Ok(InvalidGrant("this link is too old: link the device again"));
    }
    // RFC 6749 §6: the scope may be narrowed, never widened; omitted means
    // everything originally granted.
    let scope = match requested_scope {
        None => token.scope.clone(),
        Some(requested) => {
            let Some(wanted) = scopes::parse(requested) else {
                return Ok(RefreshOutcome::InvalidScope(
                    "the scope parameter is malformed".into(),
                ));
            };
            if let Some(extra) = wanted.iter().find(|s| !scopes::contains(&token.scope, s)) {
                return Ok(RefreshOutcome::InvalidScope(format!(
                    "the scope {extra:?} was not granted to this device"
                )));
            }
            if wanted.is_empty() {
                token.scope.clone()
            } else {
                wanted.join(" ")
            }
        }
    };
    let Some(account) = store
        .get_account(&device.account_id)
        .await?
        .filter(|a| !a.disabled)
    else {
        return Ok(InvalidGrant("the account is no longer active"));
    };
    let secret = random_secret(32);
    let next = RefreshToken {
        token_hash: secret_hash(&secret),
        device_id: device.id.clone(),
        // The family keeps the full grant so a later refresh may ask for
        // all of it again.
        scope: token.scope.clone(),
        created_at: now,
        expires_at: (now + i64::from(config.refresh_idle_lifetime)).min(absolute_end),
        rotated_at: None,
    };
    let grant = Grant {
        account: &account,
        device: &device,
        scope: &scope,
        auth_time: device.linked_at,
    };
    let tokens = device_flow::mint(keys, config, now, &grant, Some(secret))?;
    if !store.rotate_refresh_token(&hash, &next, now).await? {
        // Two requests raced with one token: only one can be its rightful
        // holder, so treat it as reuse.
        revoke_family(store, &device, ip, now).await?;
        return Ok(InvalidGrant(
            "the refresh token was already used; this device was unlinked for safety",
        ));
    }
    Ok(RefreshOutcome::Tokens(Box::new(tokens)))
}

async fn revoke_family(
    store: &dyn Store,
    device: &LinkedDevice,
    ip: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    tracing::warn!(device = %device.id, client = %device.client_id, "refresh token reuse: revoking the device's tokens");
    if store.revoke_linked_device(&device.id, now).await? {
        record(store, device, ActivityKind::RefreshReuse, ip, now).await?;
    }
    Ok(())
}

/// RFC 7009 revocation. A refresh token ends its device's link, and with it
/// every access token of that link (§2.1); an access token is denied by its
/// `jti` until it expires. Tokens that are unknown, malformed, or another
/// client's change nothing, and the caller cannot tell the difference.
pub async fn revoke(
    store: &dyn Store,
    keys: &Keys,
    config: &Config,
    now: Timestamp,
    client: &Client,
    token: &str,
    ip: &str,
) -> Result<(), StoreError> {
    if token.len() > 8192 {
        return Ok(());
    }
    if let Some(refresh) = store.get_refresh_token(&secret_hash(token)).await? {
        if let Some(device) = store.get_linked_device(&refresh.device_id).await?
            && device.client_id == client.client_id
        {
            unlink(store, &device, ip, now).await?;
        }
        return Ok(());
    }
    let issuer = config.issuer();
    // An expired access token needs no revoking.
    if let Ok(claims) = keys.verify_access_token(token, &issuer, &issuer, now)
        && claims.client_id == client.client_id
    {
        store.revoke_access_token(&claims.jti, claims.exp).await?;
    }
    Ok(())
}

/// RFC 7662 introspection for resource servers: the token's claims when it
/// is active, else only `{"active": false}`.
pub async fn introspect(
    store: &dyn Store,
    keys: &Keys,
    config: &Config,
    now: Timestamp,
    token: &str,
) -> Result<Value, StoreError> {
    let inactive = json!({ "active": false });
    if token.is_empty() || token.len() > 8192 {
        return Ok(inactive);
    }
    match authenticate_bearer(store, keys, config, now, token).await {
        Ok(Bearer { claims, .. }) => {
            return Ok(json!({
                "active": true,
                "token_type": "Bearer",
                "scope": claims.scope,
                "client_id": claims.client_id,
                "sub": claims.sub,
                "aud": claims.aud,
                "iss": claims.iss,
                "exp": claims.exp,
                "iat": claims.iat,
                "jti": claims.jti,
                "sid": claims.sid,
            }));
        }
        Err(BearerError::Store(e)) => return Err(e),
        Err(_) => {}
    }
    let Some(refresh) = store.get_refresh_token(&secret_hash(token)).await? else {
        return Ok(inactive);
    };
    if refresh.rotated_at.is_some() || refresh.expires_at <= now {
        return Ok(inactive);
    }
    match store.get_linked_device(&refresh.device_id).await? {
        Some(device) if device.revoked_at.is_none() => Ok(json!({
            "active": true,
            "token_type": "refresh_token",
            "scope": refresh.scope,
            "client_id": device.client_id,
            "sub": device.account_id,
            "iss": config.issuer(),
            "exp": refresh.expires_at,
            "iat": refresh.created_at,
            "sid": device.id,
        })),
        _ => Ok(inactive),
    }
}
