//! Access tokens as resource servers and linkd's APIs see them: the Bearer
//! check (RFC 6750), revocation (RFC 7009) and introspection (RFC 7662).

use serde_json::{Value, json};

use crate::ctx::Ctx;
use crate::devices::unlink;
use crate::store::{Client, LinkedDevice, StoreError};
use crate::tokens::refresh::{self, Standing};
use crate::tokens::{AccessClaims, TokenError};
use crate::webhooks::UnlinkReason;

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
    /// RFC 9449 §7.1: a DPoP-bound token without a good proof, or an
    /// unbound one sent under the DPoP scheme.
    #[error(transparent)]
    Dpop(#[from] crate::dpop::DpopError),
    #[error("this access token is bound to a DPoP key: send it as DPoP with a proof")]
    BoundTokenAsBearer,
    #[error("this access token is not bound to a DPoP key: send it as Bearer")]
    UnboundTokenAsDpop,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks an access token the way every linkd API does: signature, issuer,
/// audience and expiry, then that its device is still linked and the token
/// itself was not revoked. Unlinking therefore cuts a token off at once.
pub async fn authenticate_bearer(ctx: &Ctx<'_>, token: &str) -> Result<Bearer, BearerError> {
    if token.is_empty() {
        return Err(BearerError::Missing);
    }
    if token.len() > 8192 {
        return Err(BearerError::Invalid(TokenError::Malformed));
    }
    let issuer = ctx.config.issuer();
    let claims = ctx
        .keys
        .verify_access_token(token, &issuer, &issuer, ctx.now)?;
    let device = ctx
        .store
        .active_device_for_token(&claims.sid, &claims.jti)
        .await?
        .filter(|d| d.account_id == claims.sub)
        .ok_or(BearerError::Revoked)?;
    Ok(Bearer { claims, device })
}

/// An access token as a request presented it (RFC 6750 §2.1, RFC 9449
/// §7.1).
pub struct Presented<'a> {
    pub token: &'a str,
    /// Sent as `Authorization: DPoP` rather than `Bearer`.
    pub dpop_scheme: bool,
    /// The request's `DPoP` header.
    pub proof: Option<&'a str>,
    pub method: &'a str,
    /// The request's path, after linkd's public URL.
    pub path: &'a str,
}

/// The check linkd's own APIs make: [`authenticate_bearer`], and for a
/// token bound to a DPoP key (`cnf.jkt`), a proof by that key for this
/// request and this token, used once (RFC 9449 §7.1, §4.3).
pub async fn authenticate(ctx: &Ctx<'_>, presented: &Presented<'_>) -> Result<Bearer, BearerError> {
    let bearer = authenticate_bearer(ctx, presented.token).await?;
    let Some(cnf) = &bearer.claims.cnf else {
        if presented.dpop_scheme {
            return Err(BearerError::UnboundTokenAsDpop);
        }
        return Ok(bearer);
    };
    // §7.1: a bound token under the Bearer scheme is refused, or a copy
    // would work without the key.
    if !presented.dpop_scheme {
        return Err(BearerError::BoundTokenAsBearer);
    }
    let proof = presented.proof.ok_or(crate::dpop::DpopError::Missing)?;
    let uri = format!("{}{}", ctx.config.issuer(), presented.path);
    let proof = crate::dpop::check(
        proof,
        &crate::dpop::Expect {
            method: presented.method,
            uri: &uri,
            access_token: Some(presented.token),
        },
        ctx.now,
    )?;
    if proof.jkt != cnf.jkt {
        return Err(crate::dpop::DpopError::WrongKey.into());
    }
    crate::dpop::note(ctx.store, &proof, ctx.now).await?;
    Ok(bearer)
}

/// RFC 7009 revocation. A refresh token ends its device's link, and with it
/// every access token of that link (§2.1); an access token is denied by its
/// `jti` until it expires. Tokens that are unknown, malformed, or another
/// client's change nothing, and the caller cannot tell the difference.
pub async fn revoke(
    ctx: &Ctx<'_>,
    client: &Client,
    token: &str,
    ip: &str,
) -> Result<(), StoreError> {
    let (store, now) = (ctx.store, ctx.now);
    if token.len() > 8192 {
        return Ok(());
    }
    // A refresh token its device holds now or held last (checked against
    // the hashes the device keeps, so a made-up token naming a device
    // unlinks nothing).
    if let Some((device, _)) = refresh::find(store, token).await? {
        if device.client_id == client.client_id {
            unlink(store, &device, UnlinkReason::TokenRevoked, ip, now).await?;
        }
        return Ok(());
    }
    let issuer = ctx.config.issuer();
    // An expired access token needs no revoking.
    if let Ok(claims) = ctx.keys.verify_access_token(token, &issuer, &issuer, now)
        && claims.client_id == client.client_id
    {
        store.revoke_access_token(&claims.jti, claims.exp).await?;
        // A stream opened with this token ends at once.
        crate::sync::wake(store, &claims.sub).await;
    }
    Ok(())
}

/// RFC 7662 introspection for resource servers: the token's claims when it
/// is active, else only `{"active": false}`.
pub async fn introspect(ctx: &Ctx<'_>, token: &str) -> Result<Value, StoreError> {
    let (store, now) = (ctx.store, ctx.now);
    let inactive = json!({ "active": false });
    if token.is_empty() || token.len() > 8192 {
        return Ok(inactive);
    }
    match authenticate_bearer(ctx, token).await {
        Ok(Bearer { claims, .. }) => {
            let mut answer = json!({
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
            });
            // RFC 9449 §6.2: the binding, for the resource server to
            // check the proof against.
            if let Some(cnf) = claims.cnf {
                answer["token_type"] = "DPoP".into();
                answer["cnf"] = json!({ "jkt": cnf.jkt });
            }
            return Ok(answer);
        }
        Err(BearerError::Store(e)) => return Err(e),
        Err(_) => {}
    }
    let Some((device, standing)) = refresh::find(store, token).await? else {
        return Ok(inactive);
    };
    // Only a device's current token is active; it was issued at the
    // device's last refresh, or when it was linked.
    let (scope, expires_at, issued_at) = match standing {
        Standing::Current { expires_at, .. } => (
            device.scope.clone(),
            expires_at,
            device.last_refresh_at.unwrap_or(device.linked_at),
        ),
        Standing::Legacy(token) => (token.scope, token.expires_at, token.created_at),
        Standing::Spent => return Ok(inactive),
    };
    if expires_at <= now || device.revoked_at.is_some() {
        return Ok(inactive);
    }
    let mut answer = json!({
        "active": true,
        "token_type": "refresh_token",
        "scope": scope,
        "client_id": device.client_id,
        "sub": device.account_id,
        "iss": ctx.config.issuer(),
        "exp": expires_at,
        "iat": issued_at,
        "sid": device.id,
    });
    if let Some(jkt) = device.dpop_jkt {
        answer["cnf"] = json!({ "jkt": jkt });
    }
    Ok(answer)
}
