//! Device-code phishing (issue 22): the forgiving short link and
//! look-alike codes, prefilled links confirmed by number matching,
//! proximity shown and checked, and "I didn't start this".

use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn every_spelling_of_the_short_link_reaches_the_link_page() {
    let app = spawn_app_with(Options {
        configure: Box::new(|c| c.link_aliases = vec!["tv".into(), "Activate".into()]),
        ..Default::default()
    })
    .await;
    let visitor = app.browser();
    for path in [
        "/LINK",
        "/Link/",
        "/link/",
        "/ink",
        "/lnk",
        "/lin",
        "/linl",
        "/tv",
        "/ACTIVATE/",
    ] {
        let page = visitor.get(path).await;
        assert_eq!(page.status, StatusCode::PERMANENT_REDIRECT, "{path}");
        assert_eq!(page.location(), "/link", "{path}");
    }
    // A query comes along; so does a code in the path, normalised.
    let page = visitor.get("/Link?code=bcdf-ghjk").await;
    assert_eq!(page.location(), "/link?code=bcdf-ghjk");
    for path in [
        "/link/BCDF-GHJK",
        "/link/bcdfghjk",
        "/lnk/bcdf-ghjk/",
        "/tv/BCDFGHJK",
        "/link/%EF%BC%A2%EF%BC%A3DF%E2%80%93GHJK",
    ] {
        let page = visitor.get(path).await;
        assert_eq!(page.status, StatusCode::PERMANENT_REDIRECT, "{path}");
        assert_eq!(page.location(), "/link?code=BCDF-GHJK", "{path}");
    }
    // HEAD is answered as GET is; a form sent to a short link is not
    // redirected into a GET.
    let head = visitor.client.head(app.url("/lnk")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::PERMANENT_REDIRECT);
    let post = visitor.post("/lnk", &[("code", "BCDF-GHJK")]).await;
    assert_eq!(post.status, StatusCode::NOT_FOUND);

    // Anything else is the branded 404 that points to the link page.
    for path in ["/links", "/linkk", "/link/a/b", "/tvs", "/no/such/page"] {
        let page = visitor.get(path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert!(page.contains("Page not found"), "{path}");
        assert!(page.contains("href=\"/link\""), "{path}: {}", page.body);
        assert!(page.contains("linkd"), "the brand: {}", page.body);
    }
}

#[tokio::test]
async fn a_short_link_with_a_code_leads_to_its_confirmation() {
    let app = spawn_app().await;
    let auth = app.start_device("openid").await;
    let browser = app.signed_in_browser("short@example.com").await;
    let path = format!("/lnk/{}", auth.user_code.to_lowercase().replace('-', ""));
    let redirect = browser.get(&path).await;
    assert_eq!(redirect.status, StatusCode::PERMANENT_REDIRECT);
    let confirm = browser.get(redirect.location()).await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.body);
    assert!(confirm.contains("Demo TV"), "{}", confirm.body);
}

/// Writes a code's two halves in some look-alike characters.
type Typing = Box<dyn Fn(&str, &str) -> String>;

/// Look-alike characters as phone keyboards and mail clients produce
/// them: each class reads as the code's letters, over HTTP.
#[tokio::test]
async fn codes_typed_with_look_alikes_are_read_as_the_letters_they_look_like() {
    let app = spawn_app().await;
    let browser = app.signed_in_browser("lookalike@example.com").await;
    let to_full_width = |s: &str| -> String {
        s.chars()
            .map(|c| char::from_u32(c as u32 + 0xFEE0).unwrap())
            .collect()
    };
    // Cyrillic and Greek capitals for the letters they share with Latin.
    let to_script = |s: &str, table: &[(char, char)]| -> String {
        s.chars()
            .map(|c| table.iter().find(|(l, _)| *l == c).map_or(c, |(_, o)| *o))
            .collect()
    };
    let cyrillic = [
        ('B', 'В'),
        ('C', 'С'),
        ('H', 'Н'),
        ('K', 'К'),
        ('M', 'М'),
        ('P', 'Р'),
        ('T', 'Т'),
        ('X', 'Х'),
    ];
    let greek = [
        ('B', 'Β'),
        ('Z', 'Ζ'),
        ('H', 'Η'),
        ('K', 'Κ'),
        ('M', 'Μ'),
        ('N', 'Ν'),
        ('P', 'Ρ'),
        ('T', 'Τ'),
        ('X', 'Χ'),
    ];
    let typings: Vec<(&str, Typing)> = vec![
        (
            "full-width",
            Box::new(move |a, b| format!("{}－{}", to_full_width(a), to_full_width(b))),
        ),
        (
            "Cyrillic",
            Box::new(move |a, b| {
                format!("{}-{}", to_script(a, &cyrillic), to_script(b, &cyrillic))
            }),
        ),
        (
            "Greek",
            Box::new(move |a, b| format!("{}-{}", to_script(a, &greek), to_script(b, &greek))),
        ),
        ("en dash", Box::new(|a, b| format!("{a}\u{2013}{b}"))),
        ("em dash", Box::new(|a, b| format!("{a}\u{2014}{b}"))),
        ("minus sign", Box::new(|a, b| format!("{a}\u{2212}{b}"))),
        (
            "no-break and ideographic spaces",
            Box::new(|a, b| format!("\u{00A0}{a}\u{3000}{b}\u{200B}")),
        ),
    ];
    for (name, typing) in typings {
        // A code with at least one letter this script can stand in for
        // (one in 60 has none of Cyrillic's eight).
        let (auth, typed) = loop {
            let auth = app.start_device("openid").await;
            let (a, b) = auth.user_code.split_once('-').unwrap();
            let typed = typing(a, b);
            if !typed.is_ascii() {
                break (auth, typed);
            }
        };
        let done = browser.approve(&typed).await;
        assert!(
            done.contains("is now linked"),
            "{name} {typed:?}: {}",
            done.body
        );
        assert_eq!(app.poll(&auth.device_code).await.status, StatusCode::OK);
    }
}
