//! The OAuth form parser behind the token endpoint: any body, any content
//! type, never a panic; what it accepts has no repeated or empty parameter
//! and no NUL.
#![no_main]

use axum::http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use linkd::oauth::form::OAuthForm;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the content type, the rest is the body.
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    let content_type = match pick % 4 {
        0 => "application/x-www-form-urlencoded",
        1 => "application/x-www-form-urlencoded; charset=UTF-8",
        2 => "application/json",
        _ => "",
    };
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(form) = OAuthForm::parse(&headers, body) {
        for name in [
            "grant_type",
            "client_id",
            "device_code",
            "refresh_token",
            "scope",
        ] {
            if let Some(value) = form.get(name) {
                assert!(!value.is_empty() && !value.contains('\0'));
            }
        }
    }
});
