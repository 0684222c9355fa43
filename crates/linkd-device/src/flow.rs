//! The device authorization grant itself (RFC 8628): ask for a code, wait
//! for the person's decision (linkd's long poll or §3.5 polling), and
//! refresh the tokens afterwards (RFC 6749 §6).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::error::{answer, json, server_error};
use crate::{Device, Error};

pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// RFC 8628 §3.5: the interval a device keeps when the server names none.
const DEFAULT_INTERVAL_SECS: u64 = 5;
/// RFC 8628 §3.5: slow_down adds five seconds to the interval.
const SLOW_DOWN_STEP_SECS: u64 = 5;

/// RFC 8628 §3.2 device authorization response.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    pub interval: Option<u64>,
}

/// RFC 6749 §5.1 token response.
#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: Option<u64>,
    pub scope: Option<String>,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
}

impl Tokens {
    /// The ID token's claims, for display ("linked to alice@example.com").
    /// Not verified: the token came straight from the token endpoint over
    /// the connection this client opened, which OpenID Connect Core
    /// §3.1.3.7 accepts in place of a signature check.
    pub fn id_token_claims(&self) -> Option<serde_json::Value> {
        let payload = self.id_token.as_deref()?.split('.').nth(1)?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }
}

/// One answer of the token endpoint while polling.
#[derive(Debug)]
pub enum Poll {
    Tokens(Box<Tokens>),
    Pending,
    SlowDown,
}

impl Device {
    /// Asks for a device code and a user code (RFC 8628 §3.1).
    pub async fn request_code(
        &self,
        scope: Option<&str>,
        device_name: Option<&str>,
    ) -> Result<DeviceAuthorization, Error> {
        let mut params = Vec::new();
        if let Some(scope) = scope {
            params.push(("scope", scope.to_string()));
        }
        if let Some(name) = device_name {
            params.push(("device_name", name.to_string()));
        }
        let response = self
            .post(&self.endpoints.device_authorization_endpoint, params)
            .await?;
        answer(response, "device authorization response").await
    }

    /// One token request with the device code (RFC 8628 §3.4).
    pub async fn poll_once(&self, auth: &DeviceAuthorization) -> Result<Poll, Error> {
        let params = vec![
            ("grant_type", DEVICE_CODE_GRANT.to_string()),
            ("device_code", auth.device_code.clone()),
        ];
        let response = self.post(&self.endpoints.token_endpoint, params).await?;
        if response.status().is_success() {
            let tokens = json(response, "token response").await?;
            return Ok(Poll::Tokens(Box::new(tokens)));
        }
        match server_error(response).await {
            Error::Server { error, .. } if error == "authorization_pending" => Ok(Poll::Pending),
            Error::Server { error, .. } if error == "slow_down" => Ok(Poll::SlowDown),
            Error::Server { error, .. } if error == "access_denied" => Err(Error::Denied),
            Error::Server { error, .. } if error == "expired_token" => Err(Error::Expired),
            other => Err(other),
        }
    }

    /// Waits until the person decides or the code expires. With linkd's
    /// long poll the tokens come moments after the approval; otherwise it
    /// polls, keeping the interval and adding five seconds on each
    /// slow_down (RFC 8628 §3.5).
    pub async fn wait_for_tokens(&self, auth: &DeviceAuthorization) -> Result<Tokens, Error> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(auth.expires_in);
        if let Some(url) = &self.endpoints.linkd_device_wait_endpoint
            && let Some(outcome) = self.long_poll(url, auth, deadline).await
        {
            return outcome;
        }
        let mut interval = auth.interval.unwrap_or(DEFAULT_INTERVAL_SECS).max(1);
        loop {
            tokio::time::sleep(Duration::from_secs(interval)).await;
            // Polled once more after the deadline: a code approved in its
            // last seconds is redeemed by the poll that follows.
            let past_deadline = tokio::time::Instant::now() >= deadline;
            match self.poll_once(auth).await? {
                Poll::Tokens(tokens) => return Ok(*tokens),
                _ if past_deadline => return Err(Error::Expired),
                Poll::Pending => {}
                Poll::SlowDown => interval += SLOW_DOWN_STEP_SECS,
            }
        }
    }

    /// Waits on the long-poll endpoint and fetches the tokens once the code
    /// is decided. `None` when the endpoint is not usable (an older server,
    /// a proxy cutting the connection, too many waits): the caller then
    /// polls the standard way.
    async fn long_poll(
        &self,
        url: &str,
        auth: &DeviceAuthorization,
        deadline: tokio::time::Instant,
    ) -> Option<Result<Tokens, Error>> {
        #[derive(Deserialize)]
        struct Waited {
            status: String,
        }
        while tokio::time::Instant::now() < deadline {
            let params = vec![("device_code", auth.device_code.clone())];
            let response = self.post(url, params).await.ok()?;
            if response.status().is_client_error()
                && response.status() != reqwest::StatusCode::TOO_MANY_REQUESTS
                && response.status() != reqwest::StatusCode::NOT_FOUND
                && response.status() != reqwest::StatusCode::METHOD_NOT_ALLOWED
            {
                // The code itself is refused (unknown, another app's):
                // the token endpoint would say the same.
                return Some(Err(server_error(response).await));
            }
            if !response.status().is_success() {
                return None;
            }
            let waited: Waited = response.json().await.ok()?;
            if waited.status == "pending" {
                continue;
            }
            // Decided (or expired): the standard token request tells the
            // outcome and carries the tokens.
            return match self.poll_once(auth).await {
                Ok(Poll::Tokens(tokens)) => Some(Ok(*tokens)),
                Ok(Poll::Pending | Poll::SlowDown) => None,
                Err(e) => Some(Err(e)),
            };
        }
        Some(Err(Error::Expired))
    }

    /// Exchanges a refresh token for new tokens (RFC 6749 §6). linkd
    /// rotates refresh tokens: keep the new one, the old one is spent.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, Error> {
        let params = vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", refresh_token.to_string()),
        ];
        let response = self.post(&self.endpoints.token_endpoint, params).await?;
        answer(response, "token response").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_token_claims_are_readable() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"abc","email":"a@b.example"}"#);
        let tokens = Tokens {
            access_token: String::new(),
            token_type: "Bearer".into(),
            expires_in: None,
            scope: None,
            refresh_token: None,
            id_token: Some(format!("h.{payload}.s")),
        };
        assert_eq!(tokens.id_token_claims().unwrap()["email"], "a@b.example");
    }
}
