//! Sign-in through the operator's OpenID provider in the real browser:
//! "Continue with Corp" on the sign-in page, the provider's own login and
//! consent (tests/oidc-provider, on this machine), back to exactly the
//! code the person typed; and an existing account joined once the person
//! signs in to it as well. The provider's pages are not linkd's: they are
//! waited for but not screenshot or checked.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::helpers::*;
use super::{PASSWORD, Suite, Visit};

#[allow(dead_code)]
#[path = "../api/oidc_provider.rs"]
mod oidc_provider;

use oidc_provider::Provider;

/// The scenarios of this file, each against linkd configured with a
/// provider started for it.
pub async fn scenarios(suite: &Suite) {
    let provider = Provider::start().await;
    let corp = provider.config(false);
    let app = spawn_app_with(Options {
        configure: Box::new(move |c| c.providers = vec![corp]),
        ..Default::default()
    })
    .await;
    super::run(suite, "upstream", &app, typed_code_then_the_provider).await;
    super::run(suite, "upstream-join", &app, existing_account_joined).await;
    provider.stop().await;
}

const LOGIN_TITLE: &str = "Sign in to the test provider";
const CONSENT_TITLE: &str = "Share your email with linkd?";

impl Visit<'_> {
    /// Clicks something on the way to the provider and waits for its page
    /// titled `title`; what that page loaded is dropped unchecked.
    async fn click_to_provider(&self, css: &str, title: &str) {
        let element = self.chrome().find(css).await.unwrap();
        self.chrome().click(&element).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let page = self
                .chrome()
                .execute("return [document.title, document.readyState];", vec![])
                .await
                .unwrap_or_default();
            if page[0] == title && page[1] == "complete" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: clicking {css} never reached the provider's {title:?}",
                self.label("provider")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.chrome().logs("performance").await;
        let _ = self.chrome().logs("browser").await;
    }

    /// At the provider's login page: signs in as `login` and agrees to
    /// share the email, which sends the browser back to linkd's `page`.
    async fn sign_in_at_provider(&self, login: &str, page: &str, status: u16) {
        self.fill("#login", login).await;
        self.fill("#password", "whatever the provider takes").await;
        self.click_to_provider("button[type=submit]", CONSENT_TITLE)
            .await;
        self.click_to("button[type=submit]", page, status).await;
    }
}

/// A person with no account here types a device's code, signs in with
/// Corp, and lands on that code's confirmation page; approving links the
/// device to the account Corp made.
async fn typed_code_then_the_provider(v: Visit<'_>) {
    let auth = v.app.start_device("openid email").await;
    v.open("/link", "link-signed-out", 200).await;
    v.fill("#code", &auth.user_code).await;
    v.click_to("form button[type=submit]", "sign-in-for-code", 200)
        .await;
    assert!(v.text(".for-code").await.contains(&auth.user_code));
    v.click_to_provider("form[action='/signin/with/corp'] button", LOGIN_TITLE)
        .await;
    v.sign_in_at_provider("max@example.com", "confirm", 200)
        .await;
    // Exactly the code typed: no number matching for a typed code.
    assert_eq!(v.text(".code").await, auth.user_code);
    assert!(v.text("main").await.contains("max@example.com"));
    v.click_to("button[value=approve]", "approved", 200).await;
    let tokens = v.app.poll(&auth.device_code).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.json);
    let claims = jwt_claims(tokens.json["id_token"].as_str().unwrap());
    assert_eq!(claims["email"], "max@example.com");
}

/// Corp vouches for an address that has an account here: the sign-in
/// page asks for that account's password, and with it Corp joins the
/// account and shows on the account page.
async fn existing_account_joined(v: Visit<'_>) {
    v.app.signed_in_browser("lee@example.com").await;
    v.open("/signin?next=%2Faccount", "sign-in", 200).await;
    v.click_to_provider("form[action='/signin/with/corp'] button", LOGIN_TITLE)
        .await;
    v.sign_in_at_provider("lee@example.com", "prove-account", 409)
        .await;
    assert!(
        v.text("[role=status]")
            .await
            .contains("An account with this email already exists")
    );
    assert_eq!(v.value("#email").await, "lee@example.com");
    v.fill("#password", PASSWORD).await;
    v.click_to("form[action='/signin'] button", "account", 200)
        .await;
    let text = v.text("main").await;
    assert!(text.contains("Corp: lee@example.com"), "{text}");
    assert!(
        text.contains("Added Corp (lee@example.com) as a way to sign in"),
        "{text}"
    );
}
