//! DPoP (RFC 9449): the device's own key pair (P-256, ES256), and the
//! proof JWT it signs for every token request and every API call, so
//! tokens copied off the device are worthless without the key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use sha2::{Digest, Sha256};

use crate::Error;

/// A device's DPoP key. Keep it where the device keeps its tokens
/// ([`DpopKey::to_secret`]): a new key means the tokens bound to the old one
/// stop working.
#[derive(Clone)]
pub struct DpopKey {
    signing: SigningKey,
    /// The public key as the proof header carries it (RFC 7517).
    jwk: serde_json::Value,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey").field("jwk", &self.jwk).finish()
    }
}

impl DpopKey {
    /// A new random key.
    pub fn generate() -> DpopKey {
        Self::from_signing(SigningKey::random(&mut rand::rngs::OsRng))
    }

    /// The key saved by [`DpopKey::to_secret`].
    pub fn from_secret(secret: &str) -> Result<DpopKey, Error> {
        let bytes = URL_SAFE_NO_PAD
            .decode(secret)
            .map_err(|_| Error::Protocol("the saved DPoP key is not base64url".into()))?;
        let signing = SigningKey::from_slice(&bytes)
            .map_err(|_| Error::Protocol("the saved DPoP key is not a P-256 key".into()))?;
        Ok(Self::from_signing(signing))
    }

    /// The private scalar, base64url: what to keep (privately) to sign again
    /// after a restart.
    pub fn to_secret(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.signing.to_bytes())
    }

    fn from_signing(signing: SigningKey) -> DpopKey {
        let point = signing.verifying_key().to_encoded_point(false);
        let coordinate =
            |c: Option<&p256::FieldBytes>| c.map(|b| URL_SAFE_NO_PAD.encode(b)).unwrap_or_default();
        let jwk = serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "x": coordinate(point.x()),
            "y": coordinate(point.y()),
        });
        DpopKey { signing, jwk }
    }

    /// The key's SHA-256 thumbprint (RFC 7638): what the server binds the
    /// tokens to (`cnf.jkt`).
    pub fn thumbprint(&self) -> String {
        // RFC 7638 §3.2: the required members, in lexicographic order, no
        // whitespace.
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            self.jwk["x"].as_str().unwrap_or(""),
            self.jwk["y"].as_str().unwrap_or("")
        );
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// A proof for one request (RFC 9449 §4.2): `method` and `url` of the
    /// request, and at a resource the access token it carries.
    pub fn proof(&self, method: &str, url: &str, access_token: Option<&str>) -> String {
        let header = serde_json::json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk });
        let iat = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut claims = serde_json::json!({
            // §4.2: at least 96 bits of randomness.
            "jti": URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
            "htm": method,
            // §4.2: without query and fragment.
            "htu": url.split(['?', '#']).next().unwrap_or(url),
            "iat": iat,
        });
        if let Some(token) = access_token {
            claims["ath"] = URL_SAFE_NO_PAD
                .encode(Sha256::digest(token.as_bytes()))
                .into();
        }
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        // RFC 7518 §3.4: an ES256 signature is R and S, 32 bytes each.
        let signature: Signature = self.signing.sign(message.as_bytes());
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::VerifyingKey;
    use p256::ecdsa::signature::Verifier;

    #[test]
    fn a_proof_verifies_with_the_header_key_and_the_key_round_trips() {
        let key = DpopKey::generate();
        let proof = key.proof("GET", "https://link.example/api/v1/device?x=1", Some("tok"));
        let parts: Vec<&str> = proof.split('.').collect();
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(header["typ"], "dpop+jwt");
        assert!(header["jwk"].get("d").is_none(), "no private key");
        assert_eq!(claims["htu"], "https://link.example/api/v1/device");
        assert_eq!(
            claims["ath"],
            URL_SAFE_NO_PAD.encode(Sha256::digest(b"tok")).as_str()
        );
        let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
        let verifying = VerifyingKey::from(&key.signing);
        verifying
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .unwrap();
        let back = DpopKey::from_secret(&key.to_secret()).unwrap();
        assert_eq!(back.thumbprint(), key.thumbprint());
        assert!(DpopKey::from_secret("not-a-key").is_err());
    }
}
