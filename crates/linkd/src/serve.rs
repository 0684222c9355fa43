//! Serving: the accept loop over plain HTTP or TLS, graceful shutdown with
//! a drain deadline, and the TLS configuration from PEM files.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::app::router;
use crate::jobs::Upkeep;
use crate::state::AppState;

/// Serves until `shutdown` resolves. Background upkeep runs alongside.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let upkeep = Upkeep::start(&state);
    let drain = Duration::from_secs(u64::from(state.config.shutdown_timeout));
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let stopper = state.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections; finishing requests in flight");
        stopper.begin_shutdown();
        let _ = stopping_tx.send(());
    };
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .into_future();
    tokio::pin!(server);
    // Requests in flight get `shutdown_timeout` seconds once the signal
    // came; whatever still runs after that is dropped.
    let result = tokio::select! {
        result = &mut server => result,
        _ = async {
            let _ = stopping_rx.await;
            tokio::time::sleep(drain).await;
        } => {
            tracing::warn!("requests still running after the shutdown timeout were dropped");
            Ok(())
        }
    };
    drop(upkeep);
    result
}

/// Serves HTTPS, terminating TLS in linkd (for operators without a reverse
/// proxy), until `shutdown` resolves.
pub async fn serve_tls(
    listener: std::net::TcpListener,
    state: AppState,
    tls: axum_server::tls_rustls::RustlsConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let upkeep = Upkeep::start(&state);
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    let drain = Duration::from_secs(u64::from(state.config.shutdown_timeout));
    let flag = state.clone();
    tokio::spawn(async move {
        shutdown.await;
        flag.begin_shutdown();
        stopper.graceful_shutdown(Some(drain));
    });
    listener.set_nonblocking(true)?;
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum_server::from_tcp_rustls(listener, tls)?
        .handle(handle)
        .serve(app)
        .await;
    drop(upkeep);
    result
}

/// Reads a PEM certificate chain and private key into a TLS configuration
/// (rustls with the ring provider; TLS 1.2 and 1.3; HTTP/2 and 1.1).
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<axum_server::tls_rustls::RustlsConfig> {
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
    Ok(axum_server::tls_rustls::RustlsConfig::from_config(
        Arc::new(config),
    ))
}
