//! The stylesheet, the script and the logo. Built once at start-up (the
//! stylesheet carries the brand's colours) and served under URLs that
//! name their content's version, so browsers keep them for a year and a
//! phone on a slow network fetches them once.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::query_param;
use crate::brand::Brand;
use crate::state::AppState;

const STYLESHEET: &str = include_str!("../../static/linkd.css");
const SCRIPT: &str = include_str!("../../static/linkd.js");
/// Loaded only by the pages that offer passkeys (sign-in, account).
const PASSKEYS_SCRIPT: &str = include_str!("../../static/passkeys.js");

/// One file linkd serves.
pub struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: Bytes,
    version: String,
}

impl Asset {
    fn new(path: &'static str, content_type: &'static str, body: Vec<u8>) -> Asset {
        let digest = Sha256::digest(&body);
        let version = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        Asset {
            path,
            content_type,
            body: Bytes::from(body),
            version,
        }
    }

    /// The URL pages link to: changes whenever the content does.
    pub fn url(&self) -> String {
        format!("{}?v={}", self.path, self.version)
    }

    pub fn len(&self) -> usize {
        self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    fn serve(&self, query: Option<&str>) -> Response {
        // Only the current version may be cached for good; an old or
        // missing version gets today's content, briefly cached.
        let cache = if query_param(query, "v").as_deref() == Some(self.version.as_str()) {
            "public, max-age=31536000, immutable"
        } else {
            "public, max-age=300"
        };
        let mut response = self.body.clone().into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        response
    }
}

/// Every asset, for one brand.
pub struct Assets {
    pub css: Asset,
    pub js: Asset,
    pub passkeys: Asset,
    pub logo: Asset,
}

impl Assets {
    pub fn new(brand: &Brand) -> Assets {
        // The brand's variables come last so they override the defaults
        // the stylesheet declares.
        let css = format!("{STYLESHEET}{}", brand.css_variables());
        Assets {
            css: Asset::new("/static/linkd.css", "text/css; charset=utf-8", css.into()),
            js: Asset::new(
                "/static/linkd.js",
                "text/javascript; charset=utf-8",
                SCRIPT.into(),
            ),
            passkeys: Asset::new(
                "/static/passkeys.js",
                "text/javascript; charset=utf-8",
                PASSKEYS_SCRIPT.into(),
            ),
            logo: Asset::new(
                "/static/logo",
                brand.logo.content_type,
                brand.logo.bytes.clone(),
            ),
        }
    }
}

pub async fn stylesheet(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    state.assets.css.serve(q.as_deref())
}

pub async fn script(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    state.assets.js.serve(q.as_deref())
}

pub async fn passkeys_script(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    state.assets.passkeys.serve(q.as_deref())
}

pub async fn logo(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    state.assets.logo.serve(q.as_deref())
}
