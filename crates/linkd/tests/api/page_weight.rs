//! Every page, with the stylesheet, script and logo it loads, stays under
//! 30 KB, and loads nothing from another site: people open these pages on
//! phones, often on a bad connection.

use std::collections::BTreeSet;

use reqwest::StatusCode;

use crate::helpers::*;

/// The budget for one page and everything it loads, uncompressed (linkd
/// sends no compressed bodies, so this is what goes over the wire).
const BUDGET_BYTES: usize = 30 * 1024;

/// The page's bytes plus those of each distinct resource it loads.
pub async fn weigh(browser: &Browser, name: &str, page: &Page) -> usize {
    let mut resources = BTreeSet::new();
    for (tag, attribute) in [("<link ", "href"), ("<script ", "src"), ("<img ", "src")] {
        for element in page.body.split(tag).skip(1) {
            let element = element.split('>').next().unwrap_or("");
            let marker = format!("{attribute}=\"");
            if let Some(start) = element.find(&marker) {
                let rest = &element[start + marker.len()..];
                let url = html_unescape(&rest[..rest.find('"').unwrap()]);
                assert!(
                    url.starts_with('/') && !url.starts_with("//"),
                    "{name} loads {url} from another site"
                );
                resources.insert(url);
            }
        }
    }
    let mut total = page.body.len();
    let mut parts = vec![format!("html {}", page.body.len())];
    for url in &resources {
        let (status, _, bytes) = browser.get_bytes(url).await;
        assert_eq!(status, StatusCode::OK, "{name}: {url}");
        total += bytes.len();
        parts.push(format!(
            "{} {}",
            url.split('?').next().unwrap(),
            bytes.len()
        ));
    }
    // Shown with --nocapture; the README quotes these numbers.
    println!("{name:<12} {total:>6} bytes ({})", parts.join(", "));
    assert!(
        total < BUDGET_BYTES,
        "{name} weighs {total} bytes, over the {BUDGET_BYTES} byte budget: {parts:?}"
    );
    total
}

#[tokio::test]
async fn every_page_stays_under_30_kb_with_what_it_loads() {
    let app = spawn_app().await;
    let visitor = app.browser();
    let mut weighed = Vec::new();
    for path in ["/", "/signin", "/signup"] {
        let page = visitor.get(path).await;
        assert_eq!(page.status, StatusCode::OK);
        weighed.push(weigh(&visitor, path, &page).await);
    }
    let missing = visitor.get("/no/such/page").await;
    weighed.push(weigh(&visitor, "404", &missing).await);

    // A person with two linked devices and some history: the longest
    // devices and account pages a first month produces.
    let (person, _) = app
        .link_device("weight@example.com", "openid email profile offline_access")
        .await;
    let second = app.start_device("openid").await;
    person.approve(&second.user_code).await;
    let denied = app.start_device("openid").await;
    person.deny(&denied.user_code).await;

    let auth = app
        .start_device("openid email profile offline_access")
        .await;
    let link = person.get("/link").await;
    weighed.push(weigh(&person, "/link", &link).await);
    let wrong = person.get("/link?code=BCDF-GHJK").await;
    assert_eq!(wrong.status, StatusCode::NOT_FOUND);
    weighed.push(weigh(&person, "wrong code", &wrong).await);
    let confirm = person.type_code(&auth.user_code).await;
    assert_eq!(confirm.status, StatusCode::OK);
    weighed.push(weigh(&person, "confirm", &confirm).await);
    let result = person.approve(&auth.user_code).await;
    weighed.push(weigh(&person, "result", &result).await);
    // Used, to someone other than the person who approved it.
    let other = app.signed_in_browser("weigher-too@example.com").await;
    let used = other.type_code(&auth.user_code).await;
    assert_eq!(used.status, StatusCode::CONFLICT);
    weighed.push(weigh(&other, "used code", &used).await);
    let devices = person.get("/devices").await;
    weighed.push(weigh(&person, "/devices", &devices).await);
    let account = person.get("/account").await;
    weighed.push(weigh(&person, "/account", &account).await);

    // A device's edit page, and the confirmation before deleting the
    // settings an app keeps in sync.
    let (keeper, tokens) = app
        .link_device("weight-sync@example.com", "openid sync")
        .await;
    let token = tokens["access_token"].as_str().unwrap();
    app.create_setting(token, "prefs/language", "\"de\"").await;
    let id = jwt_claims(token)["sid"].as_str().unwrap().to_string();
    let edit = keeper.get(&format!("/devices/{id}/edit")).await;
    assert_eq!(edit.status, StatusCode::OK);
    weighed.push(weigh(&keeper, "edit", &edit).await);
    let confirm = keeper
        .get("/account/sync/delete?app=demo-tv&collection=prefs")
        .await;
    assert_eq!(confirm.status, StatusCode::OK);
    weighed.push(weigh(&keeper, "sync delete", &confirm).await);

    assert_eq!(weighed.len(), 13);
}
