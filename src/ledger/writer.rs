//! The ledger's single writer: a thread that owns the write connection, receives samples
//! and events from the pollers over a bounded channel, assigns samples to segments, and
//! commits them in batched transactions (every second, or sooner when a batch is full).
//! A failed commit (database locked, disk full) is rolled back and retried; nothing is
//! lost unless the backlog outgrows its cap. A SIGKILL loses at most the unflushed batch.
//! A ledger SQLite finds damaged (when `serve` starts, or once while it runs) is moved
//! aside and a fresh one started, so the daemon never stops over it (see `health`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::Transaction;

use crate::axeos::sample::Sample;
use crate::ledger::blocks::StoredSample;
use crate::ledger::lock::Role;
use crate::ledger::rollup::RollupBatch;
use crate::ledger::segments::{boundary, Boundary, Point, Reading};
use crate::ledger::store::{self, OpenBlock};
use crate::ledger::{self, backfill, health, DaemonLock, Ledger, LedgerError, SampleSource, SegmentRow};

/// Commit at least this often (unless the rules say otherwise).
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// The longest `serve` lets samples wait for a commit: what a crash may lose (and what the
/// miners' own history refills at the next start).
pub(crate) const MAX_SERVE_FLUSH_INTERVAL: Duration = Duration::from_secs(15);
/// Commit once this many records wait, even before the interval.
pub(crate) const MAX_BATCH: usize = 20_000;
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
    /// The miner's own statistics ring, read when a poll found it again after a hole (the
    /// exporter stopped, the miner unreachable): the readings that fall in the hole are
    /// stored as `miner_history` samples ahead of that poll's sample (`current`, sent
    /// after this record, at `at`).
    History {
        device: String,
        at: SystemTime,
        current: Arc<Sample>,
        ring: Vec<(SystemTime, Sample)>,
    },
    /// An event: its kind (`rebooted`, `mining_problem`, …) and what a person reads.
    Event {
        device: String,
        at: SystemTime,
        kind: &'static str,
        detail: String,
        /// The miner's last log lines, captured with an incident (one per line, cleaned).
        log_tail: Option<String>,
    },
}

/// Counters the exporter publishes about the ledger.
#[derive(Debug, Default)]
pub struct LedgerStats {
    pub samples_written: AtomicU64,
    /// Samples taken from miners' own history into holes (not polls, not in
    /// `samples_written`).
    pub backfilled: AtomicU64,
    /// Raw samples deleted by retention (their hours kept in the rollups).
    pub pruned: AtomicU64,
    pub events_written: AtomicU64,
    pub write_errors: AtomicU64,
    /// Records refused or lost: a full queue, a backlog past its cap, a sample behind a
    /// clock that stepped back.
    pub dropped: AtomicU64,
    /// Samples not stored because they were older than their device's last sample.
    pub clock_behind: AtomicU64,
    /// Times the ledger file was found deleted or replaced and opened again.
    pub reopened: AtomicU64,
    /// Samples whose MAC belonged to another polled miner, or changed from poll to poll.
    pub mac_conflicts: AtomicU64,
    /// Times the ledger file at the path was held by another daemon and not written.
    pub lock_lost: AtomicU64,
    /// Set while commits fail because SQLite finds the ledger damaged; cleared by the next
    /// commit that succeeds.
    pub damaged: AtomicBool,
    /// A sweep's writer handed the ledger to a `serve` that asked for it: records sent
    /// since are not stored by this process.
    pub handed_over: AtomicBool,
    /// The ledger's path, whose damaged copies (`<ledger>.damaged-*`) [`Self::healthy`]
    /// looks for; set when the writer starts.
    path: OnceLock<PathBuf>,
    /// History records handled (each one queued record, whatever it stored).
    histories: AtomicU64,
    /// Records accepted into the queue.
    queued: AtomicU64,
    /// Queued records since lost (backlog cap, shutdown).
    lost: AtomicU64,
}

impl LedgerStats {
    /// Records queued or held in memory, not yet committed.
    pub fn backlog(&self) -> u64 {
        let committed = self.samples_written.load(Ordering::Relaxed)
            + self.events_written.load(Ordering::Relaxed)
            + self.histories.load(Ordering::Relaxed);
        let queued = self.queued.load(Ordering::Relaxed);
        queued.saturating_sub(committed + self.lost.load(Ordering::Relaxed))
    }

    /// False while commits fail on a damaged ledger, and while a damaged copy moved aside
    /// (`<ledger>.damaged-*`) lies beside the ledger: the operator acts by recovering it
    /// and then deleting or renaming it (`bitaxe_ledger_healthy`).
    pub fn healthy(&self) -> bool {
        !self.damaged.load(Ordering::Relaxed) && self.path.get().is_none_or(|p| health::damaged_copies(p).is_empty())
    }

    /// A committed batch: its samples and events written, and its samples older than their
    /// device's last one not stored (lost).
    fn committed(&self, samples: u64, events: u64, behind: u64, backfilled: u64) {
        self.samples_written.fetch_add(samples, Ordering::Relaxed);
        self.backfilled.fetch_add(backfilled, Ordering::Relaxed);
        self.events_written.fetch_add(events, Ordering::Relaxed);
        if behind > 0 {
            self.clock_behind.fetch_add(behind, Ordering::Relaxed);
            self.lose(behind);
        }
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
    /// `ledger.raw_retention`: raw samples older than this are deleted once rolled up
    /// (`None`: kept; a sweep's writer never deletes).
    pub raw_retention: Option<Duration>,
    /// How long records may wait for their commit. Fewer commits write fewer pages (each
    /// rewrites its devices' open blocks and segments): an SD card's life.
    pub flush_interval: Duration,
}

impl SegmentRules {
    pub fn for_poll_interval(poll_interval: Duration, warmup: Duration) -> Self {
        let interval = poll_interval.as_secs_f64();
        Self {
            warmup_seconds: warmup.as_secs_f64(),
            max_sample_seconds: (interval * 3.0).max(interval + 5.0),
            max_gap_seconds: (interval * 10.0).max(300.0),
            raw_retention: None,
            flush_interval: FLUSH_INTERVAL,
        }
    }

    /// The rules of `serve`: commits every half poll interval (at least every second, at
    /// most every [`MAX_SERVE_FLUSH_INTERVAL`]), so that at 30-s polls a commit carries the
    /// samples of several miners instead of one.
    pub fn for_serve(poll_interval: Duration, warmup: Duration, raw_retention: Option<Duration>) -> Self {
        Self {
            raw_retention,
            flush_interval: (poll_interval / 2).clamp(FLUSH_INTERVAL, MAX_SERVE_FLUSH_INTERVAL),
            ..Self::for_poll_interval(poll_interval, warmup)
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
    /// True once the writer behind this sender gave the ledger to a `serve` (which stores
    /// the samples from then on).
    pub(crate) fn handed_over(&self) -> bool {
        self.stats.handed_over.load(Ordering::Relaxed)
    }

    /// The last write error's count, for a sweep that wonders why nothing was stored.
    pub(crate) fn write_errors(&self) -> u64 {
        self.stats.write_errors.load(Ordering::Relaxed)
    }

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

/// How long a commit of the writer waits for another connection's lock before it gives up
/// and retries later (it keeps its records); short, so that a shutdown is never held up.
const WRITER_BUSY_TIMEOUT: Duration = Duration::from_secs(1);
/// How long `serve` waits for a sweep to hand the ledger over (it looks each second).
pub(crate) const HANDOVER_WAIT: Duration = Duration::from_secs(15);
/// How long `finish` waits for the final flush before it lets the process exit.
pub(crate) const FINISH_TIMEOUT: Duration = Duration::from_secs(3);

/// A running writer thread.
#[derive(Debug)]
pub struct Writer {
    pub sender: LedgerSender,
    pub stats: Arc<LedgerStats>,
    thread: JoinHandle<()>,
    closing: Arc<AtomicBool>,
    done: Receiver<()>,
}

impl Writer {
    /// Opens (and migrates) the ledger, takes its daemon lock and starts the writer thread.
    /// A ledger another daemon holds is refused (`LedgerError::InUse`).
    pub fn start(path: &Path, rules: SegmentRules) -> Result<Writer, LedgerError> {
        Self::start_for(path, rules, Vec::new())
    }

    /// Like [`Writer::start`], knowing the device names in config.yaml (so a MAC bound to
    /// one of them is never moved to another).
    pub fn start_for(path: &Path, rules: SegmentRules, configured: Vec<String>) -> Result<Writer, LedgerError> {
        Self::start_as(path, rules, configured, Role::Serve)
    }

    /// The writer of a standalone `tune`: like [`Writer::start_for`], but it hands the
    /// ledger over (flushes, closes, lets go of the lock) as soon as a `serve` asks for it
    /// ([`DaemonLock::request_handover`]); [`LedgerSender::handed_over`] then says so.
    pub(crate) fn start_for_sweep(
        path: &Path,
        rules: SegmentRules,
        configured: Vec<String>,
    ) -> Result<Writer, LedgerError> {
        Self::start_as(path, rules, configured, Role::Sweep)
    }

    fn start_as(path: &Path, rules: SegmentRules, configured: Vec<String>, role: Role) -> Result<Writer, LedgerError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| LedgerError::CreateDir {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let cache_kib = writer_cache_kib(configured.len());
        let mut ledger = open_for_writing(path, cache_kib)?;
        let lock = DaemonLock::acquire_as(path, role)?;
        if role == Role::Sweep && !DaemonLock::handover_requested(path) {
            // A stale request (a `serve` that died waiting) would only confuse the next one.
            DaemonLock::clear_handover(path);
        }
        take_over_rollups(&mut ledger, &lock, path)?;
        prepare_retention(&ledger, &rules);
        let (tx, rx) = mpsc::sync_channel(CHANNEL_CAPACITY);
        let (done_tx, done) = mpsc::channel();
        let stats = Arc::new(LedgerStats::default());
        let _ = stats.path.set(path.to_path_buf());
        let closing = Arc::new(AtomicBool::new(false));
        let mut state = WriterState::new(ledger, lock, rules, stats.clone(), closing.clone());
        state.configured = configured.into_iter().collect();
        state.cache_kib = cache_kib;
        state.yields = role == Role::Sweep;
        let thread = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || {
                state.run(rx);
                let _ = done_tx.send(());
            })
            .map_err(LedgerError::Thread)?;
        Ok(Writer {
            sender: LedgerSender {
                tx,
                stats: stats.clone(),
            },
            stats,
            thread,
            closing,
            done,
        })
    }

    /// [`Writer::start_for`] as `serve` starts it: a ledger SQLite finds damaged (by
    /// `PRAGMA quick_check` first, or as the writer opens it) is moved aside, kept under
    /// `<ledger>.damaged-<UTC time>` with its `-wal` / `-shm`, and a fresh ledger started,
    /// so metrics, alerts and protection run whatever the file holds. (`tune` and the CLI
    /// leave a damaged file where it is and say so.)
    pub(crate) fn start_serving(
        path: &Path,
        rules: SegmentRules,
        configured: Vec<String>,
    ) -> Result<Writer, LedgerError> {
        let checking = Instant::now();
        let checked = health::check(path);
        if checking.elapsed() > Duration::from_secs(2) {
            tracing::info!("checked the ledger's pages in {:.1?}", checking.elapsed());
        }
        match checked {
            Ok(Some(damage)) => {
                set_aside_at_start(path, &damage)?;
            }
            Ok(None) => {}
            // Nothing learnt about the file (a lock held too long, no permission): opening
            // it for writing says what is wrong, as without the check.
            Err(e) => tracing::debug!("cannot check the ledger: {e}"),
        }
        match Self::start_taking_over(path, rules, configured.clone()) {
            Err(e) if e.is_damaged() => {
                set_aside_at_start(path, &health::damage_of(&e))?;
                Self::start_taking_over(path, rules, configured)
            }
            started => started,
        }
    }

    /// [`Writer::start_for`], taking the ledger over from a standalone `tune` that holds
    /// it: the sweep is asked to hand it over and goes on (polling, not storing) while this
    /// writer stores every sample. Another `serve` is never asked.
    fn start_taking_over(path: &Path, rules: SegmentRules, configured: Vec<String>) -> Result<Writer, LedgerError> {
        match Self::start_for(path, rules, configured.clone()) {
            Err(LedgerError::InUse { .. }) if DaemonLock::sweep_holder(path).is_some() => {}
            started => return started,
        }
        if let Some(pid) = DaemonLock::sweep_holder(path) {
            tracing::info!("a tune sweep (pid {pid}) holds the ledger; asking it to hand it over");
        }
        if let Err(e) = DaemonLock::request_handover(path) {
            tracing::warn!("cannot ask the sweep for the ledger: {e}");
        }
        let deadline = Instant::now() + HANDOVER_WAIT;
        let started = loop {
            match Self::start_for(path, rules, configured.clone()) {
                Err(LedgerError::InUse { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                started => break started,
            }
        };
        DaemonLock::clear_handover(path);
        started
    }

    /// Flushes what is queued and stops the thread, within [`FINISH_TIMEOUT`] whatever the
    /// database does (a retry wait is cut short; the final commit waits at most
    /// [`WRITER_BUSY_TIMEOUT`] for a lock). Every other sender must be dropped first.
    pub fn finish(self) {
        drop(self.sender);
        self.closing.store(true, Ordering::Release);
        self.thread.thread().unpark();
        match self.done.recv_timeout(FINISH_TIMEOUT) {
            Ok(()) => {
                if self.thread.join().is_err() {
                    tracing::error!("the ledger writer thread panicked");
                }
            }
            Err(RecvTimeoutError::Timeout) => tracing::error!(
                "the ledger writer did not finish within {FINISH_TIMEOUT:?}; {} records may be lost",
                self.stats.backlog()
            ),
            Err(RecvTimeoutError::Disconnected) => tracing::error!("the ledger writer thread panicked"),
        }
    }
}

/// SQLite's page cache for the writer, KiB. A flush touches about one samples page and one
/// segments page per device it carries; a cache smaller than that spills dirty pages and
/// reads them back within the transaction (at 10,000 miners the writer spent most of its
/// time there with SQLite's 2 MiB default). 8 KiB per configured device, from that
/// default up to 64 MiB; the cache grows only as pages are touched.
fn writer_cache_kib(devices: usize) -> u32 {
    u32::try_from(devices.saturating_mul(8))
        .unwrap_or(u32::MAX)
        .clamp(2048, 65_536)
}

/// Moves a damaged ledger aside before the writer opens the path (never one another
/// daemon holds), naming it and how to recover it in the log.
fn set_aside_at_start(path: &Path, damage: &str) -> Result<(), LedgerError> {
    DaemonLock::check_free(path)?;
    let copy = health::move_aside(path).map_err(|source| LedgerError::MoveAside {
        path: path.to_path_buf(),
        damage: damage.to_string(),
        source,
    })?;
    tracing::error!(
        "the ledger {} is damaged ({damage}); moved it aside to {} (with any -wal/-shm) and starting a fresh ledger; {}",
        path.display(),
        copy.display(),
        health::recovery_hint(path, &copy)
    );
    Ok(())
}

fn open_for_writing(path: &Path, cache_kib: u32) -> Result<Ledger, LedgerError> {
    let ledger = Ledger::open(path)?;
    ledger.set_busy_timeout(WRITER_BUSY_TIMEOUT)?;
    ledger.set_cache_kib(cache_kib)?;
    Ok(ledger)
}

/// Once this writer holds the daemon lock (never before: a running daemon's own held sums
/// would then be counted twice): the sums a previous writer held in memory when it stopped
/// (a crash, a SIGKILL) are rebuilt from the samples it committed.
fn take_over_rollups(ledger: &mut Ledger, lock: &DaemonLock, path: &Path) -> Result<(), LedgerError> {
    debug_assert!(lock.holds(path));
    ledger.rebuild_recent_rollups()
}

/// A ledger made before incremental vacuum is rewritten once so that what retention frees
/// goes back to the file system: at once when it is small; a large one (minutes of
/// rewriting on a Raspberry Pi) keeps reusing its freed pages, and the log says how to
/// convert it.
fn prepare_retention(ledger: &Ledger, rules: &SegmentRules) {
    if rules.raw_retention.is_none() {
        return;
    }
    match ledger.enable_incremental_vacuum(MAX_AUTOMATIC_VACUUM_BYTES) {
        Ok(true) => {}
        Ok(false) => tracing::info!(
            "{} predates incremental vacuum and is large: retention frees pages for new samples but the file \
             does not shrink; to convert it, stop serve and run: sqlite3 {} 'PRAGMA auto_vacuum=INCREMENTAL; VACUUM'",
            ledger.path.display(),
            ledger.path.display()
        ),
        Err(e) => tracing::warn!("cannot prepare the ledger for shrinking: {e}"),
    }
}

/// Ledgers up to this size are converted to incremental vacuum when `serve` opens them.
const MAX_AUTOMATIC_VACUUM_BYTES: u64 = 256 * 1024 * 1024;

/// How long the hourly rollups' sums stay in memory before they are written: one upsert
/// per device and hour per interval instead of one per sample (at 10,000 miners the
/// per-transaction upserts cost 7 µs a poll). What a crash loses of them is rebuilt from
/// the samples when the ledger is next opened for writing.
const ROLLUP_WRITE_INTERVAL: Duration = Duration::from_secs(60);

/// How often retention looks for raw samples past `ledger.raw_retention` once it has
/// caught up.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// What the writer remembers of a device between records.
#[derive(Debug)]
struct Track {
    device_id: i64,
    segment: Option<SegmentRow>,
    last_point: Option<Point>,
    /// The block the device's next samples go into.
    block: Option<OpenBlock>,
}

struct WriterState {
    /// `None` after the file was found deleted or replaced and could not be opened again.
    ledger: Option<Ledger>,
    path: PathBuf,
    /// (device, inode) of the file the connection has open.
    identity: Option<(u64, u64)>,
    lock: DaemonLock,
    rules: SegmentRules,
    stats: Arc<LedgerStats>,
    closing: Arc<AtomicBool>,
    /// Config name → the device its samples go to, and the MAC that device has.
    ids: HashMap<String, NameBinding>,
    tracks: HashMap<i64, Track>,
    /// Names whose MAC conflict was logged already (once per name and run).
    conflicts_logged: HashSet<String>,
    /// The device names in config.yaml: a MAC bound to one of them is never moved to
    /// another name, whichever miner answers first after a restart.
    configured: HashSet<String>,
    /// SQLite's page cache, KiB, set again whenever the file is reopened.
    cache_kib: u32,
    /// Rollup sums of committed samples not yet written, and when they are due.
    rollups: RollupBatch,
    rollups_due: Instant,
    /// When retention next deletes a batch of old raw samples.
    prune_due: Instant,
    /// A damaged ledger was moved aside while this writer ran: a second damage in the same
    /// run points at the disk, and is retried (with the backoff) rather than moved again.
    set_aside_while_running: bool,
    /// A sweep's writer: gives the ledger up when a `serve` asks for it.
    yields: bool,
}

/// Polls in a row a new MAC must be seen at a name before it is believed to be another
/// miner there (a swapped unit). A MAC that changes from poll to poll never is.
const MAC_CHANGE_POLLS: u32 = 3;

/// What the writer knows of a configured name in this run.
#[derive(Debug)]
struct NameBinding {
    mac: Option<String>,
    id: i64,
    /// A different MAC seen at this name, and in how many polls in a row.
    candidate: Option<(String, u32)>,
}

impl NameBinding {
    fn new(mac: Option<String>, id: i64) -> Self {
        Self {
            mac,
            id,
            candidate: None,
        }
    }
}

/// The device a sample of `name` belongs to, and whether its MAC was in conflict (claimed
/// by another configured name, or not yet confirmed as a new miner at this name).
fn identify(
    tx: &Transaction,
    ids: &mut HashMap<String, NameBinding>,
    configured: &HashSet<String>,
    name: &str,
    sample: &Sample,
    t: f64,
) -> rusqlite::Result<(i64, bool)> {
    let mac = sample.identity.mac.as_deref();
    let mut confirmed_new_mac = false;
    if let Some(binding) = ids.get_mut(name) {
        let Some(mac) = mac.filter(|m| binding.mac.as_deref() != Some(*m)) else {
            binding.candidate = None;
            return Ok((binding.id, false));
        };
        if binding.mac.is_some() {
            let seen = match &mut binding.candidate {
                Some((candidate, polls)) if candidate == mac => {
                    *polls += 1;
                    *polls
                }
                _ => {
                    binding.candidate = Some((mac.to_string(), 1));
                    1
                }
            };
            if seen < MAC_CHANGE_POLLS {
                return Ok((binding.id, true));
            }
            confirmed_new_mac = true;
        }
    }
    let polled_elsewhere = |other: &str| other != name && (configured.contains(other) || ids.contains_key(other));
    let resolved = ledger::resolve_device(tx, name, &sample.identity, t, &polled_elsewhere, confirmed_new_mac)?;
    ids.insert(name.to_string(), NameBinding::new(resolved.bound_mac, resolved.id));
    Ok((resolved.id, resolved.mac_conflict))
}

impl WriterState {
    fn new(
        ledger: Ledger,
        lock: DaemonLock,
        rules: SegmentRules,
        stats: Arc<LedgerStats>,
        closing: Arc<AtomicBool>,
    ) -> Self {
        let path = ledger.path.clone();
        Self {
            identity: ledger::file_identity(&path),
            ledger: Some(ledger),
            path,
            lock,
            rules,
            stats,
            closing,
            ids: HashMap::new(),
            tracks: HashMap::new(),
            conflicts_logged: HashSet::new(),
            configured: HashSet::new(),
            cache_kib: writer_cache_kib(0),
            rollups: RollupBatch::default(),
            rollups_due: Instant::now() + ROLLUP_WRITE_INTERVAL,
            prune_due: Instant::now(),
            set_aside_while_running: false,
            yields: false,
        }
    }

    fn run(mut self, rx: Receiver<Record>) {
        let mut pending: Vec<Record> = Vec::new();
        // When the pending batch is due; `None` while nothing waits (then block on the
        // channel instead of waking up for nothing).
        let mut due_at: Option<Instant> = None;
        let flush_interval = self.rules.flush_interval;
        let mut retry_delay = flush_interval;
        let mut closed = false;
        loop {
            if self.yields && !closed && DaemonLock::handover_requested(&self.path) {
                self.hand_over(&mut pending);
                return;
            }
            match due_at {
                // Block for the first record of a batch (a sweep's writer wakes each second
                // to see whether a `serve` asked for the ledger)…
                None if self.yields => match rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(record) => {
                        pending.push(record);
                        due_at = Some(Instant::now() + flush_interval);
                    }
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => closed = true,
                },
                None => match rx.recv() {
                    Ok(record) => {
                        pending.push(record);
                        due_at = Some(Instant::now() + flush_interval);
                    }
                    Err(_) => closed = true,
                },
                // …then let the batch fill until it is due: one wake-up per batch instead of
                // one per record. `finish` unparks the thread, so a retry wait of up to 30 s
                // never holds up a shutdown.
                Some(due) => {
                    let wait = due.saturating_duration_since(Instant::now());
                    if !wait.is_zero() && !self.closing.load(Ordering::Acquire) {
                        std::thread::park_timeout(wait);
                    }
                }
            }
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
            let closing = closed || self.closing.load(Ordering::Acquire);
            let due = closing || pending.len() >= MAX_BATCH || due_at.is_some_and(|d| Instant::now() >= d);
            if !due {
                continue;
            }
            if pending.is_empty() {
                due_at = None;
            } else {
                match self.flush(&pending) {
                    Ok(()) => {
                        pending.clear();
                        retry_delay = flush_interval;
                        due_at = None;
                        self.stats.damaged.store(false, Ordering::Relaxed);
                        if !closing {
                            self.prune_if_due();
                        }
                    }
                    Err(e) => {
                        retry_delay = (retry_delay * 2).min(Duration::from_secs(30));
                        due_at = Some(Instant::now() + retry_delay);
                        self.flush_failed(&e, &mut pending, retry_delay, closing, closed);
                    }
                }
            }
            if closed && pending.is_empty() {
                self.write_held_rollups();
                return;
            }
        }
    }

    /// Retention: when due, one short pass deleting raw samples past `ledger.raw_retention`
    /// whose hours are rolled up; again at the next commit while a backlog remains, else a
    /// minute later. A failure is said and retried later; it never costs a record.
    fn prune_if_due(&mut self) {
        let Some(retention) = self.rules.raw_retention else {
            return;
        };
        if Instant::now() < self.prune_due {
            return;
        }
        let Some(ledger) = self.ledger.as_mut() else {
            return;
        };
        let cutoff = crate::time::now_unix() - retention.as_secs_f64();
        let held_from = self.rollups.earliest_hour().unwrap_or(f64::INFINITY);
        let started = Instant::now();
        match ledger.prune_raw_samples(cutoff, held_from) {
            Ok(deleted) => {
                self.stats.pruned.fetch_add(deleted as u64, Ordering::Relaxed);
                let more = deleted >= crate::ledger::PRUNE_BATCH;
                self.prune_due = Instant::now() + if more { Duration::ZERO } else { PRUNE_INTERVAL };
                if deleted > 0 {
                    tracing::debug!("retention: deleted {deleted} raw samples in {:?}", started.elapsed());
                }
            }
            Err(e) => {
                tracing::warn!("retention: cannot delete old raw samples now ({e}); trying again later");
                self.prune_due = Instant::now() + PRUNE_INTERVAL;
            }
        }
    }

    /// A batch that did not commit: counted, its in-memory state forgotten, a damaged file
    /// set aside; its records kept for the retry in `retry_delay` (at most MAX_BACKLOG of
    /// them), or counted as lost when it was the final attempt at shutdown.
    fn flush_failed(
        &mut self,
        e: &LedgerError,
        pending: &mut Vec<Record>,
        retry_delay: Duration,
        closing: bool,
        closed: bool,
    ) {
        self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
        // What was applied in memory was rolled back in the database too.
        self.forget();
        if e.is_damaged() {
            self.stats.damaged.store(true, Ordering::Relaxed);
            if !closing {
                self.set_aside(e);
            }
        }
        if !closing {
            tracing::error!(
                "cannot write the ledger ({e}); keeping {} records and retrying in {retry_delay:?}",
                pending.len()
            );
        } else if closed {
            // The one bounded final attempt failed: say what is lost.
            tracing::error!("the ledger lost {} unwritten records at shutdown: {e}", pending.len());
            self.stats.lose(pending.len() as u64);
            pending.clear();
        }
        if pending.len() > MAX_BACKLOG {
            let excess = pending.len() - MAX_BACKLOG;
            pending.drain(..excess);
            self.stats.lose(excess as u64);
        }
    }

    /// A `serve` asked for the ledger: what is pending is written (one attempt), the held
    /// rollup sums too, and the connection and the lock are let go as the thread ends.
    /// Records sent from now on are counted as dropped; the sweep sees
    /// [`LedgerSender::handed_over`] and leaves storing to `serve`.
    fn hand_over(mut self, pending: &mut Vec<Record>) {
        if !pending.is_empty() {
            match self.flush(pending) {
                Ok(()) => pending.clear(),
                Err(e) => {
                    tracing::warn!(
                        "handing the ledger to serve: {} records not written: {e}",
                        pending.len()
                    );
                    self.stats.lose(pending.len() as u64);
                }
            }
        }
        self.write_held_rollups();
        self.stats.handed_over.store(true, Ordering::Relaxed);
        tracing::info!("serve asked for the ledger: handed over; serve stores the samples from now on");
        // Dropping the state closes the connection, then lets go of the lock (field order).
    }

    /// At shutdown: the rollup sums still held, in their own transaction when no record
    /// was left to carry them. If that fails, the next writer rebuilds them.
    fn write_held_rollups(&mut self) {
        let Some(ledger) = self.ledger.as_mut() else {
            return;
        };
        if self.rollups.is_empty() {
            return;
        }
        let written = ledger.write().and_then(|tx| {
            let wrap = |source| LedgerError::Sqlite {
                path: self.path.clone(),
                source,
            };
            self.rollups.clone().flush(&tx).map_err(wrap)?;
            tx.commit().map_err(wrap)
        });
        match written {
            Ok(()) => self.rollups = RollupBatch::default(),
            Err(e) => tracing::warn!("the hourly rollups' last minute is left for the next start to rebuild: {e}"),
        }
    }

    /// A ledger found damaged while running: closed, moved aside (once per run) and left
    /// for the next attempt to start afresh at the path, as for a deleted file.
    fn set_aside(&mut self, error: &LedgerError) {
        let damage = health::damage_of(error);
        if self.set_aside_while_running {
            return;
        }
        // A file put at the path since (no longer the one this writer locked) that another
        // daemon holds is that daemon's to deal with.
        if !self.lock.holds(&self.path) && DaemonLock::check_free(&self.path).is_err() {
            return;
        }
        self.set_aside_while_running = true;
        // Closed first: its `-wal` and `-shm` go aside with it, not stay behind for the
        // fresh file. The held rollup sums name the damaged file's devices.
        self.ledger = None;
        self.rollups = RollupBatch::default();
        match health::move_aside(&self.path) {
            Ok(copy) => tracing::error!(
                "the ledger {} is damaged ({damage}); moved it aside to {} (with any -wal/-shm) and writing a fresh ledger at its path from now on; {}",
                self.path.display(),
                copy.display(),
                health::recovery_hint(&self.path, &copy)
            ),
            Err(e) => tracing::error!(
                "the ledger {} is damaged ({damage}) and cannot be moved aside ({e}); nothing is written until it is replaced \
                 (stop serve and move it away: serve then starts a fresh one)",
                self.path.display()
            ),
        }
    }

    /// Drops cached state after a rollback; it is reloaded from the database.
    fn forget(&mut self) {
        self.ids.clear();
        self.tracks.clear();
    }

    /// Notices a ledger file deleted or replaced under the running daemon (which would
    /// otherwise write on into an unlinked file and lose everything at exit), and opens
    /// the file now at the path, creating it if needed.
    fn follow_the_path(&mut self) -> Result<(), LedgerError> {
        let now = ledger::file_identity(&self.path);
        if self.ledger.is_some() && now.is_some() && now == self.identity {
            return Ok(());
        }
        if self.ledger.is_some() {
            self.stats.reopened.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                "the ledger {} was {} while this daemon had it open; writing to a new file at that path from now on",
                self.path.display(),
                if now.is_some() { "replaced" } else { "deleted" }
            );
        }
        // SQLite neither checkpoints nor removes the WAL of a file that moved or was
        // deleted, and its `-wal` at the path would be replayed over whatever file has the
        // path now (hiding a damaged one, mixing two ledgers): folded into the old file
        // through its open descriptor and emptied first.
        if let Some(old) = self.ledger.as_ref() {
            match old.checkpoint_truncate() {
                Ok(true) => {}
                Ok(false) => tracing::warn!(
                    "a reader kept the old ledger's WAL from being emptied; {}-wal may still hold its pages",
                    self.path.display()
                ),
                Err(e) => tracing::warn!("cannot empty the old ledger's WAL: {e}"),
            }
        }
        self.ledger = None;
        self.forget();
        // Held sums name the old file's devices; the new file's are rebuilt as it opens.
        self.rollups = RollupBatch::default();
        let mut ledger = open_for_writing(&self.path, self.cache_kib)?;
        if !self.lock.holds(&self.path) {
            // The new file needs the lock too; if another daemon took it meanwhile, this one
            // stops writing (its records wait, and are retried) rather than share the file.
            match DaemonLock::acquire(&self.path) {
                Ok(lock) => self.lock = lock,
                Err(e) => {
                    self.stats.lock_lost.fetch_add(1, Ordering::Relaxed);
                    tracing::error!("not writing the ledger: {e}");
                    return Err(e);
                }
            }
        }
        take_over_rollups(&mut ledger, &self.lock, &self.path)?;
        self.identity = ledger::file_identity(&self.path);
        self.ledger = Some(ledger);
        Ok(())
    }

    fn flush(&mut self, records: &[Record]) -> Result<(), LedgerError> {
        self.follow_the_path()?;
        let closing = self.closing.load(Ordering::Acquire);
        let Some(ledger) = self.ledger.as_mut() else {
            return Err(LedgerError::Missing(self.path.clone()));
        };
        let path = ledger.path.clone();
        let wrap = |source| LedgerError::Sqlite {
            path: path.clone(),
            source,
        };
        let rules = self.rules;
        let stats = &self.stats;
        let ids = &mut self.ids;
        let tracks = &mut self.tracks;
        let conflicts_logged = &mut self.conflicts_logged;
        let configured = &self.configured;
        let tx = ledger.write()?;
        let mut touched = HashSet::new();
        // This transaction's rollup sums: kept only if it commits.
        let mut rollups = RollupBatch::default();
        let (mut samples, mut events, mut behind, mut histories, mut backfilled) = (0u64, 0u64, 0u64, 0u64, 0u64);
        let mut filled_holes = Vec::new();
        for record in records {
            match record {
                Record::Sample { device, at, sample } => {
                    let t = crate::time::unix_seconds(*at);
                    let (device_id, conflict) = identify(&tx, ids, configured, device, sample, t).map_err(wrap)?;
                    if conflict {
                        note_mac_conflict(stats, conflicts_logged, device, sample);
                    }
                    let track = match tracks.get_mut(&device_id) {
                        Some(track) => track,
                        None => tracks
                            .entry(device_id)
                            .or_insert(load_track(&tx, device_id).map_err(wrap)?),
                    };
                    match add_sample(&tx, track, &rules, t, sample, SampleSource::Poll, &mut rollups).map_err(wrap)? {
                        Added::To(segment_id) => {
                            touched.insert(segment_id);
                            samples += 1;
                        }
                        Added::Behind(seconds) => {
                            behind += 1;
                            if !closing {
                                tracing::warn!(
                                    "{device}: a sample {seconds:.1} s older than the last one (the clock stepped back) is not stored"
                                );
                            }
                        }
                    }
                }
                Record::History {
                    device,
                    at,
                    current,
                    ring,
                } => {
                    histories += 1;
                    let t = crate::time::unix_seconds(*at);
                    let device_id = match ids.get(device.as_str()) {
                        Some(binding) => binding.id,
                        None => identify(&tx, ids, configured, device, current, t).map_err(wrap)?.0,
                    };
                    let track = match tracks.get_mut(&device_id) {
                        Some(track) => track,
                        None => tracks
                            .entry(device_id)
                            .or_insert(load_track(&tx, device_id).map_err(wrap)?),
                    };
                    let hole_from = track.last_point.as_ref().map(|p| p.t);
                    let ring = ring
                        .iter()
                        .map(|(at, s)| (crate::time::unix_seconds(*at), s.clone()))
                        .collect();
                    match backfill::plan(track.last_point.as_ref(), t, current, ring) {
                        backfill::Plan::Fill { readings, rebooted } => {
                            let mut stored = 0u64;
                            for (t, sample) in &readings {
                                let added = add_sample(
                                    &tx,
                                    track,
                                    &rules,
                                    *t,
                                    sample,
                                    SampleSource::MinerHistory,
                                    &mut rollups,
                                )
                                .map_err(wrap)?;
                                if let Added::To(segment_id) = added {
                                    touched.insert(segment_id);
                                    stored += 1;
                                }
                            }
                            backfilled += stored;
                            filled_holes.push(FilledHole {
                                device: device.clone(),
                                from: hole_from.unwrap_or(t),
                                to: t,
                                readings: stored,
                                rebooted,
                            });
                        }
                        backfill::Plan::Skip(why) => {
                            tracing::debug!("{device}: the hole before this poll is not filled: {why}");
                        }
                    }
                }
                Record::Event {
                    device,
                    at,
                    kind,
                    detail,
                    log_tail,
                } => {
                    let t = crate::time::unix_seconds(*at);
                    let device_id = event_device(&tx, ids, device, t).map_err(wrap)?;
                    ledger::insert_event(&tx, device_id, t, kind, detail, log_tail.as_deref()).map_err(wrap)?;
                    events += 1;
                }
            }
        }
        save_touched_segments(&tx, tracks, &touched).map_err(wrap)?;
        // The held sums are written with this transaction when due, and forgotten only
        // once it commits (a failed one is retried whole, its samples' sums with it).
        let write_rollups = closing || Instant::now() >= self.rollups_due;
        if write_rollups {
            let mut all = self.rollups.clone();
            all.absorb(rollups);
            all.flush(&tx).map_err(wrap)?;
            rollups = RollupBatch::default();
        }
        tx.commit().map_err(wrap)?;
        if write_rollups {
            self.rollups = RollupBatch::default();
            self.rollups_due = Instant::now() + ROLLUP_WRITE_INTERVAL;
        } else {
            self.rollups.absorb(rollups);
        }
        stats.committed(samples, events, behind, backfilled);
        stats.histories.fetch_add(histories, Ordering::Relaxed);
        for hole in filled_holes {
            hole.log();
        }
        Ok(())
    }
}

/// A hole filled from a miner's own history, for the log line once it is committed.
struct FilledHole {
    device: String,
    from: f64,
    to: f64,
    readings: u64,
    rebooted: bool,
}

impl FilledHole {
    fn log(&self) {
        let at = |t: f64| crate::time::format(t);
        let reboot = if self.rebooted {
            " (the miner rebooted inside it: only readings since the boot)"
        } else {
            ""
        };
        tracing::info!(
            "{}: filled the hole {} → {} ({:.0} s) with {} readings from the miner's own history{reboot}",
            self.device,
            at(self.from),
            at(self.to),
            self.to - self.from,
            self.readings,
        );
    }
}

/// A MAC that belongs to another miner, or changes from poll to poll: counted, and said
/// once per device name.
fn note_mac_conflict(stats: &LedgerStats, conflicts_logged: &mut HashSet<String>, device: &str, sample: &Sample) {
    stats.mac_conflicts.fetch_add(1, Ordering::Relaxed);
    if conflicts_logged.insert(device.to_string()) {
        tracing::warn!(
            "{device}: reports MAC {} that belongs to another miner or changes from poll to poll; kept apart by name",
            sample.identity.mac.as_deref().unwrap_or("?")
        );
    }
}

/// The device an event is about, by name: the one known, else one added.
fn event_device(
    tx: &Transaction,
    ids: &mut HashMap<String, NameBinding>,
    device: &str,
    t: f64,
) -> rusqlite::Result<i64> {
    match ids.get(device) {
        Some(binding) => Ok(binding.id),
        None => {
            let id = ledger::device_by_name_or_new(tx, device, t)?;
            ids.insert(device.to_string(), NameBinding::new(None, id));
            Ok(id)
        }
    }
}

/// Saves the open segment of each device that took a sample in this transaction, and the
/// samples of its open block.
fn save_touched_segments(
    tx: &Transaction,
    tracks: &mut HashMap<i64, Track>,
    touched: &HashSet<i64>,
) -> rusqlite::Result<()> {
    for track in tracks.values_mut() {
        if let Some(block) = track.block.as_mut() {
            block.save(tx, track.device_id, true)?;
        }
        if let Some(segment) = &track.segment {
            if touched.contains(&segment.id) {
                ledger::save_segment(tx, segment)?;
            }
        }
    }
    Ok(())
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
    let block = store::last_open_block(tx, device_id)?;
    Ok(Track {
        device_id,
        segment,
        last_point,
        block,
    })
}

/// What became of a sample.
enum Added {
    /// Stored in this segment.
    To(i64),
    /// Not stored: this many seconds older than the device's last sample (a small step
    /// back of the clock).
    Behind(f64),
}

/// Writes one sample into its segment (opening a new one at a boundary).
fn add_sample(
    tx: &Transaction,
    track: &mut Track,
    rules: &SegmentRules,
    t: f64,
    sample: &Sample,
    source: SampleSource,
    rollups: &mut RollupBatch,
) -> rusqlite::Result<Added> {
    let point = Point {
        t,
        frequency_mhz: sample.frequency_mhz,
        core_voltage_mv: sample.core_voltage_mv,
        firmware: sample.identity.firmware.clone(),
        uptime_seconds: sample.uptime_seconds,
    };
    // A clock that steps back further than one sample may stand for (three polls) starts
    // a new segment; a smaller step (a poll or two) drops the few samples that fall behind.
    let step_back = track.last_point.as_ref().map_or(f64::NEG_INFINITY, |last| last.t - t);
    // Behind a clock that stepped back, a moment already stored (the same sample delivered
    // again) is not stored twice.
    if step_back > rules.max_sample_seconds && store::holds_moment(tx, track.device_id, (t * 1000.0).round() / 1000.0)?
    {
        return Ok(Added::Behind(step_back));
    }
    let starts = if step_back > rules.max_sample_seconds {
        Some(Boundary::ClockStep)
    } else if step_back >= 0.0 {
        return Ok(Added::Behind(step_back));
    } else {
        boundary(track.last_point.as_ref(), &point, rules.max_gap_seconds)
    };
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
    // Into the device's open block; a full one, or one of another segment, is written and
    // a new one begun.
    let stored = StoredSample::of(t, dt, sample, source);
    let block = match track.block.take() {
        Some(mut open) if open.segment_id != segment.id || !open.builder.takes(stored.t) => {
            open.save(tx, track.device_id, false)?;
            OpenBlock::new(segment.id, stored.t)
        }
        Some(open) => open,
        None => OpenBlock::new(segment.id, stored.t),
    };
    let block = track.block.insert(block);
    block.builder.push(&stored);
    block.dirty = true;
    rollups.add(track.device_id, t, sample);
    segment.samples += 1;
    segment.ended_at = t;
    segment.last_uptime = sample.uptime_seconds.or(segment.last_uptime);
    if t >= segment.started_at + segment.warmup_seconds {
        segment.steady.add(&reading_of(sample, dt));
    }
    let id = segment.id;
    track.last_point = Some(point);
    Ok(Added::To(id))
}

pub(crate) fn reading_of(sample: &Sample, dt: f64) -> Reading {
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
