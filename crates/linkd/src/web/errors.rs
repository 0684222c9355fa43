//! What a page can fail with, and the readable error pages, rendered in
//! the visitor's language on the way out.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Value, context};

use super::templates::page_context;
use crate::i18n::{Lang, Text};
use crate::state::AppState;
use crate::store::StoreError;

/// What a page handler can fail with; each becomes a readable page.
#[derive(Debug)]
pub enum PageError {
    /// The form's CSRF token is missing or wrong.
    Csrf,
    /// The page is for someone signed in: sign in, then back to this path.
    SignIn(String),
    BadRequest(Text),
    NotFound,
    Unavailable,
    Internal,
}

impl From<StoreError> for PageError {
    fn from(err: StoreError) -> Self {
        tracing::error!(error = %err, "store error on a page");
        match err {
            StoreError::Corrupt(_) => PageError::Internal,
            _ => PageError::Unavailable,
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            PageError::SignIn(next) => return super::to_sign_in(&next),
            PageError::Csrf => (
                StatusCode::FORBIDDEN,
                Text::key("error.csrf.title"),
                Text::key("error.csrf.message"),
            ),
            PageError::BadRequest(why) => (
                StatusCode::BAD_REQUEST,
                Text::key("error.bad_request.title"),
                why,
            ),
            PageError::NotFound => (
                StatusCode::NOT_FOUND,
                Text::key("error.not_found.title"),
                Text::key("error.not_found.message"),
            ),
            PageError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                Text::key("error.unavailable.title"),
                Text::key("error.unavailable.message"),
            ),
            PageError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                Text::key("error.internal.title"),
                Text::key("error.internal.message"),
            ),
        };
        error_page(status, title, message)
    }
}

/// An error page on its way out. Errors are raised where the visitor's
/// language and the brand are not at hand (extractors, `?`), so the
/// response carries this and [`localize`] renders it.
#[derive(Debug, Clone)]
pub struct ErrorPage {
    pub title: Text,
    pub message: Text,
}

/// A plain page with a heading, a message and a way back to /link.
pub fn message_page(status: StatusCode, title: &str, message: &str) -> Response {
    error_page(status, title.into(), message.into())
}

fn error_page(status: StatusCode, title: Text, message: Text) -> Response {
    // Replaced by `localize`; stands in should a router lack that layer.
    let fallback = format!("<!doctype html><title>{status}</title><p>{status}</p>");
    let mut response = (status, Html(fallback)).into_response();
    response
        .extensions_mut()
        .insert(ErrorPage { title, message });
    response
}

/// The language a request's `Accept-Language` asks for.
pub fn request_lang(headers: &HeaderMap) -> Lang {
    accept_language_lang(headers.get(header::ACCEPT_LANGUAGE))
}

/// The language an `Accept-Language` value asks for.
pub fn accept_language_lang(value: Option<&HeaderValue>) -> Lang {
    Lang::negotiate(value.and_then(|v| v.to_str().ok()))
}

/// Renders an error page in the visitor's language and marks the page as
/// depending on `Accept-Language`, so caches keep the languages apart.
/// Part of the one response layer (`middleware::around_request`), for
/// HTML responses only (error pages are HTML).
pub async fn localize(
    state: &AppState,
    lang: Lang,
    cookies: Option<&HeaderValue>,
    response: &mut Response,
) {
    if let Some(page) = response.extensions_mut().remove::<ErrorPage>() {
        let title = page.title.in_lang(lang);
        // The header the person had on every other page: who is signed in.
        let account = match signed_in_email(state, cookies).await {
            Some(email) => Value::from(email),
            None => Value::from(()),
        };
        let ctx = context! {
            title => &title,
            heading => &title,
            message => page.message.in_lang(lang),
            account => account,
            ..page_context(state, lang)
        };
        if let Ok(body) = state.templates.render("message.html", ctx) {
            response.headers_mut().remove(header::CONTENT_LENGTH);
            *response.body_mut() = axum::body::Body::from(body);
        }
    }
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("Accept-Language"));
    headers.insert(
        header::CONTENT_LANGUAGE,
        HeaderValue::from_static(lang.tag()),
    );
}

/// The email of the person signed in with these cookies, if any. A store
/// error leaves the header signed out: the error page still shows.
async fn signed_in_email(state: &AppState, cookies: Option<&HeaderValue>) -> Option<String> {
    let mut headers = HeaderMap::new();
    headers.insert(header::COOKIE, cookies?.clone());
    let token = super::visitor::cookie(&headers, super::visitor::SESSION_COOKIE.get(state))?;
    let found = crate::accounts::resolve_session(state.store.as_ref(), token, state.clock.now());
    found.await.ok().flatten().map(|(_, account)| account.email)
}

/// The router's bare 405 (a page's form address opened as a link, say)
/// becomes a readable page; the `Allow` header stays (RFC 9110 §15.5.6).
pub fn method_not_allowed(response: &mut Response) {
    if response.extensions().get::<ErrorPage>().is_some()
        || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return;
    }
    response.extensions_mut().insert(ErrorPage {
        title: Text::key("error.method.title"),
        message: Text::key("error.method.message"),
    });
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
}

pub async fn not_found() -> PageError {
    PageError::NotFound
}

/// A "wait" page (429) with `Retry-After` (RFC 9110 §10.2.3), at least one
/// second, so browsers and scripts alike hear how long to wait.
pub fn with_retry_after(mut response: Response, secs: i64) -> Response {
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(secs.max(1)),
    );
    response
}
