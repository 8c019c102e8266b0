//! bitaxe-exporter: polls Bitaxe (AxeOS) miners, serves their state on `/metrics` labelled
//! by clock configuration, and simulates AxeOS miners for demos, tests and benchmarks.
//!
//! The binary (`src/main.rs`) only parses arguments and calls into [`cli`]; everything else
//! lives here so that tests drive the same code in-process.

pub mod analysis;
pub mod axeos;
pub mod cli;
pub mod config;
pub mod events;
pub mod export;
pub mod firmware;
pub mod fleet;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod physics;
pub mod poller;
pub mod sample;
pub mod segments;
pub mod session;
pub mod simulator;
pub mod timestamps;
pub mod writer;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::axeos::AxeOsClient;
use crate::config::Config;
use crate::fleet::Fleet;
use crate::writer::{SegmentRules, Writer};

/// How long shutdown waits for in-flight polls before giving up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(6);

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create the HTTP client: {0}")]
    Client(#[from] axeos::PollError),
    #[error("the HTTP server failed: {0}")]
    Http(#[from] std::io::Error),
    #[error("cannot open the ledger: {0}")]
    Ledger(#[from] ledger::LedgerError),
}

/// Runs the daemon on an already bound listener until `shutdown` resolves: the ledger
/// writer, pollers, the periodic fleet summary and the HTTP endpoints. Returns once
/// in-flight polls are done and the ledger is flushed.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let fleet = Arc::new(Fleet::new(&config));
    let client = AxeOsClient::new(
        AxeOsClient::timeout_for(config.poll_interval),
        AxeOsClient::keepalive_for(config.poll_interval),
    )?;
    let rules = SegmentRules::for_poll_interval(config.poll_interval, config.warmup);
    let path = config.database_path.clone();
    let writer = tokio::task::spawn_blocking(move || Writer::start(&path, rules))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
    tracing::info!("ledger: {}", config.database_path.display());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut pollers = poller::spawn_pollers(fleet.clone(), client, stop_rx.clone(), Some(writer.sender.clone()));
    let summary = tokio::spawn(log_fleet_summary(fleet.clone(), stop_rx.clone()));

    let mut http_stop = stop_rx;
    let app = http::router(fleet, Some(writer.stats.clone()));
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = http_stop.wait_for(|stop| *stop).await;
    });
    let server = tokio::spawn(async move { server.await });

    shutdown.await;
    tracing::info!("shutting down: finishing in-flight polls");
    let _ = stop_tx.send(true);

    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(result) = pollers.join_next().await {
            if let Err(e) = result {
                tracing::error!("a poller task failed: {e}");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("some polls were still running after {SHUTDOWN_GRACE:?}; abandoning them");
        pollers.abort_all();
    }
    summary.abort();
    // Every poller (and its ledger sender) is gone: the writer flushes what is left and stops.
    let _ = tokio::task::spawn_blocking(move || writer.finish()).await;
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(Ok(result)) => result?,
        Ok(Err(e)) => tracing::error!("the HTTP server task failed: {e}"),
        Err(_) => tracing::warn!("HTTP connections still open after {SHUTDOWN_GRACE:?}; closing"),
    }
    Ok(())
}

/// Logs the one-line fleet summary: soon after start, then every 10 poll intervals
/// (between 1 and 5 minutes).
async fn log_fleet_summary(fleet: Arc<Fleet>, mut stop: watch::Receiver<bool>) {
    let interval = fleet.poll_interval();
    let period = (interval * 10).clamp(Duration::from_secs(60), Duration::from_secs(300));
    let mut next = tokio::time::Instant::now() + interval.min(Duration::from_secs(10)) + Duration::from_secs(3);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        tracing::info!("{}", fleet.summary());
        next += period;
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
