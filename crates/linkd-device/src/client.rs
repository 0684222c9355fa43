//! The device app itself: the server's endpoints (RFC 8414 discovery) and
//! how the app authenticates its requests (RFC 6749 §2.3.1).

use std::time::Duration;

use serde::Deserialize;

use crate::Error;
use crate::error::json;

/// The endpoints the device needs, from server metadata (RFC 8414).
#[derive(Debug, Clone, Deserialize)]
pub struct Endpoints {
    pub issuer: String,
    pub device_authorization_endpoint: String,
    pub token_endpoint: String,
    /// linkd's long poll: answers as soon as the person decides, so the
    /// device need not wait out its polling interval. Other servers do not
    /// publish it and get plain RFC 8628 polling.
    #[serde(default)]
    pub linkd_device_wait_endpoint: Option<String>,
}

/// A device app registered with an authorization server.
#[derive(Debug, Clone)]
pub struct Device {
    pub(crate) http: reqwest::Client,
    client_id: String,
    client_secret: Option<String>,
    /// The key DPoP proofs are signed with (RFC 9449), if the device uses
    /// DPoP.
    dpop: Option<crate::DpopKey>,
    pub endpoints: Endpoints,
}

impl Device {
    pub fn new(endpoints: Endpoints, client_id: impl Into<String>) -> Self {
        Device {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(40))
                .user_agent(concat!("linkd-device/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default(),
            client_id: client_id.into(),
            client_secret: None,
            dpop: None,
            endpoints,
        }
    }

    /// For confidential device apps: authenticate with client_secret_basic.
    pub fn with_secret(mut self, secret: impl Into<String>) -> Self {
        self.client_secret = Some(secret.into());
        self
    }

    /// Signs a DPoP proof (RFC 9449) with `key` for every token request and
    /// API call, and sends access tokens as `DPoP`: the server binds the
    /// tokens to the key. A server without DPoP ignores the proofs and
    /// answers `token_type` `Bearer`; then call [`Device::without_dpop`].
    pub fn with_dpop(mut self, key: crate::DpopKey) -> Self {
        self.dpop = Some(key);
        self
    }

    /// Back to plain Bearer tokens.
    pub fn without_dpop(mut self) -> Self {
        self.dpop = None;
        self
    }

    pub fn dpop_key(&self) -> Option<&crate::DpopKey> {
        self.dpop.as_ref()
    }

    /// `request` to `url` with the access token: `DPoP` and a proof for
    /// this request when the device has a key (RFC 9449 §7.1), else
    /// `Bearer` (RFC 6750 §2.1).
    pub(crate) fn authorized(
        &self,
        request: reqwest::RequestBuilder,
        method: &str,
        url: &str,
        access_token: &str,
    ) -> reqwest::RequestBuilder {
        match &self.dpop {
            Some(key) => request
                .header("authorization", format!("DPoP {access_token}"))
                .header("dpop", key.proof(method, url, Some(access_token))),
            None => request.bearer_auth(access_token),
        }
    }

    /// Reads the server's metadata: OpenID discovery first, then RFC 8414.
    pub async fn discover(server: &str, client_id: impl Into<String>) -> Result<Self, Error> {
        let base = server.trim_end_matches('/');
        let http = reqwest::Client::new();
        let mut last = None;
        for path in [
            "/.well-known/openid-configuration",
            "/.well-known/oauth-authorization-server",
        ] {
            let response = http.get(format!("{base}{path}")).send().await?;
            if response.status().is_success() {
                let endpoints = json(response, "metadata").await?;
                return Ok(Device::new(endpoints, client_id));
            }
            last = Some(response.status());
        }
        Err(Error::Protocol(format!(
            "no server metadata at {base} (last status {})",
            last.map(|s| s.as_u16()).unwrap_or(0)
        )))
    }

    pub(crate) async fn post(
        &self,
        url: &str,
        mut params: Vec<(&'static str, String)>,
    ) -> Result<reqwest::Response, Error> {
        let mut request = match &self.client_secret {
            Some(secret) => self
                .http
                .post(url)
                .basic_auth(form_encode(&self.client_id), Some(form_encode(secret))),
            None => {
                params.push(("client_id", self.client_id.clone()));
                self.http.post(url)
            }
        };
        // RFC 9449 §5: a proof with each token request binds the tokens.
        if let Some(key) = &self.dpop
            && url == self.endpoints.token_endpoint
        {
            request = request.header("dpop", key.proof("POST", url, None));
        }
        Ok(request.form(&params).send().await?)
    }
}

/// RFC 6749 §2.3.1: client id and secret are form-encoded inside Basic.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*') {
            out.push(b as char);
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded() {
        assert_eq!(form_encode("a b:c/é"), "a+b%3Ac%2F%C3%A9");
        assert_eq!(form_encode("demo-tv"), "demo-tv");
    }
}
