//! The refresh_token grant (RFC 6749 §6): rotation on every use and reuse
//! detection (RFC 9700 §4.14.2), which unlinks the device whose token
//! leaked.

use crate::codes::{random_secret, secret_hash};
use crate::ctx::Ctx;
use crate::device_flow::PollError;
use crate::devices::record;
use crate::scopes;
use crate::store::{ActivityKind, Client, LinkedDevice, RefreshToken, StoreError};
use crate::tokens::issue::{Grant, TokenSet, mint};
use crate::webhooks::{Event, UnlinkReason};

/// How a refresh request ends.
#[derive(Debug)]
pub enum RefreshOutcome {
    Tokens(Box<TokenSet>),
    /// RFC 6749 §5.2 invalid_grant, with the reason for the description.
    InvalidGrant(&'static str),
    InvalidScope(String),
    /// RFC 9449 §5: the refresh token is bound to a DPoP key the request
    /// did not prove.
    InvalidDpop(&'static str),
}

/// The refresh_token grant (RFC 6749 §6). Each use rotates the token; a
/// token that was already rotated coming back means it leaked, so the
/// device's whole token family is revoked (RFC 9700 §4.14.2) and the
/// person sees it in their activity.
pub async fn refresh(
    ctx: &Ctx<'_>,
    client: &Client,
    presented: &str,
    requested_scope: Option<&str>,
    ip: &str,
    dpop_jkt: Option<&str>,
) -> Result<RefreshOutcome, PollError> {
    let (store, config, now) = (ctx.store, ctx.config, ctx.now);
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
    // RFC 9449 §5: a bound refresh token is refused without its key.
    // Checked before reuse: someone holding a copied token but not the
    // key cannot make linkd unlink the real device.
    if let Some(bound) = &device.dpop_jkt {
        match dpop_jkt {
            None => {
                return Ok(RefreshOutcome::InvalidDpop(
                    "this refresh token is bound to a DPoP key: send a DPoP proof",
                ));
            }
            Some(jkt) if jkt != bound => {
                return Ok(RefreshOutcome::InvalidDpop(
                    "the DPoP proof is signed with another key than this refresh token is bound to",
                ));
            }
            Some(_) => {}
        }
    }
    if token.rotated_at.is_some() {
        revoke_family(ctx, &device, ip).await?;
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
        nonce: None,
        // A bound device's tokens stay bound to its key; an unbound one's
        // new access token is bound to the key this request proved, if any.
        dpop_jkt: device.dpop_jkt.as_deref().or(dpop_jkt),
    };
    let tokens = mint(&ctx.keys, config, now, &grant, Some(secret))?;
    if !store.rotate_refresh_token(&hash, &next, now).await? {
        // Two requests raced with one token: only one can be its rightful
        // holder, so treat it as reuse.
        revoke_family(ctx, &device, ip).await?;
        return Ok(InvalidGrant(
            "the refresh token was already used; this device was unlinked for safety",
        ));
    }
    Ok(RefreshOutcome::Tokens(Box::new(tokens)))
}

async fn revoke_family(ctx: &Ctx<'_>, device: &LinkedDevice, ip: &str) -> Result<(), StoreError> {
    let (store, now) = (ctx.store, ctx.now);
    tracing::warn!(device = %device.id, client = %device.client_id, "refresh token reuse: revoking the device's tokens");
    crate::telemetry::refresh_reuse();
    // The operator hears of both: the leak, and the unlink it caused.
    let events = [
        Event::refresh_token_reused(device, ip, now).to_outbox(),
        Event::device_unlinked(device, UnlinkReason::RefreshTokenReuse, ip, now).to_outbox(),
    ];
    if store.revoke_linked_device(&device.id, now, &events).await? {
        ctx.outbox.wake();
        record(store, device, ActivityKind::RefreshReuse, ip, now).await?;
        crate::sync::wake(store, &device.account_id).await;
    }
    Ok(())
}
