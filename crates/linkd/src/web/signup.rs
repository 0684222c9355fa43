//! `/signup`: create an account, then continue where the person was going.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use minijinja::context;

use super::signin::signed_in_redirect;
use super::{PageError, PageForm, Visitor, query_param, render, safe_next, see_other};
use crate::accounts::{self, MIN_PASSWORD_LEN, SignUpError};
use crate::app::{AppState, ClientIp};
use crate::limits::{RetryAfter, network_key};

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
        "signup.html",
        context! { title => "Create an account", next => next, min_password => MIN_PASSWORD_LEN },
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
    if let Err(RetryAfter(secs)) = state.limits.sign_ups_per_network.hit(&network_key(ip), now) {
        let message = format!(
            "Too many accounts were created from your network recently. Try again in {} minutes.",
            (secs + 59) / 60
        );
        let mut response = render(
            &state,
            &visitor,
            StatusCode::TOO_MANY_REQUESTS,
            "signup.html",
            context! { title => "Create an account", next => next, min_password => MIN_PASSWORD_LEN, error => message },
        )?;
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        return Ok(response);
    }
    let (status, error) = match accounts::sign_up(state.store.as_ref(), email, password, now).await
    {
        Ok(account) => return signed_in_redirect(&state, &visitor, &account.id, &next).await,
        Err(SignUpError::Store(e)) => return Err(e.into()),
        Err(SignUpError::Taken) => (
            StatusCode::CONFLICT,
            "An account with that email already exists. Sign in instead.".to_string(),
        ),
        Err(e @ (SignUpError::InvalidEmail | SignUpError::BadPassword)) => {
            (StatusCode::BAD_REQUEST, format!("Check the form: {e}."))
        }
    };
    render(
        &state,
        &visitor,
        status,
        "signup.html",
        context! {
            title => "Create an account",
            next => next,
            min_password => MIN_PASSWORD_LEN,
            email => email.chars().take(254).collect::<String>(),
            error => error,
        },
    )
}
