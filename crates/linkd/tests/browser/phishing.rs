//! Device-code phishing defences on a phone (issue 22): the proximity
//! sentences and "I didn't start this", a prefilled link of an app that
//! turned them off, and an app that requires the device's network.

use std::net::IpAddr;

use reqwest::StatusCode;

use crate::helpers::*;
use crate::{PASSWORD, Visit};

/// A device that says who it is, asking from `source`.
async fn named_device_at(app: &TestApp, source: [u8; 4]) -> DeviceAuth {
    let http = reqwest::Client::builder()
        .local_address(IpAddr::from(source))
        .build()
        .unwrap();
    app.start_named_device(&http, "AcmeTV/2.1 (Living room)")
        .await
}

/// Changes the demo app's settings.
async fn set_app(app: &TestApp, changes: linkd::store::ClientChanges<'_>) {
    app.state
        .store
        .update_client("demo-tv", &changes)
        .await
        .unwrap();
}

/// Signs up in the browser and types `code` on the link page.
async fn sign_up_and_type(v: &Visit<'_>, email: &str, code: &str, next_page: &str) {
    v.open("/signup", "sign-up", 200).await;
    v.fill("#email", email).await;
    v.fill("#password", PASSWORD).await;
    v.click_to("form button[type=submit]", "home-signed-in", 200)
        .await;
    v.open("/link", "link", 200).await;
    v.fill("#code", code).await;
    v.click_to("form button[type=submit]", next_page, 200).await;
}

/// The confirmation page says in plain words how near the device is and
/// what it said it was; "I didn't start this" is as big as Approve, and
/// pressing it denies the code and says it was reported.
pub async fn proximity_and_report(v: Visit<'_>) {
    let auth = named_device_at(v.app, [127, 0, 0, 1]).await;
    sign_up_and_type(&v, "liv@example.com", &auth.user_code, "confirm").await;
    let proximity = v.text("#proximity").await;
    assert!(
        proximity.contains(
            "The device asked for this code just now from the same network as this browser (127.0.0.1)."
        ),
        "{proximity}"
    );
    assert!(
        proximity.contains(
            "It calls itself “Living room TV” and reported itself as “AcmeTV/2.1 (Living room)”."
        ),
        "{proximity}"
    );
    let sizes = v
        .chrome()
        .execute(
            "return ['approve', 'report'].map(value => {\n\
               const r = document.querySelector(`button[value=${value}]`).getBoundingClientRect();\n\
               return [Math.round(r.width), Math.round(r.height)];\n\
             });",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(sizes[0], sizes[1], "Approve and the report button: {sizes}");
    v.tap_targets_are_big_enough("confirm").await;
    v.click_to("button[value=report]", "reported", 200).await;
    assert_eq!(v.heading().await, "Reported: Demo TV was not linked");
    assert_eq!(v.app.poll(&auth.device_code).await.error(), "access_denied");
    v.click_to("header a[href='/account']", "account-after-report", 200)
        .await;
    assert!(
        v.text("main")
            .await
            .contains("Reported Demo TV: you didn't start it (asked from 127.0.0.1)")
    );
}

/// An app whose prefilled links are off: a code in the address is ignored
/// with a note, and the code typed from the device works.
pub async fn prefilled_links_off(v: Visit<'_>) {
    let off = linkd::store::ClientChanges {
        prefilled_links: Some(false),
        ..Default::default()
    };
    set_app(v.app, off).await;
    let auth = v.app.start_device("openid").await;
    v.open("/signup", "sign-up", 200).await;
    v.fill("#email", "max@example.com").await;
    v.fill("#password", PASSWORD).await;
    v.click_to("form button[type=submit]", "home-signed-in", 200)
        .await;
    v.open(&format!("/link?code={}", auth.user_code), "link-note", 200)
        .await;
    assert!(
        v.text("main")
            .await
            .contains("this app's links don't carry the code")
    );
    assert_eq!(v.value("#code").await, "", "the code is not filled in");
    v.fill("#code", &auth.user_code).await;
    v.click_to("form button[type=submit]", "confirm", 200).await;
    v.click_to("button[value=approve]", "approved", 200).await;
    assert_eq!(v.app.poll(&auth.device_code).await.status, StatusCode::OK);
    let back = linkd::store::ClientChanges {
        prefilled_links: Some(true),
        ..Default::default()
    };
    set_app(v.app, back).await;
}

/// An app that requires the device's network: a device on 127.0.0.2 is
/// elsewhere for a browser on 127.0.0.1 under a /32 rule, so the page
/// says so and offers no Approve, only "I didn't start this" and Deny.
pub async fn same_network_required(v: Visit<'_>) {
    let strict = linkd::store::ClientChanges {
        same_network: Some(Some(linkd::store::SameNetwork { v4: 32, v6: 128 })),
        ..Default::default()
    };
    set_app(v.app, strict).await;
    let auth = named_device_at(v.app, [127, 0, 0, 2]).await;
    sign_up_and_type(&v, "ned@example.com", &auth.user_code, "network-refused").await;
    let alert = v.text("#network-required").await;
    assert!(
        alert.contains("Demo TV can only be linked from the network the device is on."),
        "{alert}"
    );
    assert!(alert.contains("this browser is on 127.0.0.1"), "{alert}");
    let approve = v
        .chrome()
        .execute(
            "return document.querySelectorAll('button[value=approve]').length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(approve, 0, "no Approve from another network");
    v.click_to("button[value=deny]", "denied", 200).await;
    assert_eq!(v.app.poll(&auth.device_code).await.error(), "access_denied");
    let open = linkd::store::ClientChanges {
        same_network: Some(None),
        ..Default::default()
    };
    set_app(v.app, open).await;
}
