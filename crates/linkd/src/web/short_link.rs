//! The forgiving short link: the address people type from a TV screen is
//! short and often mistyped, so `/LINK`, `/Link/`, `/lnk`, the operator's
//! aliases and `/link/BCDF-GHJK` all lead to `/link`. Any other unknown
//! path is the readable 404 that points to the link page.

use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::PageError;
use crate::state::AppState;

/// Slips of the keyboard on "link" that reach the page: a letter dropped
/// (`ink`, `lnk`, `lin`) or the last one hit beside its key (`linl`).
/// Compared without case, so `/LINK` and `/Link` are covered too.
pub const TYPOS: [&str; 5] = ["link", "ink", "lnk", "lin", "linl"];

/// Longest code a path may carry to the link page; the page explains
/// anything that is not a code.
const MAX_PATH_CODE: usize = 32;

/// The router's fallback: a short-link spelling of `/link` gets a
/// permanent redirect to it, anything else the 404 page.
pub async fn fallback(State(state): State<AppState>, method: Method, uri: Uri) -> Response {
    if (method == Method::GET || method == Method::HEAD)
        && let Some(to) = redirect_for(&state.config.link_aliases, &uri)
    {
        // RFC 9110 §15.4.9: 308 is permanent and keeps the method.
        return (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, to)]).into_response();
    }
    PageError::NotFound.into_response()
}

/// Where a short-link path leads, if it is one: `/link`, with the code
/// from the path (`/link/BCDF-GHJK`) or the query as it came.
pub fn redirect_for(aliases: &[String], uri: &Uri) -> Option<String> {
    let path = uri.path().strip_prefix('/')?;
    let path = path.strip_suffix('/').unwrap_or(path);
    let (name, code) = match path.split_once('/') {
        Some((name, code)) => (name, Some(code)),
        None => (path, None),
    };
    let known = TYPOS.iter().any(|t| t.eq_ignore_ascii_case(name))
        || aliases.iter().any(|a| a.eq_ignore_ascii_case(name));
    if !known {
        return None;
    }
    match code {
        // The code travels as the link page's `code` parameter: a code in
        // an address is a prefilled link wherever it came from, so the
        // link page confirms it the same way (number matching).
        Some(code) => {
            let code = percent_decode(code)?;
            if code.is_empty() || code.contains('/') || code.chars().count() > MAX_PATH_CODE {
                return None;
            }
            let code = match crate::codes::UserCode::parse(&code) {
                Ok(code) => code.display(),
                Err(_) => code,
            };
            let encoded: String = form_urlencoded::byte_serialize(code.as_bytes()).collect();
            Some(format!("/link?code={encoded}"))
        }
        None => Some(match uri.query() {
            // Already a valid query of this origin; carried as it came.
            Some(query) if !query.is_empty() => format!("/link?{query}"),
            _ => "/link".to_string(),
        }),
    }
}

/// A path segment's text: `%XX` decoded, refused when it is not UTF-8 or
/// holds a control character.
fn percent_decode(segment: &str) -> Option<String> {
    let text = percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()?;
    (!text.chars().any(char::is_control)).then(|| text.into_owned())
}

/// Checks an operator's alias: one path segment of letters, digits, `-`
/// and `_`, that no page of linkd's already uses.
pub fn parse_alias(text: &str) -> Result<String, String> {
    let alias = text.trim().trim_matches('/');
    if alias.is_empty()
        || alias.len() > 64
        || !alias
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    {
        return Err(format!(
            "link alias {text:?} must be one path segment of letters, digits, - and _"
        ));
    }
    const TAKEN: [&str; 12] = [
        "signin", "signup", "signout", "reset", "devices", "account", "oauth", "static", "api",
        "healthz", "readyz", "metrics",
    ];
    if TAKEN.iter().any(|t| t.eq_ignore_ascii_case(alias)) {
        return Err(format!(
            "link alias {text:?} is a page linkd already serves"
        ));
    }
    Ok(alias.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(path: &str) -> Option<String> {
        redirect_for(&["tv".to_string()], &path.parse::<Uri>().unwrap())
    }

    #[test]
    fn typos_and_case_lead_to_the_link_page() {
        for path in [
            "/LINK", "/Link/", "/link/", "/ink", "/lnk", "/lin", "/linl", "/LNK/", "/tv", "/TV/",
        ] {
            assert_eq!(to(path).as_deref(), Some("/link"), "{path}");
        }
        assert_eq!(to("/Link?code=x").as_deref(), Some("/link?code=x"));
    }

    #[test]
    fn a_code_in_the_path_is_carried_normalised() {
        for path in [
            "/link/BCDF-GHJK",
            "/link/bcdfghjk",
            "/LINK/bcdf-ghjk/",
            "/tv/BCDFGHJK",
            "/link/%EF%BC%A2CDF-GHJK",
        ] {
            assert_eq!(to(path).as_deref(), Some("/link?code=BCDF-GHJK"), "{path}");
        }
        // Not a code: carried for the page to explain.
        assert_eq!(to("/link/hello").as_deref(), Some("/link?code=hello"));
    }

    #[test]
    fn other_paths_are_not_short_links() {
        for path in [
            "/",
            "/links",
            "/linkk",
            "/l",
            "/no/such/page",
            "/link/a/b",
            "/link/%FF",
            "/link/%0A",
            "/signin2",
        ] {
            assert_eq!(to(path), None, "{path}");
        }
        assert_eq!(to(&format!("/link/{}", "B".repeat(33))), None);
    }

    #[test]
    fn aliases_are_single_free_segments() {
        assert_eq!(parse_alias("/tv/").unwrap(), "tv");
        assert_eq!(parse_alias("activate").unwrap(), "activate");
        for bad in ["", "/", "a/b", "a b", "signin", "OAuth", "é"] {
            assert!(parse_alias(bad).is_err(), "{bad}");
        }
    }
}
