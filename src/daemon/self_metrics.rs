//! The exporter's metrics about itself: the ledger writer, the HTTP connection cap and the
//! process (`process_*`), encoded beside the fleet's at scrape time.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::ledger::writer::LedgerStats;

type Fmt = Result<(), std::fmt::Error>;

/// `process_*`, named as every Prometheus client library names them.
pub(super) fn encode_process_metrics(
    encoder: &mut DescriptorEncoder,
    stats: &crate::daemon::process::ProcessStats,
) -> Fmt {
    let seconds = Unit::Seconds;
    let bytes = Unit::Bytes;
    if let Some(cpu) = stats.cpu_seconds {
        let family = encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent",
            Some(&seconds),
            MetricType::Counter,
        )?;
        ConstCounter::new(cpu).encode(family)?;
    }
    for (name, help, unit, value) in [
        (
            "process_resident_memory",
            "Resident memory size",
            Some(&bytes),
            stats.resident_bytes,
        ),
        (
            "process_virtual_memory",
            "Virtual memory size",
            Some(&bytes),
            stats.virtual_bytes,
        ),
        ("process_open_fds", "Open file descriptors", None, stats.open_fds),
        (
            "process_max_fds",
            "Maximum number of open file descriptors",
            None,
            stats.max_fds,
        ),
        (
            "process_start_time",
            "Start time of the process since the Unix epoch",
            Some(&seconds),
            stats.start_time_seconds,
        ),
    ] {
        if let Some(value) = value {
            let family = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
            ConstGauge::new(value).encode(family)?;
        }
    }
    Ok(())
}

/// The ledger writer's counters, backlog and health.
pub(super) fn encode_ledger_metrics(encoder: &mut DescriptorEncoder, ledger: &LedgerStats) -> Fmt {
    use std::sync::atomic::Ordering::Relaxed;
    for (name, help, value) in [
        (
            "bitaxe_ledger_samples_written",
            "Samples committed to the SQLite ledger",
            ledger.samples_written.load(Relaxed),
        ),
        (
            "bitaxe_ledger_backfilled_samples",
            "Readings from the miners' own statistics ring stored to fill holes in the polls (not polls, not in bitaxe_ledger_samples_written_total)",
            ledger.backfilled.load(Relaxed),
        ),
        (
            "bitaxe_ledger_pruned_samples",
            "Raw samples deleted by ledger.raw_retention after their hour was rolled up",
            ledger.pruned.load(Relaxed),
        ),
        (
            "bitaxe_ledger_events_written",
            "Events committed to the SQLite ledger",
            ledger.events_written.load(Relaxed),
        ),
        (
            "bitaxe_ledger_write_errors",
            "Ledger commits that failed and were retried (locked or full database)",
            ledger.write_errors.load(Relaxed),
        ),
        (
            "bitaxe_ledger_dropped_records",
            "Records the ledger could not keep (backlog full while the database refused writes, samples behind a clock that stepped back)",
            ledger.dropped.load(Relaxed),
        ),
        (
            "bitaxe_ledger_clock_behind_samples",
            "Samples not stored because they were older than their device's last sample (the clock stepped back)",
            ledger.clock_behind.load(Relaxed),
        ),
        (
            "bitaxe_ledger_mac_conflicts",
            "Samples whose MAC address belonged to another polled miner or changed from poll to poll (kept apart by name)",
            ledger.mac_conflicts.load(Relaxed),
        ),
        (
            "bitaxe_ledger_lock_lost",
            "Times the ledger file at the configured path was held by another daemon, so nothing was written",
            ledger.lock_lost.load(Relaxed),
        ),
        (
            "bitaxe_ledger_reopened",
            "Times the ledger file was found deleted or replaced while serve ran, and opened again at its path",
            ledger.reopened.load(Relaxed),
        ),
    ] {
        let family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        ConstCounter::new(value).encode(family)?;
    }
    let family = encoder.encode_descriptor(
        "bitaxe_ledger_backlog_records",
        "Records waiting to be written to the ledger",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(i64::try_from(ledger.backlog()).unwrap_or(i64::MAX)).encode(family)?;
    let family = encoder.encode_descriptor(
        "bitaxe_ledger_healthy",
        "1 while the ledger is sound; 0 while writes fail on a damaged ledger, and while a damaged ledger moved aside (<ledger>.damaged-*) lies beside it, until it is recovered and deleted or renamed",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(i64::from(ledger.healthy())).encode(family)
}

/// The HTTP connection cap at work: open connections, the cap, and the connections it
/// turned away.
pub(super) fn encode_http_metrics(encoder: &mut DescriptorEncoder, http: &HttpStats) -> Fmt {
    let as_gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    for (name, help, value) in [
        ("bitaxe_exporter_http_connections", "HTTP connections open now", http.open()),
        (
            "bitaxe_exporter_http_connections_limit",
            "Most HTTP connections open at once: the open-file limit less a reserve for the pollers and the ledger, at most 1024",
            http.limit(),
        ),
    ] {
        let family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        ConstGauge::new(as_gauge(value)).encode(family)?;
    }
    for (name, help, value) in [
        (
            "bitaxe_exporter_http_connections_evicted",
            "Idle HTTP connections closed to make room for a new one at the connection limit",
            http.evicted(),
        ),
        (
            "bitaxe_exporter_http_connections_rejected",
            "New HTTP connections closed on arrival: the connection limit was reached and no connection was idle",
            http.rejected(),
        ),
    ] {
        let family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        ConstCounter::new(value).encode(family)?;
    }
    Ok(())
}

/// The HTTP layer's counters, exported on `/metrics`.
#[derive(Debug)]
pub struct HttpStats {
    open: AtomicUsize,
    limit: usize,
    evicted: AtomicU64,
    rejected: AtomicU64,
}

impl HttpStats {
    pub fn new(limit: usize) -> Self {
        Self {
            open: AtomicUsize::new(0),
            limit,
            evicted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// The connection cap.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Idle connections closed to make room for a new one at the cap.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// New connections closed on arrival: the cap was reached and no connection was idle.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// The HTTP server's side: what it did.
    pub fn set_open(&self, open: usize) {
        self.open.store(open, Ordering::Relaxed);
    }

    pub fn count_evicted(&self) {
        self.evicted.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }
}
