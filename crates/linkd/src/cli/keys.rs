//! `linkd keys`: make a new signing key, and list the keys with what each
//! does now.

use super::open;
use crate::clock::{Clock, SystemClock};
use crate::tokens;

pub async fn keys_rotate(database_url: &str) -> anyhow::Result<()> {
    let store = open(database_url).await?;
    let now = SystemClock.now();
    let key = tokens::generate_signing_key(now)?;
    store.insert_signing_key(&key).await?;
    println!(
        "new signing key {}: published now, signs from {} (running servers pick it up within {} s)",
        key.kid,
        crate::web::link::utc_time(now + tokens::KEY_PUBLISH_AHEAD_SECS),
        tokens::KEY_RELOAD_SECS
    );
    Ok(())
}

/// Revokes a compromised key: out of the JWKS and refused by every
/// server at its next key reload, and signing moves to the newest key left
/// (made now if there is none).
pub async fn keys_revoke(database_url: &str, kid: &str, token_lifetime: i64) -> anyhow::Result<()> {
    let store = open(database_url).await?;
    let signing = tokens::Keys::revoke(&*store, kid, SystemClock.now(), token_lifetime).await?;
    println!(
        "signing key {kid} revoked: running servers stop publishing and trusting it and sign with {signing} within {} s",
        tokens::KEY_RELOAD_SECS
    );
    Ok(())
}

/// Lists keys newest first with what each does now. `token_lifetime` is
/// the servers' access token lifetime (it decides when old keys retire).
pub async fn keys_list(database_url: &str, token_lifetime: i64) -> anyhow::Result<()> {
    let store = open(database_url).await?;
    let stored = store.list_signing_keys().await?;
    let roles = tokens::key_roles(&stored, SystemClock.now(), token_lifetime);
    let at = crate::web::link::utc_time;
    for (key, role) in stored.iter().zip(roles) {
        let role = match role {
            tokens::KeyRole::Next { since } => format!("next: signs from {}", at(since)),
            tokens::KeyRole::Signing => "signing".to_string(),
            tokens::KeyRole::Verifying { until } => format!("verifying until {}", at(until)),
            tokens::KeyRole::Retired => "retired".to_string(),
            tokens::KeyRole::Revoked => match key.revoked_at {
                Some(when) => format!("revoked {}", at(when)),
                None => "revoked".to_string(),
            },
        };
        println!("{}\t{}\t{role}", key.kid, at(key.created_at));
    }
    Ok(())
}
