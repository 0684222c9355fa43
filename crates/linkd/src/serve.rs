//! Serving: the accept loop over plain HTTP or TLS, graceful shutdown with
//! a drain deadline, and the TLS configuration from PEM files.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::app::router;
use crate::connections;
use crate::jobs::Upkeep;
use crate::state::AppState;

/// Serves plain HTTP until `shutdown` resolves. Background upkeep runs
/// alongside.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, None, state, shutdown).await
}

/// Serves HTTPS, terminating TLS in linkd (for operators without a reverse
/// proxy), until `shutdown` resolves.
pub async fn serve_tls(
    listener: std::net::TcpListener,
    state: AppState,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    serve_with(listener, Some(acceptor), state, shutdown).await
}

/// The one accept loop of both (connections.rs): caps and timeouts apply
/// under TLS and plain HTTP alike. Once `shutdown` resolves, long polls and
/// event streams are told to end, and requests in flight get
/// `shutdown_timeout` seconds; whatever still runs after that is dropped.
async fn serve_with(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let upkeep = Upkeep::start(&state);
    let drain = Duration::from_secs(u64::from(state.config.shutdown_timeout));
    let settings = connections::Settings::from_config(&state.config);
    let stopper = state.clone();
    let stop = async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections; finishing requests in flight");
        stopper.begin_shutdown();
    };
    let result = connections::serve(listener, tls, router(state), settings, stop, drain).await;
    drop(upkeep);
    result
}

/// Reads a PEM certificate chain and private key into a TLS configuration
/// (rustls with the ring provider; TLS 1.2 and 1.3; HTTP/2 and 1.1).
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use anyhow::Context;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the certificate chain {}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the private key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
