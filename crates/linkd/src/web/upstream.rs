//! `/signin/with/{provider}` and its callback: sign-in through one of the
//! operator's OpenID providers, back to exactly where the person was (the
//! code they typed, the app asking); and removing an identity from
//! `/account`.

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use minijinja::context;

use super::visitor::{JOIN_COOKIE, UPSTREAM_COOKIE};
use super::{
    PageError, PageForm, Visitor, cookie, query_param, render, safe_next, see_other, set_cookie,
    signin::signed_in_redirect,
};
use crate::client_ip::ClientIp;
use crate::state::AppState;
use crate::store::IdentityRemoval;
use crate::upstream::{self, Callback, Outcome, UpstreamError};

/// The address the provider sends the person back to; the operator
/// registers it at the provider.
pub fn redirect_uri(state: &AppState, provider_id: &str) -> String {
    format!(
        "{}/signin/with/{provider_id}/callback",
        state.config.issuer()
    )
}

/// `POST /signin/with/{provider}`: from "Continue with …" on the sign-in
/// page, or "Add" on the account page (`add=1`, signed in).
pub async fn start(
    State(state): State<AppState>,
    Path(provider_id): Path<String>,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    visitor.check_csrf(form.get("csrf"))?;
    let Some(provider) = state.upstream.get(&provider_id) else {
        return Err(PageError::NotFound);
    };
    let adding = form.get("add") == Some("1");
    let account_id = match (adding, visitor.account()) {
        (true, Some(account)) => Some(account.id.as_str()),
        (true, None) => return Ok(super::to_sign_in("/account")),
        (false, _) => None,
    };
    let next = safe_next(form.get("next"));
    let ctx = state.ctx();
    match upstream::begin(
        &ctx,
        &state.upstream,
        &provider.id,
        &redirect_uri(&state, &provider.id),
        &next,
        account_id,
    )
    .await
    {
        Ok((url, secret)) => {
            let mut response = see_other(&url);
            // Only this browser can finish the sign-in it started: the
            // callback's `state` must equal this cookie (RFC 6749 §10.12).
            response.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(&state, &UPSTREAM_COOKIE, &secret, upstream::LOGIN_LIFETIME),
            );
            Ok(response)
        }
        Err(e) => failure_page(&state, &visitor, &provider.id, &next, e),
    }
}

/// `GET /signin/with/{provider}/callback?code=…&state=…` (or `error=…`).
pub async fn callback(
    State(state): State<AppState>,
    Path(provider_id): Path<String>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    headers: axum::http::HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    if state.upstream.get(&provider_id).is_none() {
        return Err(PageError::NotFound);
    }
    let param = |name: &str| query_param(query.as_deref(), name);
    let returned_state = param("state").unwrap_or_default();
    let started_here = cookie(&headers, UPSTREAM_COOKIE.get(&state));
    let ctx = state.ctx();
    let result = if returned_state.is_empty()
        || started_here != Some(returned_state.as_str())
        || returned_state.len() > 256
    {
        Err(UpstreamError::Expired)
    } else {
        let code = param("code");
        let error = param("error");
        let callback = match (&code, &error) {
            (_, Some(error)) => Callback::Error(error),
            (Some(code), None) if !code.is_empty() && code.len() <= 4096 => Callback::Code(code),
            _ => Callback::Error("invalid_request"),
        };
        upstream::finish(
            &ctx,
            &state.upstream,
            &provider_id,
            &redirect_uri(&state, &provider_id),
            &returned_state,
            callback,
        )
        .await
    };
    let verified = match result {
        Ok(v) => v,
        Err(e) => {
            let mut page = failure_page(&state, &visitor, &provider_id, "/", e)?;
            forget_sign_in(&state, &mut page);
            return Ok(page);
        }
    };
    let outcome = upstream::resolve(&ctx, &state.upstream, &verified, &ip.to_string()).await;
    let mut page = match outcome {
        Ok(Outcome::SignIn(account_id)) => {
            // For the account page's activity, as a password sign-in.
            state
                .store
                .insert_activity(&crate::store::Activity {
                    account_id: account_id.clone(),
                    kind: crate::store::ActivityKind::SignIn,
                    client_id: String::new(),
                    app_name: provider_name(&state, &provider_id),
                    device: None,
                    ip: ip.to_string(),
                    at: ctx.now,
                })
                .await?;
            signed_in_redirect(&state, &visitor, &account_id, &verified.next, ip).await?
        }
        Ok(Outcome::Joined) => see_other(&verified.next),
        Ok(Outcome::ProveAccount(email)) => {
            // The provider is one proof; signing in to the account here
            // is the other, and joins the identity (signed_in_redirect).
            let offered = upstream::offer_join(&ctx, &verified, &email).await?;
            let name = provider_name(&state, &provider_id);
            let lang = visitor.lang;
            let mut page = render(
                &state,
                &visitor,
                StatusCode::CONFLICT,
                "signin.html",
                context! {
                    title => lang.t("signin.title"),
                    next => verified.next,
                    email => email,
                    notice => lang.fmt("upstream.prove_account", &[("name", &name)]),
                },
            )?;
            if let Some(secret) = offered {
                page.headers_mut().append(
                    header::SET_COOKIE,
                    set_cookie(&state, &JOIN_COOKIE, &secret, upstream::JOIN_LIFETIME),
                );
            }
            page
        }
        Ok(Outcome::JoinedElsewhere) => message(
            &state,
            &visitor,
            StatusCode::CONFLICT,
            "upstream.joined_elsewhere",
            &provider_id,
            "/account",
        )?,
        Ok(Outcome::Disabled) => message(
            &state,
            &visitor,
            StatusCode::FORBIDDEN,
            "upstream.disabled",
            &provider_id,
            "/",
        )?,
        Err(e) => failure_page(&state, &visitor, &provider_id, &verified.next, e)?,
    };
    forget_sign_in(&state, &mut page);
    Ok(page)
}

/// The sign-in's cookie has done its work, whatever came of it.
fn forget_sign_in(state: &AppState, response: &mut Response) {
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(state, &UPSTREAM_COOKIE, "", 0),
    );
}

fn provider_name(state: &AppState, provider_id: &str) -> String {
    state
        .upstream
        .get(provider_id)
        .map(|p| p.name.clone())
        .unwrap_or_else(|| provider_id.to_string())
}

/// A page about a sign-in at a provider, with the way on: back to
/// sign-in (keeping `next`), or `back` itself.
fn message(
    state: &AppState,
    visitor: &Visitor,
    status: StatusCode,
    texts: &str,
    provider_id: &str,
    back: &str,
) -> Result<Response, PageError> {
    let lang = visitor.lang;
    let name = provider_name(state, provider_id);
    render(
        state,
        visitor,
        status,
        "upstream.html",
        context! {
            title => lang.fmt(&format!("{texts}.title"), &[("name", &name)]),
            heading => lang.fmt(&format!("{texts}.title"), &[("name", &name)]),
            message => lang.fmt(&format!("{texts}.message"), &[("name", &name)]),
            back => back,
            back_label => lang.t(match back {
                "/account" => "upstream.back_to_account",
                b if b.starts_with("/signin") => "upstream.back_to_signin",
                _ => "upstream.back_home",
            }),
        },
    )
}

/// What a failed sign-in at a provider tells the person. Local sign-in
/// stays open whatever the provider does.
fn failure_page(
    state: &AppState,
    visitor: &Visitor,
    provider_id: &str,
    next: &str,
    error: UpstreamError,
) -> Result<Response, PageError> {
    let encoded: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
    let to_sign_in = format!("/signin?next={encoded}");
    let (status, texts) = match &error {
        UpstreamError::UnknownProvider => return Err(PageError::NotFound),
        UpstreamError::Store(e) => return Err(e.clone().into()),
        UpstreamError::Unavailable(why) => {
            tracing::warn!(provider = provider_id, error = %why, "OpenID provider unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "upstream.down")
        }
        UpstreamError::Expired => (StatusCode::BAD_REQUEST, "upstream.expired"),
        UpstreamError::Refused(why) => {
            tracing::info!(provider = provider_id, error = %why, "OpenID provider refused");
            (StatusCode::FORBIDDEN, "upstream.refused")
        }
        UpstreamError::BadIdToken(why) => {
            tracing::warn!(provider = provider_id, error = %why, "ID token refused");
            (StatusCode::BAD_GATEWAY, "upstream.bad_token")
        }
        UpstreamError::NoEmail => (StatusCode::BAD_GATEWAY, "upstream.no_email"),
    };
    message(state, visitor, status, texts, provider_id, &to_sign_in)
}

/// The page a password form gets while the operator has local passwords
/// off: the way in is a provider on the sign-in page.
pub fn passwords_off(
    state: &AppState,
    visitor: &Visitor,
    next: &str,
) -> Result<Response, PageError> {
    let encoded: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
    message(
        state,
        visitor,
        StatusCode::FORBIDDEN,
        "upstream.passwords_off",
        "",
        &format!("/signin?next={encoded}"),
    )
}

/// `POST /account/identities/remove`: takes an identity off the account,
/// never the last way in.
pub async fn remove(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    let Some(account) = visitor.account() else {
        return Ok(super::to_sign_in("/account"));
    };
    visitor.check_csrf(form.get("csrf"))?;
    let (Some(issuer), Some(subject)) = (form.get("issuer"), form.get("subject")) else {
        return Err(PageError::BadRequest(crate::i18n::Text::key(
            "upstream.remove.missing",
        )));
    };
    let ctx = state.ctx();
    let done = upstream::remove(
        &ctx,
        &state.upstream,
        &account.id,
        issuer,
        subject,
        &ip.to_string(),
    )
    .await;
    match done {
        Ok(IdentityRemoval::Removed) => Ok(see_other("/account")),
        Ok(IdentityRemoval::NotFound) => Err(PageError::NotFound),
        Ok(IdentityRemoval::LastWayIn) => message(
            &state,
            &visitor,
            StatusCode::CONFLICT,
            "upstream.last_way_in",
            "",
            "/account",
        ),
        Err(UpstreamError::Store(e)) => Err(e.into()),
        Err(_) => Err(PageError::Internal),
    }
}
