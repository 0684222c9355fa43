//! Every rule about tokens: signing keys and their rotation, JWT access
//! tokens (RFC 9068 profile) and OpenID Connect ID tokens (here); minting
//! them (`issue`); checking, revoking and introspecting access tokens
//! (`access`); rotating refresh tokens with reuse detection (`refresh`).

pub mod access;
pub mod issue;
pub mod refresh;

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{SigningKey, Store, StoreError, Timestamp};

/// RS256: OpenID Connect Discovery §3 requires it among the ID token
/// algorithms, and every client library verifies it.
pub const ALGORITHM: Algorithm = Algorithm::RS256;
const RSA_BITS: usize = 2048;
/// RFC 9068 §2.1: the `typ` of a JWT access token, so an ID token can never
/// be passed off as one.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing key {kid}: {message}")]
    Bad { kid: String, message: String },
    #[error("no signing key")]
    Missing,
    #[error("no unrevoked signing key {0}")]
    Unknown(String),
}

struct PublicKey {
    jwk: Jwk,
    decoding: DecodingKey,
}

/// A new key is published this long before it signs, so every instance
/// (reloading every [`KEY_RELOAD_SECS`]) and every verifier caching the
/// JWKS for its max-age has it before the first token it signs arrives.
pub const KEY_PUBLISH_AHEAD_SECS: i64 = 360;
/// How often a running instance re-reads the signing keys.
pub const KEY_RELOAD_SECS: u64 = 30;

/// What a stored key is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// Published, signs from `since`.
    Next {
        since: Timestamp,
    },
    Signing,
    /// No longer signs; published until `until` so its tokens verify.
    Verifying {
        until: Timestamp,
    },
    /// Every token it signed has expired; no longer published.
    Retired,
    /// Taken out of use by `linkd keys revoke`: not published, its tokens
    /// refused.
    Revoked,
}

/// The role of each stored key (newest first) at `now`. The newest key
/// that has been published for [`KEY_PUBLISH_AHEAD_SECS`] signs; the very
/// first key signs at once, since nothing else could. An older key stays
/// published until tokens it signed can no longer be valid.
///
/// A revoked key is never published, trusted or signed with again. A
/// revocation also ends the wait of every key made before it: signing
/// moves at once to the newest key left, the one exception to publishing
/// ahead (a verifier that cached the JWKS may miss the new key for its
/// max-age; trusting a stolen key longer would be worse).
pub fn key_roles(stored: &[SigningKey], now: Timestamp, token_lifetime: i64) -> Vec<KeyRole> {
    let active = |k: &SigningKey| {
        let revoked_later = stored
            .iter()
            .filter_map(|r| r.revoked_at)
            .filter(|&at| at >= k.created_at)
            .min();
        let ahead = k.created_at + KEY_PUBLISH_AHEAD_SECS;
        revoked_later.map_or(ahead, |at| at.min(ahead))
    };
    let usable = |k: &SigningKey| k.revoked_at.is_none();
    let signing = stored
        .iter()
        .position(|k| usable(k) && active(k) <= now)
        .or_else(|| stored.iter().rposition(usable));
    stored
        .iter()
        .enumerate()
        .map(|(i, k)| match signing {
            _ if !usable(k) => KeyRole::Revoked,
            Some(s) if i < s => KeyRole::Next { since: active(k) },
            Some(s) if i == s => KeyRole::Signing,
            _ => {
                // It stopped signing when its successor started.
                let until = active(&stored[i - 1]) + token_lifetime;
                if now < until {
                    KeyRole::Verifying { until }
                } else {
                    KeyRole::Retired
                }
            }
        })
        .collect()
}

/// The keys in use: one signs, the published ones verify.
pub struct Keys {
    signing_kid: String,
    signing: EncodingKey,
    public: Vec<PublicKey>,
    by_kid: HashMap<String, usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Jwk {
    pub kty: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub alg: String,
    pub kid: String,
    pub n: String,
    pub e: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

fn jwk_of(public: &RsaPublicKey, kid: &str) -> Jwk {
    Jwk {
        kty: "RSA".into(),
        use_: "sig".into(),
        alg: "RS256".into(),
        kid: kid.into(),
        n: URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
        e: URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
    }
}

/// RFC 7638 JWK thumbprint, used as the `kid`: it names the key by its
/// content, so two instances that load the same key agree on its id.
fn thumbprint(public: &RsaPublicKey) -> String {
    let n = URL_SAFE_NO_PAD.encode(public.n().to_bytes_be());
    let e = URL_SAFE_NO_PAD.encode(public.e().to_bytes_be());
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Makes a new RSA key and its stored record.
pub fn generate_signing_key(now: Timestamp) -> Result<SigningKey, KeyError> {
    let private =
        RsaPrivateKey::new(&mut rand::rngs::OsRng, RSA_BITS).map_err(|e| KeyError::Bad {
            kid: "new".into(),
            message: e.to_string(),
        })?;
    let kid = thumbprint(&private.to_public_key());
    let pem = private
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Bad {
            kid: kid.clone(),
            message: e.to_string(),
        })?;
    Ok(SigningKey {
        kid,
        private_pem: pem.to_string(),
        created_at: now,
        revoked_at: None,
    })
}

impl Keys {
    /// Builds the key set from stored keys (newest first) as of `now`;
    /// `token_lifetime` is the longest a token this server signs is valid.
    pub fn from_stored(
        stored: &[SigningKey],
        now: Timestamp,
        token_lifetime: i64,
    ) -> Result<Self, KeyError> {
        let roles = key_roles(stored, now, token_lifetime);
        let signer = roles
            .iter()
            .position(|r| *r == KeyRole::Signing)
            .and_then(|i| stored.get(i))
            .ok_or(KeyError::Missing)?;
        let bad = |kid: &str, e: &dyn std::fmt::Display| KeyError::Bad {
            kid: kid.to_string(),
            message: e.to_string(),
        };
        let signing = EncodingKey::from_rsa_pem(signer.private_pem.as_bytes())
            .map_err(|e| bad(&signer.kid, &e))?;
        let mut public = Vec::with_capacity(stored.len());
        let mut by_kid = HashMap::new();
        for (key, role) in stored.iter().zip(&roles) {
            if matches!(role, KeyRole::Retired | KeyRole::Revoked) {
                continue;
            }
            let private =
                RsaPrivateKey::from_pkcs8_pem(&key.private_pem).map_err(|e| bad(&key.kid, &e))?;
            let jwk = jwk_of(&private.to_public_key(), &key.kid);
            let decoding =
                DecodingKey::from_rsa_components(&jwk.n, &jwk.e).map_err(|e| bad(&key.kid, &e))?;
            by_kid.insert(key.kid.clone(), public.len());
            public.push(PublicKey { jwk, decoding });
        }
        Ok(Keys {
            signing_kid: signer.kid.clone(),
            signing,
            public,
            by_kid,
        })
    }

    /// Loads the stored keys, making the first one on an empty store.
    pub async fn load_or_create(
        store: &dyn Store,
        now: Timestamp,
        token_lifetime: i64,
    ) -> Result<Self, KeyError> {
        let mut stored = store.list_signing_keys().await?;
        if stored.is_empty() {
            let key = generate_signing_key(now)?;
            // Another instance may be starting on the same empty database:
            // only one first key is kept, and both read back that one, so
            // they sign with and publish the same key.
            store.insert_first_signing_key(&key).await?;
            stored = store.list_signing_keys().await?;
        }
        Self::from_stored(&stored, now, token_lifetime)
    }

    /// Revokes the stored key `kid` (a compromised key) at `now`. When no
    /// unrevoked key newer than it is left to sign, a new one is made
    /// first, so that signing moves at once (see [`key_roles`]). Returns
    /// the key that now signs.
    pub async fn revoke(
        store: &dyn Store,
        kid: &str,
        now: Timestamp,
        token_lifetime: i64,
    ) -> Result<String, KeyError> {
        let stored = store.list_signing_keys().await?;
        let Some(at) = stored.iter().position(|k| k.kid == kid) else {
            return Err(KeyError::Unknown(kid.to_string()));
        };
        if stored[at].revoked_at.is_some() {
            return Err(KeyError::Unknown(kid.to_string()));
        }
        if !stored[..at].iter().any(|k| k.revoked_at.is_none()) {
            store
                .insert_signing_key(&generate_signing_key(now)?)
                .await?;
        }
        if !store.revoke_signing_key(kid, now).await? {
            return Err(KeyError::Unknown(kid.to_string()));
        }
        let stored = store.list_signing_keys().await?;
        Ok(Self::from_stored(&stored, now, token_lifetime)?.signing_kid)
    }

    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.public.iter().map(|k| k.jwk.clone()).collect(),
        }
    }

    fn sign<T: Serialize>(
        &self,
        typ: &str,
        claims: &T,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.signing_kid.clone());
        header.typ = Some(typ.into());
        jsonwebtoken::encode(&header, claims, &self.signing)
    }

    pub fn sign_access_token(
        &self,
        claims: &AccessClaims,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.sign(ACCESS_TOKEN_TYP, claims)
    }

    pub fn sign_id_token(&self, claims: &IdClaims) -> Result<String, jsonwebtoken::errors::Error> {
        self.sign("JWT", claims)
    }

    /// Verifies a JWT access token minted by this issuer: signature by a
    /// known key, RS256 only (never `none`), `typ` at+jwt, issuer, audience,
    /// and expiry against `now`.
    pub fn verify_access_token(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
        now: Timestamp,
    ) -> Result<AccessClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != ALGORITHM {
            return Err(TokenError::Malformed);
        }
        if !header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt")
        }) {
            return Err(TokenError::WrongType);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = self
            .by_kid
            .get(&kid)
            .map(|&i| &self.public[i].decoding)
            .ok_or(TokenError::UnknownKey)?;
        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Expiry is checked below against the injected clock.
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<AccessClaims>(token, key, &validation)
            .map_err(|_| TokenError::BadSignature)?;
        if data.claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(data.claims)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token is not an access token")]
    WrongType,
    #[error("the token names no known signing key")]
    UnknownKey,
    #[error("the token signature or claims are invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
}

/// RFC 9068 §2.2 claims, plus `sid`: the linked device the token belongs
/// to, so unlinking the device cuts the token off wherever linkd checks it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: Timestamp,
    pub iat: Timestamp,
    pub jti: String,
    pub scope: String,
    pub client_id: String,
    pub sid: String,
    /// RFC 9449 §6.1: the DPoP key the token is bound to, for tokens of a
    /// device that proved one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// RFC 7800 §3.1 confirmation, with the JWK SHA-256 thumbprint member of
/// RFC 9449 §6.1.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Confirmation {
    pub jkt: String,
}

/// OpenID Connect Core §2 ID token claims.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: Timestamp,
    pub iat: Timestamp,
    pub auth_time: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: Timestamp) -> AccessClaims {
        AccessClaims {
            iss: "http://issuer".into(),
            sub: "acct".into(),
            aud: "http://issuer".into(),
            exp: now + 60,
            iat: now,
            jti: "j".into(),
            scope: "openid".into(),
            client_id: "c".into(),
            sid: "d".into(),
            cnf: None,
        }
    }

    #[test]
    fn signs_and_verifies_with_kid_and_rejects_tampering() {
        let key = generate_signing_key(0).unwrap();
        let keys = Keys::from_stored(std::slice::from_ref(&key), 0, 3600).unwrap();
        let now = 1_700_000_000;
        let token = keys.sign_access_token(&claims(now)).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(
            keys.verify_access_token(&token, "http://issuer", "http://issuer", now)
                .unwrap(),
            claims(now)
        );
        assert_eq!(
            keys.verify_access_token(&token, "http://issuer", "http://issuer", now + 60),
            Err(TokenError::Expired)
        );
        assert_eq!(
            keys.verify_access_token(&token, "http://other", "http://issuer", now),
            Err(TokenError::BadSignature)
        );
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"sub":"someone-else"}"#);
        parts[1] = &forged;
        assert!(
            keys.verify_access_token(&parts.join("."), "http://issuer", "http://issuer", now)
                .is_err()
        );
    }

    #[test]
    fn a_new_key_publishes_first_then_signs_and_the_old_one_retires() {
        let old = generate_signing_key(0).unwrap();
        let new = generate_signing_key(10_000).unwrap();
        let stored = [new.clone(), old.clone()];
        let lifetime = 3600;
        let switch = 10_000 + KEY_PUBLISH_AHEAD_SECS;
        assert_eq!(
            key_roles(&stored, 10_001, lifetime),
            [KeyRole::Next { since: switch }, KeyRole::Signing]
        );
        assert_eq!(
            key_roles(&stored, switch, lifetime),
            [
                KeyRole::Signing,
                KeyRole::Verifying {
                    until: switch + lifetime
                }
            ]
        );
        assert_eq!(
            key_roles(&stored, switch + lifetime, lifetime),
            [KeyRole::Signing, KeyRole::Retired]
        );

        let before = Keys::from_stored(&stored, 10_001, lifetime).unwrap();
        assert_eq!(before.signing_kid(), old.kid);
        assert_eq!(
            before.jwks().keys.len(),
            2,
            "the new key is published before it signs"
        );
        let after = Keys::from_stored(&stored, switch + lifetime, lifetime).unwrap();
        assert_eq!(after.signing_kid(), new.kid);
        assert_eq!(after.jwks().keys.len(), 1);
        // A lone new key signs at once.
        assert_eq!(key_roles(&[new], 10_000, lifetime), [KeyRole::Signing]);
    }

    #[test]
    fn a_revoked_key_is_dropped_and_the_newest_key_left_signs_at_once() {
        let old = generate_signing_key(0).unwrap();
        let mut signing = generate_signing_key(10_000).unwrap();
        let next = generate_signing_key(20_000).unwrap();
        let lifetime = 3600;
        let stored = [next.clone(), signing.clone(), old.clone()];
        assert_eq!(
            key_roles(&stored, 20_001, lifetime)[..2],
            [
                KeyRole::Next {
                    since: 20_000 + KEY_PUBLISH_AHEAD_SECS
                },
                KeyRole::Signing
            ]
        );
        // The signing key is revoked before the next one's time: the next
        // signs from the revocation on, and the old key's window is still
        // counted from when the revoked key started signing.
        signing.revoked_at = Some(20_001);
        let stored = [next.clone(), signing.clone(), old.clone()];
        assert_eq!(
            key_roles(&stored, 20_001, lifetime),
            [KeyRole::Signing, KeyRole::Revoked, KeyRole::Retired]
        );
        let keys = Keys::from_stored(&stored, 20_001, lifetime).unwrap();
        assert_eq!(keys.signing_kid(), next.kid);
        assert!(keys.jwks().keys.iter().all(|k| k.kid != signing.kid));
        // A token the revoked key signed names a key no longer known.
        let before = Keys::from_stored(&[signing.clone()][..], 20_000, lifetime);
        assert!(before.is_err(), "a lone revoked key signs nothing");
        let mut unrevoked = signing.clone();
        unrevoked.revoked_at = None;
        let token = Keys::from_stored(&[unrevoked], 20_000, lifetime)
            .unwrap()
            .sign_access_token(&claims(20_000))
            .unwrap();
        assert_eq!(
            keys.verify_access_token(&token, "http://issuer", "http://issuer", 20_000),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn id_tokens_are_not_access_tokens() {
        let keys = Keys::from_stored(&[generate_signing_key(0).unwrap()], 0, 3600).unwrap();
        let id = keys
            .sign_id_token(&IdClaims {
                iss: "http://issuer".into(),
                sub: "acct".into(),
                aud: "http://issuer".into(),
                exp: 2_000_000_000,
                iat: 0,
                auth_time: 0,
                email: None,
                sid: None,
                nonce: None,
            })
            .unwrap();
        assert_eq!(
            keys.verify_access_token(&id, "http://issuer", "http://issuer", 1),
            Err(TokenError::WrongType)
        );
    }

    #[test]
    fn alg_none_and_unknown_kid_are_refused() {
        let keys = Keys::from_stored(&[generate_signing_key(0).unwrap()], 0, 3600).unwrap();
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(1)).unwrap());
        let none = format!(
            "{}.{body}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#)
        );
        assert_eq!(
            keys.verify_access_token(&none, "http://issuer", "http://issuer", 1),
            Err(TokenError::Malformed)
        );
        let other = Keys::from_stored(&[generate_signing_key(0).unwrap()], 0, 3600).unwrap();
        let token = other.sign_access_token(&claims(1)).unwrap();
        assert_eq!(
            keys.verify_access_token(&token, "http://issuer", "http://issuer", 1),
            Err(TokenError::UnknownKey)
        );
    }
}
