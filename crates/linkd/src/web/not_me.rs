//! `/not-me`: the "This wasn't me" link from a "new device was linked"
//! mail. Opening it only shows what it would do: mail scanners follow
//! links, so a GET must not act. The person's POST unlinks the device,
//! and the page then offers a new password.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;

use super::{PageError, PageForm, Visitor, query_param, render};
use crate::client_ip::ClientIp;
use crate::i18n::Text;
use crate::link_notice::{self, NotMeError, Reported};
use crate::state::AppState;

fn link_gone() -> PageError {
    PageError::BadRequest(Text::key("not_me.invalid"))
}

pub async fn page(
    State(state): State<AppState>,
    visitor: Visitor,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let token = query_param(query.as_deref(), "token").unwrap_or_default();
    let reported = match link_notice::check(&state.ctx(), &token).await {
        Ok(reported) => reported,
        Err(NotMeError::Store(e)) => return Err(e.into()),
        Err(NotMeError::Invalid) => return Err(link_gone()),
    };
    let lang = visitor.lang;
    render(
        &state,
        &visitor,
        StatusCode::OK,
        "not_me.html",
        context! {
            title => lang.t("not_me.title"),
            token => token,
            what => describe(&visitor, &reported),
        },
    )
}

/// "Demo TV (Living room) was linked to ada@example.com on ..., from ...".
fn describe(visitor: &Visitor, reported: &Reported) -> String {
    let lang = visitor.lang;
    let app = match &reported.device {
        Some(d) if d.label != reported.app => format!("{} ({})", reported.app, d.label),
        _ => reported.app.clone(),
    };
    let at = link_notice::approved_at(reported);
    lang.fmt(
        "not_me.what",
        &[
            ("app", &app),
            ("email", &reported.account.email),
            ("at", &lang.datetime_in(at, &visitor.zone, None)),
        ],
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
    let ctx = state.ctx();
    let reported = match link_notice::report(&ctx, token, &ip.to_string()).await {
        Ok(reported) => reported,
        Err(NotMeError::Store(e)) => return Err(e.into()),
        Err(NotMeError::Invalid) => return Err(link_gone()),
    };
    // Whoever approved it may know the password: offer a new one at once.
    // The person just proved they read the account's mail, which is what
    // a reset link asks of them too.
    let reset = crate::recovery::create_reset_link(
        ctx.store,
        &reported.account,
        ctx.now,
        &state.config.issuer(),
        None,
    )
    .await?;
    let lang = visitor.lang;
    render(
        &state,
        &visitor,
        StatusCode::OK,
        "not_me.html",
        context! {
            title => lang.t("not_me.done_title"),
            done => true,
            app => &reported.app,
            reset => reset,
        },
    )
}
