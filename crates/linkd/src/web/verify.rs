//! `/verify`: confirming an address with a mailed link (the GET shows
//! the address, the person's POST confirms: mail scanners open links),
//! "send the link again" (limited), and the page an unverified account
//! sees instead of a confirmation page when the operator requires
//! verified addresses.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;

use super::{
    PageError, PageForm, Visitor, query_param, render, safe_next, see_other, to_sign_in,
    with_retry_after,
};
use crate::client_ip::ClientIp;
use crate::i18n::Text;
use crate::limits::{Refused, RetryAfter};
use crate::recovery::MailContext;
use crate::state::AppState;
use crate::store::{Account, OutboxKind};
use crate::verification::{self, VerifyError};

fn link_gone() -> PageError {
    PageError::BadRequest(Text::key("verify.invalid"))
}

pub async fn page(
    State(state): State<AppState>,
    visitor: Visitor,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let token = query_param(query.as_deref(), "token").unwrap_or_default();
    let Some((_, address)) =
        verification::check(state.store.as_ref(), &token, state.clock.now()).await?
    else {
        return Err(link_gone());
    };
    render(
        &state,
        &visitor,
        StatusCode::OK,
        "verify.html",
        context! {
            title => visitor.lang.t("verify.title"),
            token => token,
            address => address,
        },
    )
}

pub async fn submit(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    visitor.check_csrf(form.get("csrf"))?;
    let token = form.get("token").unwrap_or("");
    let lang = visitor.lang;
    match verification::confirm(
        state.store.as_ref(),
        token,
        &ip.to_string(),
        state.clock.now(),
    )
    .await
    {
        Ok((_, address)) => render(
            &state,
            &visitor,
            StatusCode::OK,
            "verify.html",
            context! {
                title => lang.t("verify.done_title"),
                confirmed => address,
            },
        ),
        Err(VerifyError::Taken) => Err(PageError::BadRequest(Text::key("verify.taken"))),
        Err(VerifyError::Invalid) => Err(link_gone()),
        Err(VerifyError::Store(e)) => Err(e.into()),
    }
}

/// `POST /verify/send`: a new link to the signed-in account's address.
pub async fn send_again(
    State(state): State<AppState>,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    let next = safe_next(form.get("next"));
    let Some(account) = visitor.account() else {
        return Ok(to_sign_in(&next));
    };
    visitor.check_csrf(form.get("csrf"))?;
    if account.email_verified_at.is_some() {
        return Ok(see_other(&next));
    }
    let lang = visitor.lang;
    if !state.outbox.sends(OutboxKind::Mail) {
        return Err(PageError::BadRequest(Text::key("verify.no_mail")));
    }
    let now = state.clock.now();
    if let Err(refused) = state.limits.begin_verification_mail(&account.id, now).await {
        let secs = match refused {
            Refused::Wait(RetryAfter(secs)) => secs,
            Refused::Store(e) => return Err(e.into()),
        };
        crate::telemetry::rate_limited("verification_mail");
        let response = render(
            &state,
            &visitor,
            StatusCode::TOO_MANY_REQUESTS,
            "verify.html",
            context! {
                title => lang.t("verify.first_title"),
                error => lang.fmt("verify.too_many", &[("minutes", &((secs + 59) / 60).to_string())]),
                next => next,
            },
        )?;
        return Ok(with_retry_after(response, secs));
    }
    let base = state.config.issuer();
    let mail = MailContext {
        brand: &state.brand,
        base: &base,
        lang,
    };
    verification::send_again(state.store.as_ref(), account, now, &mail).await?;
    state.outbox.wake();
    render(
        &state,
        &visitor,
        StatusCode::OK,
        "verify.html",
        context! {
            title => lang.t("verify.first_title"),
            sent => &account.email,
            next => next,
        },
    )
}

/// Shown instead of a confirmation page when the operator requires a
/// verified address and this account's is not (403): what to do, and a
/// way to get the link again.
pub fn verify_first(
    state: &AppState,
    visitor: &Visitor,
    account: &Account,
    next: &str,
) -> Result<Response, PageError> {
    let lang = visitor.lang;
    render(
        state,
        visitor,
        StatusCode::FORBIDDEN,
        "verify.html",
        context! {
            title => lang.t("verify.first_title"),
            first => &account.email,
            next => next,
        },
    )
}
