//! The web surface `serve` answers on: the router that puts the feature routers together
//! with `/metrics`, `/healthz` and `/alerts`, the HTTP server (connections, their cap and
//! timeouts), what the surface lets through (`guard`), the dashboard pages, the `/api/v1`
//! contract that `top` reads too, the HTML and SVG rendering, the offline report and the
//! embedded assets. It reads the daemon's snapshot and the ledger; it never writes.

pub mod api;
pub mod assets;
pub mod configs;
pub mod device;
pub mod fleet;
pub mod guard;
pub mod pages;
pub mod render;
pub mod report;
pub mod router;
pub mod server;
pub mod sessions;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::daemon::self_metrics::HttpStats;
use crate::daemon::{Daemon, StartError};

/// How long shutdown waits for open HTTP connections (alongside the polls and the ledger).
pub const HTTP_GRACE: Duration = Duration::from_secs(3);

/// Why `serve` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Daemon(#[from] StartError),
    #[error(transparent)]
    Web(#[from] guard::GuardError),
}

/// Runs `serve` on an already bound listener until `shutdown` resolves: the daemon (ledger
/// writer, pollers, the periodic summary) and the HTTP endpoints. Returns once in-flight
/// polls are done and the ledger is flushed.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    // The alerts token before anything starts: a bad one is a configuration error.
    let guard = guard::Guard::new(&config.web)?;
    // Descriptors first: idle clients must not be able to take the pollers' sockets.
    let miners = config.enabled_devices().count();
    let nofile = server::raise_nofile_limit();
    let http_stats = Arc::new(HttpStats::new(server::connection_limit(nofile, miners)));
    if let Some(nofile) = nofile.filter(|n| !server::descriptors_suffice(*n, miners)) {
        tracing::warn!(
            "the open-file limit ({nofile}) is low for {miners} miner(s): raise it (ulimit -n, systemd LimitNOFILE=) \
             or polls may fail with \"too many open files\""
        );
    }
    let daemon = Daemon::start(&config).await?;
    tracing::info!(
        "bitaxe-exporter {} polling {} device(s) every {:?}; ledger {}; metrics on http://{}/metrics",
        env!("CARGO_PKG_VERSION"),
        config.enabled_devices().count(),
        config.poll_interval,
        config.database_path.display(),
        listener
            .local_addr()
            .map_or_else(|_| config.listen.to_string(), |a| a.to_string())
    );
    tracing::debug!(
        "open-file limit {nofile:?}; at most {} HTTP connections, a request header within {:?}",
        http_stats.limit(),
        server::HEADER_TIMEOUT
    );
    let app = router::router(
        daemon.fleet(),
        Some(daemon.ledger_stats()),
        Some(http_stats.clone()),
        Some(config.database_path.clone()),
        guard,
    );
    let server = tokio::spawn(server::run(listener, app, http_stats, daemon.stopping()));

    shutdown.await;
    tracing::info!("shutting down: finishing in-flight polls and flushing the ledger");
    // The polls and the ledger on one side, the HTTP connections on the other, wind down
    // at the same time: the whole shutdown stays within the daemon's grace and HTTP_GRACE
    // (under 5 s without a protective write), well inside Docker's and systemd's stop
    // timeouts.
    let http = async move {
        let abort = server.abort_handle();
        match tokio::time::timeout(HTTP_GRACE, server).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("the HTTP server task failed: {e}"),
            Err(_) => {
                tracing::warn!("HTTP connections still open after {HTTP_GRACE:?}; closing them");
                // Dropping the server task drops its connections, closing their sockets.
                abort.abort();
            }
        }
    };
    tokio::join!(daemon.stop(), http);
    Ok(())
}
