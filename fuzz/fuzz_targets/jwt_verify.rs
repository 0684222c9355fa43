//! Access-token verification: any string is either rejected or carries
//! claims signed by our key; never a panic.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use linkd::tokens::{AccessClaims, Keys, generate_signing_key};

const ISSUER: &str = "https://link.example.com";

static KEYS: LazyLock<(Keys, String)> = LazyLock::new(|| {
    let keys = Keys::from_stored(&[generate_signing_key(0).expect("key")], 0, 3600).expect("keys");
    let token = keys
        .sign_access_token(&AccessClaims {
            iss: ISSUER.into(),
            sub: "account".into(),
            aud: ISSUER.into(),
            exp: 2_000_000_000,
            iat: 0,
            jti: "j".into(),
            scope: "openid".into(),
            client_id: "demo-tv".into(),
            sid: "device".into(),
            cnf: None,
        })
        .expect("sign");
    (keys, token)
});

fuzz_target!(|data: &[u8]| {
    let (keys, valid) = &*KEYS;
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    // Mutations of a real token reach deeper than random bytes.
    let candidates = [
        input.to_string(),
        format!("{valid}{input}"),
        valid.replacen('.', input, 1),
    ];
    for token in candidates {
        if let Ok(claims) = keys.verify_access_token(&token, ISSUER, ISSUER, 1) {
            assert_eq!(claims.sub, "account");
        }
    }
});
