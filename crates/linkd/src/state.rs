//! The state every handler shares, and how it is built at start-up: the
//! store opened and migrated, the signing keys loaded, the demo app
//! registered on an empty database.

use std::sync::{Arc, RwLock};

use crate::brand::Brand;
use crate::clock::Clock;
use crate::device_flow::PollTracker;
use crate::limits::Limits;
use crate::middleware::RequestIds;
use crate::store::{self, Client, DynStore, StoreError};
use crate::tokens::Keys;
use crate::{Config, scopes, telemetry, web};

/// What every handler shares. One reference count to clone: every
/// middleware layer and extractor clones the state once per request.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub config: Arc<Config>,
    pub store: DynStore,
    pub clock: Arc<dyn Clock>,
    pub polls: Arc<PollTracker>,
    /// Group commit of new device authorizations.
    pub inserter: Arc<crate::device_flow::Inserter>,
    /// Devices in the long poll, woken by decisions.
    pub waits: Arc<crate::waits::Waits>,
    pub limits: Arc<Limits>,
    /// Open settings event streams, per device and per account.
    pub streams: Arc<crate::streams::Streams>,
    pub templates: Arc<web::Templates>,
    /// The outbox's senders (mail when SMTP is set up) and the wake-up of
    /// its workers (jobs.rs).
    pub outbox: Arc<crate::outbox::Outbox>,
    /// Flips to true when the server starts shutting down, so long polls
    /// and event streams end cleanly instead of holding the drain open.
    shutdown: Arc<tokio::sync::watch::Sender<bool>>,
    /// The operator's product name, logo, colour and support link.
    pub brand: Arc<Brand>,
    /// The operator's OpenID providers people may sign in with.
    pub upstream: Arc<crate::upstream::Providers>,
    /// The stylesheet (in the brand's colours), script and logo.
    pub assets: Arc<web::assets::Assets>,
    keys: Arc<RwLock<Arc<Keys>>>,
    pub(crate) request_ids: RequestIds,
}

impl AppState {
    /// Resolves once the server is shutting down (at once if it already is).
    pub async fn shutting_down(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|stopping| *stopping).await;
    }

    /// Becomes true when the server begins to shut down (for streams that
    /// select on it).
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Tells long-lived requests to finish.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// The context for a domain call: store, keys, configuration and the
    /// time now.
    pub fn ctx(&self) -> crate::ctx::Ctx<'_> {
        let now_ms = self.clock.now_ms();
        crate::ctx::Ctx {
            store: self.store.as_ref(),
            keys: self.keys(),
            config: &self.config,
            brand: &self.brand,
            limits: &self.limits,
            outbox: &self.outbox,
            now: now_ms.div_euclid(1000),
            now_ms,
        }
    }

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
    // The metrics recorder before the first request: handles taken
    // earlier would record nowhere.
    telemetry::handle();
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
            device_flow_enabled: true,
            redirect_uris: String::new(),
            code_flow_enabled: true,
            refresh_enabled: true,
            require_dpop: false,
            prefilled_links: true,
            same_network: None,
            created_at: now,
        };
        match store.insert_client(&demo).await {
            Ok(()) | Err(StoreError::Conflict) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut senders: Vec<Arc<dyn crate::outbox::Deliver>> = Vec::new();
    if let Some(smtp) = crate::mail::SmtpSender::from_config(&config).map_err(anyhow::Error::msg)? {
        senders.push(Arc::new(smtp));
    }
    // Every instance turns webhook events into messages per endpoint, even
    // with none configured (the events are then done), so they never pile
    // up; only one with endpoints sends.
    senders.push(Arc::new(crate::webhooks::FanOut::new(&config.webhooks)));
    if let Some(webhooks) = crate::webhooks::WebhookSender::new(&config.webhooks, clock.clone())
        .map_err(anyhow::Error::msg)?
    {
        senders.push(Arc::new(webhooks));
    }
    let outbox = Arc::new(crate::outbox::Outbox::new(senders));
    let upstream = Arc::new(crate::upstream::Providers::new(&config.providers));
    if !config.providers.is_empty() {
        let providers = upstream.clone();
        tokio::spawn(async move { providers.discover_all().await });
    }
    let limits = Arc::new(Limits::new(&config).shared_in(&store));
    let inserter = Arc::new(crate::device_flow::Inserter::start(store.clone()));
    let polls = Arc::new(PollTracker::new(clock.now_ms()));
    let streams = Arc::new(crate::streams::Streams::new(
        config.max_streams_per_device,
        config.max_streams_per_account,
    ));
    Ok(AppState(Arc::new(Shared {
        config: Arc::new(config),
        store,
        clock,
        polls,
        inserter,
        waits: Arc::new(crate::waits::Waits::default()),
        limits,
        streams,
        shutdown: Arc::new(tokio::sync::watch::channel(false).0),
        templates: Arc::new(web::Templates::new()),
        outbox,
        assets: Arc::new(web::assets::Assets::new(&brand)),
        brand: Arc::new(brand),
        upstream,
        keys: Arc::new(RwLock::new(Arc::new(keys))),
        request_ids: RequestIds::default(),
    })))
}
