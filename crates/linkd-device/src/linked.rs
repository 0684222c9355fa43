//! linkd's own device API beside RFC 8628: who the device is linked to,
//! unlinking it, and how the server names itself. Other servers have none
//! of these.

use serde::Deserialize;

use crate::error::{answer, json, server_error};
use crate::{Device, Error};

/// How a linkd server presents itself (`/api/v1/brand`), so a device can
/// say "link this device to your Acme account" in the operator's words.
#[derive(Debug, Clone, Deserialize)]
pub struct Brand {
    pub product_name: String,
    #[serde(default)]
    pub support_url: Option<String>,
}

impl Device {
    /// linkd's device API: who this device is linked to.
    pub async fn linked_info(&self, access_token: &str) -> Result<serde_json::Value, Error> {
        let url = format!("{}/api/v1/device", self.endpoints.issuer);
        let response = self
            .authorized(self.http.get(&url), "GET", &url, access_token)
            .send()
            .await?;
        answer(response, "device info").await
    }

    /// linkd's device API: unlink this device (for example on a factory
    /// reset). Its tokens stop working at once.
    pub async fn unlink(&self, access_token: &str) -> Result<(), Error> {
        let url = format!("{}/api/v1/device", self.endpoints.issuer);
        let response = self
            .authorized(self.http.delete(&url), "DELETE", &url, access_token)
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(server_error(response).await);
        }
        Ok(())
    }

    /// linkd's brand endpoint. Other RFC 8628 servers have none: callers
    /// fall back to a name of their own.
    pub async fn brand(&self) -> Result<Brand, Error> {
        let url = format!("{}/api/v1/brand", self.endpoints.issuer);
        let response = self.http.get(url).send().await?;
        if !response.status().is_success() {
            return Err(Error::Protocol(format!(
                "no brand (HTTP {})",
                response.status().as_u16()
            )));
        }
        json(response, "brand").await
    }
}
