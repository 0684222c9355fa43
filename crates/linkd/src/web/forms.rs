//! Page input and navigation: submitted forms, record ids in paths, query
//! parameters, and the redirects between pages.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};

use super::errors::PageError;
use crate::i18n::Text;

/// Only same-site paths are followed after sign-in, so `next` cannot send
/// a person to another site (open redirect).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && n.len() <= 2560
                && !n.chars().any(|c| c.is_control() || c == '\\') =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

/// 303 See Other: after a POST the browser follows with a GET.
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Sends a visitor who is not signed in to sign in, then back to `next`.
pub fn to_sign_in(next: &str) -> Response {
    let encoded: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
    see_other(&format!("/signin?next={encoded}"))
}

/// A submitted page form. Repeated fields, bytes that are not UTF-8 and
/// bodies that are not form-encoded are refused with a readable page.
pub struct PageForm(std::collections::HashMap<String, String>);

impl PageForm {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Every field, in no particular order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for PageForm {
    type Rejection = PageError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_form = super::headers::mime(req.headers())
            .eq_ignore_ascii_case("application/x-www-form-urlencoded");
        if !is_form {
            return Err(PageError::BadRequest(Text::key("form.error.not_a_form")));
        }
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| PageError::BadRequest(Text::key("form.error.unreadable")))?;
        let mut fields = std::collections::HashMap::new();
        for (name, value) in form_urlencoded::parse(&body) {
            if name.contains(['\u{FFFD}', '\0']) || value.contains(['\u{FFFD}', '\0']) {
                return Err(PageError::BadRequest(Text::key(
                    "form.error.bad_characters",
                )));
            }
            if fields
                .insert(name.to_string(), value.into_owned())
                .is_some()
            {
                return Err(PageError::BadRequest(Text::with(
                    "form.error.repeated",
                    vec![("name", name.chars().take(64).collect())],
                )));
            }
        }
        Ok(PageForm(fields))
    }
}

/// The id of a record named in a page's path (`/devices/{id}/...`). Ids
/// linkd makes are URL-safe base64 or hex; anything else (a NUL, a byte
/// that is not UTF-8, an over-long segment) names no record, so it is the
/// page's ordinary 404 before any lookup, never a store error.
pub struct RecordId(pub String);

/// Longest id a path may name; linkd's own are 22 to 36 characters.
const MAX_RECORD_ID: usize = 64;

impl<S: Send + Sync> FromRequestParts<S> for RecordId {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(id) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| PageError::NotFound)?;
        let ok = (1..=MAX_RECORD_ID).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
        ok.then_some(RecordId(id)).ok_or(PageError::NotFound)
    }
}

/// The first value of a query parameter.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_only_follows_local_paths() {
        assert_eq!(
            safe_next(Some("/link?code=BCDF-GHJK")),
            "/link?code=BCDF-GHJK"
        );
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "javascript:alert(1)",
            "/a\nb",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
