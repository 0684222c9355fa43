//! Builds the router and the state every handler shares.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::brand::Brand;
use crate::clock::Clock;
use crate::device_flow::PollTracker;
use crate::store::{self, Client, DynStore, StoreError};
use crate::tokens::Keys;
use crate::{Config, api, oauth, scopes, web};

/// Largest request body any route accepts. OAuth and page forms are a few
/// hundred bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: DynStore,
    pub clock: Arc<dyn Clock>,
    pub polls: Arc<PollTracker>,
    pub templates: Arc<web::Templates>,
    /// The operator's product name, logo, colour and support link.
    pub brand: Arc<Brand>,
    /// The stylesheet (in the brand's colours), script and logo.
    pub assets: Arc<web::assets::Assets>,
    keys: Arc<RwLock<Arc<Keys>>>,
}

impl AppState {
    /// The current key set. Cheap: one lock and a reference count.
    pub fn keys(&self) -> Arc<Keys> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads signing keys from the store: picks up rotations made by
    /// `linkd keys rotate` or another instance, and moves keys through
    /// their roles as time passes.
    pub async fn reload_keys(&self) -> Result<(), crate::tokens::KeyError> {
        let stored = self.store.list_signing_keys().await?;
        let keys = Keys::from_stored(&stored, self.clock.now(), self.config.token_lifetime())?;
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(())
    }
}

/// The demo device app registered on an empty database so a first run has
/// something to link.
pub const DEMO_CLIENT_ID: &str = "demo-tv";

/// Opens and migrates the store, loads or creates the signing key, and
/// registers the demo app when the database has no apps at all.
pub async fn prepare(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<AppState> {
    config.validate().map_err(anyhow::Error::msg)?;
    let (brand, notes) = Brand::from_config(&config).map_err(anyhow::Error::msg)?;
    for note in notes {
        tracing::warn!("{note}");
    }
    let store = store::open(&config.database_url).await?;
    store.migrate().await?;
    let now = clock.now();
    let keys = Keys::load_or_create(store.as_ref(), now, config.token_lifetime()).await?;
    if !config.no_demo && store.list_clients().await?.is_empty() {
        let demo = Client {
            client_id: DEMO_CLIENT_ID.into(),
            name: "Demo TV".into(),
            secret_hash: None,
            scopes: scopes::DEFAULT_CLIENT_SCOPES.into(),
            created_at: now,
        };
        match store.insert_client(&demo).await {
            Ok(()) | Err(StoreError::Conflict) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(AppState {
        config: Arc::new(config),
        store,
        clock,
        polls: Arc::new(PollTracker::default()),
        templates: Arc::new(web::Templates::new()),
        assets: Arc::new(web::assets::Assets::new(&brand)),
        brand: Arc::new(brand),
        keys: Arc::new(RwLock::new(Arc::new(keys))),
    })
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(web::home::page))
        .route("/link", get(web::link::page))
        .route("/link/decide", post(web::link::decide))
        .route("/signin", get(web::signin::page).post(web::signin::submit))
        .route("/signup", get(web::signup::page).post(web::signup::submit))
        .route("/signout", post(web::signin::sign_out))
        .route("/static/linkd.css", get(web::assets::stylesheet))
        .route("/static/linkd.js", get(web::assets::script))
        .route("/static/logo", get(web::assets::logo))
        .route("/api/v1/brand", get(api::brand::get))
        .route(
            "/oauth/device_authorization",
            post(oauth::device_authorization::handle),
        )
        .route("/oauth/token", post(oauth::token::handle))
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
        .route("/devices", get(web::devices::page))
        .route("/devices/{id}/rename", post(web::devices::rename))
        .route("/devices/{id}/unlink", post(web::devices::unlink))
        .route("/account", get(web::account::page))
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
        .fallback(web::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            web::localize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            web::headers::security_headers,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves until `shutdown` resolves. Background upkeep runs alongside.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sweeper = tokio::spawn(sweep_polls(state.clone()));
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    sweeper.abort();
    result
}

async fn sweep_polls(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        state.polls.sweep(state.clock.now());
    }
}

/// The address of the peer that sent the request.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        Ok(ClientIp(ip))
    }
}
