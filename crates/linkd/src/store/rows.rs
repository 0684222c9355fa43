//! Records read back from rows of either backend. Both schemas give their
//! columns the same names and types (text, 64-bit integers, and a flag
//! SQLite keeps as an integer), so one mapping serves both.

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::db::FromRow;
use super::*;

/// Typed access to a row's columns by name, for every backend's row type.
pub(crate) trait Columns {
    fn text(&self, column: &str) -> StoreResult<String>;
    fn text_or_null(&self, column: &str) -> StoreResult<Option<String>>;
    fn int(&self, column: &str) -> StoreResult<i64>;
    fn int_or_null(&self, column: &str) -> StoreResult<Option<i64>>;
    fn flag(&self, column: &str) -> StoreResult<bool>;
}

/// A column that is missing or holds another type: the row is not one
/// linkd wrote.
fn corrupt(err: sqlx::Error) -> StoreError {
    StoreError::Corrupt(err.to_string())
}

impl<R> Columns for R
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, column: &str) -> StoreResult<String> {
        self.try_get(column).map_err(corrupt)
    }
    fn text_or_null(&self, column: &str) -> StoreResult<Option<String>> {
        self.try_get(column).map_err(corrupt)
    }
    fn int(&self, column: &str) -> StoreResult<i64> {
        self.try_get(column).map_err(corrupt)
    }
    fn int_or_null(&self, column: &str) -> StoreResult<Option<i64>> {
        self.try_get(column).map_err(corrupt)
    }
    fn flag(&self, column: &str) -> StoreResult<bool> {
        self.try_get(column).map_err(corrupt)
    }
}

/// The columns a poll reads of its authorization ([`polled_columns!`]).
impl FromRow for PolledAuthorization {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        Ok(PolledAuthorization {
            id: row.text("id")?,
            client_id: row.text("client_id")?,
            state: AuthorizationState::parse(&row.text("state")?)?,
            expires_at: row.int("expires_at")?,
            interval: row.int("interval_secs")?,
        })
    }
}

/// What a poll reads of its authorization; the `a.` of the join below.
macro_rules! polled_columns {
    ($table:literal) => {
        concat!(
            $table,
            "id, ",
            $table,
            "client_id, ",
            $table,
            "state, ",
            $table,
            "expires_at, ",
            $table,
            "interval_secs"
        )
    };
}
pub(crate) use polled_columns;

/// A polled authorization's columns followed by its app's, as
/// `authorizations::POLL` selects them.
impl FromRow for (PolledAuthorization, std::sync::Arc<Client>) {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        let auth = PolledAuthorization::from_row(row)?;
        let client = Client {
            client_id: auth.client_id.clone(),
            name: row.text("c_name")?,
            secret_hash: row.text_or_null("c_secret_hash")?,
            scopes: row.text("c_scopes")?,
            device_flow_enabled: row.flag("c_device_flow_enabled")?,
            redirect_uris: row.text("c_redirect_uris")?,
            code_flow_enabled: row.flag("c_code_flow_enabled")?,
            refresh_enabled: row.flag("c_refresh_enabled")?,
            require_dpop: row.flag("c_require_dpop")?,
            prefilled_links: row.flag("c_prefilled_links")?,
            same_network: same_network_from_columns(
                row.int_or_null("c_same_network_v4")?,
                row.int_or_null("c_same_network_v6")?,
            ),
            created_at: row.int("c_created_at")?,
        };
        Ok((auth, std::sync::Arc::new(client)))
    }
}

impl FromRow for Client {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        Ok(Client {
            client_id: row.text("client_id")?,
            name: row.text("name")?,
            secret_hash: row.text_or_null("secret_hash")?,
            scopes: row.text("scopes")?,
            device_flow_enabled: row.flag("device_flow_enabled")?,
            redirect_uris: row.text("redirect_uris")?,
            code_flow_enabled: row.flag("code_flow_enabled")?,
            refresh_enabled: row.flag("refresh_enabled")?,
            require_dpop: row.flag("require_dpop")?,
            prefilled_links: row.flag("prefilled_links")?,
            same_network: same_network_from_columns(
                row.int_or_null("same_network_v4")?,
                row.int_or_null("same_network_v6")?,
            ),
            created_at: row.int("created_at")?,
        })
    }
}

impl FromRow for Account {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        Ok(Account {
            id: row.text("id")?,
            email: row.text("email")?,
            password_hash: row.text("password_hash")?,
            created_at: row.int("created_at")?,
            disabled: row.flag("disabled")?,
            email_verified_at: row.int_or_null("email_verified_at")?,
            time_zone: row.text_or_null("time_zone")?,
        })
    }
}

impl FromRow for Identity {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        Ok(Identity {
            issuer: row.text("issuer")?,
            subject: row.text("subject")?,
            account_id: row.text("account_id")?,
            provider: row.text("provider")?,
            email: row.text_or_null("email")?,
            joined_at: row.int("joined_at")?,
            last_used_at: row.int("last_used_at")?,
        })
    }
}

impl FromRow for Passkey {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        Ok(Passkey {
            id: row.text("id")?,
            account_id: row.text("account_id")?,
            user_handle: row.text("user_handle")?,
            name: row.text("name")?,
            static_state: row.text("static_state")?,
            dynamic_state: row.text("dynamic_state")?,
            sign_count: row.int("sign_count")?,
            backed_up: row.flag("backed_up")?,
            created_at: row.int("created_at")?,
            last_used_at: row.int_or_null("last_used_at")?,
        })
    }
}

impl FromRow for PasskeyChallenge {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        Ok(PasskeyChallenge {
            challenge: row.text("challenge")?,
            purpose: row.text("purpose")?,
            binding: row.text("binding")?,
            account_id: row.text_or_null("account_id")?,
            state: row.text("state")?,
            expires_at: row.int("expires_at")?,
        })
    }
}

impl FromRow for UpstreamLogin {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        Ok(UpstreamLogin {
            state_hash: row.text("state_hash")?,
            provider: row.text("provider")?,
            nonce: row.text("nonce")?,
            pkce_verifier: row.text("pkce_verifier")?,
            next: row.text("next")?,
            account_id: row.text_or_null("account_id")?,
            created_at: row.int("created_at")?,
            expires_at: row.int("expires_at")?,
        })
    }
}

impl FromRow for PendingJoin {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        Ok(PendingJoin {
            secret_hash: row.text("secret_hash")?,
            account_id: row.text("account_id")?,
            provider: row.text("provider")?,
            issuer: row.text("issuer")?,
            subject: row.text("subject")?,
            email: row.text_or_null("email")?,
            created_at: row.int("created_at")?,
            expires_at: row.int("expires_at")?,
        })
    }
}

impl FromRow for Session {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        Ok(Session {
            id_hash: row.text("id_hash")?,
            account_id: row.text("account_id")?,
            csrf_token: row.text("csrf_token")?,
            created_at: row.int("created_at")?,
            expires_at: row.int("expires_at")?,
        })
    }
}

impl FromRow for SigningKey {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        Ok(SigningKey {
            kid: row.text("kid")?,
            private_pem: row.text("private_pem")?,
            created_at: row.int("created_at")?,
            revoked_at: row.int_or_null("revoked_at")?,
        })
    }
}

impl FromRow for DeviceAuthorization {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        Ok(DeviceAuthorization {
            id: row.text("id")?,
            device_code_hash: row.text("device_code_hash")?,
            user_code: row.text("user_code")?,
            client_id: row.text("client_id")?,
            scope: row.text("scope")?,
            state: AuthorizationState::parse(&row.text("state")?)?,
            account_id: row.text_or_null("account_id")?,
            requested_ip: row.text("requested_ip")?,
            device_name: row.text_or_null("device_name")?,
            user_agent: row.text_or_null("user_agent")?,
            created_at: row.int("created_at")?,
            expires_at: row.int("expires_at")?,
            interval: row.int("interval_secs")?,
            decided_at: row.int_or_null("decided_at")?,
        })
    }
}

/// A linked device read with its app's name (`app_name`).
impl FromRow for LinkedDevice {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        Ok(LinkedDevice {
            id: row.text("id")?,
            account_id: row.text("account_id")?,
            client_id: row.text("client_id")?,
            app_name: row.text("app_name")?,
            label: row.text("label")?,
            scope: row.text("scope")?,
            linked_at: row.int("linked_at")?,
            linked_ip: row.text("linked_ip")?,
            last_refresh_at: row.int_or_null("last_refresh_at")?,
            revoked_at: row.int_or_null("revoked_at")?,
            dpop_jkt: row.text_or_null("dpop_jkt")?,
            kind: DeviceKind::parse(&row.text("kind")?)?,
            refresh: match row.int_or_null("refresh_generation")? {
                None => None,
                Some(generation) => Some(RefreshState {
                    generation,
                    token_hash: row.text("refresh_hash")?,
                    previous_hash: row.text_or_null("refresh_previous_hash")?,
                    expires_at: row.int("refresh_expires_at")?,
                }),
            },
        })
    }
}

impl FromRow for AuthorizationCode {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        Ok(AuthorizationCode {
            code_hash: row.text("code_hash")?,
            client_id: row.text("client_id")?,
            account_id: row.text("account_id")?,
            redirect_uri: row.text_or_null("redirect_uri")?,
            scope: row.text("scope")?,
            nonce: row.text_or_null("nonce")?,
            code_challenge: row.text_or_null("code_challenge")?,
            auth_time: row.int("auth_time")?,
            ip: row.text("ip")?,
            created_at: row.int("created_at")?,
            expires_at: row.int("expires_at")?,
            redeemed_at: row.int_or_null("redeemed_at")?,
            device_id: row.text_or_null("device_id")?,
        })
    }
}

impl FromRow for LegacyRefreshToken {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        Ok(LegacyRefreshToken {
            token_hash: row.text("token_hash")?,
            device_id: row.text("device_id")?,
            scope: row.text("scope")?,
            created_at: row.int("created_at")?,
            expires_at: row.int("expires_at")?,
            rotated_at: row.int_or_null("rotated_at")?,
        })
    }
}

impl FromRow for Activity {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        Ok(Activity {
            account_id: row.text("account_id")?,
            kind: ActivityKind::parse(&row.text("kind")?)?,
            client_id: row.text("client_id")?,
            app_name: row.text("app_name")?,
            device: row.text_or_null("device")?,
            ip: row.text("ip")?,
            at: row.int("at")?,
        })
    }
}

/// A synced settings document.
impl FromRow for SyncDocument {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        Ok(SyncDocument {
            account_id: row.text("account_id")?,
            namespace: row.text("namespace")?,
            collection: row.text("collection")?,
            key: row.text("key")?,
            body: row.text_or_null("body")?,
            size: row.int("size")?,
            seq: row.int("seq")?,
            deleted: row.flag("deleted")?,
            updated_at: row.int("updated_at")?,
            updated_by: row.text_or_null("updated_by")?,
        })
    }
}

/// One app's collection, as `sync::USAGE` sums it up.
impl FromRow for SyncRows {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        Ok(SyncRows {
            live: row.int("live")?,
            tombstones: row.int("tombstones")?,
        })
    }
}

impl FromRow for (String, i64) {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        Ok((row.text("k")?, row.int("v")?))
    }
}

impl FromRow for SyncUsage {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        Ok(SyncUsage {
            namespace: row.text("namespace")?,
            app_name: row.text_or_null("app_name")?,
            collection: row.text("collection")?,
            documents: row.int("documents")?,
            bytes: row.int("bytes")?,
            last_change_at: row.int("updated_at")?,
            last_device: row.text_or_null("last_device")?,
        })
    }
}

impl FromRow for OutboxMessage {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        Ok(OutboxMessage {
            id: row.text("id")?,
            kind: OutboxKind::parse(&row.text("kind")?)?,
            payload: row.text("payload")?,
            attempts: row.int("attempts")?,
            next_attempt_at: row.int("next_attempt_at")?,
            lease: row.text_or_null("lease")?,
            last_error: row.text_or_null("last_error")?,
            created_at: row.int("created_at")?,
            failed_at: row.int_or_null("failed_at")?,
        })
    }
}

impl FromRow for AccountLink {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        Ok(AccountLink {
            token_hash: row.text("token_hash")?,
            account_id: row.text("account_id")?,
            purpose: LinkPurpose::parse(&row.text("purpose")?)?,
            subject: row.text_or_null("subject")?,
            created_at: row.int("created_at")?,
            expires_at: row.int("expires_at")?,
            used_at: row.int_or_null("used_at")?,
        })
    }
}

impl FromRow for NetworkBlock {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        Ok(NetworkBlock {
            network: row.text("network")?,
            reports: row.int("reports")?,
            blocked_at: row.int("blocked_at")?,
            until: row.int("expires_at")?,
        })
    }
}
