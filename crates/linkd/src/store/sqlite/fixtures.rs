//! Records and a store for tests here and elsewhere in the crate.

use std::sync::Arc;

use super::direct::Direct;
use crate::store::db::Db;
use crate::store::{
    Account, AuthorizationState, Client, DeviceAuthorization, PolledAuthorization, SqlStore, Store,
};

pub(crate) fn client(scopes: &str) -> Client {
    Client {
        client_id: "tv".into(),
        name: "TV".into(),
        secret_hash: None,
        scopes: scopes.into(),
        device_flow_enabled: true,
        redirect_uris: String::new(),
        code_flow_enabled: true,
        refresh_enabled: true,
        require_dpop: false,
        prefilled_links: true,
        same_network: None,
        created_at: 0,
    }
}

pub(crate) fn authorization(n: usize) -> DeviceAuthorization {
    DeviceAuthorization {
        id: format!("id-{n}"),
        device_code_hash: format!("hash-{n}"),
        user_code: format!("CODE{n:04}"),
        client_id: "tv".into(),
        scope: "openid".into(),
        state: AuthorizationState::Pending,
        account_id: None,
        requested_ip: "192.0.2.1".into(),
        device_name: None,
        created_at: 0,
        expires_at: i64::MAX,
        interval: 5,
        decided_at: None,
        user_agent: None,
    }
}

/// What a poll reads of a pending code `id` of the app `tv`.
pub(crate) fn polled(id: &str, interval: i64) -> PolledAuthorization {
    PolledAuthorization {
        id: id.into(),
        client_id: "tv".into(),
        state: AuthorizationState::Pending,
        expires_at: 600,
        interval,
    }
}

/// An account `acct`, enabled, stored.
pub(crate) async fn insert_account(store: &SqlStore) {
    let account = Account {
        id: "acct".into(),
        email: "a@example.com".into(),
        password_hash: "x".into(),
        created_at: 0,
        disabled: false,
        email_verified_at: None,
        time_zone: None,
    };
    store.insert_account(&account).await.unwrap();
}

/// A store in a fresh file (kept while the directory lives) with one
/// app, `tv`.
pub(crate) async fn store_with_client() -> (tempfile::TempDir, SqlStore) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("linkd.db").display()
    );
    let store = super::open(&url).await.unwrap();
    store.migrate().await.unwrap();
    store.insert_client(&client("openid")).await.unwrap();
    (dir, store)
}

/// The store's hot-path readers.
pub(crate) fn direct_readers(store: &SqlStore) -> Arc<Direct> {
    match &store.db {
        Db::Sqlite(db) => db.direct.clone().expect("a file database reads directly"),
        Db::Postgres(_) => panic!("not a SQLite store"),
    }
}
