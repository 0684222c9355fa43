//! Records read back from rows of either backend. Both schemas give their
//! columns the same names and types (text, 64-bit integers, and a flag
//! SQLite keeps as an integer), so one mapping serves both.

use sqlx::{ColumnIndex, Decode, Row, Type};

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
pub(crate) fn polled_authorization(row: &impl Columns) -> StoreResult<PolledAuthorization> {
    Ok(PolledAuthorization {
        id: row.text("id")?,
        client_id: row.text("client_id")?,
        state: AuthorizationState::parse(&row.text("state")?)?,
        expires_at: row.int("expires_at")?,
        interval: row.int("interval_secs")?,
    })
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
/// [`authorization_with_client_sql!`] selects them.
pub(crate) fn polled_with_client(
    row: &impl Columns,
) -> StoreResult<(PolledAuthorization, std::sync::Arc<Client>)> {
    let auth = polled_authorization(row)?;
    let client = Client {
        client_id: auth.client_id.clone(),
        name: row.text("c_name")?,
        secret_hash: row.text_or_null("c_secret_hash")?,
        scopes: row.text("c_scopes")?,
        device_flow_enabled: row.flag("c_device_flow_enabled")?,
        created_at: row.int("c_created_at")?,
    };
    Ok((auth, std::sync::Arc::new(client)))
}

/// Both backends' join of a polled authorization with its app, by
/// device-code hash, ending in the backend's placeholder; the app's columns
/// are renamed where the names clash. A macro so each backend has its query
/// as a constant: it is the one every poll runs.
macro_rules! authorization_with_client_sql {
    ($placeholder:literal) => {
        concat!(
            "SELECT ",
            $crate::store::rows::polled_columns!("a."),
            ", c.name AS c_name,
             c.secret_hash AS c_secret_hash, c.scopes AS c_scopes,
             c.device_flow_enabled AS c_device_flow_enabled, c.created_at AS c_created_at
             FROM device_authorizations a JOIN clients c ON c.client_id = a.client_id
             WHERE a.device_code_hash = ",
            $placeholder
        )
    };
}
pub(crate) use authorization_with_client_sql;

/// A row read through rusqlite (the SQLite store's hot-path reads), with
/// its statement's column names, learnt once per statement.
pub(crate) struct DirectRow<'a, 'r> {
    row: &'a rusqlite::Row<'r>,
    columns: &'a [String],
    /// Where the next column is looked for first: the mappings below read
    /// columns in table order, so the guess is nearly always right.
    next: std::cell::Cell<usize>,
}

impl<'a, 'r> DirectRow<'a, 'r> {
    pub fn new(row: &'a rusqlite::Row<'r>, columns: &'a [String]) -> Self {
        DirectRow {
            row,
            columns,
            next: Default::default(),
        }
    }

    fn get<T: rusqlite::types::FromSql>(&self, column: &str) -> StoreResult<T> {
        // By position: rusqlite's lookup by name asks SQLite for every
        // column's name and compares without case, on every get.
        let guess = self.next.get();
        let index = if self.columns.get(guess).is_some_and(|name| name == column) {
            guess
        } else {
            self.columns
                .iter()
                .position(|name| name == column)
                .ok_or_else(|| StoreError::Corrupt(format!("no column {column}")))?
        };
        self.next.set(index + 1);
        self.row
            .get(index)
            .map_err(|e| StoreError::Corrupt(format!("column {column}: {e}")))
    }
}

impl Columns for DirectRow<'_, '_> {
    fn text(&self, column: &str) -> StoreResult<String> {
        self.get(column)
    }
    fn text_or_null(&self, column: &str) -> StoreResult<Option<String>> {
        self.get(column)
    }
    fn int(&self, column: &str) -> StoreResult<i64> {
        self.get(column)
    }
    fn int_or_null(&self, column: &str) -> StoreResult<Option<i64>> {
        self.get(column)
    }
    fn flag(&self, column: &str) -> StoreResult<bool> {
        self.get(column)
    }
}

pub(crate) fn client(row: &impl Columns) -> StoreResult<Client> {
    Ok(Client {
        client_id: row.text("client_id")?,
        name: row.text("name")?,
        secret_hash: row.text_or_null("secret_hash")?,
        scopes: row.text("scopes")?,
        device_flow_enabled: row.flag("device_flow_enabled")?,
        created_at: row.int("created_at")?,
    })
}

pub(crate) fn account(row: &impl Columns) -> StoreResult<Account> {
    Ok(Account {
        id: row.text("id")?,
        email: row.text("email")?,
        password_hash: row.text("password_hash")?,
        created_at: row.int("created_at")?,
        disabled: row.flag("disabled")?,
    })
}

pub(crate) fn session(row: &impl Columns) -> StoreResult<Session> {
    Ok(Session {
        id_hash: row.text("id_hash")?,
        account_id: row.text("account_id")?,
        csrf_token: row.text("csrf_token")?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
    })
}

pub(crate) fn signing_key(row: &impl Columns) -> StoreResult<SigningKey> {
    Ok(SigningKey {
        kid: row.text("kid")?,
        private_pem: row.text("private_pem")?,
        created_at: row.int("created_at")?,
    })
}

pub(crate) fn authorization(row: &impl Columns) -> StoreResult<DeviceAuthorization> {
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
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
        interval: row.int("interval_secs")?,
        decided_at: row.int_or_null("decided_at")?,
    })
}

/// A linked device read with its app's name (`app_name`).
pub(crate) fn linked_device(row: &impl Columns) -> StoreResult<LinkedDevice> {
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
    })
}

pub(crate) fn refresh_token(row: &impl Columns) -> StoreResult<RefreshToken> {
    Ok(RefreshToken {
        token_hash: row.text("token_hash")?,
        device_id: row.text("device_id")?,
        scope: row.text("scope")?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
        rotated_at: row.int_or_null("rotated_at")?,
    })
}

pub(crate) fn activity(row: &impl Columns) -> StoreResult<Activity> {
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

/// A synced settings document.
pub(crate) fn sync_document(row: &impl Columns) -> StoreResult<SyncDocument> {
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
