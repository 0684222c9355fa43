//! Minting: the access token (a JWT, RFC 9068), the ID token (OpenID
//! Connect Core §2) and the response that carries them (RFC 6749 §5.1).

use crate::codes::random_secret;
use crate::store::{Account, LinkedDevice, Timestamp};
use crate::tokens::{AccessClaims, IdClaims, Keys};
use crate::{Config, scopes};

/// Tokens handed to a device (RFC 6749 §5.1).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenSet {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

/// Who the tokens are for: the person, their linked device, and what they
/// granted it.
pub struct Grant<'a> {
    pub account: &'a Account,
    pub device: &'a LinkedDevice,
    pub scope: &'a str,
    /// When the person approved (OpenID Connect Core §2 `auth_time`).
    pub auth_time: Timestamp,
    /// The authorization request's `nonce`, repeated in the ID token
    /// (OpenID Connect Core §3.1.2.1).
    pub nonce: Option<&'a str>,
    /// The thumbprint of the DPoP key the tokens are bound to (RFC 9449).
    pub dpop_jkt: Option<&'a str>,
}

/// Mints the access token and, when the scope calls for it, the ID token.
pub fn mint(
    keys: &Keys,
    config: &Config,
    now: Timestamp,
    grant: &Grant<'_>,
    refresh_token: Option<String>,
) -> Result<TokenSet, jsonwebtoken::errors::Error> {
    let Grant {
        account,
        device,
        scope,
        auth_time,
        nonce,
        dpop_jkt,
    } = *grant;
    let issuer = config.issuer();
    let lifetime = i64::from(config.access_token_lifetime);
    let access_token = keys.sign_access_token(&AccessClaims {
        iss: issuer.clone(),
        sub: account.id.clone(),
        aud: issuer.clone(),
        exp: now + lifetime,
        iat: now,
        jti: random_secret(16),
        scope: scope.to_string(),
        client_id: device.client_id.clone(),
        sid: device.id.clone(),
        cnf: dpop_jkt.map(|jkt| crate::tokens::Confirmation {
            jkt: jkt.to_string(),
        }),
    })?;
    let id_token = if scopes::contains(scope, "openid") {
        Some(keys.sign_id_token(&IdClaims {
            iss: issuer,
            sub: account.id.clone(),
            aud: device.client_id.clone(),
            exp: now + lifetime,
            iat: now,
            auth_time,
            email: scopes::contains(scope, "email").then(|| account.email.clone()),
            sid: Some(device.id.clone()),
            nonce: nonce.map(str::to_string),
        })?)
    } else {
        None
    };
    Ok(TokenSet {
        access_token,
        // RFC 9449 §5: a bound access token is of type DPoP.
        token_type: if dpop_jkt.is_some() { "DPoP" } else { "Bearer" },
        expires_in: lifetime,
        scope: scope.to_string(),
        refresh_token,
        id_token,
    })
}
