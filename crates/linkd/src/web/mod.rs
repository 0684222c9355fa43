//! The person's pages: server-rendered HTML that works without JavaScript.
//! Errors here are readable pages that say what to do next.

pub mod account;
pub mod assets;
pub mod devices;
pub mod headers;
pub mod home;
pub mod link;
pub mod signin;
pub mod signup;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::value::Kwargs;
use minijinja::{Environment, Value, context};
use subtle::ConstantTimeEq;

use crate::accounts;
use crate::codes::random_secret;
use crate::i18n::{Lang, Text, interpolate};
use crate::state::AppState;
use crate::store::{Account, Session, StoreError};

/// A cookie linkd sets, by its name over https and over plain http.
pub struct CookieName {
    plain: &'static str,
    host_only: &'static str,
}

impl CookieName {
    /// Over https the `__Host-` name: browsers accept such a cookie only
    /// with `Secure`, `Path=/` and no `Domain` (RFC 6265bis §4.1.3.2), so
    /// a sibling subdomain or a plain-http page cannot plant or overwrite
    /// it. Browsers refuse that prefix without `Secure`, so plain http
    /// keeps the bare name.
    pub fn get(&self, state: &AppState) -> &'static str {
        if state.config.is_https() {
            self.host_only
        } else {
            self.plain
        }
    }
}

pub const SESSION_COOKIE: CookieName = CookieName {
    plain: "linkd_session",
    host_only: "__Host-linkd_session",
};
pub const CSRF_COOKIE: CookieName = CookieName {
    plain: "linkd_csrf",
    host_only: "__Host-linkd_csrf",
};

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("home.html", include_str!("../../templates/home.html")),
    ("link.html", include_str!("../../templates/link.html")),
    ("confirm.html", include_str!("../../templates/confirm.html")),
    ("result.html", include_str!("../../templates/result.html")),
    ("message.html", include_str!("../../templates/message.html")),
    ("signin.html", include_str!("../../templates/signin.html")),
    ("signup.html", include_str!("../../templates/signup.html")),
    ("devices.html", include_str!("../../templates/devices.html")),
    ("account.html", include_str!("../../templates/account.html")),
];

/// The page templates, parsed once at start-up.
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.add_function("t", translate);
        for (name, source) in TEMPLATES {
            // The templates are part of the binary; a broken one is a
            // build defect that the test suite catches on its first page.
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "template does not parse");
            }
        }
        Templates { env }
    }

    pub fn render(&self, name: &str, ctx: Value) -> Result<String, PageError> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| {
                tracing::error!(template = name, error = %e, "template failed to render");
                PageError::Internal
            })
    }
}

/// `{{ t("key", name=value) }}` in a template: the text for `key` in the
/// page's language (the `lang` variable), with `{name}` filled in. The
/// result is escaped like any other value.
fn translate(
    state: &minijinja::State,
    key: &str,
    args: Kwargs,
) -> Result<String, minijinja::Error> {
    let lang = state
        .lookup("lang")
        .and_then(|v| v.as_str().and_then(Lang::from_tag))
        .unwrap_or(Lang::DEFAULT);
    let mut values = Vec::new();
    for name in args.args() {
        let value: Value = args.get(name)?;
        values.push((name.to_string(), value.to_string()));
    }
    Ok(interpolate(lang.t(key), |name| {
        values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }))
}

/// What a page handler can fail with; each becomes a readable page.
#[derive(Debug)]
pub enum PageError {
    /// The form's CSRF token is missing or wrong.
    Csrf,
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
    Lang::negotiate(
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    )
}

/// Renders error pages in the visitor's language and marks every page as
/// depending on `Accept-Language`, so caches keep the languages apart.
/// Part of the one response layer (`middleware::around_request`).
pub fn localize(state: &AppState, lang: Lang, response: &mut Response) {
    if let Some(page) = response.extensions_mut().remove::<ErrorPage>() {
        let title = page.title.in_lang(lang);
        let ctx = context! {
            title => &title,
            heading => &title,
            message => page.message.in_lang(lang),
            ..page_context(state, lang)
        };
        if let Ok(body) = state.templates.render("message.html", ctx) {
            response.headers_mut().remove(header::CONTENT_LENGTH);
            *response.body_mut() = axum::body::Body::from(body);
        }
    }
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if is_html {
        let headers = response.headers_mut();
        headers.append(header::VARY, HeaderValue::from_static("Accept-Language"));
        headers.insert(
            header::CONTENT_LANGUAGE,
            HeaderValue::from_static(lang.tag()),
        );
    }
}

pub async fn not_found() -> PageError {
    PageError::NotFound
}

/// What every page shows whoever is asking: the brand, the assets and the
/// language.
pub fn page_context(state: &AppState, lang: Lang) -> Value {
    let brand = &state.brand;
    context! {
        product => &brand.product_name,
        brand => context! {
            name => &brand.product_name,
            accent => brand.accent.to_string(),
            support_url => &brand.support_url,
            logo_url => state.assets.logo.url(),
        },
        assets => context! {
            css => state.assets.css.url(),
            js => state.assets.js.url(),
        },
        lang => lang.tag(),
    }
}

/// Reads one cookie from the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// A Set-Cookie value: HttpOnly, SameSite=Lax, Path=/, never a Domain,
/// and Secure with the `__Host-` name behind https. `max_age` 0 deletes
/// the cookie.
pub fn set_cookie(state: &AppState, name: &CookieName, value: &str, max_age: i64) -> HeaderValue {
    let name = name.get(state);
    let secure = if state.config.is_https() {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Who is asking: their live session if signed in, and the anonymous CSRF
/// cookie that protects the sign-in and sign-up forms.
pub struct Visitor {
    pub signed_in: Option<(Session, Account)>,
    anonymous_csrf: Option<String>,
    /// The language of the pages this visitor gets.
    pub lang: Lang,
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let signed_in = match cookie(&parts.headers, SESSION_COOKIE.get(state)) {
            Some(token) => {
                accounts::resolve_session(state.store.as_ref(), token, state.clock.now()).await?
            }
            None => None,
        };
        let anonymous_csrf = cookie(&parts.headers, CSRF_COOKIE.get(state))
            .filter(|v| v.len() == 43)
            .map(str::to_string);
        Ok(Visitor {
            signed_in,
            anonymous_csrf,
            lang: request_lang(&parts.headers),
        })
    }
}

impl Visitor {
    pub fn account(&self) -> Option<&Account> {
        self.signed_in.as_ref().map(|(_, a)| a)
    }

    pub fn email(&self) -> Option<&str> {
        self.account().map(|a| a.email.as_str())
    }

    /// The token forms on this page must carry, and a cookie to set when an
    /// anonymous visitor has none yet.
    pub fn csrf(&self, state: &AppState) -> (String, Option<HeaderValue>) {
        if let Some((session, _)) = &self.signed_in {
            return (session.csrf_token.clone(), None);
        }
        match &self.anonymous_csrf {
            Some(token) => (token.clone(), None),
            None => {
                let token = random_secret(32);
                let cookie = set_cookie(state, &CSRF_COOKIE, &token, 86_400);
                (token, Some(cookie))
            }
        }
    }

    /// Checks a submitted form's token: the session's when signed in,
    /// else the anonymous cookie's (double submit).
    pub fn check_csrf(&self, submitted: Option<&str>) -> Result<(), PageError> {
        let expected = match &self.signed_in {
            Some((session, _)) => Some(session.csrf_token.as_str()),
            None => self.anonymous_csrf.as_deref(),
        };
        match (expected, submitted) {
            (Some(e), Some(s)) if bool::from(e.as_bytes().ct_eq(s.as_bytes())) => Ok(()),
            _ => Err(PageError::Csrf),
        }
    }
}

/// Renders a page with the values every page shows.
pub fn render(
    state: &AppState,
    visitor: &Visitor,
    status: StatusCode,
    template: &str,
    ctx: Value,
) -> Result<Response, PageError> {
    let (csrf, new_cookie) = visitor.csrf(state);
    let common = context! {
        account => visitor.email(),
        csrf => csrf,
        ..page_context(state, visitor.lang)
    };
    let body = state
        .templates
        .render(template, context! { ..ctx, ..common })?;
    let mut response = (status, Html(body)).into_response();
    if let Some(cookie) = new_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// Only same-site paths are followed after sign-in, so `next` cannot send
/// a person to another site (open redirect).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && n.len() <= 512
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
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for PageForm {
    type Rejection = PageError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
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

    #[test]
    fn every_template_parses() {
        let t = Templates::new();
        for (name, _) in TEMPLATES {
            assert!(t.env.get_template(name).is_ok(), "{name}");
        }
    }
}
