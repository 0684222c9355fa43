//! The router: every route and the handler that serves it, as one table,
//! and the layers around it.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::middleware::around_request;
use crate::state::AppState;
use crate::{api, oauth, telemetry, web};

/// Largest request body any route accepts. OAuth and page forms are a few
/// hundred bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub fn router(state: AppState) -> Router {
    let router = Router::new()
        .route("/", get(web::home::page))
        .route("/link", get(web::link::page))
        .route("/link/decide", post(web::link::decide))
        .route("/link/pick", post(web::link::pick))
        .route(
            "/oauth/authorize",
            get(web::authorize::get).post(web::authorize::post),
        )
        .route("/oauth/authorize/decide", post(web::authorize::decide))
        .route("/signin", get(web::signin::page).post(web::signin::submit))
        .route(
            "/signin/forgot",
            get(web::reset::forgot_page).post(web::reset::forgot_submit),
        )
        .route(
            "/reset",
            get(web::reset::reset_page).post(web::reset::reset_submit),
        )
        .route("/not-me", get(web::not_me::page).post(web::not_me::submit))
        .route("/verify", get(web::verify::page).post(web::verify::submit))
        .route("/verify/send", post(web::verify::send_again))
        .route("/signin/passkey", post(web::passkeys::sign_in))
        .route(
            "/signin/passkey/options",
            post(web::passkeys::sign_in_options),
        )
        .route("/signin/with/{provider}", post(web::upstream::start))
        .route(
            "/signin/with/{provider}/callback",
            get(web::upstream::callback),
        )
        .route("/signup", get(web::signup::page).post(web::signup::submit))
        .route(
            "/signout",
            get(web::signin::confirm_sign_out).post(web::signin::sign_out),
        )
        .route("/help", get(web::help::page))
        .route("/static/linkd.css", get(web::assets::stylesheet))
        .route("/static/linkd.js", get(web::assets::script))
        .route("/static/passkeys.js", get(web::assets::passkeys_script))
        .route("/static/logo", get(web::assets::logo))
        .route("/api/v1/brand", get(api::brand::get))
        .route(
            "/oauth/device_authorization",
            post(oauth::device_authorization::handle),
        )
        // The same endpoint where MSAL looks for it: MSAL does not read
        // device_authorization_endpoint from discovery (RFC 8628 §4) but
        // takes the token endpoint's address with `/token` replaced by
        // `/devicecode`, Azure AD's layout. Not in discovery; the answer
        // is RFC 8628 §3.2's either way.
        .route(
            "/oauth/devicecode",
            post(oauth::device_authorization::handle),
        )
        .route("/oauth/token", post(oauth::token::handle))
        .route("/oauth/device/wait", post(oauth::device_wait::handle))
        .route("/oauth/revoke", post(oauth::revoke::handle))
        .route("/oauth/introspect", post(oauth::introspect::handle))
        .route(
            "/oauth/userinfo",
            get(oauth::userinfo::handle).post(oauth::userinfo::handle),
        )
        .route(
            "/api/v1/device",
            get(api::device::get).delete(api::device::delete),
        )
        .route("/api/v1/sync/events", get(api::sync::events))
        .route("/api/v1/sync/{collection}", get(api::sync::changes))
        .route(
            "/api/v1/sync/{collection}/{key}",
            get(api::sync::get_document)
                .put(api::sync::put_document)
                .delete(api::sync::delete_document)
                // The PUT handler reads the body itself, up to the
                // configured document size, to answer 413 in JSON.
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/devices", get(web::devices::page))
        .route("/devices/{id}/edit", get(web::devices::edit))
        .route("/devices/{id}/rename", post(web::devices::rename))
        .route(
            "/devices/{id}/unlink",
            get(web::devices::confirm_unlink).post(web::devices::unlink),
        )
        .route("/account", get(web::account::page))
        .route(
            "/account/sync/delete",
            get(web::account::confirm_delete_sync).post(web::account::delete_sync),
        )
        .route("/account/password", post(web::account::change_password))
        .route("/account/email", post(web::account::change_email))
        .route("/account/sessions", post(web::account::sign_out_others))
        .route(
            "/account/delete",
            get(web::account::delete_page).post(web::account::delete),
        )
        .route("/account/identities/remove", post(web::upstream::remove))
        .route("/account/passkeys", post(web::passkeys::add))
        .route(
            "/account/passkeys/options",
            post(web::passkeys::add_options),
        )
        .route("/account/passkeys/rename", post(web::passkeys::rename))
        .route("/account/passkeys/remove", post(web::passkeys::remove))
        .route("/oauth/jwks", get(oauth::discovery::jwks))
        .route(
            "/.well-known/openid-configuration",
            get(oauth::discovery::openid_configuration),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth::discovery::openid_configuration),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz));
    // Metrics say how busy linkd is and how its limits fire: on the main
    // listener only to the holder of --metrics-token, never when they
    // have their own listener; otherwise /metrics is the fallback's 404.
    let router = if state.config.metrics_listen.is_none() && state.config.metrics_token.is_some() {
        router.route("/metrics", get(telemetry::render_to_token_holder))
    } else {
        router
    };
    router
        .fallback(web::short_link::fallback)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            around_request,
        ))
        .with_state(state)
}
/// The router of a separate metrics listener (`--metrics-listen`).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(telemetry::render))
        .with_state(state)
}

/// Ready to take traffic: the store answers and has every migration this
/// build needs. Distinct from /healthz (the process is alive), so a load
/// balancer stops sending requests while the database is away.
async fn readyz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    match state.store.migrations_applied().await {
        Ok(true) => (StatusCode::OK, "ready").into_response(),
        Ok(false) => (StatusCode::SERVICE_UNAVAILABLE, "migrations pending").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "store unreachable").into_response()
        }
    }
}
