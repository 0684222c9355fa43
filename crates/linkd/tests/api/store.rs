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
            })
            .await
            .unwrap();
    }
    store
        .insert_signing_key(&SigningKey {
            kid: "older".into(),
            private_pem: "pem".into(),
            created_at: 99,
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
