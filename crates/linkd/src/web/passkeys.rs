//! Passkeys on the pages: `/signin/passkey` (sign in with one) and
//! `/account/passkeys` (add, rename, remove). The options a browser needs
//! for `navigator.credentials` come from the `…/options` routes as JSON,
//! fetched by `/static/passkeys.js`; each answer then goes back in a plain
//! form post, so a sign-in ends like a password sign-in (a redirect to
//! where the person was) and every error is a page.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde_json::json;

use super::link::code_on_the_way;
use super::{PageError, PageForm, Visitor, render, safe_next, see_other, to_sign_in};
use crate::client_ip::ClientIp;
use crate::passkeys::{self, PasskeyError, RelyingParty};
use crate::state::AppState;

/// The relying party, when the public URL names a domain.
pub fn relying_party(state: &AppState) -> Option<RelyingParty> {
    RelyingParty::from_issuer(&state.config.issuer())
}

/// This visitor's binding for its ceremonies (the form's token checked)
/// and the relying party; 404 where passkeys are off.
fn ceremony(
    state: &AppState,
    visitor: &Visitor,
    form: &PageForm,
) -> Result<(String, RelyingParty), PageError> {
    visitor.check_csrf(form.get("csrf"))?;
    let binding = visitor
        .form_token()
        .map(passkeys::binding)
        .ok_or(PageError::Csrf)?;
    let rp = relying_party(state).ok_or(PageError::NotFound)?;
    Ok((binding, rp))
}

/// Takes a ceremony from the network's budget before its challenge is
/// stored: every options request leaves a row for five minutes, so an
/// unbounded stream of them would be an unbounded write. The refusal is
/// JSON for the script, with Retry-After.
fn ceremony_refused(state: &AppState, ip: std::net::IpAddr) -> Option<Response> {
    let network = crate::limits::network_key(ip);
    match state
        .limits
        .passkey_ceremonies_per_network
        .take(&network, state.clock.now())
    {
        Ok(()) => None,
        Err(wait) => {
            crate::telemetry::rate_limited("passkey_ceremony");
            let answer = (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({ "error": "too many passkey ceremonies from this network" })),
            )
                .into_response();
            Some(super::with_retry_after(answer, wait.0))
        }
    }
}

/// A JSON answer for the script: the options, or why not.
fn options_answer(result: Result<String, PasskeyError>) -> Result<Response, PageError> {
    match result {
        Ok(options) => Ok((
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            options,
        )
            .into_response()),
        Err(PasskeyError::Store(e)) => Err(e.into()),
        Err(e) => {
            let status = match e {
                PasskeyError::TooMany => StatusCode::CONFLICT,
                _ => StatusCode::BAD_REQUEST,
            };
            Ok((status, Json(json!({ "error": e.to_string() }))).into_response())
        }
    }
}

/// `POST /signin/passkey/options`: a sign-in ceremony for this browser.
pub async fn sign_in_options(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    let (binding, rp) = ceremony(&state, &visitor, &form)?;
    if let Some(refused) = ceremony_refused(&state, ip) {
        return Ok(refused);
    }
    let result =
        passkeys::sign_in_options(state.store.as_ref(), &rp, &binding, state.clock.now()).await;
    options_answer(result)
}

/// `POST /signin/passkey`: the browser's answer; signs in and goes on to
/// `next`, or shows the sign-in page with what went wrong.
pub async fn sign_in(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    let (binding, rp) = ceremony(&state, &visitor, &form)?;
    let next = safe_next(form.get("next"));
    let now = state.clock.now();
    let result = passkeys::sign_in(
        state.store.as_ref(),
        &state.limits,
        &rp,
        &binding,
        form.get("credential").unwrap_or(""),
        ip,
        now,
    )
    .await;
    let lang = visitor.lang;
    let (status, error, wait) = match result {
        Ok((account, _)) => {
            return super::signin::signed_in_redirect(&state, &visitor, &account.id, &next, ip)
                .await;
        }
        Err(PasskeyError::Store(e)) => return Err(e.into()),
        Err(PasskeyError::Limited(wait)) => {
            crate::telemetry::rate_limited("sign_in");
            (
                StatusCode::TOO_MANY_REQUESTS,
                super::signin::too_many_attempts(lang, wait.0),
                Some(wait.0),
            )
        }
        Err(PasskeyError::UnknownChallenge) => (
            StatusCode::BAD_REQUEST,
            lang.t("passkey.error.expired").to_string(),
            None,
        ),
        Err(e @ (PasskeyError::UnknownPasskey | PasskeyError::Rejected(_))) => {
            tracing::info!(error = %e, "passkey sign-in refused");
            (
                StatusCode::UNAUTHORIZED,
                lang.t("passkey.error.unknown").to_string(),
                None,
            )
        }
        Err(_) => (
            StatusCode::BAD_REQUEST,
            lang.t("passkey.error.malformed").to_string(),
            None,
        ),
    };
    let linking = code_on_the_way(&state, &visitor, ip, &next).await;
    let mut page = render(
        &state,
        &visitor,
        status,
        "signin.html",
        context! {
            title => lang.t("signin.title"),
            next => next,
            error => error,
            linking => linking,
        },
    )?;
    super::authorize::allow_return_to_app(&state, &next, &mut page).await;
    Ok(match wait {
        Some(secs) => super::with_retry_after(page, secs),
        None => page,
    })
}

/// `POST /account/passkeys/options`: a registration ceremony for the
/// signed-in account, in this browser.
pub async fn add_options(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    let Some(account) = visitor.account() else {
        return Ok(to_sign_in("/account"));
    };
    let (binding, rp) = ceremony(&state, &visitor, &form)?;
    if let Some(refused) = ceremony_refused(&state, ip) {
        return Ok(refused);
    }
    let result = passkeys::registration_options(
        state.store.as_ref(),
        &rp,
        account,
        &binding,
        state.clock.now(),
    )
    .await;
    options_answer(result)
}

/// `POST /account/passkeys`: the browser's new credential and its name.
pub async fn add(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    let Some(account) = visitor.account() else {
        return Ok(to_sign_in("/account"));
    };
    let (binding, rp) = ceremony(&state, &visitor, &form)?;
    let result = passkeys::register(
        state.store.as_ref(),
        &rp,
        account,
        &binding,
        &passkeys::NewPasskey {
            response: form.get("credential").unwrap_or(""),
            name: form.get("name").unwrap_or(""),
            ip: &ip.to_string(),
        },
        state.clock.now(),
    )
    .await;
    let lang = visitor.lang;
    let (status, key) = match result {
        Ok(_) => return Ok(see_other("/account?done=passkey_added#passkeys")),
        Err(PasskeyError::Store(e)) => return Err(e.into()),
        Err(PasskeyError::UnknownChallenge) => (StatusCode::BAD_REQUEST, "passkey.error.expired"),
        Err(PasskeyError::Exists) => (StatusCode::CONFLICT, "passkey.error.exists"),
        Err(PasskeyError::TooMany) => (StatusCode::CONFLICT, "passkey.error.too_many"),
        Err(e @ PasskeyError::Rejected(_)) => {
            tracing::info!(error = %e, "passkey refused");
            (StatusCode::BAD_REQUEST, "passkey.error.rejected")
        }
        Err(_) => (StatusCode::BAD_REQUEST, "passkey.error.malformed"),
    };
    super::account::with_form_error(&state, &visitor, account, status, "passkeys", lang.t(key))
        .await
}

/// `POST /account/passkeys/rename`.
pub async fn rename(
    State(state): State<AppState>,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    let Some(account) = visitor.account() else {
        return Ok(to_sign_in("/account"));
    };
    visitor.check_csrf(form.get("csrf"))?;
    let name = passkeys::clean_name(form.get("name").unwrap_or(""));
    let id = form.get("id").unwrap_or("");
    if !state.store.rename_passkey(&account.id, id, &name).await? {
        return Err(PageError::NotFound);
    }
    Ok(see_other("/account?done=passkey_renamed#passkeys"))
}

/// `POST /account/passkeys/remove`.
pub async fn remove(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    let Some(account) = visitor.account() else {
        return Ok(to_sign_in("/account"));
    };
    visitor.check_csrf(form.get("csrf"))?;
    let id = form.get("id").unwrap_or("");
    let removed = passkeys::remove(
        state.store.as_ref(),
        &account.id,
        id,
        &ip.to_string(),
        state.clock.now(),
    )
    .await?;
    if !removed {
        return Err(PageError::NotFound);
    }
    Ok(see_other("/account?done=passkey_removed#passkeys"))
}
