//! `/signin` and `/signout`.

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use minijinja::context;

use super::link::code_on_the_way;
use super::{
    PageError, PageForm, SESSION_COOKIE, Visitor, query_param, render, safe_next, see_other,
    set_cookie, with_retry_after,
};
use crate::accounts::{self, SignInError};
use crate::client_ip::ClientIp;
use crate::limits::{Refused, RetryAfter};
use crate::state::AppState;

pub async fn page(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let next = safe_next(query_param(query.as_deref(), "next").as_deref());
    // `reauth`: an app asked for a fresh sign-in (OpenID Connect Core
    // §3.1.2.1 prompt=login, max_age), so the form is shown even to a
    // signed-in person.
    let reauth = query_param(query.as_deref(), "reauth").is_some_and(|v| v == "1");
    if visitor.account().is_some() && !reauth {
        return Ok(see_other(&next));
    }
    // An app's login_hint fills in the email.
    let hint = query_param(query.as_deref(), "login_hint")
        .map(|h| h.chars().take(254).collect::<String>());
    let linking = code_on_the_way(&state, &visitor, ip, &next).await;
    let mut page = render(
        &state,
        &visitor,
        StatusCode::OK,
        "signin.html",
        context! {
            title => visitor.lang.t("signin.title"),
            next => next,
            signed_out => query_param(query.as_deref(), "signed_out").is_some(),
            email => hint,
            linking => linking,
            notice => (query_param(query.as_deref(), "reset").as_deref() == Some("1"))
                .then(|| visitor.lang.t("signin.reset_done")),
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
    let now = state.clock.now();
    let limits = &state.limits;
    // Taken before the password is hashed, so a burst gets no more tries
    // than a sequence (SECURITY.md, "People's accounts").
    let attempt = match limits.begin_sign_in(email, ip, now).await {
        Ok(attempt) => attempt,
        Err(Refused::Wait(RetryAfter(secs))) => {
            crate::telemetry::rate_limited("sign_in");
            return wait_page(&state, &visitor, &next, email, secs);
        }
        // No password is checked without its counters.
        Err(Refused::Store(e)) => return Err(e.into()),
    };
    match accounts::sign_in(state.store.as_ref(), &limits.hashing, email, password).await {
        Ok(account) => {
            limits.sign_in_succeeded(attempt, now).await;
            // For the account page's activity: who signed in, from where.
            state
                .store
                .insert_activity(&crate::store::Activity {
                    account_id: account.id.clone(),
                    kind: crate::store::ActivityKind::SignIn,
                    client_id: String::new(),
                    app_name: String::new(),
                    device: None,
                    ip: ip.to_string(),
                    at: now,
                })
                .await?;
            signed_in_redirect(&state, &visitor, &account.id, &next, ip).await
        }
        // The failure was counted when the attempt began.
        Err(SignInError::Invalid) => {
            let linking = code_on_the_way(&state, &visitor, ip, &next).await;
            let mut page = render(
                &state,
                &visitor,
                StatusCode::UNAUTHORIZED,
                "signin.html",
                context! {
                    title => visitor.lang.t("signin.title"),
                    next => next,
                    email => email.chars().take(254).collect::<String>(),
                    error => visitor.lang.t("signin.error"),
                    linking => linking,
                },
            )?;
            super::authorize::allow_return_to_app(&state, &next, &mut page).await;
            Ok(page)
        }
        Err(SignInError::Busy) => {
            limits.sign_in_not_tried(attempt, now).await;
            crate::telemetry::rate_limited("password_hashes_at_once");
            wait_page(&state, &visitor, &next, email, 1)
        }
        Err(SignInError::Store(e)) => {
            limits.sign_in_not_tried(attempt, now).await;
            Err(e.into())
        }
    }
}

/// The sign-in form again, with how long to wait (429 + Retry-After).
fn wait_page(
    state: &AppState,
    visitor: &Visitor,
    next: &str,
    email: &str,
    secs: i64,
) -> Result<Response, PageError> {
    let response = render(
        state,
        visitor,
        StatusCode::TOO_MANY_REQUESTS,
        "signin.html",
        context! {
            title => visitor.lang.t("signin.title"),
            next => next,
            email => email.chars().take(254).collect::<String>(),
            error => too_many_attempts(visitor.lang, secs),
        },
    )?;
    Ok(with_retry_after(response, secs))
}

/// "Too many attempts. Wait 5 seconds…", with "a second" for one.
pub fn too_many_attempts(lang: crate::i18n::Lang, secs: i64) -> String {
    if secs <= 1 {
        lang.t("signin.error.too_many_one").to_string()
    } else {
        lang.fmt("signin.error.too_many", &[("secs", &secs.to_string())])
    }
}

/// Starts a session for `account_id` and sends the browser on to `next`.
/// Any previous session is ended so a session id never outlives a change
/// of account. A join offered to this browser is taken: the identity
/// joins if it was offered for this account (`upstream::accept_join`).
pub async fn signed_in_redirect(
    state: &AppState,
    visitor: &Visitor,
    account_id: &str,
    next: &str,
    ip: std::net::IpAddr,
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
        set_cookie(state, &SESSION_COOKIE, &token, lifetime),
    );
    if let Some(secret) = &visitor.pending_join {
        crate::upstream::accept_join(
            &state.ctx(),
            &state.upstream,
            secret,
            account_id,
            &ip.to_string(),
        )
        .await?;
        response.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(state, &super::visitor::JOIN_COOKIE, "", 0),
        );
    }
    Ok(response)
}

/// `GET /signout` (a bookmarked or typed address): asks first, since a
/// GET must not change anything (RFC 9110 §9.2.1); the button sends the
/// form below.
pub async fn confirm_sign_out(
    State(state): State<AppState>,
    visitor: Visitor,
) -> Result<Response, PageError> {
    render(
        &state,
        &visitor,
        StatusCode::OK,
        "signout.html",
        context! { title => visitor.lang.t("signout.title") },
    )
}

pub async fn sign_out(
    State(state): State<AppState>,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    let next = safe_next(form.get("next"));
    // The sign-in page then says "You're signed out".
    let target = if next == "/" {
        "/signin?signed_out=1".to_string()
    } else {
        let encoded: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
        format!("/signin?signed_out=1&next={encoded}")
    };
    let Some((session, _)) = &visitor.signed_in else {
        return Ok(see_other(&target));
    };
    visitor.check_csrf(form.get("csrf"))?;
    state.store.delete_session(&session.id_hash).await?;
    let mut response = see_other(&target);
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state, &SESSION_COOKIE, "", 0),
    );
    Ok(response)
}
