//! `linkd serve`: logs, listeners (with TLS and the metrics port when
//! configured), the start-up banner, and a clean stop on Ctrl-C or SIGTERM.

use std::sync::Arc;

use anyhow::Context;

use crate::clock::SystemClock;
use crate::{Config, app, serve, state};

/// Logs to standard error: readable lines, or one JSON object per line
/// for log pipelines. `LINKD_LOG` sets the filter.
fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LINKD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    init_logs(&config.log_format);
    crate::telemetry::handle();
    let listen = config.listen;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(serve::tls_config(cert, key)?),
        _ => None,
    };
    let state = state::prepare(config, Arc::new(SystemClock)).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    if let Some(addr) = state.config.metrics_listen {
        let metrics = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for metrics on {addr}"))?;
        let router = app::metrics_router(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(metrics, router).await {
                tracing::error!(error = %e, "metrics listener stopped");
            }
        });
    }
    let issuer = state.config.issuer();
    let demo = state
        .store
        .get_client(state::DEMO_CLIENT_ID)
        .await?
        .is_some();
    println!("linkd is serving at {issuer}");
    println!("  link page:  {issuer}/link");
    println!("  discovery:  {issuer}/.well-known/openid-configuration");
    if demo {
        println!("Try it: in another terminal run");
        println!(
            "  cargo run --release -- device --server {issuer} --client {}",
            state::DEMO_CLIENT_ID
        );
        println!("then open the link it prints, create an account, and approve.");
    }
    match tls {
        Some(tls) => serve::serve_tls(listener.into_std()?, state, tls, shutdown_signal()).await?,
        None => serve::serve(listener, state, shutdown_signal()).await?,
    }
    println!("linkd stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
