//! The `Store` contract itself, on whichever backend `LINKD_TEST_BACKEND`
//! names: where SQL dialects differ (case folding, ordering, ties, races),
//! both backends must still behave the same.

use linkd::store::{self, Account, DynStore, SigningKey, StoreError};
use linkd::tokens::Keys;

use crate::helpers::*;

async fn open(db: &TestDatabase) -> DynStore {
    let store = store::open(db.url()).await.unwrap();
    store.migrate().await.unwrap();
    store
}

fn account(id: &str, email: &str) -> Account {
    Account {
        id: id.into(),
        email: email.into(),
        password_hash: "x".into(),
        created_at: 1,
        disabled: false,
        email_verified_at: None,
        time_zone: None,
    }
}

#[tokio::test]
async fn emails_are_one_account_whatever_their_ascii_case() {
    let db = TestDatabase::new().await;
    let store = open(&db).await;
    store
        .insert_account(&account("a", "Ann@Example.com"))
        .await
        .unwrap();
    let found = store
        .get_account_by_email("ann@EXAMPLE.COM")
        .await
        .unwrap()
        .expect("found ignoring case");
    assert_eq!(
        (found.id.as_str(), found.email.as_str()),
        ("a", "Ann@Example.com")
    );
    assert!(matches!(
        store.insert_account(&account("b", "ANN@example.com")).await,
        Err(StoreError::Conflict)
    ));
    // Like SQLite's NOCASE, only ASCII letters fold.
    store
        .insert_account(&account("c", "Émile@example.com"))
        .await
        .unwrap();
    store
        .insert_account(&account("d", "émile@example.com"))
        .await
        .unwrap();
    store
        .insert_account(&account("e", "bob@example.com"))
        .await
        .unwrap();
    let emails: Vec<String> = store
        .list_accounts()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.email)
        .collect();
    assert_eq!(
        emails,
        [
            "Ann@Example.com",
            "bob@example.com",
            "Émile@example.com",
            "émile@example.com"
        ]
    );
}

#[tokio::test]
async fn signing_keys_made_in_the_same_second_list_newest_first() {
    let db = TestDatabase::new().await;
    let store = open(&db).await;
    for kid in ["first", "second", "third"] {
        store
            .insert_signing_key(&SigningKey {
                kid: kid.into(),
                private_pem: "pem".into(),
                created_at: 100,
                revoked_at: None,
            })
            .await
            .unwrap();
    }
    store
        .insert_signing_key(&SigningKey {
            kid: "older".into(),
            private_pem: "pem".into(),
            created_at: 99,
            revoked_at: None,
        })
        .await
        .unwrap();
    let kids: Vec<String> = store
        .list_signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["third", "second", "first", "older"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_make_one_first_signing_key() {
    let db = TestDatabase::new().await;
    open(&db).await;
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(store::open(db.url()).await.unwrap());
    }
    let now = 1_700_000_000;
    let loads = stores
        .iter()
        .map(|store| Keys::load_or_create(store.as_ref(), now, 3600));
    let keys = futures::future::join_all(loads).await;
    let kids: Vec<String> = keys
        .into_iter()
        .map(|k| k.unwrap().signing_kid().to_string())
        .collect();
    assert!(kids.iter().all(|k| *k == kids[0]), "{kids:?}");
    assert_eq!(stores[0].list_signing_keys().await.unwrap().len(), 1);
    // Once there is a key, the first-key insert stores nothing.
    let late = linkd::tokens::generate_signing_key(now).unwrap();
    assert!(!stores[1].insert_first_signing_key(&late).await.unwrap());
}

#[tokio::test]
async fn revoking_an_access_token_twice_is_not_an_error() {
    let db = TestDatabase::new().await;
    let store = open(&db).await;
    store.revoke_access_token("jti-1", 10).await.unwrap();
    store.revoke_access_token("jti-1", 10).await.unwrap();
}

fn pending(id: &str, user_code: &str, expires_at: i64) -> linkd::store::DeviceAuthorization {
    linkd::store::DeviceAuthorization {
        id: id.into(),
        device_code_hash: format!("hash-{id}"),
        user_code: user_code.into(),
        client_id: "demo-tv".into(),
        scope: "openid".into(),
        state: linkd::store::AuthorizationState::Pending,
        account_id: None,
        requested_ip: "192.0.2.1".into(),
        device_name: None,
        created_at: 0,
        expires_at,
        interval: 5,
        decided_at: None,
        user_agent: None,
    }
}

async fn with_demo_client(store: &DynStore) {
    store
        .insert_client(&linkd::store::Client {
            client_id: "demo-tv".into(),
            name: "Demo TV".into(),
            secret_hash: None,
            scopes: "openid".into(),
            device_flow_enabled: true,
            redirect_uris: String::new(),
            code_flow_enabled: true,
            refresh_enabled: true,
            require_dpop: false,
            prefilled_links: true,
            same_network: None,
            created_at: 0,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_batch_of_authorizations_stores_all_but_the_taken_codes() {
    let db = TestDatabase::new().await;
    let store = open(&db).await;
    with_demo_client(&store).await;
    store
        .insert_device_authorization(&pending("old", "BCDFGHJK", 600))
        .await
        .unwrap();
    let stored = store
        .insert_device_authorizations(&[
            pending("a", "BCDFGHJL", 600),
            // Taken by the row stored before the batch.
            pending("b", "BCDFGHJK", 600),
            pending("c", "BCDFGHJM", 600),
        ])
        .await
        .unwrap();
    assert_eq!(stored, vec![true, false, true]);
    for (code, id) in [("BCDFGHJL", "a"), ("BCDFGHJK", "old"), ("BCDFGHJM", "c")] {
        let found = store
            .get_device_authorization_by_user_code(code)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.id, id);
    }
    assert!(
        store
            .insert_device_authorizations(&[])
            .await
            .unwrap()
            .is_empty()
    );

    // More rows than one statement may bind parameters for.
    let letters = b"BCDFGHJKLMNPQRSTVWXZ";
    let many: Vec<_> = (0..3000usize)
        .map(|n| {
            let code: String = (0..8)
                .map(|d| letters[(n / 20usize.pow(d)) % 20] as char)
                .collect();
            pending(&format!("many{n}"), &code, 600)
        })
        .collect();
    let stored = store.insert_device_authorizations(&many).await.unwrap();
    assert_eq!(stored.len(), 3000);
    assert!(stored.iter().all(|&s| s));
}

/// The purge picks its batches by primary key on both backends (no
/// physical row ids: an engine without PostgreSQL's heap has no ctid),
/// including the one table keyed by three columns.
#[tokio::test]
async fn the_purge_finds_expired_rows_by_their_keys_in_bounded_batches() {
    let db = TestDatabase::new().await;
    let store = open(&db).await;
    // Five expired counters and two live ones; the live ones share every
    // column of the key but one with an expired one.
    for (name, key, sub, expires_at) in [
        ("code_session", "s1", "", "100"),
        ("code_session", "s2", "", "100"),
        ("sign_in_known", "acct", "192.0.2.0/24", "100"),
        ("sign_in_known", "acct", "198.51.100.0/24", "150"),
        ("sign_in_known", "acct", "203.0.113.0/24", "199"),
        ("sign_in_known", "acct", "2001:db8::/56", "10000"),
        ("code_session", "s1", "x", "10000"),
    ] {
        db.execute(
            &format!(
                "INSERT INTO limit_counts (name, key, sub, count, since, expires_at)
                 VALUES ($1, $2, $3, 1, 0, {expires_at})"
            ),
            &[name, key, sub],
        )
        .await;
    }
    let before = linkd::store::PurgeBefore {
        now: 200,
        codes: 0,
        refresh_tokens: 0,
        tombstones: 0,
    };
    assert_eq!(store.purge(&before, 2).await.unwrap(), 2);
    assert_eq!(store.purge(&before, 2).await.unwrap(), 2);
    assert_eq!(store.purge(&before, 2).await.unwrap(), 1);
    assert_eq!(store.purge(&before, 2).await.unwrap(), 0);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM limit_counts WHERE expires_at = 10000")
            .await,
        2,
        "the live counters stay"
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM limit_counts").await, 2);
}

#[tokio::test]
async fn the_purge_deletes_only_what_has_expired_in_small_batches() {
    let db = TestDatabase::new().await;
    let store = open(&db).await;
    with_demo_client(&store).await;
    store
        .insert_account(&account("acct", "p@example.com"))
        .await
        .unwrap();
    let letters = b"BCDFGHJKLMNPQRSTVWXZ";
    let codes: Vec<_> = (0..12)
        .map(|i| {
            let code: String = (0..8).map(|j| letters[(i + j) % 20] as char).collect();
            // Six expired at 100, six live until 10_000.
            pending(&format!("code{i}"), &code, if i < 6 { 100 } else { 10_000 })
        })
        .collect();
    store.insert_device_authorizations(&codes).await.unwrap();
    for (id, expires_at) in [("s-old", 100), ("s-live", 10_000)] {
        store
            .insert_session(&linkd::store::Session {
                id_hash: id.into(),
                account_id: "acct".into(),
                csrf_token: "t".into(),
                created_at: 0,
                expires_at,
            })
            .await
            .unwrap();
    }

    let before = |codes| linkd::store::PurgeBefore {
        now: 200,
        codes,
        refresh_tokens: 0,
        tombstones: 0,
    };
    // Codes expired at 100 are kept while `codes` is not past them.
    assert_eq!(
        store.purge(&before(100), 500).await.unwrap(),
        1,
        "the old session"
    );
    assert!(
        store
            .get_device_authorization_by_code_hash("hash-code0")
            .await
            .unwrap()
            .is_some()
    );
    // Batches of four: 4 + 2 expired codes, the rest live.
    assert_eq!(store.purge(&before(200), 4).await.unwrap(), 4);
    assert_eq!(store.purge(&before(200), 4).await.unwrap(), 2);
    assert_eq!(store.purge(&before(200), 4).await.unwrap(), 0);
    for i in 0..12 {
        let found = store
            .get_device_authorization_by_code_hash(&format!("hash-code{i}"))
            .await
            .unwrap();
        assert_eq!(found.is_some(), i >= 6, "code{i}");
    }
    assert!(store.get_session("s-live", 200).await.unwrap().is_some());
}
