//! DPoP (RFC 9449) over HTTP: a device proves its key at the token
//! endpoint, its tokens are bound to it, and linkd's own APIs check a fresh
//! proof on every request; replays, wrong methods, addresses, times, token
//! hashes and keys are refused, a copied refresh token is worthless
//! without the key, and an app can require DPoP.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use linkd::clock::Clock;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::process::Command;

use crate::helpers::*;

/// A device's key pair (P-256) and the proofs it signs.
struct DeviceKey {
    signing: EncodingKey,
    jwk: Value,
    /// RFC 7638 thumbprint, computed here from the members in their order.
    jkt: String,
}

impl DeviceKey {
    fn new() -> DeviceKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = pair.public_key_raw();
        assert_eq!((raw.len(), raw[0]), (65, 4), "an uncompressed P-256 point");
        let (x, y) = (
            URL_SAFE_NO_PAD.encode(&raw[1..33]),
            URL_SAFE_NO_PAD.encode(&raw[33..]),
        );
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        DeviceKey {
            signing: EncodingKey::from_ec_der(&pair.serialize_der()),
            jwk: json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y }),
            jkt: URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())),
        }
    }

    /// A proof JWT with exactly this header and these claims.
    fn sign(&self, header: &Value, claims: &Value) -> String {
        let head = URL_SAFE_NO_PAD.encode(header.to_string());
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let message = format!("{head}.{body}");
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &self.signing, Algorithm::ES256)
                .unwrap();
        format!("{message}.{signature}")
    }

    fn header(&self) -> Value {
        json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk })
    }

    /// A fresh proof for `method` on `url` at `iat`, for `token` if given.
    fn proof(&self, method: &str, url: &str, iat: i64, token: Option<&str>) -> String {
        let mut claims = json!({
            "jti": URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
            "htm": method,
            "htu": url,
            "iat": iat,
        });
        if let Some(token) = token {
            claims["ath"] = URL_SAFE_NO_PAD
                .encode(Sha256::digest(token.as_bytes()))
                .into();
        }
        self.sign(&self.header(), &claims)
    }
}

async fn token_request(app: &TestApp, form: &[(&str, &str)], proofs: &[&str]) -> Reply {
    let mut request = app.http.post(app.url("/oauth/token")).form(form);
    for proof in proofs {
        request = request.header("DPoP", *proof);
    }
    reply(request.send().await.unwrap()).await
}

/// A GET of one of linkd's APIs with `Authorization: <scheme> token` and
/// the proofs given.
async fn api_get(
    app: &TestApp,
    path: &str,
    scheme: &str,
    token: &str,
    proof: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .http
        .get(app.url(path))
        .header("authorization", format!("{scheme} {token}"));
    if let Some(proof) = proof {
        request = request.header("DPoP", proof);
    }
    request.send().await.unwrap()
}

/// The error a refused API request names (with its description), and its
/// challenge.
async fn refusal(response: reqwest::Response) -> (StatusCode, String, String) {
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body: Value = response.json().await.unwrap();
    (
        status,
        format!(
            "{}: {}",
            body["error"].as_str().unwrap_or(""),
            body["error_description"].as_str().unwrap_or("")
        ),
        challenge,
    )
}

#[tokio::test]
async fn tokens_are_bound_to_the_device_key_and_every_proof_is_checked() {
    let app = spawn_app().await;
    let key = DeviceKey::new();
    let thief = DeviceKey::new();
    let token_url = app.url("/oauth/token");
    let now = app.clock.now();

    // Discovery says which proofs linkd takes.
    let meta: Value = app
        .http
        .get(app.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let algs = meta["dpop_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    assert!(algs.contains(&json!("ES256")) && !algs.contains(&json!("HS256")));

    // The device polls with proofs; the pending polls are answered as
    // usual, the redeeming one binds the tokens.
    let auth = app.start_device("openid offline_access sync").await;
    let poll_form = [
        ("grant_type", DEVICE_GRANT),
        ("client_id", "demo-tv"),
        ("device_code", auth.device_code.as_str()),
    ];
    let pending = token_request(
        &app,
        &poll_form,
        &[&key.proof("POST", &token_url, now, None)],
    )
    .await;
    assert_eq!(pending.error(), "authorization_pending");
    let browser = app.signed_in_browser("dpop@example.com").await;
    assert!(
        browser
            .approve(&auth.user_code)
            .await
            .contains("is now linked")
    );
    // A broken proof on the poll that would redeem changes nothing...
    let wrong = token_request(
        &app,
        &poll_form,
        &[&key.proof("POST", &app.url("/oauth/tokens"), now, None)],
    )
    .await;
    assert_eq!(
        (wrong.status, wrong.error()),
        (StatusCode::BAD_REQUEST, "invalid_dpop_proof")
    );
    // ...and a good one gets DPoP tokens.
    let redeem_proof = key.proof("POST", &token_url, now, None);
    let tokens = token_request(&app, &poll_form, &[&redeem_proof]).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.json);
    assert_eq!(tokens.json["token_type"], "DPoP");
    let access = tokens.json["access_token"].as_str().unwrap().to_string();
    let refresh = tokens.json["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(jwt_claims(&access)["cnf"]["jkt"], key.jkt.as_str());

    // Introspection shows the binding of both tokens.
    let seen = app.introspect(&access).await;
    assert_eq!(
        (&seen["token_type"], &seen["cnf"]["jkt"]),
        (&json!("DPoP"), &json!(key.jkt))
    );
    assert_eq!(
        app.introspect(&refresh).await["cnf"]["jkt"],
        key.jkt.as_str()
    );

    // The device API with a good proof.
    let device_url = app.url("/api/v1/device");
    let good = key.proof("GET", &device_url, now, Some(&access));
    let ok = api_get(&app, "/api/v1/device", "DPoP", &access, Some(&good)).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let userinfo = key.proof("GET", &app.url("/oauth/userinfo"), now, Some(&access));
    let ok = api_get(&app, "/oauth/userinfo", "DPoP", &access, Some(&userinfo)).await;
    assert_eq!(ok.status(), StatusCode::OK);

    // One proof sent eight times at once: exactly one request gets in.
    let burst = key.proof("GET", &device_url, now, Some(&access));
    let answers = futures::future::join_all(
        (0..8).map(|_| api_get(&app, "/api/v1/device", "DPoP", &access, Some(&burst))),
    )
    .await;
    let admitted = answers
        .iter()
        .filter(|r| r.status() == StatusCode::OK)
        .count();
    assert_eq!(
        admitted,
        1,
        "{:?}",
        answers.iter().map(|r| r.status()).collect::<Vec<_>>()
    );

    // Every kind of bad proof, each refused with a DPoP challenge.
    let other_token = jwt_claims(&access)["jti"].as_str().unwrap().to_string();
    let bad: Vec<(&str, Option<String>, &str)> = vec![
        (
            "replayed jti",
            Some(good.clone()),
            "invalid_dpop_proof: the DPoP proof was already used",
        ),
        (
            "no proof",
            None,
            "invalid_dpop_proof: a DPoP proof is required",
        ),
        (
            "wrong htm",
            Some(key.proof("POST", &device_url, now, Some(&access))),
            "(htm)",
        ),
        (
            "wrong htu",
            Some(key.proof("GET", &app.url("/api/v1/sync/events"), now, Some(&access))),
            "(htu)",
        ),
        (
            "another host",
            Some(key.proof(
                "GET",
                "https://evil.example/api/v1/device",
                now,
                Some(&access),
            )),
            "(htu)",
        ),
        (
            "stale iat",
            Some(key.proof("GET", &device_url, now - 301, Some(&access))),
            "iat",
        ),
        (
            "iat ahead",
            Some(key.proof("GET", &device_url, now + 120, Some(&access))),
            "iat",
        ),
        (
            "wrong ath",
            Some(key.proof("GET", &device_url, now, Some(&other_token))),
            "(ath)",
        ),
        (
            "no ath",
            Some(key.proof("GET", &device_url, now, None)),
            "(ath)",
        ),
        (
            "another key",
            Some(thief.proof("GET", &device_url, now, Some(&access))),
            "another key",
        ),
        ("not a JWT", Some("garbage".into()), "not a well-formed"),
    ];
    for (what, proof, error) in bad {
        let response = api_get(&app, "/api/v1/device", "DPoP", &access, proof.as_deref()).await;
        let (status, got, challenge) = refusal(response).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert!(
            got.starts_with("invalid_dpop_proof: ") && got.contains(error),
            "{what}: {got}"
        );
        assert!(challenge.starts_with("DPoP "), "{what}: {challenge}");
        assert!(challenge.contains("algs=\"ES256"), "{what}: {challenge}");
    }
    // The bound token as a Bearer token is refused: a copy is worthless.
    let (status, error, challenge) =
        refusal(api_get(&app, "/api/v1/device", "Bearer", &access, None).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(error.starts_with("invalid_token: "), "{error}");
    assert!(challenge.starts_with("DPoP "), "{challenge}");

    // A stolen refresh token without the key, or with another key, gets
    // nothing and costs the device nothing.
    let refresh_form = [
        ("grant_type", "refresh_token"),
        ("client_id", "demo-tv"),
        ("refresh_token", refresh.as_str()),
    ];
    let stolen = token_request(&app, &refresh_form, &[]).await;
    assert_eq!(
        (stolen.status, stolen.error()),
        (StatusCode::BAD_REQUEST, "invalid_dpop_proof")
    );
    let stolen = token_request(
        &app,
        &refresh_form,
        &[&thief.proof("POST", &token_url, now, None)],
    )
    .await;
    assert_eq!(stolen.error(), "invalid_dpop_proof");
    // The token endpoint refuses replays and malformed proofs too.
    let twice = key.proof("POST", &token_url, now, None);
    for (what, says, proofs) in [
        (
            "the redeeming proof again",
            "already used",
            vec![redeem_proof.clone()],
        ),
        (
            "two headers",
            "one DPoP header",
            vec![twice.clone(), twice.clone()],
        ),
        (
            "wrong htm",
            "(htm)",
            vec![key.proof("GET", &token_url, now, None)],
        ),
        (
            "stale iat",
            "iat",
            vec![key.proof("POST", &token_url, now - 400, None)],
        ),
        (
            "a private key in the header",
            "private key",
            vec![key.sign(
                &json!({"typ": "dpop+jwt", "alg": "ES256",
                        "jwk": {"kty": "EC", "crv": "P-256", "x": key.jwk["x"],
                                "y": key.jwk["y"], "d": "AAAA"}}),
                &json!({"jti": "x1", "htm": "POST", "htu": token_url, "iat": now}),
            )],
        ),
        (
            "another typ",
            "typ must be dpop+jwt",
            vec![key.sign(
                &json!({"typ": "JWT", "alg": "ES256", "jwk": key.jwk}),
                &json!({"jti": "x2", "htm": "POST", "htu": token_url, "iat": now}),
            )],
        ),
        (
            "a symmetric algorithm",
            "algorithm is not supported",
            vec![format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(
                    json!({"typ": "dpop+jwt", "alg": "HS256",
                           "jwk": {"kty": "oct", "k": "c2VjcmV0"}})
                    .to_string()
                ),
                URL_SAFE_NO_PAD.encode(
                    json!({"jti": "x3", "htm": "POST", "htu": token_url, "iat": now}).to_string()
                ),
                "c2ln"
            )],
        ),
        (
            "no jti",
            "jti",
            vec![key.sign(
                &key.header(),
                &json!({"htm": "POST", "htu": token_url, "iat": now}),
            )],
        ),
    ] {
        let refs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let refused = token_request(&app, &refresh_form, &refs).await;
        assert_eq!(
            (refused.status, refused.error()),
            (StatusCode::BAD_REQUEST, "invalid_dpop_proof"),
            "{what}: {}",
            refused.json
        );
        let description = refused.json["error_description"].as_str().unwrap();
        assert!(description.contains(says), "{what}: {description}");
    }
    // The device itself refreshes fine: still bound, the old token now
    // rotated.
    let renewed = token_request(
        &app,
        &refresh_form,
        &[&key.proof("POST", &token_url, now, None)],
    )
    .await;
    assert_eq!(renewed.status, StatusCode::OK, "{}", renewed.json);
    assert_eq!(renewed.json["token_type"], "DPoP");
    let access = renewed.json["access_token"].as_str().unwrap();
    assert_eq!(jwt_claims(access)["cnf"]["jkt"], key.jkt.as_str());
    let sync = key.proof("GET", &app.url("/api/v1/sync/settings"), now, Some(access));
    let listed = api_get(&app, "/api/v1/sync/settings", "DPoP", access, Some(&sync)).await;
    assert_eq!(listed.status(), StatusCode::OK);

    // An app that requires DPoP refuses a plain device, at every grant.
    app.state
        .store
        .update_client(
            "demo-tv",
            &linkd::store::ClientChanges {
                require_dpop: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let plain = app.start_device("openid").await;
    let browser = app.signed_in_browser("plain@example.com").await;
    assert!(
        browser
            .approve(&plain.user_code)
            .await
            .contains("is now linked")
    );
    let refused = app.poll(&plain.device_code).await;
    assert_eq!(
        (refused.status, refused.error()),
        (StatusCode::BAD_REQUEST, "invalid_dpop_proof")
    );
    let with_key = token_request(
        &app,
        &[
            ("grant_type", DEVICE_GRANT),
            ("client_id", "demo-tv"),
            ("device_code", plain.device_code.as_str()),
        ],
        &[&thief.proof("POST", &token_url, now, None)],
    )
    .await;
    assert_eq!(with_key.status, StatusCode::OK, "{}", with_key.json);
    assert_eq!(with_key.json["token_type"], "DPoP");
}

#[tokio::test]
async fn plain_devices_keep_working_and_the_cli_sets_the_requirement() {
    let app = spawn_app().await;
    // No proof: Bearer tokens, unbound, as before.
    let (_browser, tokens) = app
        .link_device("plain@example.com", "openid offline_access")
        .await;
    assert_eq!(tokens["token_type"], "Bearer");
    let access = tokens["access_token"].as_str().unwrap();
    assert!(jwt_claims(access).get("cnf").is_none());
    assert!(app.introspect(access).await.get("cnf").is_none());
    let response = app.get_bearer("/api/v1/device", access).await;
    assert_eq!(response.status(), StatusCode::OK);
    // An unbound token under the DPoP scheme is refused (RFC 9449 §7.2).
    let key = DeviceKey::new();
    let proof = key.proof(
        "GET",
        &app.url("/api/v1/device"),
        app.clock.now(),
        Some(access),
    );
    let (status, error, _) =
        refusal(api_get(&app, "/api/v1/device", "DPoP", access, Some(&proof)).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(error.starts_with("invalid_token: "), "{error}");

    // The device library with a key: bound tokens, and every API call it
    // makes (settings, their stream, refresh, link info) proves the key.
    let key = linkd_device::DpopKey::generate();
    let device = linkd_device::Device::discover(&app.base, "demo-tv")
        .await
        .unwrap()
        .with_dpop(key.clone());
    let auth = device
        .request_code(Some("openid offline_access sync"), None)
        .await
        .unwrap();
    let browser = app.signed_in_browser("library@example.com").await;
    assert!(
        browser
            .approve(&auth.user_code)
            .await
            .contains("is now linked")
    );
    let linkd_device::Poll::Tokens(tokens) = device.poll_once(&auth).await.unwrap() else {
        panic!("no tokens")
    };
    assert_eq!(tokens.token_type, "DPoP");
    assert_eq!(
        jwt_claims(&tokens.access_token)["cnf"]["jkt"],
        key.thumbprint().as_str()
    );
    let written = device
        .sync_put(
            &tokens.access_token,
            "prefs",
            "volume",
            &json!(3),
            linkd_device::SyncPrecondition::Create,
        )
        .await
        .unwrap();
    assert!(
        matches!(written, linkd_device::SyncWrite::Written { .. }),
        "{written:?}"
    );
    let read = device
        .sync_get(&tokens.access_token, "prefs", "volume")
        .await
        .unwrap();
    assert_eq!(read.unwrap().value, json!(3));
    let mut watch = device
        .sync_watch(&tokens.access_token, Some(0))
        .await
        .unwrap();
    assert_eq!(watch.next().await.unwrap().unwrap().key, "volume");
    let renewed = device
        .refresh(tokens.refresh_token.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(renewed.token_type, "DPoP");
    let info = device.linked_info(&renewed.access_token).await.unwrap();
    assert_eq!(info["client_id"], "demo-tv");
    // Without the key the same library gets nothing for that token.
    let keyless = device.clone().without_dpop();
    assert!(keyless.linked_info(&renewed.access_token).await.is_err());

    let db = app.db.clone();
    let run = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_linkd"));
        cmd.env("LINKD_DATABASE_URL", db.url()).args(args);
        cmd.output()
    };
    let added = run(&[
        "client",
        "add",
        "--id",
        "kiosk",
        "--name",
        "Kiosk",
        "--require-dpop",
    ])
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&added.stdout);
    assert!(added.status.success(), "{text}");
    assert!(text.contains("DPoP required on"), "{text}");
    assert!(
        app.state
            .store
            .get_client("kiosk")
            .await
            .unwrap()
            .unwrap()
            .require_dpop
    );
    let off = run(&["client", "update", "kiosk", "--require-dpop", "off"])
        .await
        .unwrap();
    assert!(
        off.status.success(),
        "{}",
        String::from_utf8_lossy(&off.stderr)
    );
    assert!(
        !app.state
            .store
            .get_client("kiosk")
            .await
            .unwrap()
            .unwrap()
            .require_dpop
    );
}
