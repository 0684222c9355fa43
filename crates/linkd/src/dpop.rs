//! DPoP (RFC 9449): a device proves on every request that it holds the
//! private key its tokens are bound to, so tokens copied off the device are
//! worthless. This module checks a proof (§4.3) and notes its `jti` in the
//! store, shared by every instance, so a proof is accepted once (§11.1).
//!
//! linkd sends no `DPoP-Nonce` (§8, optional): the `iat` window below and
//! the replay store bound how long a captured proof could be used, and
//! that is at most once.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::ThumbprintHash;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::store::{Store, StoreError, Timestamp};

/// The signature algorithms accepted (discovery's
/// `dpop_signing_alg_values_supported`, §5.1). Asymmetric only (§4.3
/// check 5): a shared secret proves nothing about a device.
pub const ALGORITHMS: &[(Algorithm, &str)] = &[
    (Algorithm::ES256, "ES256"),
    (Algorithm::ES384, "ES384"),
    (Algorithm::RS256, "RS256"),
    (Algorithm::PS256, "PS256"),
    (Algorithm::EdDSA, "EdDSA"),
];
/// How old a proof's `iat` may be, in seconds (§4.3 check 11; §11.1 asks
/// for a short window).
pub const MAX_AGE_SECS: i64 = 300;
/// How far ahead of linkd's clock a device's clock may run.
pub const MAX_AHEAD_SECS: i64 = 60;
/// Longest proof read: an RSA-4096 key in the header fits well within it.
pub const MAX_PROOF_LEN: usize = 8192;
/// Longest `jti`: RFC 9449 §4.2 asks for 96 bits of randomness; a device
/// has no reason to send kilobytes.
const MAX_JTI_LEN: usize = 256;

/// What was wrong with a proof. Each is `invalid_dpop_proof` at the token
/// endpoint (§5) and a `DPoP` challenge with that error at APIs (§7.1).
#[derive(Debug, thiserror::Error)]
pub enum DpopError {
    #[error("a DPoP proof is required")]
    Missing,
    #[error("send one DPoP header, not several")]
    Repeated,
    #[error("the DPoP proof is not a well-formed proof JWT: {0}")]
    Malformed(&'static str),
    #[error("the DPoP proof's signature does not verify with its key")]
    BadSignature,
    #[error("the DPoP proof is for another method (htm)")]
    WrongMethod,
    #[error("the DPoP proof is for another address (htu)")]
    WrongUri,
    #[error("the DPoP proof's iat is outside the accepted window")]
    Stale,
    #[error("the DPoP proof was already used (jti)")]
    Replayed,
    #[error("the DPoP proof is signed with another key than the token is bound to")]
    WrongKey,
    #[error("the DPoP proof is for another access token (ath)")]
    WrongToken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the request a proof came with was.
pub struct Expect<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The request's URL as the device addressed it: linkd's public URL
    /// and the path.
    pub uri: &'a str,
    /// At a resource: the access token the request carries (§4.3 check 12).
    pub access_token: Option<&'a str>,
}

/// A proof that checked out.
#[derive(Debug, Clone)]
pub struct Proof {
    /// The key's SHA-256 thumbprint (RFC 7638), base64url: what tokens are
    /// bound to (`cnf.jkt`, §6.1).
    pub jkt: String,
    /// The replay store's key: the thumbprint and `jti` together, hashed,
    /// so one device's `jti` cannot collide with another's.
    replay_id: String,
    iat: Timestamp,
}

#[derive(Deserialize)]
struct Claims {
    jti: String,
    htm: String,
    htu: String,
    iat: Timestamp,
    #[serde(default)]
    ath: Option<String>,
}

/// Checks a proof against the request it came with (§4.3 checks 2-12),
/// without the replay check ([`note`]).
pub fn check(proof: &str, expect: &Expect<'_>, now: Timestamp) -> Result<Proof, DpopError> {
    use DpopError::Malformed;
    if proof.len() > MAX_PROOF_LEN {
        return Err(Malformed("the proof is too long"));
    }
    let header = jsonwebtoken::decode_header(proof).map_err(|_| Malformed("no JWT header"))?;
    // §4.3 check 4: typ is dpop+jwt.
    if header.typ.as_deref() != Some("dpop+jwt") {
        return Err(Malformed("typ must be dpop+jwt"));
    }
    // Check 5: an asymmetric algorithm linkd supports.
    if !ALGORITHMS.iter().any(|(a, _)| *a == header.alg) {
        return Err(Malformed("the signature algorithm is not supported"));
    }
    // Check 6: the public key is in the header.
    let jwk = header.jwk.ok_or(Malformed("the header has no jwk"))?;
    // Check 7: and only the public key. The parsed Jwk drops private
    // members, so the raw header is read for them.
    if holds_private_key(proof) {
        return Err(Malformed("the jwk holds a private key"));
    }
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk)
        .map_err(|_| Malformed("the jwk is not a usable public key"))?;
    let jkt = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|_| Malformed("the jwk is not a usable public key"))?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.set_required_spec_claims::<&str>(&[]);
    // Check 8: the signature, with the header's key.
    let claims = jsonwebtoken::decode::<Claims>(proof, &key, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => DpopError::BadSignature,
            jsonwebtoken::errors::ErrorKind::Json(_) => {
                Malformed("the claims jti, htm, htu and iat are required")
            }
            _ => Malformed("the proof does not decode"),
        })?
        .claims;
    if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
        return Err(Malformed("the jti is empty or too long"));
    }
    // Check 9: htm, the request's method.
    if claims.htm != expect.method {
        return Err(DpopError::WrongMethod);
    }
    // Check 10: htu, the request's URI without query and fragment.
    if !same_uri(&claims.htu, expect.uri) {
        return Err(DpopError::WrongUri);
    }
    // Check 11: a recent iat.
    if claims.iat < now - MAX_AGE_SECS || claims.iat > now + MAX_AHEAD_SECS {
        return Err(DpopError::Stale);
    }
    // Check 12: at a resource, ath is the token's hash (§4.2).
    if let Some(token) = expect.access_token {
        let expected = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
        if claims.ath.as_deref() != Some(expected.as_str()) {
            return Err(DpopError::WrongToken);
        }
    }
    let replay_id = crate::codes::secret_hash(&format!("{jkt}.{}", claims.jti));
    Ok(Proof {
        jkt,
        replay_id,
        iat: claims.iat,
    })
}

/// Notes the proof as used; a second use anywhere is a replay (§11.1). The
/// note lasts as long as the proof's `iat` would be accepted.
pub async fn note(store: &dyn Store, proof: &Proof, now: Timestamp) -> Result<(), DpopError> {
    let until = proof.iat.max(now) + MAX_AGE_SECS;
    if store.note_dpop_proof(&proof.replay_id, until).await? {
        Ok(())
    } else {
        Err(DpopError::Replayed)
    }
}

/// Whether the proof's header `jwk` has a private member (RFC 7518 §6.2.2,
/// §6.3.2; RFC 8037 §2: `d` for EC and OKP, `d`, `p`, `q`, `dp`, `dq`,
/// `qi`, `oth` for RSA; `k` for a symmetric key).
fn holds_private_key(proof: &str) -> bool {
    let Some(segment) = proof.split('.').next() else {
        return true;
    };
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(segment) else {
        return true;
    };
    let Ok(header) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return true;
    };
    ["d", "p", "q", "dp", "dq", "qi", "oth", "k"]
        .iter()
        .any(|member| header["jwk"].get(member).is_some())
}

/// §4.3 check 10: the same URI, ignoring query and fragment; scheme and
/// host compared as URLs do (case, default port).
fn same_uri(htu: &str, expected: &str) -> bool {
    let strip = |s: &str| {
        url::Url::parse(s).ok().map(|mut u| {
            u.set_query(None);
            u.set_fragment(None);
            u
        })
    };
    match (strip(htu), strip(expected)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_compare_without_query_and_fragment() {
        let base = "https://link.example/oauth/token";
        for same in [
            "https://link.example/oauth/token",
            "https://LINK.example:443/oauth/token",
            "https://link.example/oauth/token?x=1",
            "https://link.example/oauth/token#f",
        ] {
            assert!(same_uri(same, base), "{same}");
        }
        for other in [
            "http://link.example/oauth/token",
            "https://link.example/oauth/token/",
            "https://link.example/oauth/Token",
            "https://evil.example/oauth/token",
            "https://link.example:8443/oauth/token",
            "/oauth/token",
            "",
        ] {
            assert!(!same_uri(other, base), "{other}");
        }
    }

    #[test]
    fn private_members_are_found() {
        let header = |jwk: &str| {
            format!(
                "{}.e30.sig",
                URL_SAFE_NO_PAD.encode(format!(r#"{{"typ":"dpop+jwt","jwk":{jwk}}}"#))
            )
        };
        assert!(!holds_private_key(&header(
            r#"{"kty":"EC","crv":"P-256","x":"a","y":"b"}"#
        )));
        assert!(holds_private_key(&header(
            r#"{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c"}"#
        )));
        assert!(holds_private_key(&header(r#"{"kty":"oct","k":"c"}"#)));
        assert!(holds_private_key("not base64!.e30.sig"));
    }
}
