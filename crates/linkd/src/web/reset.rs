//! `/signin/forgot` (ask for a reset link) and `/reset` (set a new
//! password with one).

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;

use super::{PageError, PageForm, Visitor, query_param, render, see_other, with_retry_after};
use crate::accounts::MIN_PASSWORD_LEN;
use crate::client_ip::ClientIp;
use crate::i18n::Text;
use crate::limits::Refused;
use crate::recovery::{self, MailContext, ResetError};
use crate::state::AppState;
use crate::store::OutboxKind;

fn mail_ready(state: &AppState) -> bool {
    state.outbox.sends(OutboxKind::Mail)
}

pub async fn forgot_page(
    State(state): State<AppState>,
    visitor: Visitor,
) -> Result<Response, PageError> {
    render(
        &state,
        &visitor,
        StatusCode::OK,
        "forgot.html",
        context! { title => visitor.lang.t("forgot.title"), mail_ready => mail_ready(&state) },
    )
}

pub async fn forgot_submit(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    visitor.check_csrf(form.get("csrf"))?;
    let lang = visitor.lang;
    let email: String = form
        .get("email")
        .unwrap_or("")
        .trim()
        .chars()
        .take(254)
        .collect();
    if !mail_ready(&state) {
        return render(
            &state,
            &visitor,
            StatusCode::SERVICE_UNAVAILABLE,
            "forgot.html",
            context! { title => lang.t("forgot.title"), mail_ready => false },
        );
    }
    let now = state.clock.now();
    // Both limits are taken whether or not the address has an account, so
    // they tell nothing about which ones do.
    let limited = match state.limits.begin_password_reset(&email, ip, now).await {
        Ok(()) => None,
        Err(Refused::Wait(wait)) => Some(wait),
        Err(Refused::Store(e)) => return Err(e.into()),
    };
    if let Some(wait) = limited {
        crate::telemetry::rate_limited("password_reset");
        let minutes = (wait.0 + 59) / 60;
        let response = render(
            &state,
            &visitor,
            StatusCode::TOO_MANY_REQUESTS,
            "forgot.html",
            context! {
                title => lang.t("forgot.title"),
                mail_ready => true,
                email => email,
                error => lang.fmt("forgot.too_many", &[("minutes", &minutes.to_string())]),
            },
        )?;
        return Ok(with_retry_after(response, wait.0));
    }
    // The answer goes out before the address is even looked up, so it and
    // its timing are the same whether or not an account has it.
    let worker = state.clone();
    tokio::spawn(async move {
        let base = worker.config.issuer();
        let mail = MailContext {
            brand: &worker.brand,
            base: &base,
            lang,
        };
        match recovery::request_reset(worker.store.as_ref(), &email, now, &mail).await {
            Ok(()) => worker.outbox.wake(),
            Err(e) => tracing::error!(error = %e, "could not store a password reset"),
        }
    });
    render(
        &state,
        &visitor,
        StatusCode::OK,
        "forgot.html",
        context! { title => lang.t("forgot.title"), mail_ready => true, sent => true },
    )
}

fn link_gone() -> PageError {
    PageError::BadRequest(Text::key("reset.invalid"))
}

pub async fn reset_page(
    State(state): State<AppState>,
    visitor: Visitor,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let token = query_param(query.as_deref(), "token").unwrap_or_default();
    let Some(account) =
        recovery::check_reset(state.store.as_ref(), &token, state.clock.now()).await?
    else {
        return Err(link_gone());
    };
    render(
        &state,
        &visitor,
        StatusCode::OK,
        "reset.html",
        context! {
            title => visitor.lang.t("reset.title"),
            token => token,
            email => account.email,
            min_password => MIN_PASSWORD_LEN,
        },
    )
}

pub async fn reset_submit(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    visitor.check_csrf(form.get("csrf"))?;
    let lang = visitor.lang;
    let token = form.get("token").unwrap_or("");
    let password = form.get("password").unwrap_or("");
    let base = state.config.issuer();
    let mail = MailContext {
        brand: &state.brand,
        base: &base,
        lang,
    };
    let result = recovery::reset(
        state.store.as_ref(),
        &state.limits.hashing,
        token,
        password,
        &ip.to_string(),
        state.clock.now(),
        mail_ready(&state).then_some(&mail),
    )
    .await;
    let again = |status: StatusCode, error: String| -> Result<Response, PageError> {
        render(
            &state,
            &visitor,
            status,
            "reset.html",
            context! {
                title => lang.t("reset.title"),
                token => token,
                email => "",
                min_password => MIN_PASSWORD_LEN,
                error => error,
            },
        )
    };
    match result {
        Ok(_) => {
            state.outbox.wake();
            // Every session ended, this browser's too: sign in anew.
            Ok(see_other("/signin?reset=1"))
        }
        Err(ResetError::Invalid) => Err(link_gone()),
        Err(ResetError::BadPassword) => again(
            StatusCode::BAD_REQUEST,
            lang.fmt(
                "signup.error.password",
                &[
                    ("min", &MIN_PASSWORD_LEN.to_string()),
                    ("max", &crate::accounts::MAX_PASSWORD_LEN.to_string()),
                ],
            ),
        ),
        Err(ResetError::Busy) => {
            crate::telemetry::rate_limited("password_hashes_at_once");
            let response = again(
                StatusCode::TOO_MANY_REQUESTS,
                lang.fmt("signin.error.too_many", &[("secs", "1")]),
            )?;
            Ok(with_retry_after(response, 1))
        }
        Err(ResetError::Store(e)) => Err(e.into()),
    }
}
