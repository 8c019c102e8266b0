//! What `serve` runs behind the web surface: a poller task per miner, the fleet snapshot,
//! the `/metrics` encoding, events and the judgements (mining health, protective actions),
//! and their start and stop. It hands samples to the ledger's writer thread and never
//! touches SQL itself.

pub mod events;
pub mod exposition;
mod families;
pub mod fleet;
pub mod follow;
pub mod health;
pub mod interrupted;
pub mod metrics;
mod mining_metrics;
pub mod poller;
pub mod process;
pub mod protect;
pub mod protect_write;
pub mod self_metrics;
pub mod sparkline;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::axeos::sample::ClockConfig;
use crate::axeos::{self, AxeOsClient};
use crate::config::Config;
use crate::ledger::writer::{SegmentRules, Writer};
use crate::ledger::{self, Ledger};
use fleet::Fleet;

/// How long shutdown waits for in-flight polls before abandoning them.
pub(crate) const POLL_GRACE: Duration = Duration::from_millis(1500);
/// How much longer shutdown waits for a protective write in flight, so what it sent is
/// logged, counted and in the ledger (its waits for the miner end at the stop).
pub(crate) const PROTECTIVE_GRACE: Duration = Duration::from_secs(6);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Client(#[from] axeos::ClientBuildError),
    #[error("{0}")]
    Ledger(#[from] ledger::LedgerError),
    #[error("cannot start the ledger writer: {0}")]
    Startup(String),
}

/// The running daemon: the ledger writer, a poller per miner, the watcher of interrupted
/// sweeps, the periodic fleet summary and the follower of moved miners, around the fleet
/// snapshot the web surface reads.
pub struct Daemon {
    fleet: Arc<Fleet>,
    writer: Writer,
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
    pollers: tokio::task::JoinSet<()>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Daemon {
    /// Opens the ledger (taking it over from a sweep that holds it), seeds what survives a
    /// restart from it (last good configurations, sparklines, protective actions), and
    /// starts polling.
    pub async fn start(config: &Config) -> Result<Daemon, StartError> {
        let fleet = Arc::new(Fleet::new(config));
        let client = AxeOsClient::new(
            AxeOsClient::timeout_for(config.poll_interval),
            AxeOsClient::keepalive_for(config.poll_interval),
        )?;
        let rules = SegmentRules::for_serve(config.poll_interval, config.warmup, config.raw_retention);
        let path = config.database_path.clone();
        let names: Vec<String> = config.devices.iter().map(|d| d.name.clone()).collect();
        let writer = tokio::task::spawn_blocking(move || Writer::start_serving(&path, rules, names))
            .await
            .map_err(|e| StartError::Startup(e.to_string()))??;
        // The last good configurations survive a restart (rebuilt from the ledger's segments),
        // and so do the fleet page's sparklines.
        let warning = config.thresholds.warning_celsius;
        let ledger_path = config.database_path.clone();
        let fleet_for_seed = fleet.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Ok(ledger) = Ledger::open_read_only(&ledger_path) {
                fleet_for_seed.seed_last_good(|name| last_good_in_ledger(&ledger, name, warning));
                fleet_for_seed.seed_sparklines(|name| last_hour_in_ledger(&ledger, name));
                fleet_for_seed.seed_protective_actions(|name| protective_actions_in_ledger(&ledger, name));
            }
        })
        .await;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        // Sweeps a killed `tune` left behind: reported, and put back where the config asks.
        tasks.push(tokio::spawn(interrupted::watch_interrupted_sweeps(
            fleet.clone(),
            config.database_path.clone(),
            client.clone(),
            config.tune.restore_interrupted,
            Some(writer.sender.clone()),
            stop_rx.clone(),
        )));
        let pollers = poller::spawn_pollers(fleet.clone(), client, stop_rx.clone(), Some(writer.sender.clone()));
        tasks.push(tokio::spawn(log_fleet_summary(fleet.clone(), stop_rx.clone())));
        if config.discovery.enabled {
            tasks.push(tokio::spawn(follow::follow_moved_miners(
                fleet.clone(),
                config.discovery.clone(),
                stop_rx.clone(),
            )));
        }
        Ok(Daemon {
            fleet,
            writer,
            stop_tx,
            stop_rx,
            pollers,
            tasks,
        })
    }

    /// The snapshot the web surface reads.
    pub fn fleet(&self) -> Arc<Fleet> {
        self.fleet.clone()
    }

    /// The ledger writer's counters, for `/metrics`.
    pub fn ledger_stats(&self) -> Arc<crate::ledger::writer::LedgerStats> {
        self.writer.stats.clone()
    }

    /// Turns true when the daemon begins to stop (for the HTTP server beside it).
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop_rx.clone()
    }

    /// Stops: the side tasks at once (a restore in progress is left to finish its write,
    /// bounded by the HTTP timeout; its waits for the miner are not worth holding the stop
    /// for), in-flight polls within POLL_GRACE (PROTECTIVE_GRACE more for a protective
    /// write), then the ledger's last batch.
    pub async fn stop(mut self) {
        let _ = self.stop_tx.send(true);
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        let mut drained = tokio::time::timeout(POLL_GRACE, join_pollers(&mut self.pollers)).await;
        if drained.is_err() && self.fleet.protecting() {
            tracing::info!("waiting for a protective action in progress to be recorded");
            drained = tokio::time::timeout(PROTECTIVE_GRACE, join_pollers(&mut self.pollers)).await;
        }
        if drained.is_err() {
            tracing::warn!("some polls were still running after {POLL_GRACE:?}; abandoning them");
            self.pollers.abort_all();
            while self.pollers.join_next().await.is_some() {}
        }
        // Every poller (and its ledger sender) is gone: the writer flushes what is left.
        let writer = self.writer;
        let _ = tokio::task::spawn_blocking(move || writer.finish()).await;
    }
}

async fn join_pollers(pollers: &mut tokio::task::JoinSet<()>) {
    while let Some(result) = pollers.join_next().await {
        if let Err(e) = result {
            tracing::error!("a poller task failed: {e}");
        }
    }
}

/// How long ago the protective actions (applied or dry-run) of the last hour were taken on
/// a device: a restarted daemon keeps their cool-down and hourly cap.
fn protective_actions_in_ledger(ledger: &Ledger, name: &str) -> Vec<Duration> {
    let now = crate::time::now_unix();
    let Some(device) = ledger.find_device(name).ok().flatten() else {
        return Vec::new();
    };
    let events = ledger.events_between(device.id, now - 3600.0, now).unwrap_or_default();
    events
        .iter()
        .filter(|e| e.kind == "protective_action" && (e.detail.contains("(applied)") || e.detail.contains("(dry_run)")))
        .filter_map(|e| Duration::try_from_secs_f64((now - e.t).max(0.0)).ok())
        .collect()
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

/// Resolves on SIGINT (Ctrl-C), SIGTERM or SIGHUP. A daemon started from an ssh session
/// gets SIGHUP when the session ends: it stops as gracefully as on SIGTERM, flushing the
/// ledger, instead of dying with its batch.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let unix_signal = |kind: tokio::signal::unix::SignalKind| async move {
        match tokio::signal::unix::signal(kind) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(unix)]
    let (terminate, hangup) = (
        unix_signal(tokio::signal::unix::SignalKind::terminate()),
        unix_signal(tokio::signal::unix::SignalKind::hangup()),
    );
    #[cfg(not(unix))]
    let (terminate, hangup) = (std::future::pending::<()>(), std::future::pending::<()>());
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
        _ = hangup => {}
    }
}

/// A device's hashrate over the last hour from the ledger, one mean per minute.
fn last_hour_in_ledger(ledger: &Ledger, name: &str) -> Vec<(f64, f64)> {
    let now = crate::time::now_unix();
    let Some(device) = ledger.find_device(name).ok().flatten() else {
        return Vec::new();
    };
    let since = (now / 60.0).floor() * 60.0 - 3540.0;
    match ledger.history(device.id, since, now, 60.0) {
        Ok(history) => history
            .points
            .iter()
            .filter_map(|p| Some((p.t, p.hashrate_ghs?.mean)))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The newest configuration the ledger saw run good (the rule of [`crate::analysis::good`],
/// its ASIC temperature the segment's maximum).
fn last_good_in_ledger(ledger: &Ledger, name: &str, warning_celsius: f64) -> Option<ClockConfig> {
    let device = ledger.find_device(name).ok()??;
    let segments = ledger.segments_between(Some(device.id), f64::MIN, f64::MAX).ok()?;
    let rule = crate::analysis::good::Rule::new(warning_celsius);
    let good = segments
        .iter()
        .filter(|s| {
            let steady = &s.steady;
            rule.is_good(&crate::analysis::good::Steady {
                samples: steady.samples,
                covers_warmup: true,
                seconds: steady.seconds,
                percent_of_expected: steady.percent_of_expected(),
                asic_temp_c: steady.temp_max,
                asic_temp_is: "max",
                error_percent: steady.error_percent(),
                joules_per_terahash: steady.joules_per_terahash(),
            })
        })
        .max_by(|a, b| a.ended_at.total_cmp(&b.ended_at))?;
    Some(ClockConfig {
        frequency_mhz: crate::axeos::sample::format_label_number(good.frequency_mhz?),
        core_voltage_mv: crate::axeos::sample::format_label_number(good.core_voltage_mv?),
    })
}
