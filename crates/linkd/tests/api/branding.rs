//! The operator's brand on every page: product name, logo, accent colour
//! (kept readable) and support link; and brands that are refused at start.

use std::sync::Arc;

use linkd::brand::HexColor;
use linkd::clock::SystemClock;
use linkd::state;
use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn every_page_carries_the_operators_brand() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(acme_brand(dir.path(), "#ffcc00")).await;
    let auth = app.start_device("openid").await;
    let browser = app.browser();
    let mut pages = vec![
        ("/", browser.get("/").await),
        ("/signin", browser.get("/signin").await),
        ("/signup", browser.get("/signup").await),
        ("404", browser.get("/nowhere").await),
    ];
    let person = app.signed_in_browser("ada@example.com").await;
    pages.push(("/link", person.get("/link").await));
    let confirm_path = person.typed_path(&auth.user_code).await;
    pages.push(("confirm", person.get(&confirm_path).await));
    pages.push(("result", person.approve(&auth.user_code).await));
    pages.push(("/devices", person.get("/devices").await));
    pages.push(("/account", person.get("/account").await));

    for (name, page) in &pages {
        assert!(
            page.title().ends_with(" · Acme Link"),
            "{name}: {}",
            page.title()
        );
        assert!(
            page.body.contains("<a class=\"brand\" href=\"/\">"),
            "{name}"
        );
        assert!(page.contains(">Acme Link</a>"), "{name}: {}", page.body);
        assert!(
            page.attribute_values("href")
                .contains(&ACME_SUPPORT.to_string()),
            "{name}: support link"
        );
        assert!(
            !page.body.contains(">linkd<"),
            "{name}: default name leaked"
        );
    }

    // The logo is the operator's file, served by linkd and cached for good
    // under its versioned URL.
    let page = &pages[0].1;
    let logo_url = page.linked("/static/logo?v=").expect("logo on the page");
    let (status, headers, bytes) = browser.get_bytes(&logo_url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, ACME_LOGO.as_bytes());
    assert_eq!(headers["content-type"], "image/svg+xml");
    assert_eq!(
        headers["cache-control"],
        "public, max-age=31536000, immutable"
    );

    // #ffcc00 is unreadable on white: the stylesheet carries a darker shade
    // of it that passes WCAG AA, and the page's theme colour matches.
    let css_url = page
        .linked("/static/linkd.css?v=")
        .expect("stylesheet link");
    let (_, headers, css) = browser.get_bytes(&css_url).await;
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    let css = String::from_utf8(css).unwrap();
    let accent_decl = css
        .rsplit("--accent: ")
        .next()
        .and_then(|rest| rest.split(';').next())
        .unwrap();
    let accent: HexColor = accent_decl.parse().expect("accent colour in the CSS");
    assert_ne!(accent.to_string(), "#ffcc00");
    assert!(accent.contrast(HexColor::WHITE) >= 4.5, "{accent}");
    assert!(
        page.body
            .contains(&format!("<meta name=\"theme-color\" content=\"{accent}\">"))
    );

    // Devices and other clients read the same brand.
    let response = app.http.get(app.url("/api/v1/brand")).send().await.unwrap();
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(json["product_name"], "Acme Link");
    assert_eq!(json["support_url"], ACME_SUPPORT);
    assert_eq!(json["accent_color"], accent.to_string());
    assert_eq!(json["logo_uri"], app.url(&logo_url));
}

#[tokio::test]
async fn the_default_theme_has_a_logo_and_no_support_link() {
    let app = spawn_app().await;
    let page = app.browser().get("/").await;
    assert_eq!(page.title(), "Welcome · linkd");
    let logo_url = page.linked("/static/logo?v=").expect("logo");
    let (status, headers, bytes) = app.browser().get_bytes(&logo_url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "image/svg+xml");
    assert!(String::from_utf8(bytes).unwrap().contains("#1f5fbf"));
    assert!(!page.contains("Contact support"));
    // An asset asked for without its version is still served, briefly cached.
    let (status, headers, _) = app.browser().get_bytes("/static/linkd.css").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["cache-control"], "public, max-age=300");
}

#[tokio::test]
async fn a_brand_that_would_break_pages_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.png");
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.resize(17 * 1024, 0);
    std::fs::write(&big, png).unwrap();
    let html = dir.path().join("logo.svg");
    std::fs::write(&html, "<html><script>alert(1)</script></html>").unwrap();

    type Change = Box<dyn Fn(&mut linkd::Config)>;
    let cases: Vec<(Change, &str)> = vec![
        (Box::new(|c| c.product_name = "  ".into()), "product name"),
        (
            Box::new(|c| c.support_url = Some("javascript:alert(1)".into())),
            "support URL",
        ),
        (
            Box::new(move |c| c.logo = Some(big.clone())),
            "keep it at most 16 KB",
        ),
        (
            Box::new(move |c| c.logo = Some(html.clone())),
            "is not an SVG, PNG, JPEG, GIF or WebP image",
        ),
        (
            Box::new(|c| c.logo = Some("/no/such/logo.png".into())),
            "reading logo",
        ),
    ];
    for (change, expected) in cases {
        let mut config = linkd::Config::defaults();
        config.database_url = format!("sqlite://{}", dir.path().join("x.db").display());
        change(&mut config);
        let err = state::prepare(config, Arc::new(SystemClock))
            .await
            .err()
            .expect("refused");
        assert!(err.to_string().contains(expected), "{expected}: {err}");
    }
}
