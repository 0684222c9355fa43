//! `/oauth/authorize` (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2): an
//! app sends the person's browser here; they sign in, see the same
//! confirmation page as for a device, and are sent back to the app with a
//! code, or with an error once the app and its redirect URI are known good.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;

use super::{PageError, PageForm, Visitor, render, see_other};
use crate::client_ip::ClientIp;
use crate::code_flow::{self, AuthorizeRequest, PageProblem, Reply, RequestError, ValidRequest};
use crate::i18n::Text;
use crate::scopes;
use crate::state::AppState;

/// Longest authorization request taken; it travels through sign-in in the
/// `next` parameter.
const MAX_REQUEST_LEN: usize = 2048;

/// `GET /oauth/authorize`.
pub async fn get(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let query = query.unwrap_or_default();
    if query.len() > MAX_REQUEST_LEN {
        return Err(PageError::BadRequest(Text::key("authorize.error.too_long")));
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name.contains(['\u{FFFD}', '\0']) || value.contains(['\u{FFFD}', '\0']) {
            return Err(PageError::BadRequest(Text::key(
                "form.error.bad_characters",
            )));
        }
        // RFC 6749 §3.1: parameters must not be included more than once.
        // Refused with a page: which value to trust is unknown, the
        // redirect URI included.
        if !value.is_empty() && pairs.iter().any(|(n, _)| *n == name) {
            return Err(problem(PageProblem::Repeated));
        }
        pairs.push((name.into_owned(), value.into_owned()));
    }
    let request = AuthorizeRequest::from_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    authorize(&state, &visitor, &ip.to_string(), &request).await
}

/// `POST /oauth/authorize`: the same request as a form (OpenID Connect
/// Core §3.1.2.1). No CSRF token: it arrives from the app's page, and only
/// shows the confirmation page or answers what a GET would.
pub async fn post(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    let request = AuthorizeRequest::from_pairs(form.pairs());
    if request
        .pairs()
        .iter()
        .map(|(n, v)| n.len() + v.len() + 2)
        .sum::<usize>()
        > MAX_REQUEST_LEN
    {
        return Err(PageError::BadRequest(Text::key("authorize.error.too_long")));
    }
    authorize(&state, &visitor, &ip.to_string(), &request).await
}

async fn authorize(
    state: &AppState,
    visitor: &Visitor,
    ip: &str,
    request: &AuthorizeRequest,
) -> Result<Response, PageError> {
    let valid = match check(state, request).await? {
        Ok(valid) => valid,
        Err(response) => return Ok(response),
    };
    let issuer = state.config.issuer();
    let now = state.clock.now();
    let back = |error: &str, description: &str| {
        Ok(see_other(&valid.reply.error(&issuer, error, description)))
    };
    let Some((session, account)) = &visitor.signed_in else {
        // OpenID Connect Core §3.1.2.1: prompt=none shows no page.
        if valid.prompt.none {
            return back("login_required", "the person is not signed in");
        }
        return Ok(to_sign_in(request, &valid, false));
    };
    if code_flow::needs_fresh_sign_in(&valid, session.created_at, now) {
        if valid.prompt.none {
            return back("login_required", "a fresh sign-in is required");
        }
        return Ok(to_sign_in(request, &valid, true));
    }
    if !crate::verification::may_approve(&state.config, account) {
        if valid.prompt.none {
            // OpenID Connect Core §3.1.2.6: the person must act first.
            return back(
                "interaction_required",
                "the person must confirm their email address first",
            );
        }
        return super::verify::verify_first(state, visitor, account, &request_path(request, false));
    }
    let remembered = !valid.prompt.consent
        && state
            .store
            .has_consent(&account.id, &valid.client.client_id, &valid.scope)
            .await?;
    if remembered {
        let to = code_flow::issue_code(
            &state.ctx(),
            &valid,
            account,
            visitor.lang,
            session.created_at,
            ip,
        )
        .await?;
        return Ok(see_other(&to));
    }
    if valid.prompt.none {
        return back(
            "consent_required",
            "the person has not approved this app yet",
        );
    }
    confirm_page(state, visitor, request, &valid)
}

/// The request checked against its app, or the answer to send instead:
/// a page while the app or redirect URI is in doubt, else a redirect to
/// the app with the error.
async fn check(
    state: &AppState,
    request: &AuthorizeRequest,
) -> Result<Result<ValidRequest, Response>, PageError> {
    let client = match request.client_id.as_deref() {
        Some(id) if id.len() <= 128 && !id.contains(['\0', '\u{FFFD}']) => {
            state.store.get_client(id).await?
        }
        _ => None,
    };
    Ok(match code_flow::validate(request, client) {
        Ok(valid) => Ok(valid),
        Err(RequestError::Page(p)) => return Err(problem(p)),
        Err(RequestError::Reply(e)) => Err(see_other(&e.reply.error(
            &state.config.issuer(),
            e.error,
            &e.description,
        ))),
    })
}

/// The request again as a path, for the way back from sign-in. A fresh
/// sign-in satisfies `prompt=login` and `max_age`, so they are left out
/// of it (else the person would be asked again and again).
fn request_path(request: &AuthorizeRequest, fresh: bool) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in request.pairs() {
        if fresh && (name == "max_age" || (name == "prompt" && value.contains("login"))) {
            continue;
        }
        query.append_pair(name, value);
    }
    format!("/oauth/authorize?{}", query.finish())
}

/// To sign-in, then back here; `login_hint` fills in the email, and
/// `reauth` asks for the password even of a signed-in person.
fn to_sign_in(request: &AuthorizeRequest, valid: &ValidRequest, fresh: bool) -> Response {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("next", &request_path(request, fresh));
    if let Some(hint) = &valid.login_hint {
        query.append_pair("login_hint", hint);
    }
    if fresh {
        query.append_pair("reauth", "1");
    }
    see_other(&format!("/signin?{}", query.finish()))
}

/// A page for the person, never a redirect: the app or its redirect URI
/// is in doubt (RFC 6749 §4.1.2.1).
fn problem(problem: PageProblem) -> PageError {
    let key = match problem {
        PageProblem::MissingClient => "authorize.error.missing_client",
        PageProblem::UnknownClient => "authorize.error.unknown_client",
        PageProblem::BadRedirectUri => "authorize.error.redirect_uri",
        PageProblem::Repeated => "authorize.error.repeated",
    };
    PageError::BadRequest(Text::key(key))
}

/// The confirmation page the device flow uses, for an app: which app,
/// where the person returns to, the scopes in words, the account.
fn confirm_page(
    state: &AppState,
    visitor: &Visitor,
    request: &AuthorizeRequest,
    valid: &ValidRequest,
) -> Result<Response, PageError> {
    let lang = visitor.lang;
    let scope_words: Vec<&str> = valid
        .scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(|s| scopes::describe(s, lang))
        .collect();
    let return_to = url::Url::parse(&valid.reply.redirect_uri)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| valid.reply.redirect_uri.clone());
    let fields: Vec<(&str, &str)> = request.pairs();
    let mut page = render(
        state,
        visitor,
        StatusCode::OK,
        "confirm.html",
        context! {
            title => lang.fmt("confirm.title", &[("app", &valid.client.name)]),
            app => &valid.client.name,
            authorize => true,
            return_to => return_to,
            scopes => scope_words,
            decide_action => "/oauth/authorize/decide",
            fields => fields,
            switch_next => request_path(request, false),
        },
    )?;
    // Approve and Deny end in a redirect to the app; browsers hold a form
    // submission's redirects to the page's form-action (CSP 3 §6.3.1), so
    // this page allows the app's redirect URI, checked above, and no more.
    if let Ok(uri) = url::Url::parse(&valid.reply.redirect_uri) {
        super::headers::allow_form_target(state, &mut page, &uri);
    }
    Ok(page)
}

/// `POST /oauth/authorize/decide`: Approve or Deny. The request travels
/// in the form and is checked again, so nothing is kept between the two.
pub async fn decide(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    let request = AuthorizeRequest::from_pairs(form.pairs());
    let valid = match check(&state, &request).await? {
        Ok(valid) => valid,
        Err(response) => return Ok(response),
    };
    let Some((session, account)) = &visitor.signed_in else {
        return Ok(to_sign_in(&request, &valid, false));
    };
    visitor.check_csrf(form.get("csrf"))?;
    let issuer = state.config.issuer();
    match form.get("decision") {
        Some("approve") if !crate::verification::may_approve(&state.config, account) => {
            super::verify::verify_first(&state, &visitor, account, &request_path(&request, false))
        }
        Some("approve") => {
            let ctx = state.ctx();
            state
                .store
                .grant_consent(&account.id, &valid.client.client_id, &valid.scope, ctx.now)
                .await?;
            let to = code_flow::issue_code(
                &ctx,
                &valid,
                account,
                visitor.lang,
                session.created_at,
                &ip.to_string(),
            )
            .await?;
            Ok(see_other(&to))
        }
        Some("deny") => {
            crate::telemetry::authorization("denied");
            Ok(see_other(&deny(&valid.reply, &issuer)))
        }
        _ => Err(PageError::BadRequest(Text::key("confirm.choose"))),
    }
}

/// RFC 6749 §4.1.2.1: the person said no.
fn deny(reply: &Reply, issuer: &str) -> String {
    reply.error(issuer, "access_denied", "the person denied the request")
}

/// Sign-in and sign-up pages on the way to an app: their form's answer
/// redirects to `next` (`/oauth/authorize?...`), which with a remembered
/// consent redirects on to the app; browsers hold every hop of a form's
/// redirects to the page's form-action (CSP 3 §6.3.1). So such a page
/// allows the app's redirect URI, once the request checks out against
/// the app's registered ones.
pub async fn allow_return_to_app(state: &AppState, next: &str, page: &mut Response) {
    let Some(query) = next.strip_prefix("/oauth/authorize?") else {
        return;
    };
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let request = AuthorizeRequest::from_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    if let Ok(Ok(valid)) = check(state, &request).await
        && let Ok(uri) = url::Url::parse(&valid.reply.redirect_uri)
    {
        super::headers::allow_form_target(state, page, &uri);
    }
}
