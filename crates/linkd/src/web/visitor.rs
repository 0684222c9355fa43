//! Who is asking: cookies (with the `__Host-` prefix behind https), the
//! signed-in session and the CSRF token every state-changing form carries.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use subtle::ConstantTimeEq;

use super::PageForm;
use super::errors::{PageError, request_lang};
use crate::accounts;
use crate::codes::random_secret;
use crate::i18n::Lang;
use crate::state::AppState;
use crate::store::{Account, Session};
use crate::zone::Zone;

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
/// The `state` of a sign-in at an OpenID provider, so that only the
/// browser that started it can finish it.
pub const UPSTREAM_COOKIE: CookieName = CookieName {
    plain: "linkd_upstream",
    host_only: "__Host-linkd_upstream",
};
/// An identity waiting to join the account this browser signs in to
/// next (`upstream::offer_join`).
pub const JOIN_COOKIE: CookieName = CookieName {
    plain: "linkd_join",
    host_only: "__Host-linkd_join",
};
pub const CSRF_COOKIE: CookieName = CookieName {
    plain: "linkd_csrf",
    host_only: "__Host-linkd_csrf",
};
/// The IANA time zone the browser reports, set by linkd's script (so not
/// HttpOnly) and checked against the tz database on every request.
pub const ZONE_COOKIE: CookieName = CookieName {
    plain: "linkd_tz",
    host_only: "__Host-linkd_tz",
};

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

/// What the link page's code form sends along (`typed`), so that a code
/// typed there needs no number matching while a code in a link does
/// (issue 22): a link made elsewhere cannot carry it, as it comes from
/// this browser's CSRF secret. Hashed, so the address bar and history
/// hold a value that is no CSRF token.
pub fn typed_token(csrf: &str) -> String {
    let mut token = crate::codes::secret_hash(&format!("typed\0{csrf}"));
    token.truncate(22);
    token
}

/// Who is asking: their live session if signed in, and the anonymous CSRF
/// cookie that protects the sign-in and sign-up forms.
pub struct Visitor {
    pub signed_in: Option<(Session, Account)>,
    anonymous_csrf: Option<String>,
    /// The secret of a join offered to this browser, taken by its next
    /// sign-in.
    pub pending_join: Option<String>,
    /// The language of the pages this visitor gets.
    pub lang: Lang,
    /// The zone times are shown in (see [`Zone`]).
    pub zone: Zone,
    /// Whether `zone` is a fallback rather than the browser's own, on a
    /// request that may be repeated (a GET): a page in a guessed zone
    /// asks the script to load it again in the right one.
    zone_guessed: bool,
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
        let pending_join = cookie(&parts.headers, JOIN_COOKIE.get(state))
            .filter(|v| v.len() == 43)
            .map(str::to_string);
        let browser_zone = cookie(&parts.headers, ZONE_COOKIE.get(state)).and_then(Zone::named);
        let account = signed_in.as_ref().map(|(_, a)| a);
        // Remembered for the browsers of this account that run no script.
        // Written only when it changes; failing costs only the fallback.
        if let (Some(zone), Some(account)) = (&browser_zone, account)
            && account.time_zone.as_deref() != Some(zone.name())
            && let Err(e) = state
                .store
                .set_account_time_zone(&account.id, zone.name())
                .await
        {
            tracing::warn!(error = %e, "could not remember the time zone");
        }
        let zone_guessed = browser_zone.is_none();
        let zone = browser_zone
            .unwrap_or_else(|| Zone::remembered(account.and_then(|a| a.time_zone.as_deref())));
        Ok(Visitor {
            signed_in,
            anonymous_csrf,
            pending_join,
            lang: request_lang(&parts.headers),
            zone,
            zone_guessed: zone_guessed && parts.method == Method::GET,
        })
    }
}

impl Visitor {
    pub fn account(&self) -> Option<&Account> {
        self.signed_in.as_ref().map(|(_, a)| a)
    }

    /// The key code entry counts this visitor's wrong codes under
    /// (RFC 8628 §5.1): the session's, else the anonymous form cookie's.
    /// A browser that drops its cookies gets a fresh key each time and so
    /// meets only the network and server limits, which are what the
    /// guessing bound in SECURITY.md rests on.
    pub fn entry_key(&self) -> String {
        match (&self.signed_in, &self.anonymous_csrf) {
            (Some((session, _)), _) => session.id_hash.clone(),
            (None, Some(csrf)) => format!("anonymous:{csrf}"),
            (None, None) => format!("anonymous:{}", random_secret(16)),
        }
    }

    /// A clock time as this visitor reads it ("14:52 CET").
    pub fn time(&self, ts: i64) -> String {
        self.lang.clock(ts, &self.zone)
    }

    /// A date and time as this visitor reads it, "today" and "yesterday"
    /// by their own calendar ("today, 14:52 CET").
    pub fn datetime(&self, ts: i64, now: i64) -> String {
        self.lang.datetime_in(ts, &self.zone, Some(now))
    }

    /// The zone a page showing times was rendered in when it was a guess
    /// the browser's script may correct by loading the page again.
    pub fn zone_guess(&self) -> Option<&str> {
        self.zone_guessed.then(|| self.zone.name())
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

    /// Whether a code came from the link page's own form on this browser
    /// (see [`typed_token`]) rather than in a link someone may have sent.
    /// The anonymous cookie's token counts too: a code typed before
    /// signing in arrives after the sign-in.
    pub fn typed(&self, submitted: Option<&str>) -> bool {
        let Some(submitted) = submitted else {
            return false;
        };
        let session = self.signed_in.as_ref().map(|(s, _)| s.csrf_token.as_str());
        [session, self.anonymous_csrf.as_deref()]
            .into_iter()
            .flatten()
            .any(|csrf| bool::from(typed_token(csrf).as_bytes().ct_eq(submitted.as_bytes())))
    }

    /// The token this visitor's forms carry, when it has one: what binds
    /// a passkey ceremony to this browser (passkeys.rs).
    pub fn form_token(&self) -> Option<&str> {
        match &self.signed_in {
            Some((session, _)) => Some(session.csrf_token.as_str()),
            None => self.anonymous_csrf.as_deref(),
        }
    }

    /// Checks a submitted form's token: the session's when signed in,
    /// else the anonymous cookie's (double submit).
    pub fn check_csrf(&self, submitted: Option<&str>) -> Result<(), PageError> {
        match (self.form_token(), submitted) {
            (Some(e), Some(s)) if bool::from(e.as_bytes().ct_eq(s.as_bytes())) => Ok(()),
            _ => Err(PageError::Csrf),
        }
    }

    /// The session and account behind a form for someone signed in, its
    /// CSRF token checked. Someone not signed in goes to sign in and then
    /// back to `back`, the page the form is on.
    pub fn signed_in_form(
        &self,
        form: &PageForm,
        back: &str,
    ) -> Result<(&Session, &Account), PageError> {
        let Some((session, account)) = &self.signed_in else {
            return Err(PageError::SignIn(back.to_string()));
        };
        self.check_csrf(form.get("csrf"))?;
        Ok((session, account))
    }
}
