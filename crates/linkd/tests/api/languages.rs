//! Pages in the visitor's language: English or German, chosen from
//! `Accept-Language` with its weights, error pages included.

use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn accept_language_chooses_the_pages_language() {
    let app = spawn_app().await;
    let cases = [
        (None, "en", "Sign in to link your device."),
        (Some("de-DE,de;q=0.9,en;q=0.8"), "de", "Melden Sie sich an"),
        (Some("en;q=0.5, de;q=0.9"), "de", "Melden Sie sich an"),
        (
            Some("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7"),
            "en",
            "Sign in to",
        ),
        (Some("de;q=0, en"), "en", "Sign in to"),
        (Some("fr"), "en", "Sign in to"),
        (Some("de-AT"), "de", "Melden Sie sich an"),
    ];
    for (header, lang, text) in cases {
        let browser = match header {
            Some(h) => app.browser_in(h),
            None => app.browser(),
        };
        let page = browser.get("/signin").await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(
            page.body.contains(&format!("<html lang=\"{lang}\">")),
            "{header:?}: {}",
            page.body
        );
        assert!(page.contains(text), "{header:?}: {}", page.body);
        assert_eq!(page.headers["content-language"], lang, "{header:?}");
        let vary: Vec<&str> = page
            .headers
            .get_all("vary")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert!(
            vary.iter().any(|v| v.contains("Accept-Language")),
            "{header:?}: {vary:?}"
        );
    }
}

#[tokio::test]
async fn the_whole_flow_reads_in_german() {
    let app = spawn_app().await;
    let auth = app.start_device("openid email").await;
    let browser = app.browser_in("de-DE,de;q=0.9");

    let created = browser.sign_up("bea@example.com", "kurz", "/").await;
    assert_eq!(created.status, StatusCode::BAD_REQUEST);
    assert!(
        created.contains("Das Passwort muss 8 bis 1024 Zeichen lang sein."),
        "{}",
        created.body
    );
    let created = browser
        .sign_up("bea@example.com", "ein langes Passwort", "/")
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER);

    let link = browser.get("/link").await;
    assert!(link.contains("Geben Sie den Code ein, den Ihr Gerät anzeigt."));
    assert_eq!(link.title(), "Gerät verbinden · linkd");

    let wrong = browser.get("/link?code=BCDF-GHJK").await;
    assert_eq!(wrong.status, StatusCode::NOT_FOUND);
    assert!(wrong.contains("Diesen Code konnten wir nicht finden."));

    let confirm = browser.type_code(&auth.user_code).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.contains("Demo TV verbinden?"), "{}", confirm.body);
    assert!(confirm.contains("Ihre E-Mail-Adresse sehen"));
    assert!(confirm.contains("gerade eben"));
    assert!(confirm.contains(">Zustimmen</button>"));

    let done = browser.approve(&auth.user_code).await;
    assert!(
        done.contains("Demo TV ist jetzt verbunden"),
        "{}",
        done.body
    );
    assert_eq!(app.poll(&auth.device_code).await.status, StatusCode::OK);
    let devices = browser.get("/devices").await;
    assert!(devices.contains("Zuletzt genutzt"));
    let account = browser.get("/account").await;
    assert!(account.contains(" zugestimmt"), "{}", account.body);
}

#[tokio::test]
async fn error_pages_built_in_rust_are_translated_too() {
    let app = spawn_app().await;
    let german = app.browser_in("de");

    let missing = german.get("/no/such/page").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.contains("Seite nicht gefunden"), "{}", missing.body);
    assert!(missing.body.contains("<html lang=\"de\">"));
    assert_eq!(missing.title(), "Seite nicht gefunden · linkd");

    let forged = german
        .post("/signin", &[("email", "x@example.com"), ("password", "y")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.contains("Dieses Formular ist abgelaufen"));

    let twice = german
        .post("/signin", &[("csrf", "a"), ("csrf", "b")])
        .await;
    assert_eq!(twice.status, StatusCode::BAD_REQUEST);
    assert!(
        twice.contains("Das Formular hat das Feld „csrf“ zweimal gesendet."),
        "{}",
        twice.body
    );

    // The same errors in English for everyone else.
    let english = app.browser().get("/no/such/page").await;
    assert!(english.contains("Page not found"));
    assert!(english.body.contains("<html lang=\"en\">"));
}
