//! The person's own pages on a phone in another time zone: times read in
//! the browser's zone, a rename that says so at the device's place in the
//! list, and the settings apps keep in sync deleted after a confirmation.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use reqwest::StatusCode;
use serde_json::json;

use super::Visit;

/// São Paulo keeps no summer time: three hours behind UTC all year, which
/// the tz database writes "-03" (shown "UTC-03").
const ZONE: &str = "America/Sao_Paulo";

/// The browser's zone set to São Paulo for the scenario, and back to the
/// machine's afterwards, whatever happened.
pub async fn in_another_zone(v: Visit<'_>) {
    let set = |zone: &str| {
        v.chrome().cdp(
            "Emulation.setTimezoneOverride",
            json!({ "timezoneId": zone }),
        )
    };
    set(ZONE).await.unwrap();
    let outcome = AssertUnwindSafe(times_rename_and_synced_settings(&v))
        .catch_unwind()
        .await;
    set("").await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// "HH:MM" of the server's clock in São Paulo, computed apart from
/// linkd's formatting.
fn sao_paulo_clock(v: &Visit<'_>) -> String {
    use linkd::clock::Clock;
    let offset = time::UtcOffset::from_hms(-3, 0, 0).unwrap();
    let t = time::OffsetDateTime::from_unix_timestamp(v.app.clock.now())
        .unwrap()
        .to_offset(offset);
    format!("{:02}:{:02}", t.hour(), t.minute())
}

async fn times_rename_and_synced_settings(v: &Visit<'_>) {
    let auth = v.app.start_device("openid offline_access sync").await;
    v.sign_up_from_the_device_link(&auth, "pia@example.com")
        .await;
    let here = format!("today, {} UTC-03", sao_paulo_clock(v));
    let confirm = v.text("main").await;
    assert!(confirm.contains(&here), "{here}: {confirm}");
    v.click_to("button[value=approve]", "approved", 200).await;
    let tokens = v.app.poll(&auth.device_code).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.json);
    let token = tokens.json["access_token"].as_str().unwrap();
    for key in ["prefs/language", "prefs/subtitles"] {
        v.app.create_setting(token, key, "true").await;
    }

    v.click_to("header a[href='/devices']", "devices-in-zone", 200)
        .await;
    let list = v.text("ul.devices").await;
    assert!(list.contains(&here), "{here}: {list}");
    assert!(!list.contains(" UTC "), "{list}");

    // Rename: back at the device's card, which says what was done.
    v.click_to("li.device a[href$='/edit']", "edit-in-zone", 200)
        .await;
    v.fill("#label", "Office TV").await;
    v.click_to("form button[type=submit]", "renamed-in-place", 200)
        .await;
    let path = v.path().await;
    assert!(path.contains("#device-"), "{path}");
    assert_eq!(
        v.text("li.device:target [role=status]").await,
        "Saved: this device is now called Office TV."
    );

    // Synced settings in words, and a delete that asks first.
    v.click_to("header a[href='/account']", "account-in-zone", 200)
        .await;
    let synced = v.text("main").await;
    assert!(
        synced.contains("Settings kept in sync for Demo TV")
            && synced.contains("2 settings (prefs,"),
        "{synced}"
    );
    assert!(synced.contains(&format!("Last changed {here}")), "{synced}");
    v.click_to(
        "a.button.danger[href^='/account/sync/delete']",
        "synced-delete-confirm",
        200,
    )
    .await;
    assert_eq!(
        v.heading().await,
        "Delete the settings kept in sync for Demo TV?"
    );
    let read = || async {
        v.app
            .http
            .get(v.app.url("/api/v1/sync/prefs/language"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(read().await, StatusCode::OK, "asking deletes nothing");
    v.click_to("main button.danger", "synced-deleted", 200)
        .await;
    assert_eq!(
        v.text("[role=status]").await,
        "Deleted the settings kept in sync for Demo TV, from every device."
    );
    assert_eq!(read().await, StatusCode::NOT_FOUND);

    // A browser whose cookie is gone gets the page in the zone the account
    // remembers; when that is not the browser's, the script sets the
    // cookie and loads the page once more, in the right zone.
    let store = v.app.state.store.as_ref();
    let account = store
        .get_account_by_email("pia@example.com")
        .await
        .unwrap()
        .unwrap();
    store
        .set_account_time_zone(&account.id, "UTC")
        .await
        .unwrap();
    v.chrome()
        .execute("document.cookie = 'linkd_tz=; Max-Age=0; Path=/';", vec![])
        .await
        .unwrap();
    v.chrome().goto(&v.app.url("/devices")).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let list = v
            .chrome()
            .execute(
                "const l = document.querySelector('ul.devices');\n\
                 return document.readyState === 'complete' && l ? l.textContent : '';",
                vec![],
            )
            .await
            .unwrap();
        if list.as_str().is_some_and(|l| l.contains(&here)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the page stayed in the guessed zone: {list}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    v.arrived("devices-zone-corrected", 200).await;
}
