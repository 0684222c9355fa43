//! The tokens a device keeps between runs, in a file only its owner can
//! read.

use serde::Deserialize;

use crate::Tokens;

/// Tokens as a device keeps them between runs.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub struct SavedTokens {
    pub server: String,
    pub client_id: String,
    pub access_token: String,
    /// Seconds since the Unix epoch after which the access token is stale.
    pub expires_at: u64,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub scope: Option<String>,
    /// The device's DPoP key ([`crate::DpopKey::to_secret`]) when its tokens
    /// are bound to it (RFC 9449): kept with the tokens, which are
    /// worthless without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_key: Option<String>,
}

impl SavedTokens {
    pub fn new(server: &str, client_id: &str, tokens: &Tokens, now: u64) -> Self {
        SavedTokens {
            server: server.to_string(),
            client_id: client_id.to_string(),
            access_token: tokens.access_token.clone(),
            expires_at: now + tokens.expires_in.unwrap_or(0),
            refresh_token: tokens.refresh_token.clone(),
            id_token: tokens.id_token.clone(),
            scope: tokens.scope.clone(),
            dpop_key: None,
        }
    }

    /// Takes newer tokens, keeping the refresh token and ID token when the
    /// server did not send new ones.
    pub fn update(&mut self, tokens: &Tokens, now: u64) {
        self.access_token = tokens.access_token.clone();
        self.expires_at = now + tokens.expires_in.unwrap_or(0);
        if tokens.refresh_token.is_some() {
            self.refresh_token = tokens.refresh_token.clone();
        }
        if tokens.id_token.is_some() {
            self.id_token = tokens.id_token.clone();
        }
        if tokens.scope.is_some() {
            self.scope = tokens.scope.clone();
        }
    }

    /// Stale a minute before the server would say so, to allow for clock
    /// skew and the time a request takes.
    pub fn is_stale(&self, now: u64) -> bool {
        now + 60 >= self.expires_at
    }

    pub fn load(path: &std::path::Path) -> std::io::Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the file readable by its owner only (0600 on Unix), replacing
    /// it in one rename so a crash never leaves half a file.
    pub fn save(&self, path: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_tokens_are_private_and_round_trip() {
        let dir = std::env::temp_dir().join(format!("linkd-device-test-{}", std::process::id()));
        let path = dir.join("tokens.json");
        let tokens = Tokens {
            access_token: "a".into(),
            token_type: "Bearer".into(),
            expires_in: Some(3600),
            scope: None,
            refresh_token: Some("r".into()),
            id_token: None,
        };
        let mut saved = SavedTokens::new("http://s", "c", &tokens, 1000);
        assert!(!saved.is_stale(1000));
        assert!(saved.is_stale(1000 + 3600 - 59));
        saved.save(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let back = SavedTokens::load(&path).unwrap().unwrap();
        assert_eq!(back.refresh_token.as_deref(), Some("r"));
        saved.update(
            &Tokens {
                refresh_token: None,
                ..tokens
            },
            2000,
        );
        assert_eq!(
            saved.refresh_token.as_deref(),
            Some("r"),
            "kept when not rotated"
        );
        assert_eq!(
            SavedTokens::load(&dir.join("missing.json"))
                .unwrap()
                .map(|_| ()),
            None
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
