//! `/signin` and `/signout`.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use minijinja::context;

use super::{
    PageError, PageForm, SESSION_COOKIE, Visitor, query_param, render, safe_next, see_other,
    set_cookie,
};
use crate::accounts::{self, SignInError};
use crate::client_ip::ClientIp;
use crate::limits::{RetryAfter, network_key};
use crate::state::AppState;

pub async fn page(
    State(state): State<AppState>,
    visitor: Visitor,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let next = safe_next(query_param(query.as_deref(), "next").as_deref());
    if visitor.account().is_some() {
        return Ok(see_other(&next));
    }
    render(
        &state,
        &visitor,
        StatusCode::OK,
        "signin.html",
        context! { title => visitor.lang.t("signin.title"), next => next },
    )
}

pub async fn submit(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    visitor.check_csrf(form.get("csrf"))?;
    let next = safe_next(form.get("next"));
    let email = form.get("email").unwrap_or("");
    let password = form.get("password").unwrap_or("");
    let now = state.clock.now();
    // Counted per email whether or not an account has it, so the delays
    // say nothing about which accounts exist.
    let account_key = email.trim().to_lowercase();
    let network = network_key(ip);
    let limits = &state.limits;
    if let Err(RetryAfter(secs)) = limits
        .sign_in_per_account
        .check(&account_key, now)
        .and(limits.sign_in_per_network.check(&network, now))
    {
        crate::telemetry::rate_limited("sign_in");
        let mut response = render(
            &state,
            &visitor,
            StatusCode::TOO_MANY_REQUESTS,
            "signin.html",
            context! {
                title => visitor.lang.t("signin.title"),
                next => next,
                email => email.chars().take(254).collect::<String>(),
                error => visitor.lang.fmt("signin.error.too_many", &[("secs", &secs.to_string())]),
            },
        )?;
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        return Ok(response);
    }
    match accounts::sign_in(state.store.as_ref(), email, password).await {
        Ok(account) => {
            limits.sign_in_per_account.reset(&account_key);
            signed_in_redirect(&state, &visitor, &account.id, &next).await
        }
        Err(SignInError::Invalid) => {
            limits.sign_in_per_account.fail(&account_key, now);
            limits.sign_in_per_network.fail(&network, now);
            render(
                &state,
                &visitor,
                StatusCode::UNAUTHORIZED,
                "signin.html",
                context! {
                    title => visitor.lang.t("signin.title"),
                    next => next,
                    email => email.chars().take(254).collect::<String>(),
                    error => visitor.lang.t("signin.error"),
                },
            )
        }
        Err(SignInError::Store(e)) => Err(e.into()),
    }
}

/// Starts a session for `account_id` and sends the browser on to `next`.
/// Any previous session is ended so a session id never outlives a change
/// of account.
pub async fn signed_in_redirect(
    state: &AppState,
    visitor: &Visitor,
    account_id: &str,
    next: &str,
) -> Result<Response, PageError> {
    if let Some((old, _)) = &visitor.signed_in {
        state.store.delete_session(&old.id_hash).await?;
    }
    let lifetime = i64::from(state.config.session_lifetime);
    let token = accounts::start_session(
        state.store.as_ref(),
        account_id,
        state.clock.now(),
        lifetime,
    )
    .await?;
    let mut response = see_other(next);
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(state, SESSION_COOKIE, &token, lifetime),
    );
    Ok(response)
}

pub async fn sign_out(
    State(state): State<AppState>,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    let next = safe_next(form.get("next"));
    let target = if next == "/" {
        "/signin".to_string()
    } else {
        let encoded: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
        format!("/signin?next={encoded}")
    };
    let Some((session, _)) = &visitor.signed_in else {
        return Ok(see_other(&target));
    };
    visitor.check_csrf(form.get("csrf"))?;
    state.store.delete_session(&session.id_hash).await?;
    let mut response = see_other(&target);
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state, SESSION_COOKIE, "", 0),
    );
    Ok(response)
}
