//! The ledger's single writer: a thread that owns the write connection, receives samples
//! and events from the pollers over a bounded channel, assigns samples to segments, and
//! commits them in batched transactions (every second, or sooner when a batch is full).
//! A failed commit (database locked, disk full) is rolled back and retried; nothing is
//! lost unless the backlog outgrows its cap. A SIGKILL loses at most the unflushed batch.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::Transaction;

use crate::events::DeviceEvent;
use crate::ledger::{self, Ledger, LedgerError, SegmentRow};
use crate::sample::Sample;
use crate::segments::{boundary, Boundary, Point, Reading};

/// Commit at least this often.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Commit once this many records wait, even before the interval.
pub const MAX_BATCH: usize = 20_000;
/// Records the channel holds before pollers' records are dropped (and counted).
const CHANNEL_CAPACITY: usize = 50_000;
/// Records kept in memory while the database refuses writes.
const MAX_BACKLOG: usize = 200_000;

/// Something to write.
#[derive(Debug, Clone)]
pub enum Record {
    Sample {
        device: String,
        at: SystemTime,
        sample: Arc<Sample>,
    },
    Event {
        device: String,
        at: SystemTime,
        event: DeviceEvent,
    },
}

/// Counters the exporter publishes about the ledger.
#[derive(Debug, Default)]
pub struct LedgerStats {
    pub samples_written: AtomicU64,
    pub events_written: AtomicU64,
    pub write_errors: AtomicU64,
    /// Records refused or lost: a full queue, or a backlog past its cap.
    pub dropped: AtomicU64,
    /// Records accepted into the queue.
    queued: AtomicU64,
    /// Queued records since lost (backlog cap, shutdown).
    lost: AtomicU64,
}

impl LedgerStats {
    /// Records queued or held in memory, not yet committed.
    pub fn backlog(&self) -> u64 {
        let committed = self.samples_written.load(Ordering::Relaxed) + self.events_written.load(Ordering::Relaxed);
        let queued = self.queued.load(Ordering::Relaxed);
        queued.saturating_sub(committed + self.lost.load(Ordering::Relaxed))
    }

    fn lose(&self, records: u64) {
        self.lost.fetch_add(records, Ordering::Relaxed);
        self.dropped.fetch_add(records, Ordering::Relaxed);
    }
}

/// Parameters of segmentation that come from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct SegmentRules {
    /// Steady-state statistics start this long after a segment starts (seconds).
    pub warmup_seconds: f64,
    /// The most time one sample may stand for: silences longer than this are not counted.
    pub max_sample_seconds: f64,
    /// Longest silence bridged when the uptime cannot prove the miner kept running.
    pub max_gap_seconds: f64,
}

impl SegmentRules {
    pub fn for_poll_interval(poll_interval: Duration, warmup: Duration) -> Self {
        let interval = poll_interval.as_secs_f64();
        Self {
            warmup_seconds: warmup.as_secs_f64(),
            max_sample_seconds: (interval * 3.0).max(interval + 5.0),
            max_gap_seconds: (interval * 10.0).max(300.0),
        }
    }
}

/// The pollers' end of the writer.
#[derive(Debug, Clone)]
pub struct LedgerSender {
    tx: SyncSender<Record>,
    stats: Arc<LedgerStats>,
}

impl LedgerSender {
    /// Queues a record without blocking; a full queue drops it and counts the drop.
    pub fn send(&self, record: Record) {
        match self.tx.try_send(record) {
            Ok(()) => {
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl LedgerSender {
    /// Queues a record, waiting while the queue is full (bulk loads; pollers use `send`).
    pub fn send_wait(&self, record: Record) {
        if self.tx.send(record).is_ok() {
            self.stats.queued.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A running writer thread.
#[derive(Debug)]
pub struct Writer {
    pub sender: LedgerSender,
    pub stats: Arc<LedgerStats>,
    thread: JoinHandle<()>,
}

impl Writer {
    /// Opens (and migrates) the ledger and starts the writer thread.
    pub fn start(path: &Path, rules: SegmentRules) -> Result<Writer, LedgerError> {
        let ledger = Ledger::open(path)?;
        let (tx, rx) = mpsc::sync_channel(CHANNEL_CAPACITY);
        let stats = Arc::new(LedgerStats::default());
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || WriterState::new(ledger, rules, thread_stats).run(rx))
            .map_err(|e| LedgerError::CreateDir {
                path: path.to_path_buf(),
                source: e,
            })?;
        Ok(Writer {
            sender: LedgerSender {
                tx,
                stats: stats.clone(),
            },
            stats,
            thread,
        })
    }

    /// Waits for the thread to flush and exit. Every sender must be dropped first.
    pub fn finish(self) {
        drop(self.sender);
        if self.thread.join().is_err() {
            tracing::error!("the ledger writer thread panicked");
        }
    }
}

/// What the writer remembers of a device between records.
#[derive(Debug)]
struct Track {
    device_id: i64,
    segment: Option<SegmentRow>,
    last_point: Option<Point>,
}

struct WriterState {
    ledger: Ledger,
    rules: SegmentRules,
    stats: Arc<LedgerStats>,
    /// Config name → (the MAC it was last seen with, device id). A name seen with another
    /// MAC (a different miner at that name) is resolved again.
    ids: HashMap<String, (Option<String>, i64)>,
    tracks: HashMap<i64, Track>,
}

impl WriterState {
    fn new(ledger: Ledger, rules: SegmentRules, stats: Arc<LedgerStats>) -> Self {
        Self {
            ledger,
            rules,
            stats,
            ids: HashMap::new(),
            tracks: HashMap::new(),
        }
    }

    fn run(mut self, rx: Receiver<Record>) {
        let mut pending: Vec<Record> = Vec::new();
        // When the pending batch is due; `None` while nothing waits (then block on the
        // channel instead of waking up for nothing).
        let mut due_at: Option<Instant> = None;
        let mut retry_delay = FLUSH_INTERVAL;
        let mut closed = false;
        loop {
            // Block for the first record of a batch, then let the batch fill until it is due:
            // one wake-up per batch instead of one per record.
            let received = match due_at {
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(due) => {
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    rx.try_recv().map_err(|e| match e {
                        mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                        mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                    })
                }
            };
            match received {
                Ok(record) => {
                    pending.push(record);
                    while pending.len() < MAX_BACKLOG {
                        match rx.try_recv() {
                            Ok(record) => pending.push(record),
                            Err(mpsc::TryRecvError::Empty) => break,
                            Err(mpsc::TryRecvError::Disconnected) => {
                                closed = true;
                                break;
                            }
                        }
                    }
                    due_at.get_or_insert_with(|| Instant::now() + FLUSH_INTERVAL);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => closed = true,
            }
            let due = closed || pending.len() >= MAX_BATCH || due_at.is_some_and(|d| Instant::now() >= d);
            if !due {
                continue;
            }
            if pending.is_empty() {
                due_at = None;
            } else {
                match self.flush(&pending) {
                    Ok(()) => {
                        pending.clear();
                        retry_delay = FLUSH_INTERVAL;
                        due_at = None;
                    }
                    Err(e) => {
                        self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                        // What was applied in memory was rolled back in the database too.
                        self.forget();
                        retry_delay = (retry_delay * 2).min(Duration::from_secs(30));
                        due_at = Some(Instant::now() + retry_delay);
                        tracing::error!(
                            "cannot write the ledger ({e}); keeping {} records and retrying in {retry_delay:?}",
                            pending.len()
                        );
                        if pending.len() > MAX_BACKLOG {
                            let excess = pending.len() - MAX_BACKLOG;
                            pending.drain(..excess);
                            self.stats.lose(excess as u64);
                        }
                    }
                }
            }
            if closed {
                if !pending.is_empty() {
                    // Shutting down: one last attempt after a pause, then give up loudly.
                    std::thread::sleep(Duration::from_secs(1));
                    if let Err(e) = self.flush(&pending) {
                        tracing::error!("the ledger lost {} unwritten records at shutdown: {e}", pending.len());
                        self.stats.lose(pending.len() as u64);
                    }
                }
                return;
            }
        }
    }

    /// Drops cached state after a rollback; it is reloaded from the database.
    fn forget(&mut self) {
        self.ids.clear();
        self.tracks.clear();
    }

    fn flush(&mut self, records: &[Record]) -> Result<(), LedgerError> {
        let path = self.ledger.path.clone();
        let wrap = |source| LedgerError::Sqlite {
            path: path.clone(),
            source,
        };
        let rules = self.rules;
        let ids = &mut self.ids;
        let tracks = &mut self.tracks;
        let tx = self.ledger.write()?;
        let mut touched = HashSet::new();
        let (mut samples, mut events) = (0u64, 0u64);
        for record in records {
            match record {
                Record::Sample { device, at, sample } => {
                    let t = ledger::unix(*at);
                    let mac = &sample.identity.mac;
                    let device_id = match ids.get(device.as_str()) {
                        Some((seen_mac, id)) if seen_mac == mac => *id,
                        _ => {
                            let id = ledger::resolve_device(&tx, device, &sample.identity, t).map_err(wrap)?;
                            ids.insert(device.clone(), (mac.clone(), id));
                            id
                        }
                    };
                    let track = match tracks.get_mut(&device_id) {
                        Some(track) => track,
                        None => tracks
                            .entry(device_id)
                            .or_insert(load_track(&tx, device_id).map_err(wrap)?),
                    };
                    if let Some(segment_id) = add_sample(&tx, track, &rules, t, sample).map_err(wrap)? {
                        touched.insert(segment_id);
                        samples += 1;
                    }
                }
                Record::Event { device, at, event } => {
                    let t = ledger::unix(*at);
                    let device_id = match ids.get(device.as_str()) {
                        Some((_, id)) => *id,
                        None => {
                            let id = ledger::device_by_name_or_new(&tx, device, t).map_err(wrap)?;
                            ids.insert(device.clone(), (None, id));
                            id
                        }
                    };
                    ledger::insert_event(&tx, device_id, t, event_kind(event), &event.to_string()).map_err(wrap)?;
                    events += 1;
                }
            }
        }
        for track in tracks.values() {
            if let Some(segment) = &track.segment {
                if touched.contains(&segment.id) {
                    ledger::save_segment(&tx, segment).map_err(wrap)?;
                }
            }
        }
        tx.commit().map_err(wrap)?;
        self.stats.samples_written.fetch_add(samples, Ordering::Relaxed);
        self.stats.events_written.fetch_add(events, Ordering::Relaxed);
        Ok(())
    }
}

fn load_track(tx: &Transaction, device_id: i64) -> rusqlite::Result<Track> {
    let segment = ledger::last_segment(tx, device_id)?;
    let last_point = segment.as_ref().map(|s| Point {
        t: s.ended_at,
        frequency_mhz: s.frequency_mhz,
        core_voltage_mv: s.core_voltage_mv,
        firmware: s.firmware.clone(),
        uptime_seconds: s.last_uptime,
    });
    Ok(Track {
        device_id,
        segment,
        last_point,
    })
}

/// Writes one sample into its segment (opening a new one at a boundary). Returns the
/// segment id, or `None` for a sample older than the last one (clock went backwards).
fn add_sample(
    tx: &Transaction,
    track: &mut Track,
    rules: &SegmentRules,
    t: f64,
    sample: &Sample,
) -> rusqlite::Result<Option<i64>> {
    let point = Point {
        t,
        frequency_mhz: sample.frequency_mhz,
        core_voltage_mv: sample.core_voltage_mv,
        firmware: sample.identity.firmware.clone(),
        uptime_seconds: sample.uptime_seconds,
    };
    if track.last_point.as_ref().is_some_and(|last| t <= last.t) {
        return Ok(None);
    }
    let starts = boundary(track.last_point.as_ref(), &point, rules.max_gap_seconds);
    let dt = match (&starts, &track.last_point) {
        (None, Some(last)) => (t - last.t).clamp(0.0, rules.max_sample_seconds),
        _ => 0.0,
    };
    let segment = match (starts, track.segment.as_mut()) {
        (None, Some(segment)) => segment,
        (reason, _) => {
            let mut fresh = SegmentRow {
                id: 0,
                device_id: track.device_id,
                started_at: t,
                ended_at: t,
                reason: reason.unwrap_or(Boundary::First),
                frequency_mhz: sample.frequency_mhz,
                core_voltage_mv: sample.core_voltage_mv,
                firmware: sample.identity.firmware.clone(),
                samples: 0,
                last_uptime: sample.uptime_seconds,
                warmup_seconds: rules.warmup_seconds,
                steady: Default::default(),
            };
            fresh.id = ledger::insert_segment(tx, &fresh)?;
            // The segment that ends here gets its final aggregate now; only the current one
            // is saved when the batch commits.
            if let Some(ended) = track.segment.take() {
                ledger::save_segment(tx, &ended)?;
            }
            track.segment.insert(fresh)
        }
    };
    ledger::insert_sample(tx, track.device_id, segment.id, t, dt, sample)?;
    segment.samples += 1;
    segment.ended_at = t;
    segment.last_uptime = sample.uptime_seconds.or(segment.last_uptime);
    if t >= segment.started_at + segment.warmup_seconds {
        segment.steady.add(&reading_of(sample, dt));
    }
    let id = segment.id;
    track.last_point = Some(point);
    Ok(Some(id))
}

pub fn reading_of(sample: &Sample, dt: f64) -> Reading {
    Reading {
        dt,
        hashrate_ghs: sample.hashrate_ghs,
        expected_ghs: sample.expected_hashrate_ghs,
        power_watts: sample.power_watts,
        asic_celsius: sample.asic_temp_celsius,
        vr_celsius: sample.vr_temp_celsius,
        error_percent: sample.error_percent,
        shares_accepted: sample.shares_accepted,
        shares_rejected: sample.shares_rejected,
    }
}

/// The `kind` column of an event.
pub fn event_kind(event: &DeviceEvent) -> &'static str {
    use crate::events::TempLevel;
    match event {
        DeviceEvent::Up { .. } => "online",
        DeviceEvent::Down { .. } => "offline",
        DeviceEvent::ConfigChanged { .. } => "config_changed",
        DeviceEvent::Rebooted { .. } => "rebooted",
        DeviceEvent::FirmwareChanged { .. } => "firmware_changed",
        DeviceEvent::TemperatureRose {
            level: TempLevel::Shutdown,
            ..
        } => "temperature_shutdown",
        DeviceEvent::TemperatureRose { .. } => "temperature_warning",
        DeviceEvent::TemperatureFell {
            level: TempLevel::Warning,
            ..
        } => "temperature_below_shutdown",
        DeviceEvent::TemperatureFell { .. } => "temperature_normal",
    }
}
