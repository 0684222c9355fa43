//! `/signup`: create an account, then continue where the person was going.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;

use super::link::code_on_the_way;
use super::signin::signed_in_redirect;
use super::{
    PageError, PageForm, Visitor, query_param, render, safe_next, see_other, with_retry_after,
};
use crate::accounts::{self, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN, SignUpError};
use crate::client_ip::ClientIp;
use crate::limits::{Refused, RetryAfter};
use crate::recovery::MailContext;
use crate::state::AppState;
use crate::store::OutboxKind;

pub async fn page(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let next = safe_next(query_param(query.as_deref(), "next").as_deref());
    if visitor.account().is_some() {
        return Ok(see_other(&next));
    }
    if state.config.no_local_passwords {
        return super::upstream::passwords_off(&state, &visitor, &next);
    }
    let linking = code_on_the_way(&state, &visitor, ip, &next).await;
    let mut page = render(
        &state,
        &visitor,
        StatusCode::OK,
        "signup.html",
        context! {
            title => visitor.lang.t("signup.title"),
            next => next,
            min_password => MIN_PASSWORD_LEN,
            linking => linking,
        },
    )?;
    super::authorize::allow_return_to_app(&state, &next, &mut page).await;
    Ok(page)
}

pub async fn submit(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    visitor.check_csrf(form.get("csrf"))?;
    let next = safe_next(form.get("next"));
    if state.config.no_local_passwords {
        return super::upstream::passwords_off(&state, &visitor, &next);
    }
    let email = form.get("email").unwrap_or("");
    let password = form.get("password").unwrap_or("");
    let lang = visitor.lang;
    let now = state.clock.now();
    // Taken before the password is hashed (SECURITY.md).
    match state.limits.begin_sign_up(ip, now).await {
        Ok(()) => {}
        Err(Refused::Store(e)) => return Err(e.into()),
        Err(Refused::Wait(RetryAfter(secs))) => {
            crate::telemetry::rate_limited("sign_up");
            let message = lang.fmt(
                "signup.error.too_many",
                &[("minutes", &((secs + 59) / 60).to_string())],
            );
            return wait_page(&state, &visitor, &next, "", message, secs);
        }
    }
    let base = state.config.issuer();
    let mail = MailContext {
        brand: &state.brand,
        base: &base,
        lang,
    };
    let (status, error, taken) = match accounts::sign_up(
        state.store.as_ref(),
        &state.limits.hashing,
        email,
        password,
        now,
        state.outbox.sends(OutboxKind::Mail).then_some(&mail),
    )
    .await
    {
        Ok(account) => {
            state.outbox.wake();
            return signed_in_redirect(&state, &visitor, &account.id, &next, ip).await;
        }
        Err(SignUpError::Store(e)) => return Err(e.into()),
        Err(SignUpError::Busy) => {
            crate::telemetry::rate_limited("password_hashes_at_once");
            let message = super::signin::too_many_attempts(lang, 1);
            return wait_page(&state, &visitor, &next, email, message, 1);
        }
        Err(SignUpError::Taken) => (
            StatusCode::CONFLICT,
            lang.t("signup.error.taken").to_string(),
            true,
        ),
        Err(SignUpError::InvalidEmail) => (
            StatusCode::BAD_REQUEST,
            lang.t("signup.error.email").to_string(),
            false,
        ),
        Err(SignUpError::BadPassword) => (
            StatusCode::BAD_REQUEST,
            lang.fmt(
                "signup.error.password",
                &[
                    ("min", &MIN_PASSWORD_LEN.to_string()),
                    ("max", &MAX_PASSWORD_LEN.to_string()),
                ],
            ),
            false,
        ),
    };
    let linking = code_on_the_way(&state, &visitor, ip, &next).await;
    render(
        &state,
        &visitor,
        status,
        "signup.html",
        context! {
            linking => linking,
            title => lang.t("signup.title"),
            next => next,
            min_password => MIN_PASSWORD_LEN,
            email => email.chars().take(254).collect::<String>(),
            error => error,
            taken => taken,
        },
    )
}

/// The form again with why and how long to wait (429 + Retry-After).
fn wait_page(
    state: &AppState,
    visitor: &Visitor,
    next: &str,
    email: &str,
    message: String,
    secs: i64,
) -> Result<Response, PageError> {
    let response = render(
        state,
        visitor,
        StatusCode::TOO_MANY_REQUESTS,
        "signup.html",
        context! {
            title => visitor.lang.t("signup.title"),
            next => next,
            min_password => MIN_PASSWORD_LEN,
            email => email.chars().take(254).collect::<String>(),
            error => message,
        },
    )?;
    Ok(with_retry_after(response, secs))
}
