//! The scopes linkd knows, what they mean in plain words, and parsing of
//! the `scope` parameter (RFC 6749 §3.3).

use crate::i18n::Lang;

/// Every scope linkd can grant.
pub const KNOWN: &[&str] = &["openid", "profile", "email", "offline_access", "sync"];

/// The scope a device needs for the settings sync API.
pub const SYNC: &str = "sync";

/// The scopes a new client may ask for unless told otherwise.
pub const DEFAULT_CLIENT_SCOPES: &str = "openid profile email offline_access sync";

pub fn is_known(scope: &str) -> bool {
    KNOWN.contains(&scope)
}

/// What a scope lets an app do, as the confirmation page tells the person.
pub fn describe(scope: &str, lang: Lang) -> &'static str {
    match scope {
        "openid" => lang.t("scope.openid"),
        "profile" => lang.t("scope.profile"),
        "email" => lang.t("scope.email"),
        "offline_access" => lang.t("scope.offline_access"),
        "sync" => lang.t("scope.sync"),
        _ => lang.t("scope.unknown"),
    }
}

/// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
fn is_scope_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// Splits a scope string into its tokens, in order, without repeats.
/// `None` when a token breaks the RFC 6749 §3.3 grammar.
pub fn parse(scope: &str) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for token in scope.split(' ').filter(|t| !t.is_empty()) {
        if !is_scope_token(token) {
            return None;
        }
        if !out.iter().any(|t| t == token) {
            out.push(token.to_string());
        }
    }
    Some(out)
}

pub fn contains(scope: &str, wanted: &str) -> bool {
    scope.split(' ').any(|s| s == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_dedupes_and_checks_grammar() {
        assert_eq!(
            parse("openid  email openid").unwrap(),
            vec!["openid", "email"]
        );
        assert_eq!(parse("").unwrap(), Vec::<String>::new());
        assert!(parse("open\"id").is_none());
        assert!(parse("a\\b").is_none());
        assert!(parse("é").is_none());
    }

    #[test]
    fn every_known_scope_is_described() {
        for scope in KNOWN {
            assert!(is_known(scope));
            for &lang in Lang::ALL {
                assert_ne!(describe(scope, lang), describe("unknown", lang));
            }
        }
    }
}
