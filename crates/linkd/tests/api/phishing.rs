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
    assert_eq!(
        redirect.location(),
        format!("/link?code={}", auth.user_code)
    );
    // A code in an address is a prefilled link: number matching.
    let matching = browser.get(redirect.location()).await;
    assert_eq!(matching.status, StatusCode::SEE_OTHER);
    let page = browser.get(matching.location()).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.contains("Which code does your device show?"),
        "{}",
        page.body
    );
    assert_eq!(offered(&page).len(), 3);
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

/// A person's browser whose connections come from `source`, an address
/// in 127.0.0.0/8: another machine as far as linkd can tell.
fn browser_at(app: &TestApp, source: &str) -> Browser {
    Browser {
        base: app.base.clone(),
        client: reqwest::Client::builder()
            .cookie_store(true)
            .local_address(source.parse::<std::net::IpAddr>().unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    }
}

/// The codes a number-matching page offers, in order.
fn offered(page: &Page) -> Vec<String> {
    page.body
        .match_indices("name=\"pick\" value=\"")
        .map(|(at, marker)| {
            let rest = &page.body[at + marker.len()..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

/// A device that says who it is: a name and a User-Agent.
async fn start_named_device(app: &TestApp) -> DeviceAuth {
    app.start_named_device(&app.http, "AcmeTV/2.1 (Living room; firmware 7)")
        .await
}

/// Opens a device's `verification_uri_complete` signed in: the redirect
/// to its number-matching page, and that page.
async fn open_link(browser: &Browser, auth: &DeviceAuth) -> (String, Page) {
    let first = browser.get(&auth.verification_uri_complete).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
    let to = first.location().to_string();
    assert!(to.starts_with("/link?match="), "{to}");
    let page = browser.get(&to).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    (to, page)
}

#[tokio::test]
async fn a_code_in_a_link_is_confirmed_by_picking_it_from_three() {
    let app = spawn_app().await;
    let auth = start_named_device(&app).await;
    let browser = app.signed_in_browser("pick@example.com").await;
    let (path, page) = open_link(&browser, &auth).await;
    // The address no longer shows the code the person must find.
    assert!(!path.contains(&auth.user_code.replace('-', "")));
    assert!(!path.contains(&auth.user_code));
    assert!(page.contains("Which code does your device show?"));
    assert!(
        !page.contains("value=\"approve\""),
        "no Approve before the pick"
    );
    assert!(!page.contains("class=\"code\""), "the code is not shown");
    let choices = offered(&page);
    assert_eq!(choices.len(), 3, "{}", page.body);
    assert_eq!(choices.iter().filter(|c| **c == auth.user_code).count(), 1);
    // Decoys are well-formed codes that belong to no authorization: the
    // page shows nobody's live code.
    for decoy in choices.iter().filter(|c| **c != auth.user_code) {
        let parsed = linkd::codes::UserCode::parse(decoy).unwrap();
        assert_eq!(&parsed.display(), decoy);
        let stored = app
            .state
            .store
            .get_device_authorization_by_user_code(parsed.as_str())
            .await
            .unwrap();
        assert!(stored.is_none(), "a decoy is a stored code");
    }
    // A reload shows the same three in the same order (new decoys would
    // give the device's code away as the one that stays).
    assert_eq!(offered(&browser.get(&path).await), choices);
    // Another person's page for the same code has other decoys.
    let other = app.signed_in_browser("other@example.com").await;
    let (_, theirs) = open_link(&other, &auth).await;
    assert_ne!(offered(&theirs), choices);

    // A form changed to send a code it did not offer decides nothing.
    let csrf = page.csrf();
    let reference = hidden_field(&page.body, "ref").unwrap();
    for forged in [
        vec![("pick", "BCDF-GHJK")],
        vec![("pick", "not a code")],
        vec![("pick", choices[0].as_str()), ("decision", "deny")],
        vec![("decision", "approve")],
        vec![],
    ] {
        let mut form = vec![("csrf", csrf.as_str()), ("ref", reference.as_str())];
        form.extend(forged.iter().copied());
        let refused = browser.post("/link/pick", &form).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{forged:?}");
        assert!(
            refused.contains("This form was changed") || refused.contains("Pick the code"),
            "{forged:?}: {}",
            refused.body
        );
    }
    // Without the CSRF token, or naming no authorization, nothing either.
    let no_csrf = browser
        .post(
            "/link/pick",
            &[
                ("ref", reference.as_str()),
                ("pick", auth.user_code.as_str()),
            ],
        )
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    let no_ref = browser
        .post(
            "/link/pick",
            &[
                ("csrf", csrf.as_str()),
                ("ref", "nothing"),
                ("pick", "BCDF-GHJK"),
            ],
        )
        .await;
    assert_eq!(no_ref.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.poll(&auth.device_code).await.error(),
        "authorization_pending"
    );

    // The right pick leads to the confirmation page, with Approve.
    let confirm = browser
        .post(
            "/link/pick",
            &[
                ("csrf", csrf.as_str()),
                ("ref", reference.as_str()),
                ("pick", auth.user_code.as_str()),
            ],
        )
        .await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.body);
    assert!(confirm.contains("value=\"approve\""));
    assert!(confirm.contains(&format!("<p class=\"code\">{}</p>", auth.user_code)));
    let done = browser
        .post(
            "/link/decide",
            &[
                ("csrf", confirm.csrf().as_str()),
                ("code", auth.user_code.as_str()),
                ("decision", "approve"),
            ],
        )
        .await;
    assert!(done.contains("is now linked"), "{}", done.body);
    assert_eq!(app.poll(&auth.device_code).await.status, StatusCode::OK);

    // A typed code needs no second step.
    let typed = app.start_device("openid").await;
    let page = browser.type_code(&typed.user_code).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.contains("value=\"approve\""));
    assert!(!page.contains("name=\"pick\""));
    // The typed token belongs to this browser: another's does not skip
    // number matching.
    let token = other.typed_path(&typed.user_code).await;
    let elsewhere = browser.get(&token).await;
    assert_eq!(elsewhere.status, StatusCode::SEE_OTHER);
    assert!(elsewhere.location().starts_with("/link?match="));
}

#[tokio::test]
async fn a_wrong_pick_denies_the_code_and_is_recorded() {
    let app = spawn_app().await;
    let auth = app.start_device("openid").await;
    let browser = app.signed_in_browser("wrong@example.com").await;
    let (path, page) = open_link(&browser, &auth).await;
    let decoy = offered(&page)
        .into_iter()
        .find(|c| *c != auth.user_code)
        .unwrap();
    let wrong = browser
        .post(
            "/link/pick",
            &[
                ("csrf", page.csrf().as_str()),
                ("ref", hidden_field(&page.body, "ref").unwrap().as_str()),
                ("pick", decoy.as_str()),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::OK);
    assert!(
        wrong.contains("That wasn't the device's code"),
        "{}",
        wrong.body
    );
    let denied = app.poll(&auth.device_code).await;
    assert_eq!(denied.error(), "access_denied");
    // The page again says what was decided; the right code is no use now.
    let again = browser.get(&path).await;
    assert!(again.contains("was not linked"), "{}", again.body);
    let account = browser.get("/account").await;
    assert!(
        account.contains("Cancelled Demo TV: the code you picked was not the device's"),
        "{}",
        account.body
    );
}

#[tokio::test]
async fn an_app_can_turn_prefilled_links_off() {
    let app = spawn_app().await;
    app.state
        .store
        .update_client(
            "demo-tv",
            &linkd::store::ClientChanges {
                prefilled_links: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let reply = app
        .device_authorization(&[("client_id", "demo-tv"), ("scope", "openid")])
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.json.get("verification_uri_complete").is_none(),
        "{}",
        reply.json
    );
    assert_eq!(reply.json["verification_uri"], app.url("/link"));
    let code = reply.json["user_code"].as_str().unwrap().to_string();
    let browser = app.signed_in_browser("typed@example.com").await;
    // A code in the address, however it came, is ignored with a note.
    for path in [format!("/link?code={code}"), format!("/lnk/{code}")] {
        let mut page = browser.get(&path).await;
        if page.status == StatusCode::PERMANENT_REDIRECT {
            page = browser.get(page.location()).await;
        }
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(
            page.contains("this app's links don't carry the code"),
            "{}",
            page.body
        );
        assert!(page.contains("value=\"\""), "the field is left empty");
        assert!(!page.contains(&code), "{path}");
    }
    // Typed, it works as ever.
    let done = browser.approve(&code).await;
    assert!(done.contains("is now linked"), "{}", done.body);
}

#[tokio::test]
async fn the_confirmation_page_says_how_near_the_device_is() {
    let app = spawn_app().await;
    let auth = start_named_device(&app).await;
    let browser = app.signed_in_browser("near@example.com").await;
    app.clock.advance_secs(120);
    let page = browser.type_code(&auth.user_code).await;
    assert!(
        page.contains(
            "The device asked for this code 2 minutes ago from the same network as this browser (127.0.0.1)."
        ),
        "{}",
        page.body
    );
    assert!(page.contains(
        "It calls itself “Living room TV” and reported itself as “AcmeTV/2.1 (Living room; firmware 7)”."
    ));
    assert!(page.contains("Device reported itself as"));

    // From another network (the trusted proxy's client line), the same
    // sentence says so, with both addresses.
    let app = spawn_app_with(with(behind_proxy)).await;
    let auth = app.start_device_from("198.51.100.7").await;
    let browser = app.signed_in_browser("far@example.com").await;
    let page = browser.type_code_from(&auth.user_code, "203.0.113.5").await;
    assert!(
        page.contains(
            "The device asked for this code just now from 198.51.100.7, a different network from this browser's (203.0.113.5)."
        ),
        "{}",
        page.body
    );
    assert!(!page.contains("It calls itself"));
}

#[tokio::test]
async fn an_app_can_require_the_same_network() {
    let app = spawn_app().await;
    // Only the device's own address counts as its network here, so a
    // browser on 127.0.0.2 is elsewhere.
    app.state
        .store
        .update_client(
            "demo-tv",
            &linkd::store::ClientChanges {
                same_network: Some(Some(linkd::store::SameNetwork { v4: 32, v6: 128 })),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let auth = app.start_device("openid").await;
    let away = browser_at(&app, "127.0.0.2");
    let signed_up = away
        .sign_up("away@example.com", "correct horse battery", "/")
        .await;
    assert_eq!(signed_up.status, StatusCode::SEE_OTHER);
    let page = away.type_code(&auth.user_code).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.contains("Demo TV can only be linked from the network the device is on."),
        "{}",
        page.body
    );
    assert!(page.contains("this browser is on 127.0.0.2"));
    assert!(!page.contains("value=\"approve\""));
    // Sending the approval anyway is refused with a page that says why.
    let refused = away
        .post(
            "/link/decide",
            &[
                ("csrf", page.csrf().as_str()),
                ("code", auth.user_code.as_str()),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused.contains("Approve from the device's network"),
        "{}",
        refused.body
    );
    assert_eq!(
        app.poll(&auth.device_code).await.error(),
        "authorization_pending"
    );
    // From the device's network it links.
    let near = browser_at(&app, "127.0.0.1");
    near.sign_up("near@example.com", "correct horse battery", "/")
        .await;
    let done = near.approve(&auth.user_code).await;
    assert!(done.contains("is now linked"), "{}", done.body);
    assert_eq!(app.poll(&auth.device_code).await.status, StatusCode::OK);
}
