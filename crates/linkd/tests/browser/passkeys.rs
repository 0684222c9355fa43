//! Passkeys in Chromium with a virtual authenticator (the WebDriver
//! commands of WebAuthn Level 3 §11): a person adds and names one on the
//! account page, signs in with it from a device's link and lands back at
//! that code, renames and removes it; a second account can neither
//! remove the first one's passkey nor sign in with its key under its own
//! user handle; a removed passkey signs no one in.
//!
//! WebAuthn needs a domain as relying-party id, so this scenario's server
//! is reached at `localhost` (a secure context in Chromium over http).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Visit;

/// Leaves exactly `credential` in the authenticator, so the browser has
/// one passkey to offer and asks nobody to choose.
async fn hold_only(v: &Visit<'_>, authenticator: &str, credential: &Value) {
    let chrome = v.chrome();
    chrome
        .remove_virtual_credentials(authenticator)
        .await
        .unwrap();
    chrome
        .add_virtual_credential(
            authenticator,
            json!({
                "credentialId": credential["credentialId"],
                "isResidentCredential": true,
                "rpId": "localhost",
                "privateKey": credential["privateKey"],
                "userHandle": credential["userHandle"],
                "signCount": credential["signCount"],
            }),
        )
        .await
        .unwrap();
}

async fn add_passkey(v: &Visit<'_>, name: &str, page: &str) {
    v.fill("#passkey-name", name).await;
    v.click_to("#passkey-add button", page, 200).await;
    assert!(v.text("[role=status]").await.contains("Passkey added"));
    assert!(v.text("main").await.contains(name));
}

async fn sign_out(v: &Visit<'_>, page: &str) {
    v.open("/account", &format!("{page}-account"), 200).await;
    v.click_to("form[action='/signout'] button", page, 200)
        .await;
}

/// Opens `target` where the browser then moves on by itself (a passkey
/// offered in the sign-in form's autofill, WebAuthn's conditional
/// mediation, which the virtual authenticator accepts at once), and
/// checks the page it lands on, whose path starts with `landing`.
async fn open_and_land(v: &Visit<'_>, target: &str, landing: &str, page: &str, status: u16) {
    let url = if target.starts_with("http") {
        target.to_string()
    } else {
        v.app.url(target)
    };
    v.chrome().goto(&url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ready = v
            .chrome()
            .execute("return document.readyState;", vec![])
            .await
            .unwrap_or(Value::Null);
        if ready == "complete" && v.path().await.starts_with(landing) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}: never reached {landing} (at {})",
            v.label(page),
            v.path().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    v.arrived(page, status).await;
}

/// What the virtual authenticator holds.
async fn held(v: &Visit<'_>, authenticator: &str) -> Vec<Value> {
    v.chrome().virtual_credentials(authenticator).await.unwrap()
}

/// Signs out with nothing in the authenticator, so that the sign-in page
/// the browser lands on cannot sign straight in again.
async fn sign_out_empty(v: &Visit<'_>, authenticator: &str, page: &str) {
    v.chrome()
        .remove_virtual_credentials(authenticator)
        .await
        .unwrap();
    sign_out(v, page).await;
}

pub(super) async fn passkeys(v: Visit<'_>) {
    let authenticator = v.chrome().add_virtual_authenticator().await.unwrap();

    // Pia adds a passkey.
    v.open("/signup", "sign-up", 200).await;
    v.sign_up_here("pia@example.com", "home-signed-in").await;
    v.open("/account", "account", 200).await;
    assert!(v.text("main").await.contains("No passkeys yet."));
    add_passkey(&v, "Pia's laptop", "passkey-added").await;
    let keys = held(&v, &authenticator).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let pia = keys[0].clone();
    assert_eq!(pia["isResidentCredential"], true, "a discoverable passkey");

    // Signed out, she opens a device's link; the browser offers her
    // passkey in the sign-in form and she lands at that device's code,
    // as after a password.
    sign_out_empty(&v, &authenticator, "signed-out").await;
    hold_only(&v, &authenticator, &pia).await;
    let auth = v.app.start_device("openid").await;
    open_and_land(
        &v,
        &auth.verification_uri_complete,
        "/link?match=",
        "pick",
        200,
    )
    .await;
    v.pick(&auth.user_code, "confirm").await;
    v.click_to("button[value=approve]", "approved", 200).await;
    assert_eq!(v.app.poll(&auth.device_code).await.status, 200);

    v.open("/account", "account-activity", 200).await;
    let main = v.text("main").await;
    assert!(
        main.contains("Signed in with the passkey “Pia's laptop”"),
        "{main}"
    );
    assert!(main.contains("Added the passkey “Pia's laptop”"), "{main}");
    assert!(main.contains("last used"), "{main}");
    v.fill("#passkey-name-1", "Work laptop").await;
    v.click_to(
        "form[action='/account/passkeys/rename'] button",
        "passkey-renamed",
        200,
    )
    .await;
    assert!(v.text("main").await.contains("Work laptop"));

    // Ola, a second account in the same browser: Pia's passkey is not on
    // her account and not hers to remove.
    sign_out_empty(&v, &authenticator, "pia-signed-out").await;
    v.open("/signup", "sign-up-ola", 200).await;
    v.sign_up_here("ola@example.com", "home-ola").await;
    v.open("/account", "account-ola", 200).await;
    assert!(!v.text("main").await.contains("Work laptop"));
    v.chrome()
        .execute(
            "const form = document.createElement('form');\n\
             form.method = 'post'; form.action = '/account/passkeys/remove'; form.id = 'forged';\n\
             form.innerHTML = '<input type=hidden name=csrf><input type=hidden name=id><button>Remove</button>';\n\
             form.elements.csrf.value = document.querySelector('input[name=csrf]').value;\n\
             form.elements.id.value = arguments[0];\n\
             document.querySelector('main').append(form);",
            vec![pia["credentialId"].clone()],
        )
        .await
        .unwrap();
    v.click_to("#forged button", "forged-remove", 404).await;
    v.open("/account", "account-ola-again", 200).await;
    add_passkey(&v, "Ola's phone", "ola-passkey-added").await;
    let keys = held(&v, &authenticator).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let ola = keys[0].clone();
    assert_ne!(ola["userHandle"], pia["userHandle"]);

    // Pia's key presented under Ola's user handle (WebAuthn §7.2 step 6):
    // refused, nobody signed in.
    sign_out_empty(&v, &authenticator, "ola-signed-out").await;
    let mut forged = pia.clone();
    forged["userHandle"] = ola["userHandle"].clone();
    hold_only(&v, &authenticator, &forged).await;
    open_and_land(&v, "/signin", "/signin/passkey", "sign-in-refused", 401).await;
    v.alert_says("doesn't open an account here").await;

    // From that page, the button and Ola's own passkey sign Ola in.
    hold_only(&v, &authenticator, &ola).await;
    v.click_to("#passkey-signin button", "ola-signed-in", 200)
        .await;
    v.open("/account", "account-ola-passkey", 200).await;
    assert!(v.text("main").await.contains("ola@example.com"));

    // Pia removes hers; with it the authenticator signs no one in.
    sign_out_empty(&v, &authenticator, "ola-out").await;
    v.fill("#email", "pia@example.com").await;
    v.fill("#password", super::PASSWORD).await;
    v.click_to("form[action='/signin'] button", "pia-home", 200)
        .await;
    v.open("/account", "account-pia", 200).await;
    v.click_to(
        "form[action='/account/passkeys/remove'] button",
        "passkey-removed",
        200,
    )
    .await;
    let main = v.text("main").await;
    assert!(main.contains("Passkey removed"), "{main}");
    assert!(main.contains("Removed the passkey “Work laptop”"), "{main}");
    sign_out_empty(&v, &authenticator, "pia-out").await;
    hold_only(&v, &authenticator, &pia).await;
    open_and_land(&v, "/signin", "/signin/passkey", "removed-refused", 401).await;
    v.alert_says("doesn't open an account here").await;

    v.chrome()
        .remove_virtual_authenticator(&authenticator)
        .await
        .unwrap();
}
