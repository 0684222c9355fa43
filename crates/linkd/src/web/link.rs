//! `/link`: the person enters the code from their device, checks what is
//! asking, and approves or denies (RFC 8628 §3.3).

use std::net::IpAddr;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;

use super::{PageError, PageForm, Visitor, query_param, render, to_sign_in, with_retry_after};
use crate::client_ip::ClientIp;
use crate::code_entry::{Entry, EntryError};
use crate::codes::{CodeError, UserCode};
use crate::device_flow::{Decision, LookupError, PendingAuthorization};
use crate::i18n::{Lang, Text};
use crate::limits::RetryAfter;
use crate::phishing::{self, Pick, Proximity};
use crate::scopes;
use crate::state::AppState;

/// The link page for a code; `typed` carries the page form's token along
/// (a code typed on this browser, see `Visitor::typed`).
fn link_path(code: &str, typed: Option<&str>) -> String {
    let encoded: String = form_urlencoded::byte_serialize(code.as_bytes()).collect();
    match typed {
        Some(token) => format!("/link?code={encoded}&typed={}", urlencode(token)),
        None => format!("/link?code={encoded}"),
    }
}

/// The number-matching page of one authorization: named by its record id,
/// so the address no longer shows the code the person must find on their
/// device.
fn match_path(id: &str) -> String {
    format!("/link?match={}", urlencode(id))
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The code as it should travel in a URL: normalised when it parses, else
/// as typed (cut), so the person sees what they entered.
fn code_for_url(input: &str) -> String {
    match UserCode::parse(input) {
        Ok(code) => code.display(),
        Err(_) => input.chars().take(32).collect(),
    }
}

/// The code in what the person entered: as typed when it parses, else
/// the one code found in pasted text ("Code: MFJT-LWZM"), else as typed,
/// so the error says what was wrong with it.
fn read_code(typed: &str) -> String {
    match UserCode::parse(typed) {
        Ok(_) => typed.to_string(),
        Err(_) => UserCode::find_in(typed).map_or_else(|| typed.to_string(), |c| c.display()),
    }
}

pub async fn page(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    if let Some(id) = query_param(query.as_deref(), "match") {
        return match_page(&state, ip, &visitor, &id).await;
    }
    let code = query_param(query.as_deref(), "code")
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty());
    // Typed on this browser's link page, or arrived in a link (issue 22).
    let token = query_param(query.as_deref(), "typed");
    let by_hand = visitor.typed(token.as_deref());
    let token = token.as_deref().filter(|_| by_hand);
    let Some(typed) = code else {
        return render(
            &state,
            &visitor,
            StatusCode::OK,
            "link.html",
            context! { title => visitor.lang.t("link.title") },
        );
    };
    let code = read_code(&typed);
    // Signed in or not, the code is checked first, so nobody signs in or
    // creates an account for a code that could never work. A stranger's
    // lookups take the same wrong-code limits as a signed-in person's
    // (RFC 8628 §5.1; SECURITY.md's bound rests on the network and server
    // limits) and learn no more than that the code is real: the
    // confirmation page waits for sign-in.
    let key = visitor.entry_key();
    let signed_in = visitor.signed_in.is_some();
    match entry(&state, &key, ip).look_up(&code).await {
        Ok(pending) if signed_in => match visitor.account() {
            Some(account) if !crate::verification::may_approve(&state.config, account) => {
                let next = link_path(&code_for_url(&code), token);
                super::verify::verify_first(&state, &visitor, account, &next)
            }
            _ if by_hand => confirm_page(&state, &visitor, ip, &pending, None),
            // A code that came in a link (verification_uri_complete, a QR
            // code, a message): the person must find it on the device first.
            _ if pending.client.prefilled_links => {
                Ok(super::see_other(&match_path(&pending.auth.id)))
            }
            // The app's operator turned prefilled links off: the person
            // types the code from the device instead.
            _ => render(
                &state,
                &visitor,
                StatusCode::OK,
                "link.html",
                context! {
                    title => visitor.lang.t("link.title"),
                    note => visitor.lang.t("link.prefilled_off"),
                },
            ),
        },
        Ok(_) => Ok(to_sign_in(&link_path(&code_for_url(&code), token))),
        Err(e) => entry_error_page(&state, &visitor, &code, e, None).await,
    }
}

/// What the sign-in and sign-up pages say they are for when the person
/// is on their way to a code: the code, and the app asking when the code
/// is pending. The lookup takes the same limits as the link page's, so
/// these pages are no way around them.
pub async fn code_on_the_way(
    state: &AppState,
    visitor: &Visitor,
    ip: IpAddr,
    next: &str,
) -> Option<minijinja::Value> {
    let query = next.strip_prefix("/link?")?;
    let code = UserCode::parse(&query_param(Some(query), "code")?).ok()?;
    let key = visitor.entry_key();
    let app = match entry(state, &key, ip).look_up(code.as_str()).await {
        Ok(pending) => Some(pending.client.name),
        Err(_) => None,
    };
    Some(context! { code => code.display(), app => app })
}

/// Code entry for this session and address, now.
fn entry<'a>(state: &'a AppState, session: &'a str, ip: IpAddr) -> Entry<'a> {
    Entry {
        ctx: state.ctx(),
        session,
        ip,
    }
}

/// RFC 8628 §5.1: wrong codes are limited per session, network and server;
/// past a limit code entry pauses and the page says for how long. Past the
/// server's (`paused`), it also says that a device on the same network
/// as the browser still works.
fn too_many_codes(
    state: &AppState,
    visitor: &Visitor,
    retry_after: i64,
    paused: bool,
) -> Result<Response, PageError> {
    crate::telemetry::rate_limited("code_entry");
    let lang = visitor.lang;
    let minutes = (retry_after + 59) / 60;
    // The clock time as well as the wait: a person who comes back later
    // (or scans the device's QR code again) knows whether it is over.
    let at = visitor.time(state.clock.now() + retry_after);
    let message = if paused {
        lang.t("limits.codes.paused").to_string()
    } else if minutes <= 1 {
        lang.fmt("limits.codes.message_minute", &[("at", &at)])
    } else {
        lang.fmt(
            "limits.codes.message",
            &[("minutes", &minutes.to_string()), ("at", &at)],
        )
    };
    let response = render(
        state,
        visitor,
        StatusCode::TOO_MANY_REQUESTS,
        "message.html",
        context! {
            title => lang.t("limits.codes.title"),
            heading => lang.t("limits.codes.title"),
            message => message,
            // Not the link page: it would lead back here.
            help => true,
        },
    )?;
    Ok(with_retry_after(response, retry_after))
}

/// `GET /link?match=ID`: the number-matching step for a code that came in
/// a link. The authorization is named by id; its code is looked up as any
/// code is (limits, expiry, the app's switches).
async fn match_page(
    state: &AppState,
    ip: IpAddr,
    visitor: &Visitor,
    id: &str,
) -> Result<Response, PageError> {
    let Some((session, _)) = &visitor.signed_in else {
        return Ok(to_sign_in(&match_path(id)));
    };
    let Some(auth) = authorization_by_ref(state, id).await? else {
        return lookup_error_page(state, visitor, "", LookupError::NotFound, None, None).await;
    };
    match entry(state, &session.id_hash, ip)
        .look_up(&auth.user_code)
        .await
    {
        Ok(pending) => {
            let choices = phishing::choices(&state.ctx(), &session.id_hash, &pending.user_code)
                .await?
                .iter()
                .map(UserCode::display)
                .collect();
            confirm_page(state, visitor, ip, &pending, Some(choices))
        }
        Err(e) => entry_error_page(state, visitor, &auth.user_code, e, None).await,
    }
}

/// The authorization a number-matching form or address names; ids are
/// URL-safe and short, anything else names none.
async fn authorization_by_ref(
    state: &AppState,
    id: &str,
) -> Result<Option<crate::store::DeviceAuthorization>, PageError> {
    let plausible = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if !plausible {
        return Ok(None);
    }
    Ok(state.store.get_device_authorization(id).await?)
}

/// The page for a failed code entry.
async fn entry_error_page(
    state: &AppState,
    visitor: &Visitor,
    typed: &str,
    err: EntryError,
    asked: Option<bool>,
) -> Result<Response, PageError> {
    match err {
        EntryError::Limited(RetryAfter(secs)) => too_many_codes(state, visitor, secs, false),
        EntryError::Paused(RetryAfter(secs)) => too_many_codes(state, visitor, secs, true),
        EntryError::WrongCode(tries) => {
            lookup_error_page(state, visitor, typed, LookupError::NotFound, asked, tries).await
        }
        EntryError::Lookup(e) => lookup_error_page(state, visitor, typed, e, asked, None).await,
    }
}

/// `POST /link/pick`: the person picks the code their device shows, or
/// denies or reports the code, on the number-matching page. The right
/// code leads to the confirmation page; a decoy denies the code (the
/// person does not see the device's code, so it is not in front of them);
/// a code the page did not offer is a changed form and decides nothing.
pub async fn pick(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    let id = form.get("ref").unwrap_or("").to_string();
    let Some((session, account)) = &visitor.signed_in else {
        return Ok(to_sign_in(&match_path(&id)));
    };
    visitor.check_csrf(form.get("csrf"))?;
    let Some(auth) = authorization_by_ref(&state, &id).await? else {
        return lookup_error_page(&state, &visitor, "", LookupError::NotFound, None, None).await;
    };
    let entry = entry(&state, &session.id_hash, ip);
    let code = &auth.user_code;
    let decision = match (form.get("pick"), form.get("decision")) {
        (Some(picked), None) => {
            let Ok(user_code) = UserCode::parse(code) else {
                return lookup_error_page(&state, &visitor, "", LookupError::NotFound, None, None)
                    .await;
            };
            match phishing::judge_pick(&state.ctx(), &session.id_hash, &user_code, picked).await? {
                Pick::Tampered => {
                    tracing::warn!("a number-matching form came back with a code it did not offer");
                    return Err(PageError::BadRequest(Text::key("confirm.pick_tampered")));
                }
                Pick::Right => {
                    return match entry.look_up(code).await {
                        Ok(pending) => confirm_page(&state, &visitor, ip, &pending, None),
                        Err(e) => entry_error_page(&state, &visitor, code, e, None).await,
                    };
                }
                Pick::Wrong => Decision::WrongPick,
            }
        }
        (None, Some("deny")) => Decision::Deny,
        (None, Some("report")) => Decision::Report,
        _ => return Err(PageError::BadRequest(Text::key("confirm.pick_choose"))),
    };
    match entry.decide_as(code, decision, account, visitor.lang).await {
        Ok(pending) if decision == Decision::Report => reported_page(&state, &visitor, &pending),
        Ok(pending) if decision == Decision::WrongPick => {
            crate::telemetry::authorization("wrong_pick");
            let lang = visitor.lang;
            let heading = lang.t("result.wrong_pick.heading").to_string();
            render(
                &state,
                &visitor,
                StatusCode::OK,
                "result.html",
                context! {
                    title => heading.clone(),
                    heading => heading,
                    message => lang.fmt("result.wrong_pick.message", &[("app", &pending.client.name)]),
                    approved => false,
                },
            )
        }
        Ok(pending) => result_page(
            &state,
            &visitor,
            StatusCode::OK,
            &pending.client.name,
            None,
            false,
        ),
        Err(e) => entry_error_page(&state, &visitor, code, e, Some(false)).await,
    }
}

/// `choices`: the codes to pick from when the code came in a link (number
/// matching); `None` shows the code and the Approve button.
fn confirm_page(
    state: &AppState,
    visitor: &Visitor,
    browser_ip: IpAddr,
    pending: &PendingAuthorization,
    choices: Option<Vec<String>>,
) -> Result<Response, PageError> {
    let now = state.clock.now();
    let auth = &pending.auth;
    let lang = visitor.lang;
    let scope_words: Vec<&str> = auth
        .scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(|s| scopes::describe(s, lang))
        .collect();
    let code = pending.user_code.display();
    let age = now - auth.created_at;
    // Device-code phishing: the lure arrives by mail or chat, from a code
    // the attacker requested elsewhere and earlier. Say so in plain words
    // (draft-ietf-oauth-cross-device-security §6.1.2, proximity).
    let proximity = Proximity::of(&pending.client, &auth.requested_ip, browser_ip);
    let other_network = proximity.same_network == Some(false);
    let old = age > STALE_CODE_SECS;
    let ago = lang.ago(age);
    let where_from = match proximity.same_network {
        Some(true) => lang.fmt(
            "confirm.proximity.same",
            &[("ago", &ago), ("device_ip", &auth.requested_ip)],
        ),
        Some(false) => lang.fmt(
            "confirm.proximity.other",
            &[
                ("ago", &ago),
                ("device_ip", &auth.requested_ip),
                ("browser_ip", &browser_ip.to_string()),
            ],
        ),
        None => lang.fmt("confirm.proximity.unknown", &[("ago", &ago)]),
    };
    // Cleaned on the way in; again here for rows stored before invisible
    // characters were removed.
    let device_name = crate::device_flow::clean_device_name(auth.device_name.as_deref());
    let user_agent = crate::device_flow::clean_user_agent(auth.user_agent.as_deref());
    let what_it_said = match (&device_name, &user_agent) {
        (Some(name), Some(agent)) => Some(lang.fmt(
            "confirm.proximity.named_agent",
            &[("name", name), ("agent", agent)],
        )),
        (Some(name), None) => Some(lang.fmt("confirm.proximity.named", &[("name", name)])),
        (None, Some(agent)) => Some(lang.fmt("confirm.proximity.agent", &[("agent", agent)])),
        (None, None) => None,
    };
    let network_rule = proximity.required.map(|rule| rule.to_string());

    render(
        state,
        visitor,
        StatusCode::OK,
        "confirm.html",
        context! {
            title => lang.fmt("confirm.title", &[("app", &pending.client.name)]),
            app => &pending.client.name,
            code => &code,
            device_name => device_name,
            user_agent => user_agent,
            where_from => where_from,
            what_it_said => what_it_said,
            network_refused => !proximity.allows_approval(),
            network_rule => network_rule,
            choices => choices.as_ref(),
            match_ref => choices.as_ref().map(|_| auth.id.as_str()),
            requested_ago => ago,
            requested_at => visitor.datetime(auth.created_at, now),
            shows_times => true,
            requested_ip => &auth.requested_ip,
            browser_ip => browser_ip.to_string(),
            other_network => other_network,
            old => old,
            scopes => scope_words,
            switch_next => if choices.is_some() { match_path(&auth.id) } else { link_path(&code, None) },
        },
    )
}

/// A code requested longer ago than this gets a warning: people enter codes
/// from a screen in front of them within a minute or two.
const STALE_CODE_SECS: i64 = 180;

/// `asked`: the decision this request sent, if it sent one; `tries`: the
/// wrong codes left before code entry pauses, and when such a pause ends.
async fn lookup_error_page(
    state: &AppState,
    visitor: &Visitor,
    typed: &str,
    err: LookupError,
    asked: Option<bool>,
    tries: Option<(u32, i64)>,
) -> Result<Response, PageError> {
    let lang = visitor.lang;
    let (status, message) = match err {
        LookupError::Malformed(CodeError::BadCharacter) => {
            (StatusCode::BAD_REQUEST, lang.t("code.error.bad_character"))
        }
        LookupError::Malformed(_) => (StatusCode::BAD_REQUEST, lang.t("code.error.malformed")),
        LookupError::NotFound => (StatusCode::NOT_FOUND, lang.t("code.error.not_found")),
        LookupError::Expired => {
            return gone_page(state, visitor, StatusCode::GONE, "code.expired");
        }
        LookupError::TooOld => {
            return gone_page(state, visitor, StatusCode::GONE, "code.too_old");
        }
        LookupError::OtherNetwork => {
            return gone_page(state, visitor, StatusCode::FORBIDDEN, "code.other_network");
        }
        LookupError::NetworkBlocked => {
            return gone_page(
                state,
                visitor,
                StatusCode::FORBIDDEN,
                "code.network_blocked",
            );
        }
        LookupError::AppDisabled => {
            return gone_page(state, visitor, StatusCode::FORBIDDEN, "code.app_disabled");
        }
        LookupError::AlreadyUsed => {
            return used_code_page(state, visitor, typed, asked).await;
        }
        LookupError::Store(e) => return Err(e.into()),
    };
    render(
        state,
        visitor,
        status,
        "link.html",
        context! {
            title => lang.t("link.title"),
            code => typed.chars().take(100).collect::<String>(),
            error => message,
            tries => tries.and_then(|t| tries_left(visitor, t)),
        },
    )
}

/// Wrong codes get fewer tries left; the last few are counted down, so a
/// pause never comes as a surprise.
const TRIES_SHOWN: u32 = 3;

fn tries_left(visitor: &Visitor, (left, until): (u32, i64)) -> Option<String> {
    let lang = visitor.lang;
    let until = visitor.time(until);
    match left {
        0 => Some(lang.fmt("code.tries.none", &[("until", &until)])),
        1 => Some(lang.fmt("code.tries.one", &[("until", &until)])),
        n if n <= TRIES_SHOWN => Some(lang.fmt(
            "code.tries.some",
            &[("n", &n.to_string()), ("until", &until)],
        )),
        _ => None,
    }
}

/// A used code. For the person who decided it (a reload of the result,
/// the link opened again) it says what they decided, not that something
/// failed; anyone else learns only that it was used. A decision sent
/// against the one that won (approve and deny racing) is a conflict.
async fn used_code_page(
    state: &AppState,
    visitor: &Visitor,
    typed: &str,
    asked: Option<bool>,
) -> Result<Response, PageError> {
    if let (Some(account), Ok(code)) = (visitor.account(), UserCode::parse(typed)) {
        let store = state.store.as_ref();
        let found = store
            .get_device_authorization_by_user_code(code.as_str())
            .await?;
        if let Some(auth) = found.filter(|a| a.account_id.as_deref() == Some(account.id.as_str())) {
            let app = match store.get_client(&auth.client_id).await? {
                Some(client) => client.name,
                None => auth.client_id.clone(),
            };
            let approve = auth.state != crate::store::AuthorizationState::Denied;
            let status = if asked.is_some_and(|a| a != approve) {
                StatusCode::CONFLICT
            } else {
                StatusCode::OK
            };
            let device = crate::device_flow::clean_device_name(auth.device_name.as_deref());
            return result_page(state, visitor, status, &app, device.as_deref(), approve);
        }
    }
    gone_page(state, visitor, StatusCode::CONFLICT, "code.used")
}

/// "Your Demo TV is now linked" or "Demo TV was not linked"; a device
/// that gave itself a name ("Office TV") is called by it, with the app
/// beside it, so the person knows which app they let in.
fn result_page(
    state: &AppState,
    visitor: &Visitor,
    status: StatusCode,
    app: &str,
    device: Option<&str>,
    approve: bool,
) -> Result<Response, PageError> {
    let lang = visitor.lang;
    let named = device.filter(|d| *d != app);
    let args = [("app", app), ("device", named.unwrap_or(app))];
    let key = |outcome: &str| match named {
        Some(_) => format!("result.{outcome}.heading_named"),
        None => format!("result.{outcome}.heading"),
    };
    let (heading, message) = if approve {
        (
            lang.fmt(&key("approved"), &args),
            lang.t("result.approved.message"),
        )
    } else {
        (
            lang.fmt(&key("denied"), &args),
            lang.t("result.denied.message"),
        )
    };
    render(
        state,
        visitor,
        status,
        "result.html",
        context! { title => heading.clone(), heading => heading, message => message, approved => approve },
    )
}

/// After "I didn't start this": the code is denied and reported; the page
/// says so and what to make of whoever sent the code.
fn reported_page(
    state: &AppState,
    visitor: &Visitor,
    pending: &PendingAuthorization,
) -> Result<Response, PageError> {
    let lang = visitor.lang;
    let heading = lang.fmt("result.reported.heading", &[("app", &pending.client.name)]);
    render(
        state,
        visitor,
        StatusCode::OK,
        "result.html",
        context! {
            title => heading.clone(),
            heading => heading,
            message => lang.t("result.reported.message"),
            approved => false,
        },
    )
}

/// A page for a code that cannot be used, with a way to enter a new one.
/// `texts` names the catalog's `.title`, `.heading` and `.message` keys.
fn gone_page(
    state: &AppState,
    visitor: &Visitor,
    status: StatusCode,
    texts: &str,
) -> Result<Response, PageError> {
    let lang = visitor.lang;
    let text = |part: &str| lang.t(&format!("{texts}.{part}")).to_string();
    render(
        state,
        visitor,
        status,
        "message.html",
        context! {
            title => text("title"),
            heading => text("heading"),
            message => text("message"),
            again => true,
        },
    )
}

/// `POST /link/decide`: Approve or Deny from the confirmation page.
pub async fn decide(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    let code = form.get("code").unwrap_or("").to_string();
    let Some((session, account)) = &visitor.signed_in else {
        return Ok(to_sign_in(&link_path(&code_for_url(&code), None)));
    };
    visitor.check_csrf(form.get("csrf"))?;
    let decision = match form.get("decision") {
        Some("approve") => Decision::Approve,
        Some("deny") => Decision::Deny,
        Some("report") => Decision::Report,
        _ => return Err(PageError::BadRequest(Text::key("confirm.choose"))),
    };
    let approve = decision.approves();
    if approve && !crate::verification::may_approve(&state.config, account) {
        let next = link_path(&code_for_url(&code), None);
        return super::verify::verify_first(&state, &visitor, account, &next);
    }
    match entry(&state, &session.id_hash, ip)
        .decide_as(&code, decision, account, visitor.lang)
        .await
    {
        Ok(pending) if decision == Decision::Report => reported_page(&state, &visitor, &pending),
        Ok(pending) => {
            let device = crate::device_flow::clean_device_name(pending.auth.device_name.as_deref());
            result_page(
                &state,
                &visitor,
                StatusCode::OK,
                &pending.client.name,
                device.as_deref(),
                approve,
            )
        }
        Err(e) => entry_error_page(&state, &visitor, &code, e, Some(approve)).await,
    }
}

/// "just now", "3 minutes ago", "2 hours ago", in English (pages use
/// [`Lang::ago`]).
pub fn ago(secs: i64) -> String {
    Lang::En.ago(secs)
}

/// "25 Nov 2026, 18:21 UTC", in English, for the terminal (pages use
/// [`Lang::datetime`]).
pub fn utc_time(ts: i64) -> String {
    Lang::En.datetime(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_absolute_times() {
        assert_eq!(ago(5), "just now");
        assert_eq!(ago(61), "1 minute ago");
        assert_eq!(ago(600), "10 minutes ago");
        assert_eq!(ago(3 * 3600), "3 hours ago");
        assert_eq!(utc_time(1_764_094_860), "25 Nov 2025, 18:21 UTC");
    }
}
