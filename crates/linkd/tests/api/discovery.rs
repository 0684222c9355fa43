//! Server metadata (RFC 8414, OpenID Connect Discovery), JWKS and health.

use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn both_metadata_documents_describe_the_endpoints() {
    let app = spawn_app().await;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let meta: serde_json::Value = response.json().await.unwrap();
        assert_eq!(meta["issuer"], app.base);
        assert_eq!(
            meta["device_authorization_endpoint"],
            app.url("/oauth/device_authorization")
        );
        assert_eq!(meta["token_endpoint"], app.url("/oauth/token"));
        assert_eq!(meta["jwks_uri"], app.url("/oauth/jwks"));
        assert_eq!(meta["revocation_endpoint"], app.url("/oauth/revoke"));
        assert_eq!(meta["introspection_endpoint"], app.url("/oauth/introspect"));
        assert_eq!(meta["userinfo_endpoint"], app.url("/oauth/userinfo"));
        assert!(
            meta["grant_types_supported"]
                .as_array()
                .unwrap()
                .contains(&"refresh_token".into())
        );
        assert!(
            meta["grant_types_supported"]
                .as_array()
                .unwrap()
                .contains(&DEVICE_GRANT.into())
        );
        for scope in ["openid", "email", "offline_access"] {
            assert!(
                meta["scopes_supported"]
                    .as_array()
                    .unwrap()
                    .contains(&scope.into()),
                "{scope}"
            );
        }
        // What MSAL and OpenID Discovery §3 require for the code flow.
        assert_eq!(meta["authorization_endpoint"], app.url("/oauth/authorize"));
        assert_eq!(
            meta["response_types_supported"],
            serde_json::json!(["code"])
        );
        assert_eq!(
            meta["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
        assert!(
            meta["grant_types_supported"]
                .as_array()
                .unwrap()
                .contains(&"authorization_code".into())
        );
        let auth = meta["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap();
        for method in ["none", "client_secret_basic", "client_secret_post"] {
            assert!(auth.contains(&method.into()), "{method}");
        }
        assert_eq!(
            meta["id_token_signing_alg_values_supported"],
            serde_json::json!(["RS256"])
        );
        assert_eq!(
            meta["subject_types_supported"],
            serde_json::json!(["public"])
        );
    }
}

#[tokio::test]
async fn jwks_publishes_the_signing_key() {
    let app = spawn_app().await;
    let jwks: serde_json::Value = app
        .http
        .get(app.url("/oauth/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["kid"], app.state.keys().signing_kid());
    assert!(key.get("d").is_none(), "never the private part");
    assert!(key["n"].as_str().unwrap().len() > 300);
}

#[tokio::test]
async fn healthz_answers() {
    let app = spawn_app().await;
    let response = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "ok");
}
