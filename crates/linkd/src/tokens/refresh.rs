//! The refresh_token grant (RFC 6749 §6): rotation on every use and reuse
//! detection (RFC 9700 §4.14.2), which unlinks the device whose token
//! leaked.
//!
//! A device's token family is state on the device's own row (migration
//! 0028): the generation of its current token, and the hashes of that
//! token and of the one before it. The token names its device and
//! generation, so a refresh reads one row by its key and changes it with
//! one conditional update; nothing grows with the number of refreshes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::Config;
use crate::codes::secret_hash;
use crate::ctx::Ctx;
use crate::device_flow::PollError;
use crate::devices::record;
use crate::scopes;
use crate::store::{
    ActivityKind, Client, LegacyRefreshToken, LinkedDevice, RefreshState, Store, StoreError,
    Timestamp,
};
use crate::tokens::issue::{Grant, TokenSet, mint};
use crate::webhooks::{Event, UnlinkReason};

/// The longest refresh token looked at. linkd's own are about 100
/// characters (see [`new_token`]); anything longer is refused unread.
pub const MAX_TOKEN_LEN: usize = 256;
/// What starts every refresh token of the per-device form: `lr`, and the
/// layout's version. No token of the older form contains a `.`.
const PREFIX: &str = "lr1.";
const GENERATION_BYTES: usize = 8;
/// 256 random bits: the part of the token nobody can guess.
const SECRET_BYTES: usize = 32;
/// Longer than any device id linkd makes (32 hex digits).
const MAX_DEVICE_ID_LEN: usize = 64;
/// Tokens issued before migration 0028: 32 random bytes in base64url.
const LEGACY_LEN: usize = 43;

/// A new refresh token for generation `generation` of `device_id`'s
/// family, and its hash (all the store keeps: a copy of the database
/// yields no token that works).
///
/// The token is `lr1.` and the base64url (unpadded) of the generation (8
/// bytes, big-endian), 256 random bits and the device id's bytes: the
/// device and generation say which row to check it against, so no index
/// of tokens is needed. Clients treat it as opaque (RFC 6749 §1.5). With
/// linkd's 32-character device ids it is 100 characters long.
pub fn new_token(device_id: &str, generation: i64) -> (String, String) {
    let mut raw = Vec::with_capacity(GENERATION_BYTES + SECRET_BYTES + device_id.len());
    raw.extend_from_slice(&generation.to_be_bytes());
    let mut secret = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    raw.extend_from_slice(&secret);
    raw.extend_from_slice(device_id.as_bytes());
    let token = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
    let hash = secret_hash(&token);
    (token, hash)
}

/// The first refresh token of a device linked at `now`, and the state
/// its row starts with.
pub fn first_token(device_id: &str, config: &Config, now: Timestamp) -> (String, RefreshState) {
    let (token, token_hash) = new_token(device_id, 1);
    let state = RefreshState {
        generation: 1,
        token_hash,
        previous_hash: None,
        expires_at: now + i64::from(config.refresh_idle_lifetime),
    };
    (token, state)
}

/// What a presented string is, read without the store.
#[derive(Debug, PartialEq, Eq)]
enum Shape {
    /// A token of the per-device form, naming its device and generation.
    Device { device_id: String, generation: i64 },
    /// Shaped like a token issued before migration 0028.
    Legacy,
    /// Not a refresh token linkd could have issued.
    Malformed,
}

fn shape(presented: &str) -> Shape {
    if presented.len() > MAX_TOKEN_LEN {
        return Shape::Malformed;
    }
    let Some(encoded) = presented.strip_prefix(PREFIX) else {
        let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        return if presented.len() == LEGACY_LEN && presented.bytes().all(base64url) {
            Shape::Legacy
        } else {
            Shape::Malformed
        };
    };
    let Ok(raw) = URL_SAFE_NO_PAD.decode(encoded) else {
        return Shape::Malformed;
    };
    if raw.len() <= GENERATION_BYTES + SECRET_BYTES {
        return Shape::Malformed;
    }
    let (generation, rest) = raw.split_at(GENERATION_BYTES);
    let generation = u64::from_be_bytes(generation.try_into().unwrap_or_default());
    // Generations are counted from 1 and stored as a signed 64-bit
    // integer: anything else was never issued.
    let Ok(generation) = i64::try_from(generation) else {
        return Shape::Malformed;
    };
    if generation < 1 {
        return Shape::Malformed;
    }
    // Device ids are linkd's own: 32 hex digits. Anything else is refused
    // before it reaches the store (PostgreSQL refuses a NUL in text with
    // an error, not a miss).
    let device_id = &rest[SECRET_BYTES..];
    if device_id.len() > MAX_DEVICE_ID_LEN || !device_id.iter().all(u8::is_ascii_alphanumeric) {
        return Shape::Malformed;
    }
    Shape::Device {
        device_id: String::from_utf8_lossy(device_id).into_owned(),
        generation,
    }
}

/// Where a presented token stands in its device's family.
#[derive(Debug)]
pub(crate) enum Standing {
    /// The device's current token, of the per-device form.
    Current {
        generation: i64,
        expires_at: Timestamp,
    },
    /// An unrotated token issued before migration 0028: it is traded for
    /// the device's first token of the per-device form.
    Legacy(LegacyRefreshToken),
    /// A token the device was already given a successor for: the
    /// previous generation, or a rotated token of the old form. Presented
    /// again, it means a copy exists (RFC 9700 §4.14.2).
    Spent,
}

fn same_hash(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The device a presented refresh token belongs to, and where the token
/// stands in its family; `None` for anything that is not a token linkd
/// issued to that device's current or previous generation.
///
/// A token of the per-device form is compared, by hash and in constant
/// time, with the two the device's row keeps. Generations older than the
/// previous one are kept nowhere, so such a token cannot be told from a
/// forgery by someone who knows the device's id (it is in every access
/// token's `sid`): it is only refused, never taken for reuse, so that
/// nobody can unlink a device without one of its last two tokens.
pub(crate) async fn find(
    store: &dyn Store,
    presented: &str,
) -> Result<Option<(LinkedDevice, Standing)>, StoreError> {
    match shape(presented) {
        Shape::Malformed => Ok(None),
        Shape::Device {
            device_id,
            generation,
        } => {
            let Some(device) = store.get_linked_device(&device_id).await? else {
                return Ok(None);
            };
            let Some(state) = &device.refresh else {
                return Ok(None);
            };
            let hash = secret_hash(presented);
            let standing = if generation == state.generation && same_hash(&hash, &state.token_hash)
            {
                Standing::Current {
                    generation,
                    expires_at: state.expires_at,
                }
            } else if generation.checked_add(1) == Some(state.generation)
                && state
                    .previous_hash
                    .as_deref()
                    .is_some_and(|previous| same_hash(&hash, previous))
            {
                Standing::Spent
            } else {
                return Ok(None);
            };
            Ok(Some((device, standing)))
        }
        Shape::Legacy => {
            let Some(token) = store
                .get_legacy_refresh_token(&secret_hash(presented))
                .await?
            else {
                return Ok(None);
            };
            let Some(device) = store.get_linked_device(&token.device_id).await? else {
                return Ok(None);
            };
            let standing = if token.rotated_at.is_some() {
                Standing::Spent
            } else {
                Standing::Legacy(token)
            };
            Ok(Some((device, standing)))
        }
    }
}

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

/// What a successful refresh writes: the next generation, or the trade of
/// an old-form token for the first one.
enum Rotation {
    From(i64),
    Upgrade(String),
}

const REUSED: &str = "the refresh token was already used; this device was unlinked for safety";

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
    let Some((device, standing)) = find(store, presented).await? else {
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
    let (expires_at, rotation) = match standing {
        Standing::Spent => {
            revoke_family(ctx, &device, ip).await?;
            return Ok(InvalidGrant(REUSED));
        }
        Standing::Current {
            generation,
            expires_at,
        } => (expires_at, Rotation::From(generation)),
        Standing::Legacy(token) => (token.expires_at, Rotation::Upgrade(token.token_hash)),
    };
    if expires_at <= now {
        return Ok(InvalidGrant("the refresh token has expired"));
    }
    let absolute_end = device.linked_at + i64::from(config.refresh_absolute_lifetime);
    if absolute_end <= now {
        return Ok(InvalidGrant("this link is too old: link the device again"));
    }
    // RFC 6749 §6: the scope may be narrowed, never widened; omitted means
    // everything originally granted, which is the device's scope (the
    // family keeps it, so a later refresh may ask for all of it again).
    let scope = match requested_scope {
        None => device.scope.clone(),
        Some(requested) => {
            let Some(wanted) = scopes::parse(requested) else {
                return Ok(RefreshOutcome::InvalidScope(
                    "the scope parameter is malformed".into(),
                ));
            };
            if let Some(extra) = wanted.iter().find(|s| !scopes::contains(&device.scope, s)) {
                return Ok(RefreshOutcome::InvalidScope(format!(
                    "the scope {extra:?} was not granted to this device"
                )));
            }
            if wanted.is_empty() {
                device.scope.clone()
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
    let next = match &rotation {
        Rotation::From(generation) => generation.checked_add(1),
        Rotation::Upgrade(_) => Some(1),
    };
    // 2^63 refreshes: never, but not a panic either.
    let Some(next) = next else {
        return Ok(InvalidGrant("this link is too old: link the device again"));
    };
    let (token, token_hash) = new_token(&device.id, next);
    let next_expires_at = (now + i64::from(config.refresh_idle_lifetime)).min(absolute_end);
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
    // Signed before the state changes, so a signing failure cannot leave
    // the device with a token it was never given.
    let tokens = mint(&ctx.keys, config, now, &grant, Some(token))?;
    let rotated = match rotation {
        Rotation::From(generation) => {
            store
                .rotate_refresh_token(&device.id, generation, &token_hash, next_expires_at, now)
                .await?
        }
        Rotation::Upgrade(legacy_hash) => {
            store
                .upgrade_legacy_refresh_token(
                    &legacy_hash,
                    &device.id,
                    &token_hash,
                    next_expires_at,
                    now,
                )
                .await?
        }
    };
    if !rotated {
        // Two requests raced with one token (or the device was unlinked
        // meanwhile): only one can be its rightful holder, so treat it as
        // reuse.
        revoke_family(ctx, &device, ip).await?;
        return Ok(InvalidGrant(REUSED));
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

#[cfg(test)]
mod tests {
    use super::*;

    const DEVICE: &str = "0123456789abcdef0123456789abcdef";

    fn encode(raw: &[u8]) -> String {
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw))
    }

    #[test]
    fn a_new_token_names_its_device_and_generation_and_fits_the_limit() {
        let (token, hash) = new_token(DEVICE, 7);
        assert!(token.starts_with("lr1."), "{token}");
        assert_eq!(token.len(), 100);
        assert!(token.len() <= MAX_TOKEN_LEN);
        assert_eq!(hash, secret_hash(&token));
        assert_eq!(
            shape(&token),
            Shape::Device {
                device_id: DEVICE.into(),
                generation: 7
            }
        );
        let (other, other_hash) = new_token(DEVICE, 7);
        assert_ne!(token, other, "256 random bits each");
        assert_ne!(hash, other_hash);
    }

    #[test]
    fn legacy_tokens_are_told_by_their_shape() {
        assert_eq!(shape(&crate::codes::random_secret(32)), Shape::Legacy);
        assert_eq!(shape(&"A".repeat(42)), Shape::Malformed);
        assert_eq!(shape(&"A".repeat(44)), Shape::Malformed);
        assert_eq!(shape(&format!("{}=", "A".repeat(42))), Shape::Malformed);
    }

    #[test]
    fn malformed_tokens_are_refused_without_a_panic() {
        let mut generation_max = u64::MAX.to_be_bytes().to_vec();
        generation_max.extend_from_slice(&[1; SECRET_BYTES]);
        generation_max.extend_from_slice(DEVICE.as_bytes());
        let mut generation_zero = 0u64.to_be_bytes().to_vec();
        generation_zero.extend_from_slice(&[1; SECRET_BYTES]);
        generation_zero.extend_from_slice(DEVICE.as_bytes());
        let mut no_device = 1u64.to_be_bytes().to_vec();
        no_device.extend_from_slice(&[1; SECRET_BYTES]);
        let mut not_utf8 = no_device.clone();
        not_utf8.extend_from_slice(&[0xff, 0xfe]);
        let mut nul = no_device.clone();
        nul.extend_from_slice(b"0123\0abc");
        let mut punctuation = no_device.clone();
        punctuation.extend_from_slice(b"abc' OR '1'='1");
        let mut long_id = no_device.clone();
        long_id.extend_from_slice(&[b'a'; MAX_DEVICE_ID_LEN + 1]);
        for token in [
            String::new(),
            "lr1.".into(),
            "lr1.!!!!".into(),
            "lr1.AAAA=".into(),
            "LR1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            "lr2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            encode(&generation_max),
            encode(&generation_zero),
            encode(&no_device),
            encode(&not_utf8),
            encode(&nul),
            encode(&punctuation),
            encode(&long_id),
            format!("lr1.{}", "A".repeat(MAX_TOKEN_LEN)),
            "x".repeat(100_000),
        ] {
            assert_eq!(shape(&token), Shape::Malformed, "{token:?}");
        }
    }
}
