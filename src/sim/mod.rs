//! Simulated AxeOS miners on loopback, one listener per miner: `GET /api/system/info` in
//! the miner's firmware dialect (upstream eras, the NerdQAxe fork, Lucky's vendor build),
//! `GET /api/system/asic` where that version has it, the miner's own history
//! (`GET /api/system/statistics` from v2.9 with `statsFrequency` on, `/dashboard` up to
//! v2.10, `GET /api/system/logs` in v2.15), `PATCH /api/system` (applied live, or
//! stored and run only after a restart where the firmware does that), `POST
//! /api/system/restart`, and injectable faults (offline, hang, slow, HTTP 500, garbage,
//! truncated JSON, oversized body; and in what it mines: a dead or weak chip, a hardware
//! fault, a pool that sends no work, …). State advances lazily on each request, so an idle
//! simulated miner costs nothing and 1,000 fit in one process.
//!
//! Test and demo control, not part of AxeOS: `PATCH /__sim` with
//! `{"fault": "hang", "ambient_celsius": 40, "reboot": 0.5, "reset_reason": "brownout"}` on a
//! miner's port (while it is reachable; `reboot` makes it reboot by itself, down for that
//! many seconds, `true` for the usual 3, and say why it booted), or [`SimFleet::set_fault`] /
//! [`SimFleet::reboot`] / [`SimFleet::reboot_because`] in-process. Write quirks
//! of real miners, which combine with any fault: `"hold_asic_celsius": 75` (a temperature
//! stuck there, whatever is done), `"readback_lag": 4` (new settings show in reads only
//! that many seconds after a PATCH), `"patch_error_applies": true` (a PATCH answered 500
//! but applied), `"ignore_pause": true` (pause answered 200, mining goes on),
//! `"basic_auth": {"username": "admin", "password": "pw", "reads": true}` (HTTP Basic auth
//! on every request, or with `"reads": false` on writes only; `null` turns it off); also
//! [`SimFleet::set_quirks`]. The miner's own history: [`SimFleet::set_stats_frequency`],
//! [`SimFleet::statistics_rows`], [`SimFleet::log_text`].

pub mod dialects;
mod history;
mod minerlog;
pub mod physics;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use history::{Filling, RingReading, StatisticsRing};
use minerlog::MinerLog;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use dialects::{Dialect, Identity, ResetReason, Status};
use physics::{Board, Maker, MinerPhysics};

/// How long a restarted miner is unreachable.
pub const RESTART_DOWNTIME: Duration = Duration::from_secs(3);
/// How long a hanging miner holds a request before answering anyway.
const HANG_FOR: Duration = Duration::from_secs(120);
/// The size of an oversized body: twice the exporter's cap.
const OVERSIZED_BYTES: usize = 2 * 1024 * 1024;

/// A way for a simulated miner to misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// The port refuses connections.
    Offline,
    /// Requests are accepted and never answered (for two minutes).
    Hang,
    /// Answers arrive after a delay.
    Slow(Duration),
    /// `500 Internal Server Error`.
    Http500,
    /// `200` with a body that is not JSON.
    Garbage,
    /// `200` with the JSON cut in half.
    Truncated,
    /// `200` with a 2 MiB body.
    Oversized,
    /// Reads are fine; `PATCH /api/system` answers `400` and changes nothing.
    RefusePatch,
    /// Reads are fine; `PATCH /api/system` answers `200` and changes nothing.
    IgnorePatch,
    /// The firmware's flatline bug: the hashrate frozen at its last value, no new shares.
    Flatline,
    /// Hashing reported normally, no shares accepted (the pool gets nothing).
    Starvation,
    /// Full hashrate reported, shares found at half the rate it implies.
    Phantom,
    /// A bogus 200 TH/s hashrate reading.
    Spike,
    /// The voltage regulator reports a fault (`power_fault`); the ASIC stops.
    PowerFault,
    /// Mining paused (`miningPaused`, v2.14+): the ASIC is held in reset.
    Paused,
    /// The last chip of the board stops hashing: its `hashrateMonitor` total reads 0 and
    /// its error counter climbs; the board's hashrate drops by that chip's part.
    DeadChip,
    /// The last chip runs at half its part, with many more errors.
    WeakChip,
    /// The firmware flags a hardware fault (`hardware_fault`, v2.14+) and stops mining.
    HardwareFault,
    /// The pool stops sending work: `workReceived` stands still and no share is accepted,
    /// while the ASIC keeps hashing its last job.
    NoWork,
}

impl Fault {
    /// A fault by its name (as `--fault` and `/__sim` take it), any case, `_` for `-`;
    /// `ok` and `500` are accepted too.
    pub fn parse(text: &str) -> Option<Fault> {
        let text = text.trim().to_ascii_lowercase().replace('_', "-");
        let name = match text.as_str() {
            "ok" => "none",
            "500" => "http500",
            other => other,
        };
        Fault::ALL.into_iter().find(|f| f.name() == name)
    }

    pub const ALL: [Fault; 20] = [
        Fault::None,
        Fault::Offline,
        Fault::Hang,
        Fault::Slow(Duration::from_secs(2)),
        Fault::Http500,
        Fault::Garbage,
        Fault::Truncated,
        Fault::Oversized,
        Fault::RefusePatch,
        Fault::IgnorePatch,
        Fault::Flatline,
        Fault::Starvation,
        Fault::Phantom,
        Fault::Spike,
        Fault::PowerFault,
        Fault::Paused,
        Fault::DeadChip,
        Fault::WeakChip,
        Fault::HardwareFault,
        Fault::NoWork,
    ];

    /// Faults in what the miner reports and finds, not in how it answers HTTP.
    pub fn is_mining_fault(self) -> bool {
        matches!(
            self,
            Fault::Flatline
                | Fault::Starvation
                | Fault::Phantom
                | Fault::Spike
                | Fault::PowerFault
                | Fault::Paused
                | Fault::DeadChip
                | Fault::WeakChip
                | Fault::HardwareFault
                | Fault::NoWork
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Offline => "offline",
            Fault::Hang => "hang",
            Fault::Slow(_) => "slow",
            Fault::Http500 => "http500",
            Fault::Garbage => "garbage",
            Fault::Truncated => "truncated",
            Fault::Oversized => "oversized",
            Fault::RefusePatch => "refuse-patch",
            Fault::IgnorePatch => "ignore-patch",
            Fault::Flatline => "flatline",
            Fault::Starvation => "starvation",
            Fault::Phantom => "phantom",
            Fault::Spike => "spike",
            Fault::PowerFault => "power-fault",
            Fault::Paused => "paused",
            Fault::DeadChip => "dead-chip",
            Fault::WeakChip => "weak-chip",
            Fault::HardwareFault => "hardware-fault",
            Fault::NoWork => "no-work",
        }
    }
}

/// The fault modes as the command line lists and reads them (`--fault 2=hang`).
impl clap::ValueEnum for Fault {
    fn value_variants<'a>() -> &'a [Self] {
        &Fault::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

/// What to simulate for one miner.
#[derive(Debug, Clone)]
pub struct MinerSpec {
    pub board: Board,
    pub dialect: Dialect,
    pub seed: u64,
    pub fault: Fault,
    pub ambient_celsius: f64,
    /// Simulated seconds per real second (speeds up warm-up and thermal lag in tests).
    pub time_scale: f64,
    /// No noise and no passing time: every reading is the same (for golden files).
    pub frozen: bool,
    pub hostname: String,
    /// Starting frequency (MHz), if not the board default.
    pub frequency_mhz: Option<f64>,
    /// Starting core voltage (mV), if not the board default.
    pub core_voltage_mv: Option<u32>,
    /// Serve this body verbatim as `/api/system/info` (a recorded or constructed payload).
    pub replay_info: Option<Bytes>,
    /// The pool's share difficulty, if not 1000 (a low one makes shares frequent in tests).
    pub pool_difficulty: Option<f64>,
    /// Shares at random times, as a pool sees them (default: evenly spaced).
    pub random_shares: bool,
    /// A `version` other than the dialect's (a fork's or a vendor's build string).
    pub firmware_version: Option<String>,
    /// `statsFrequency` (s) of the miner's statistics ring (v2.9+ dialects; the others keep
    /// none); 0 = off, the firmware's default. With it on, the ring holds the hour the
    /// miner has been running when it starts.
    pub stats_frequency_seconds: u16,
}

impl MinerSpec {
    pub fn new(board: Board, dialect: Dialect, seed: u64) -> Self {
        Self {
            board,
            dialect,
            seed,
            fault: Fault::None,
            ambient_celsius: 25.0,
            time_scale: 1.0,
            frozen: false,
            hostname: format!("bitaxe-{}-{seed}", board.name().to_ascii_lowercase()),
            frequency_mhz: None,
            core_voltage_mv: None,
            replay_info: None,
            pool_difficulty: None,
            random_shares: false,
            firmware_version: None,
            stats_frequency_seconds: 0,
        }
    }
}

/// The mix `simulate` cycles through: every dialect, single- and multi-chip boards, every
/// firmware family.
pub const DEFAULT_MIX: [(Board, Dialect); 11] = [
    (Board::Gamma, Dialect::V2_15),
    (Board::Supra, Dialect::V2_10),
    (Board::Ultra, Dialect::V2_4),
    (Board::GammaTurbo, Dialect::V2_9),
    (Board::Hex, Dialect::V2_15),
    (Board::Max, Dialect::V2_0),
    (Board::SupraHex, Dialect::V2_15),
    (Board::NerdQAxePlusPlus, Dialect::NerdQaxe),
    (Board::LuckyLV07, Dialect::Lucky),
    (Board::GammaHex, Dialect::V2_15),
    (Board::NajaDuo, Dialect::V2_15),
];

/// The `i`-th miner of a mix narrowed to a board and/or a firmware: a board takes its
/// maker's firmware (a NerdQAxe++ never runs upstream's), a fork's firmware its own board.
pub(crate) fn mix_pair(i: usize, board: Option<Board>, dialect: Option<Dialect>) -> (Board, Dialect) {
    let (mix_board, mix_dialect) = DEFAULT_MIX[i % DEFAULT_MIX.len()];
    let native = |board: Board| match board.maker() {
        Maker::NerdQaxe => Dialect::NerdQaxe,
        Maker::Lucky => Dialect::Lucky,
        Maker::Upstream if mix_dialect.at_least(Dialect::V2_0) => mix_dialect,
        Maker::Upstream => Dialect::V2_15,
    };
    match (board, dialect) {
        (Some(board), Some(dialect)) => (board, dialect),
        (Some(board), None) => (board, native(board)),
        (None, Some(dialect)) => {
            let fits = match mix_board.maker() {
                Maker::Upstream => dialect.at_least(Dialect::V2_0),
                Maker::NerdQaxe => dialect == Dialect::NerdQaxe,
                Maker::Lucky => dialect == Dialect::Lucky,
            };
            (if fits { mix_board } else { dialect.default_board() }, dialect)
        }
        (None, None) => (mix_board, mix_dialect),
    }
}

struct SimMiner {
    dialect: Dialect,
    firmware_version: Option<String>,
    replay_info: Option<Bytes>,
    identity: Identity,
    time_scale: f64,
    frozen: bool,
    state: Mutex<MinerState>,
    /// `true` while the port accepts connections.
    reachable: watch::Sender<bool>,
}

struct MinerState {
    physics: MinerPhysics,
    last_advance: Instant,
    fault: Fault,
    restarting_until: Option<Instant>,
    requests: u64,
    /// The hashrate a flatline froze at.
    flatline_hashrate: Option<f64>,
    /// `PATCH /api/system` and `POST /api/system/restart` requests received.
    writes: u64,
    /// `POST /api/system/restart` requests received (a reboot of its own is not one).
    restarts: u64,
    /// When the first request arrived (to check how a poller spreads its start).
    first_request: Option<Instant>,
    quirks: Quirks,
    /// The settings reads still show after a PATCH under [`Quirks::readback_lag`], and until when.
    lagging: Option<((f64, f64), Instant)>,
    /// (MHz, mV) written to a firmware that runs them only from the next boot: what its
    /// reads show, while the chip runs what it booted with.
    stored_clock: Option<(f64, f64)>,
    /// Why the miner last booted.
    reset_reason: ResetReason,
    /// The bodies of the last `PATCH /api/system` requests, oldest first.
    patch_bodies: Vec<String>,
    /// The statistics ring (v2.9+ dialects).
    ring: Option<StatisticsRing>,
    /// The firmware's log ring (v2.15 dialect).
    log: Option<MinerLog>,
    /// The `version` the boot log names.
    firmware_version: String,
    /// Simulated time since the last boot (the firmware's `esp_timer` clock), exact: the
    /// statistics task reads on whole seconds of it.
    since_boot: Duration,
    /// While an overheat trip lasts (self-clearing firmware): cool-down cycles logged, and
    /// the clock the trip interrupted.
    cooling: Option<(u32, (f64, f64))>,
    /// Shares the log has shown since boot.
    shares_logged: u64,
}

/// The longest physics step: keeps the thermal curve right over a long idle gap.
const MAX_STEP: Duration = Duration::from_secs(5);
/// The beat of the simulated log's periodic lines: the fan loop and a share in turn, or a
/// cool-down cycle while an overheat lasts (the firmware's own 5-s cycle).
const LOG_BEAT_MS: u64 = 5_000;
/// How much of the hour a simulated miner has run when it starts its log shows: the last
/// minutes, and the boot lines still in the ring before them.
const LOG_PREFILL_MS: u64 = 3 * 60 * 1000;

/// How many PATCH bodies a miner keeps for [`SimFleet::patch_bodies`].
const KEPT_PATCH_BODIES: usize = 64;

/// How a real miner's writes misbehave; any combination, beside any [`Fault`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quirks {
    /// The ASIC temperature reads this, whatever the settings (a sensor or a room stuck hot).
    pub hold_asic_celsius: Option<f64>,
    /// After a PATCH, reads show the old frequency and voltage for this long.
    pub readback_lag: Option<Duration>,
    /// `PATCH /api/system` applies the settings and answers `500`.
    pub patch_error_applies: bool,
    /// `POST /api/system/pause` answers `200` and mining goes on.
    pub ignore_pause: bool,
    /// The miner asks for HTTP Basic auth (firmware with the upstream AxeOS auth pull
    /// request, or a fork that has it).
    pub basic_auth: Option<SimAuth>,
}

/// The credentials a simulated miner asks for, and what they guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimAuth {
    pub username: String,
    pub password: String,
    /// Every request (`authReadRequired`); `false`: only requests that change something
    /// (any method but GET, HEAD and OPTIONS).
    pub reads: bool,
}

impl SimAuth {
    /// Whether `request` may go on: it carries these credentials, or it is a read and
    /// only writes are locked. A CORS preflight never carries credentials and is let by.
    fn allows<B>(&self, request: &Request<B>) -> bool {
        let method = request.method();
        if method == Method::OPTIONS || (!self.reads && (method == Method::GET || method == Method::HEAD)) {
            return true;
        }
        use base64::Engine as _;
        let expected = format!("{}:{}", self.username, self.password);
        request
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .and_then(|(_, encoded)| base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok())
            .is_some_and(|decoded| decoded == expected.as_bytes())
    }
}

/// What the firmware's auth gate answers (ESP-IDF's `httpd_resp_send_err` body).
fn unauthorized() -> Reply {
    let mut response = reply(StatusCode::UNAUTHORIZED, "text/html", "Unauthorized");
    response.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"AxeOS\""),
    );
    response
}

impl SimMiner {
    fn new(spec: &MinerSpec) -> Self {
        let board = spec.board.spec();
        let mut physics = MinerPhysics::new(board, spec.seed, !spec.frozen);
        physics.ambient_celsius = spec.ambient_celsius;
        physics.overheat_self_clears = spec.dialect.overheat_self_clears();
        physics.random_shares = spec.random_shares && !spec.frozen;
        if let Some(f) = spec.frequency_mhz {
            physics.frequency_mhz = f;
        }
        if let Some(v) = spec.core_voltage_mv {
            physics.core_voltage_mv = f64::from(v);
        }
        if let Some(difficulty) = spec.pool_difficulty.filter(|d| *d > 0.0) {
            physics.pool_difficulty = difficulty;
        }
        // A fault given at start acts on the chips and the pool as one set later does.
        fault_in_physics(&mut physics, spec.fault);
        physics.settle();
        // A miner that has been running a while: an hour in, shares found.
        physics.advance(RUNNING_AT_START);
        physics.settle();
        // An odd multiplier is a bijection modulo 2^24: seeds that differ below 2^24 get
        // different MACs, as real miners do, and neighbouring seeds do not look alike.
        let mac_tail = spec.seed.wrapping_mul(0x9E37_79B9) & 0xFF_FFFF;
        let (reachable, _) = watch::channel(spec.fault != Fault::Offline);
        Self {
            dialect: spec.dialect,
            firmware_version: spec.firmware_version.clone(),
            replay_info: spec.replay_info.clone(),
            identity: Identity {
                hostname: spec.hostname.clone(),
                mac: format!(
                    "F4:12:FA:{:02X}:{:02X}:{:02X}",
                    (mac_tail >> 16) & 0xFF,
                    (mac_tail >> 8) & 0xFF,
                    mac_tail & 0xFF
                ),
            },
            time_scale: spec.time_scale.max(0.0),
            frozen: spec.frozen,
            state: Mutex::new(MinerState {
                physics,
                last_advance: Instant::now(),
                fault: spec.fault,
                restarting_until: None,
                requests: 0,
                flatline_hashrate: None,
                writes: 0,
                restarts: 0,
                first_request: None,
                quirks: Quirks::default(),
                lagging: None,
                stored_clock: None,
                reset_reason: ResetReason::PowerOn,
                patch_bodies: Vec::new(),
                ring: Filling::of(spec.dialect)
                    .map(|filling| StatisticsRing::new(filling, spec.dialect, spec.stats_frequency_seconds)),
                log: spec.dialect.has_log_endpoint().then(MinerLog::default),
                firmware_version: spec
                    .firmware_version
                    .clone()
                    .unwrap_or_else(|| spec.dialect.version().to_string()),
                since_boot: RUNNING_AT_START,
                cooling: None,
                shares_logged: 0,
            }),
            reachable,
        }
        .with_history(spec)
    }

    /// The log of the boot an hour ago and, unless frozen, the ring and the log's latest
    /// lines as that hour of running left them.
    fn with_history(self, spec: &MinerSpec) -> Self {
        {
            let mut state = self.lock();
            let state = &mut *state;
            let facts = boot_facts(state);
            if let Some(log) = state.log.as_mut() {
                minerlog::boot(log, &facts);
            }
            if !spec.frozen {
                state.replay_running_hour();
            }
            log_fault_change(state, Fault::None, spec.fault);
        }
        self
    }

    fn lock(&self) -> MutexGuard<'_, MinerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings the simulated clock up to now and returns the locked state.
    fn advanced(&self) -> MutexGuard<'_, MinerState> {
        let mut state = self.lock();
        let now = Instant::now();
        if self.frozen {
            state.physics.settle();
        } else {
            let dt = now
                .saturating_duration_since(state.last_advance)
                .mul_f64(self.time_scale);
            state.run_for(dt);
        }
        state.last_advance = now;
        if state.restarting_until.is_some_and(|until| now >= until) {
            state.restarting_until = None;
        }
        state
    }

    fn update_reachability(&self, state: &MinerState) {
        let reachable = state.fault != Fault::Offline && state.restarting_until.is_none();
        self.reachable.send_if_modified(|current| {
            let changed = *current != reachable;
            *current = reachable;
            changed
        });
    }

    fn set_fault(&self, fault: Fault) {
        let mut state = self.advanced();
        let before = state.fault;
        log_fault_change(&mut state, before, fault);
        state.fault = fault;
        fault_in_physics(&mut state.physics, fault);
        self.update_reachability(&state);
    }

    /// A reboot: counters since boot start again, settings stored for the next boot now
    /// run, and the firmware says why it booted. The port closes for `downtime` once the
    /// caller updates the reachability (at once, or after a reply is on its way).
    fn start_reboot(&self, downtime: Duration, reason: ResetReason) {
        let mut state = self.advanced();
        reboot_state(&mut state, reason, false);
        state.restarting_until = (downtime > Duration::ZERO).then(|| Instant::now() + downtime);
    }

    /// Closes the port just after the answer to this request is on its way, if the miner
    /// is restarting.
    fn go_down_after_reply(&self) {
        let until = self.lock().restarting_until;
        let reachable = self.reachable.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if until.is_some() {
                reachable.send_replace(false);
            }
        });
    }
}

/// What any reboot does to a miner: the physics starts a new boot on the settings stored
/// for it, the boot clock starts again, the statistics ring (RAM) is gone, the log keeps
/// what a soft reset leaves, and the reason is kept for the body. `by_api`: asked for by
/// `POST /api/system/restart`.
fn reboot_state(state: &mut MinerState, reason: ResetReason, by_api: bool) {
    let at_ms = state.since_boot_ms();
    if let Some(log) = state.log.as_mut() {
        minerlog::before_reset(log, at_ms, reason, by_api);
        log.reset(reason);
    }
    state.physics.reboot();
    state.since_boot = Duration::ZERO;
    if let Some(ring) = state.ring.as_mut() {
        ring.reboot();
    }
    state.cooling = None;
    state.shares_logged = 0;
    if let Some((frequency, voltage)) = state.stored_clock.take() {
        state.physics.frequency_mhz = frequency;
        state.physics.core_voltage_mv = voltage;
    }
    state.reset_reason = reason;
    let facts = boot_facts(state);
    if let Some(log) = state.log.as_mut() {
        minerlog::boot(log, &facts);
    }
}

/// What the boot log names: the firmware, the clock it starts on, the pool's difficulty.
fn boot_facts(state: &MinerState) -> minerlog::BootFacts {
    let physics = &state.physics;
    minerlog::BootFacts {
        version: state.firmware_version.clone(),
        chips: physics.spec.chips,
        frequency_mhz: physics.frequency_mhz,
        expected_ghs: physics::expected_ghs(&physics.spec, physics.frequency_mhz),
        pool_difficulty: physics.pool_difficulty,
        reason: state.reset_reason,
    }
}

/// The lines the firmware logs when a fault starts or ends (a regulator fault, a hardware
/// fault, a pause; mining starting again after the last two).
fn log_fault_change(state: &mut MinerState, before: Fault, after: Fault) {
    let at_ms = state.since_boot_ms();
    let chips = state.physics.spec.chips;
    let Some(log) = state.log.as_mut() else { return };
    if before == after {
        return;
    }
    let stops = |fault: Fault| matches!(fault, Fault::Paused | Fault::HardwareFault);
    match after {
        Fault::PowerFault => minerlog::power_fault(log, at_ms),
        Fault::HardwareFault => minerlog::hardware_fault(log, at_ms),
        Fault::Paused if !stops(before) => minerlog::mining_stopped(log, at_ms),
        _ => {}
    }
    if stops(before) && !stops(after) {
        minerlog::mining_started(log, at_ms, chips);
    }
}

/// How long a simulated miner has been running when it starts.
const RUNNING_AT_START: Duration = Duration::from_secs(3600);

impl MinerState {
    fn since_boot_ms(&self) -> u64 {
        u64::try_from(self.since_boot.as_millis()).unwrap_or(u64::MAX)
    }

    /// Lets `dt` of simulated time pass: the physics in steps, the statistics task's
    /// readings at their instants, the firmware's lines at theirs; then what the pool saw
    /// of the shares under a mining fault.
    fn run_for(&mut self, dt: Duration) {
        let shares_before = self.physics.shares_accepted;
        let mut remaining = dt;
        while !remaining.is_zero() {
            let now_ms = self.since_boot_ms();
            let reading_at = self.ring.as_ref().and_then(|ring| ring.next_reading_after(now_ms));
            let beat_at = self.log.as_ref().map(|_| (now_ms / LOG_BEAT_MS + 1) * LOG_BEAT_MS);
            // Both lie past now (whole ms after it), so every step moves the clock.
            let mut step = remaining.min(MAX_STEP);
            for due in [reading_at, beat_at].into_iter().flatten() {
                step = step.min(Duration::from_millis(due).saturating_sub(self.since_boot));
            }
            let was_overheated = self.physics.overheat;
            let clock_before = (self.physics.frequency_mhz, self.physics.core_voltage_mv);
            self.physics.advance(step);
            self.since_boot += step;
            remaining = remaining.saturating_sub(step);
            let at_ms = self.since_boot_ms();
            self.log_overheat_change(was_overheated, clock_before, at_ms);
            if reading_at == Some(at_ms) {
                self.take_reading(at_ms);
            }
            if beat_at == Some(at_ms) {
                self.log_beat(at_ms);
            }
        }
        // What the pool sees under a mining fault.
        let found = self.physics.shares_accepted - shares_before;
        self.physics.shares_accepted = match self.fault {
            Fault::Flatline
            | Fault::Starvation
            | Fault::PowerFault
            | Fault::Paused
            | Fault::HardwareFault
            | Fault::NoWork => shares_before,
            Fault::Phantom => shares_before + found / 2.0,
            _ => self.physics.shares_accepted,
        };
    }

    /// The ring and the log's latest lines as the hour of running before the start left
    /// them. The physics crossed that hour in one step (a seed's readings stay as they
    /// were), settled: the readings here are the settled miner's.
    fn replay_running_hour(&mut self) {
        let now_ms = self.since_boot_ms();
        let mut due = self.ring.as_ref().and_then(|ring| ring.next_reading_after(0));
        while let Some(at_ms) = due.filter(|at| *at <= now_ms) {
            self.take_reading(at_ms);
            due = self.ring.as_ref().and_then(|ring| ring.next_reading_after(at_ms));
        }
        if self.log.is_some() {
            let mut beat = (now_ms.saturating_sub(LOG_PREFILL_MS) / LOG_BEAT_MS + 1) * LOG_BEAT_MS;
            while beat <= now_ms {
                self.log_beat(beat);
                beat += LOG_BEAT_MS;
            }
        }
    }

    /// The statistics task's reading at `at_ms`: what the info body would show then.
    fn take_reading(&mut self, at_ms: u64) {
        let reading = observed_reading(self);
        let reading = RingReading::observe(&self.physics, &reading);
        if let Some(ring) = self.ring.as_mut() {
            ring.record(at_ms, reading);
        }
    }

    /// The lines of an overheat trip that just happened, or of the retry after it (the
    /// self-clearing firmware's; the latching eras keep no log the simulator serves).
    fn log_overheat_change(&mut self, was_overheated: bool, clock_before: (f64, f64), at_ms: u64) {
        if self.log.is_none() || was_overheated == self.physics.overheat {
            return;
        }
        if self.physics.overheat {
            let vr_celsius = self.physics.read().vr_celsius;
            let asic_celsius = self.physics.asic_celsius;
            if let Some(log) = self.log.as_mut() {
                minerlog::overheat_trip(log, at_ms, vr_celsius, asic_celsius);
            }
            self.cooling = Some((0, clock_before));
        } else if let Some((cycles, was)) = self.cooling.take() {
            let now = (self.physics.frequency_mhz, self.physics.core_voltage_mv);
            let chips = self.physics.spec.chips;
            if let Some(log) = self.log.as_mut() {
                minerlog::overheat_recovered(log, at_ms, cycles, was, now, chips);
            }
        }
    }

    /// The periodic lines due at `at_ms`: a cool-down cycle while an overheat lasts;
    /// otherwise the fan loop's line and a share in turn, as far as the miner runs.
    fn log_beat(&mut self, at_ms: u64) {
        if self.physics.overheat {
            // (An overheat the miner started in has no trip logged, but cools down alike.)
            let clock = (self.physics.frequency_mhz, self.physics.core_voltage_mv);
            let (cycles, _) = self.cooling.get_or_insert((0, clock));
            *cycles += 1;
            let cycle = *cycles;
            let vr_celsius = self.physics.read().vr_celsius;
            if let Some(log) = self.log.as_mut() {
                minerlog::cooling_cycle(log, at_ms, cycle, vr_celsius);
            }
            return;
        }
        self.cooling = None;
        let physics = &self.physics;
        let fault = self.fault;
        let Some(log) = self.log.as_mut() else { return };
        if (at_ms / LOG_BEAT_MS).is_multiple_of(2) {
            if physics.fan.auto && fault != Fault::HardwareFault {
                minerlog::fan_loop(
                    log,
                    at_ms,
                    physics.asic_celsius,
                    physics.fan.target_celsius,
                    physics.fan_duty * 100.0,
                );
            }
            return;
        }
        let hashing = !matches!(
            fault,
            Fault::PowerFault | Fault::Paused | Fault::HardwareFault | Fault::Flatline | Fault::NoWork
        );
        if hashing {
            self.shares_logged += 1;
            let share = minerlog::Share {
                number: self.shares_logged,
                chips: physics.spec.chips,
                small_cores: physics.spec.small_cores,
                pool_difficulty: physics.pool_difficulty,
                answered: fault != Fault::Starvation,
            };
            minerlog::share(log, at_ms, &share);
        }
    }
}

/// A running set of simulated miners.
pub struct SimFleet {
    miners: Vec<Arc<SimMiner>>,
    addresses: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl std::fmt::Debug for SimFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimFleet").field("addresses", &self.addresses).finish()
    }
}

/// What went wrong starting simulated miners.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address}: {source}")]
pub struct SimError {
    pub address: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

impl SimFleet {
    /// Starts one listener per spec on 127.0.0.1: consecutive ports from `base_port`, or
    /// ephemeral ports when `base_port` is `None` or 0 (port 0 means "any", so 0, 1, 2 …
    /// would bind privileged ports from the second miner on).
    pub async fn start(specs: &[MinerSpec], base_port: Option<u16>) -> Result<SimFleet, SimError> {
        let (stop, _) = watch::channel(false);
        let mut fleet = SimFleet {
            miners: Vec::with_capacity(specs.len()),
            addresses: Vec::with_capacity(specs.len()),
            stop,
            tasks: JoinSet::new(),
        };
        for (i, spec) in specs.iter().enumerate() {
            let port = match base_port.filter(|base| *base != 0) {
                Some(base) => u16::try_from(usize::from(base) + i).map_err(|_| SimError {
                    address: SocketAddr::from(([127, 0, 0, 1], base)),
                    source: std::io::Error::other("port range passes 65535"),
                })?,
                None => 0,
            };
            let requested = SocketAddr::from(([127, 0, 0, 1], port));
            let listener = TcpListener::bind(requested).await.map_err(|source| SimError {
                address: requested,
                source,
            })?;
            let address = listener.local_addr().map_err(|source| SimError {
                address: requested,
                source,
            })?;
            let miner = Arc::new(SimMiner::new(spec));
            fleet
                .tasks
                .spawn(run_miner(miner.clone(), listener, address, fleet.stop.subscribe()));
            fleet.miners.push(miner);
            fleet.addresses.push(address);
        }
        Ok(fleet)
    }

    pub fn addresses(&self) -> &[SocketAddr] {
        &self.addresses
    }

    pub fn set_fault(&self, index: usize, fault: Fault) {
        if let Some(miner) = self.miners.get(index) {
            miner.set_fault(fault);
        }
    }

    pub fn set_ambient(&self, index: usize, celsius: f64) {
        if let Some(miner) = self.miners.get(index) {
            miner.advanced().physics.ambient_celsius = celsius;
        }
    }

    /// Sets a miner's write quirks (replacing the ones it had).
    pub fn set_quirks(&self, index: usize, quirks: Quirks) {
        if let Some(miner) = self.miners.get(index) {
            let mut state = miner.advanced();
            if quirks.readback_lag.is_none() {
                state.lagging = None;
            }
            state.quirks = quirks;
        }
    }

    /// Requests a miner has answered or dropped (for tests and the benchmark).
    pub fn requests(&self, index: usize) -> u64 {
        self.miners.get(index).map_or(0, |m| m.lock().requests)
    }

    /// Requests that change a miner (`PATCH /api/system`, `POST /api/system/restart`) it
    /// has received, applied or not.
    pub fn writes(&self, index: usize) -> u64 {
        self.miners.get(index).map_or(0, |m| m.lock().writes)
    }

    /// The readings `GET /api/system/statistics` of a miner serves now (0 with statistics
    /// off, and for a dialect without the ring: before v2.9, the forks).
    pub fn statistics_rows(&self, index: usize) -> usize {
        self.miners
            .get(index)
            .and_then(|m| m.advanced().ring.as_ref().map(StatisticsRing::visible_rows))
            .unwrap_or(0)
    }

    /// Sets a miner's `statsFrequency` (s), as `PATCH /api/system {"statsFrequency": N}`
    /// does: 0 turns its statistics off (and empties the ring from v2.10 on). Nothing for a
    /// dialect without the ring.
    pub fn set_stats_frequency(&self, index: usize, seconds: u16) {
        if let Some(miner) = self.miners.get(index) {
            if let Some(ring) = miner.advanced().ring.as_mut() {
                ring.set_frequency(seconds);
            }
        }
    }

    /// A miner's log as `GET /api/system/logs` serves it: ESP-IDF lines with their colour
    /// escapes, oldest first; empty for a dialect without the endpoint (all but v2.15).
    pub fn log_text(&self, index: usize) -> String {
        self.miners
            .get(index)
            .and_then(|m| m.advanced().log.as_ref().map(MinerLog::text))
            .unwrap_or_default()
    }

    /// `POST /api/system/restart` requests a miner has received.
    pub fn restarts(&self, index: usize) -> u64 {
        self.miners.get(index).map_or(0, |m| m.lock().restarts)
    }

    /// Makes a miner reboot by itself, unreachable for `downtime` (its settings stay); it
    /// says it was a software reset.
    pub fn reboot(&self, index: usize, downtime: Duration) {
        self.reboot_because(index, downtime, ResetReason::Software);
    }

    /// Makes a miner reboot by itself for `reason` (a brownout, a watchdog, a panic),
    /// unreachable for `downtime`.
    pub fn reboot_because(&self, index: usize, downtime: Duration, reason: ResetReason) {
        if let Some(miner) = self.miners.get(index) {
            miner.start_reboot(downtime, reason);
            miner.update_reachability(&miner.lock());
        }
    }

    /// The bodies of the last `PATCH /api/system` requests a miner received, oldest first
    /// (what a test checks the JSON types of: a frequency sent as `600`, not `600.0`).
    pub fn patch_bodies(&self, index: usize) -> Vec<String> {
        self.miners
            .get(index)
            .map_or_else(Vec::new, |m| m.lock().patch_bodies.clone())
    }

    /// The (MHz, mV) a miner stored for its next boot and does not run yet (firmware that
    /// applies clock settings only after a restart), if any.
    pub fn stored_clock(&self, index: usize) -> Option<(f64, f64)> {
        self.miners.get(index).and_then(|m| m.lock().stored_clock)
    }

    /// Sends `PATCH /api/system` as a user would in AxeOS's settings page (what a test
    /// uses to set a miner's starting settings without going through the exporter).
    pub fn set_clock(&self, index: usize, frequency_mhz: f64, core_voltage_mv: f64) {
        if let Some(miner) = self.miners.get(index) {
            let mut state = miner.advanced();
            state.physics.frequency_mhz = frequency_mhz;
            state.physics.core_voltage_mv = core_voltage_mv;
            state.stored_clock = None;
        }
    }

    /// When a miner got its first request, if it got one.
    pub fn first_request_at(&self, index: usize) -> Option<Instant> {
        self.miners.get(index).and_then(|m| m.lock().first_request)
    }

    /// Current (frequency MHz, core mV, ASIC °C) of a miner: what its chips run, not what
    /// a firmware that applies at boot has stored and reports.
    pub fn clock_and_temperature(&self, index: usize) -> Option<(f64, f64, f64)> {
        let miner = self.miners.get(index)?;
        let state = miner.advanced();
        Some((
            state.physics.frequency_mhz,
            state.physics.core_voltage_mv,
            state.physics.asic_celsius,
        ))
    }

    /// Stops every listener and connection.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn run_miner(miner: Arc<SimMiner>, listener: TcpListener, address: SocketAddr, mut stop: watch::Receiver<bool>) {
    let mut listener = Some(listener);
    let mut reachable = miner.reachable.subscribe();
    let mut connections = JoinSet::new();
    loop {
        if !*reachable.borrow_and_update() {
            // Offline or restarting: close the port so connections are refused.
            listener = None;
            connections.abort_all();
            let wait_restart = async {
                loop {
                    let until = miner.lock().restarting_until;
                    match until {
                        Some(until) => tokio::time::sleep_until(until.into()).await,
                        None => {
                            // A short reboot a read has already ended: open again, unless
                            // the miner is offline (then wait for that to change).
                            miner.update_reachability(&miner.advanced());
                            std::future::pending::<()>().await
                        }
                    }
                    let state = miner.advanced();
                    miner.update_reachability(&state);
                    if state.restarting_until.is_none() {
                        return;
                    }
                }
            };
            tokio::select! {
                _ = reachable.changed() => continue,
                _ = wait_restart => continue,
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        let active = match &listener {
            Some(l) => l,
            None => match TcpListener::bind(address).await {
                Ok(l) => listener.insert(l),
                Err(e) => {
                    tracing::warn!("simulator: cannot re-open {address}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        tokio::select! {
            accepted = active.accept() => {
                if let Ok((stream, _)) = accepted {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(miner.clone(), stream));
                }
            }
            _ = reachable.changed() => {}
            _ = stop.wait_for(|s| *s) => return,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(miner: Arc<SimMiner>, stream: tokio::net::TcpStream) {
    let service = hyper::service::service_fn(move |request| {
        let miner = miner.clone();
        async move { Ok::<_, Infallible>(handle(&miner, request).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert("access-control-allow-origin", HeaderValue::from_static("*"));
    response
}

fn json_reply(status: StatusCode, value: &serde_json::Value, pretty: bool) -> Reply {
    let body = if pretty {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    };
    reply(status, "application/json", body.unwrap_or_default())
}

async fn handle(miner: &SimMiner, request: Request<Incoming>) -> Reply {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    if path == "/__sim" {
        return control(miner, request).await;
    }
    let (fault, auth) = count_request(miner, &method, &path);
    // The auth gate answers before any handler (and so before any handler's fault).
    if auth.is_some_and(|auth| !auth.allows(&request)) {
        return unauthorized();
    }
    if let Some(reply) = fault_before_reply(fault, &method).await {
        return reply;
    }

    let dialect = miner.dialect;
    let response = match (&method, path.as_str()) {
        (&Method::GET, "/api/system/info") if miner.replay_info.is_some() => reply(
            StatusCode::OK,
            "application/json",
            miner.replay_info.clone().unwrap_or_default(),
        ),
        (&Method::GET, "/api/system/info") => {
            let body = system_info_body(miner);
            json_reply(StatusCode::OK, &body, dialect.pretty())
        }
        (&Method::GET, "/api/system/asic") if dialect.has_asic_endpoint() => {
            let body = dialects::asic_info(dialect, &miner.advanced().physics);
            json_reply(StatusCode::OK, &body, false)
        }
        (&Method::GET, "/api/system/statistics") if Filling::of(dialect).is_some() => {
            let state = miner.advanced();
            let now_ms = state.since_boot_ms();
            let body = state
                .ring
                .as_ref()
                .map(|ring| ring.body(dialect, now_ms, request.uri().query()));
            json_reply(StatusCode::OK, &body.unwrap_or_default(), false)
        }
        (&Method::GET, "/api/system/statistics/dashboard") if Filling::of(dialect) == Some(Filling::EveryFrequency) => {
            let state = miner.advanced();
            let now_ms = state.since_boot_ms();
            let body = state.ring.as_ref().map(|ring| ring.dashboard_body(dialect, now_ms));
            json_reply(StatusCode::OK, &body.unwrap_or_default(), false)
        }
        (&Method::GET, "/api/system/logs") if dialect.has_log_endpoint() => {
            let text = miner.advanced().log.as_ref().map(MinerLog::text).unwrap_or_default();
            let mut r = reply(StatusCode::OK, "text/plain", text);
            r.headers_mut().insert(
                hyper::header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"bitaxe-logs.txt\""),
            );
            r
        }
        (&Method::PATCH, "/api/system") => patch_settings(miner, request).await,
        (&Method::POST, "/api/system/pause") | (&Method::POST, "/api/system/resume") if dialect.has_pause() => {
            pause_or_resume(miner, path.ends_with("pause"))
        }
        (&Method::POST, "/api/system/restart") => restart(miner),
        (&Method::OPTIONS, _) => reply(StatusCode::OK, "text/plain", ""),
        (_, "/") => reply(
            StatusCode::OK,
            "text/html",
            "<html><body>AxeOS (simulated)</body></html>",
        ),
        (_, p) if p.starts_with("/api/") && dialect.unknown_path_is_404() => json_reply(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "unknown route"}),
            false,
        ),
        _ => {
            let mut r = reply(StatusCode::FOUND, "text/html", "Redirect to the captive portal");
            r.headers_mut().insert(LOCATION, HeaderValue::from_static("/"));
            r
        }
    };

    fault_after_reply(fault, response).await
}

/// Counts a request (and a write) and returns the fault and the auth gate it meets.
fn count_request(miner: &SimMiner, method: &Method, path: &str) -> (Fault, Option<SimAuth>) {
    let mut state = miner.lock();
    state.requests += 1;
    let writes = matches!(
        (method, path),
        (&Method::PATCH, "/api/system")
            | (
                &Method::POST,
                "/api/system/restart" | "/api/system/pause" | "/api/system/resume"
            )
    );
    if writes {
        state.writes += 1;
    }
    state.first_request.get_or_insert_with(Instant::now);
    (state.fault, state.quirks.basic_auth.clone())
}

/// What a fault does before any handler: waits (hang, slow), or answers in its place (an
/// error page, garbage, a refused or ignored PATCH).
async fn fault_before_reply(fault: Fault, method: &Method) -> Option<Reply> {
    match fault {
        Fault::Hang => {
            tokio::time::sleep(HANG_FOR).await;
            None
        }
        Fault::Slow(delay) => {
            tokio::time::sleep(delay).await;
            None
        }
        Fault::Http500 => Some(reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/html",
            "Internal Server Error",
        )),
        Fault::Garbage => Some(reply(
            StatusCode::OK,
            "application/json",
            &b"<html><body>\x00\xff\xfe not json {{{ \x1b[31m"[..],
        )),
        Fault::RefusePatch if method == Method::PATCH => {
            Some(reply(StatusCode::BAD_REQUEST, "text/html", "Wrong API input"))
        }
        Fault::IgnorePatch if method == Method::PATCH => Some(reply(StatusCode::OK, "text/plain", "")),
        Fault::None
        | Fault::Offline
        | Fault::Truncated
        | Fault::Oversized
        | Fault::RefusePatch
        | Fault::IgnorePatch
        | Fault::Flatline
        | Fault::Starvation
        | Fault::Phantom
        | Fault::Spike
        | Fault::PowerFault
        | Fault::Paused
        | Fault::DeadChip
        | Fault::WeakChip
        | Fault::HardwareFault
        | Fault::NoWork => None,
    }
}

/// `GET /api/system/info` in the miner's dialect: the physics' reading bent by the fault
/// and the quirks, with the clock the firmware would read back.
fn system_info_body(miner: &SimMiner) -> serde_json::Value {
    let dialect = miner.dialect;
    let mut state = miner.advanced();
    let reading = observed_reading(&mut state);
    let fault = state.fault;
    if state.lagging.is_some_and(|(_, until)| Instant::now() >= until) {
        state.lagging = None;
    }
    let status = Status {
        reset_reason: state.reset_reason,
        power_fault: fault == Fault::PowerFault,
        hardware_fault: fault == Fault::HardwareFault,
        paused: fault == Fault::Paused,
    };
    let mut body = dialects::system_info(dialect, &miner.identity, &state.physics, &reading, &status);
    if let serde_json::Value::Object(fields) = &mut body {
        if let Some(version) = &miner.firmware_version {
            fields.insert("version".into(), serde_json::json!(version));
        }
        if let Some(ring) = &state.ring {
            fields.insert("statsFrequency".into(), serde_json::json!(ring.frequency_s()));
            if dialect.at_least(Dialect::V2_15) {
                fields.insert("statsLimit".into(), serde_json::json!(history::MAX_ROWS));
            }
        }
        // Firmware that runs new settings from the next boot reads back what it stored.
        if let Some((frequency, voltage)) = state.stored_clock {
            fields.insert("frequency".into(), serde_json::json!(frequency.round() as i64));
            fields.insert("coreVoltage".into(), serde_json::json!(voltage.round() as i64));
        }
        if let Some(((frequency, voltage), _)) = state.lagging {
            fields.insert("frequency".into(), serde_json::json!(frequency));
            fields.insert("coreVoltage".into(), serde_json::json!(voltage.round() as i64));
        }
    }
    body
}

/// The physics' reading now as the firmware reports it (the info body and the statistics
/// task alike): bent by the fault and the quirks.
fn observed_reading(state: &mut MinerState) -> physics::Reading {
    let mut reading = state.physics.read();
    match state.fault {
        Fault::Flatline => {
            reading.hashrate_ghs = *state.flatline_hashrate.get_or_insert(reading.hashrate_ghs);
        }
        Fault::Spike => reading.hashrate_ghs = 200_000.0,
        Fault::PowerFault | Fault::Paused | Fault::HardwareFault => {
            reading.hashrate_ghs = 0.0;
            reading.power_watts = 2.5;
            reading.error_percent = 0.0;
        }
        _ => state.flatline_hashrate = None,
    }
    if let Some(held) = state.quirks.hold_asic_celsius {
        reading.asic_celsius = held;
    }
    reading
}

/// `POST /api/system/pause` or `/resume` (a quirk may ignore the pause).
fn pause_or_resume(miner: &SimMiner, pause: bool) -> Reply {
    {
        let mut state = miner.advanced();
        if !(pause && state.quirks.ignore_pause) {
            let (before, after) = (state.fault, if pause { Fault::Paused } else { Fault::None });
            log_fault_change(&mut state, before, after);
            state.fault = after;
        }
    }
    let message = if pause { "Mining paused" } else { "Mining resumed" };
    json_reply(StatusCode::OK, &serde_json::json!({ "message": message }), false)
}

/// `POST /api/system/restart`: a software reboot after the reply, down for
/// RESTART_DOWNTIME.
fn restart(miner: &SimMiner) -> Reply {
    {
        let mut state = miner.advanced();
        state.restarts += 1;
        reboot_state(&mut state, ResetReason::Software, true);
        state.restarting_until = Some(Instant::now() + RESTART_DOWNTIME);
    }
    let reply = if miner.dialect.at_least(Dialect::V2_15) {
        json_reply(
            StatusCode::OK,
            &serde_json::json!({"message": "System will restart shortly."}),
            false,
        )
    } else {
        reply(StatusCode::OK, "text/plain", "System will restart shortly.")
    };
    miner.go_down_after_reply();
    reply
}

/// What a fault does to a successful reply: cut in half, or replaced by an oversized body.
async fn fault_after_reply(fault: Fault, response: Reply) -> Reply {
    match fault {
        Fault::Truncated if response.status() == StatusCode::OK => {
            let (parts, body) = response.into_parts();
            let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let cut = bytes.slice(..bytes.len() / 2);
            Response::from_parts(parts, Full::new(cut))
        }
        Fault::Oversized if response.status() == StatusCode::OK => {
            let mut padded = String::with_capacity(OVERSIZED_BYTES + 64);
            padded.push_str("{\"hashRate\": 1.0, \"padding\": \"");
            padded.extend(std::iter::repeat_n('x', OVERSIZED_BYTES));
            padded.push_str("\"}");
            reply(StatusCode::OK, "application/json", padded)
        }
        _ => response,
    }
}

/// A request body as JSON (at most 64 KiB), with its text.
async fn read_json_text(request: Request<Incoming>) -> Option<(serde_json::Value, String)> {
    let body = Limited::new(request.into_body(), 64 * 1024)
        .collect()
        .await
        .ok()?
        .to_bytes();
    let value = serde_json::from_slice(&body).ok()?;
    Some((value, String::from_utf8_lossy(&body).into_owned()))
}

async fn read_json(request: Request<Incoming>) -> Option<serde_json::Value> {
    read_json_text(request).await.map(|(value, _)| value)
}

/// `PATCH /api/system`: frequency, coreVoltage, fan settings, overheat reset. Firmware
/// that runs clock settings from the next boot stores them (its reads show them at once)
/// and the chips keep their clock until a restart; the NerdQAxe fork reads a clock setting
/// only when it is a JSON integer, and ignores anything else without a word.
async fn patch_settings(miner: &SimMiner, request: Request<Incoming>) -> Reply {
    let dialect = miner.dialect;
    let Some((serde_json::Value::Object(body), text)) = read_json_text(request).await else {
        return reply(StatusCode::BAD_REQUEST, "text/html", "Invalid JSON");
    };
    {
        let mut state = miner.lock();
        if state.patch_bodies.len() >= KEPT_PATCH_BODIES {
            state.patch_bodies.remove(0);
        }
        state.patch_bodies.push(text);
    }
    let number = |key: &str| {
        body.get(key)
            .and_then(|v| v.as_f64().or_else(|| v.as_bool().map(f64::from)))
    };
    // ArduinoJson's `is<uint16_t>()`: an integer in 0..=65535, not `600.0`, not `"600"`.
    let clock = |key: &str| {
        if dialect.integer_settings_only() {
            body.get(key)
                .and_then(serde_json::Value::as_u64)
                .filter(|v| (1..=u64::from(u16::MAX)).contains(v))
                .map(|v| v as f64)
        } else {
            number(key)
        }
    };
    let in_range = |key: &str, low: f64, high: f64| number(key).is_none_or(|v| (low..=high).contains(&v));
    if dialect.validates_patch()
        && !(in_range("frequency", 1.0, 65535.0)
            && in_range("coreVoltage", 1.0, 65535.0)
            && in_range("manualFanSpeed", 0.0, 100.0)
            && in_range("autofanspeed", 0.0, 1.0)
            && in_range("statsFrequency", 0.0, 65535.0))
    {
        return reply(StatusCode::BAD_REQUEST, "text/html", "Wrong API input");
    }
    let mut state = miner.advanced();
    if let Some(lag) = state.quirks.readback_lag {
        // Reads keep showing what ran before the first PATCH of a burst.
        let shown = match state.lagging {
            Some((shown, _)) => shown,
            None => (state.physics.frequency_mhz, state.physics.core_voltage_mv),
        };
        state.lagging = Some((shown, Instant::now() + lag));
    }
    let error_after_applying = state.quirks.patch_error_applies;
    let frequency = clock("frequency").map(|f| if dialect.fractional_frequency() { f } else { f.trunc() });
    let voltage = clock("coreVoltage").map(f64::trunc);
    if frequency.is_some() || voltage.is_some() {
        if dialect.restart_to_apply() {
            let (stored_f, stored_v) = state
                .stored_clock
                .unwrap_or((state.physics.frequency_mhz, state.physics.core_voltage_mv));
            state.stored_clock = Some((frequency.unwrap_or(stored_f), voltage.unwrap_or(stored_v)));
        } else {
            if let Some(f) = frequency {
                state.physics.frequency_mhz = f;
            }
            if let Some(v) = voltage {
                state.physics.core_voltage_mv = v;
            }
        }
    }
    let physics = &mut state.physics;
    if let Some(auto) = number("autofanspeed") {
        physics.fan.auto = auto != 0.0;
    }
    if let Some(duty) = number(dialect.manual_fan_key()) {
        physics.fan.manual_percent = duty.clamp(0.0, 100.0);
    }
    if let Some(target) = number("temptarget") {
        physics.fan.target_celsius = target;
    }
    if number("overheat_mode") == Some(0.0) {
        physics.clear_overheat();
    }
    // The statistics task reads its setting live (v2.9+); before v2.11 an out-of-range
    // number is stored as its low 16 bits.
    if let (Some(seconds), Some(ring)) = (number("statsFrequency"), state.ring.as_mut()) {
        ring.set_frequency((seconds.trunc() as i64) as u16);
    }
    if error_after_applying {
        return reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "Internal Server Error");
    }
    reply(StatusCode::OK, "text/plain", "")
}

/// `PATCH /__sim`: change a miner's fault or ambient temperature at run time, or make it
/// reboot by itself.
async fn control(miner: &SimMiner, request: Request<Incoming>) -> Reply {
    let Some(serde_json::Value::Object(body)) = read_json(request).await else {
        return reply(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "expected a JSON object such as {\"fault\":\"hang\",\"ambient_celsius\":40}",
        );
    };
    if let Some(text) = body.get("fault").and_then(|v| v.as_str()) {
        let Some(fault) = Fault::parse(text) else {
            return reply(
                StatusCode::BAD_REQUEST,
                "text/plain",
                format!(
                    "faults: {}",
                    Fault::ALL.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
                ),
            );
        };
        miner.set_fault(fault);
    }
    if let Some(c) = body.get("ambient_celsius").and_then(|v| v.as_f64()) {
        miner.advanced().physics.ambient_celsius = c;
    }
    {
        let mut state = miner.advanced();
        if let Some(held) = body.get("hold_asic_celsius") {
            state.quirks.hold_asic_celsius = held.as_f64();
        }
        if let Some(lag) = body.get("readback_lag") {
            state.quirks.readback_lag = lag.as_f64().and_then(|s| Duration::try_from_secs_f64(s).ok());
            if state.quirks.readback_lag.is_none() {
                state.lagging = None;
            }
        }
        if let Some(flag) = body.get("patch_error_applies").and_then(|v| v.as_bool()) {
            state.quirks.patch_error_applies = flag;
        }
        if let Some(flag) = body.get("ignore_pause").and_then(|v| v.as_bool()) {
            state.quirks.ignore_pause = flag;
        }
        if let Some(auth) = body.get("basic_auth") {
            state.quirks.basic_auth = match auth {
                serde_json::Value::Object(fields) => {
                    let text = |key: &str| fields.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_string();
                    Some(SimAuth {
                        username: text("username"),
                        password: text("password"),
                        reads: fields.get("reads").and_then(|v| v.as_bool()).unwrap_or(true),
                    })
                }
                _ => None,
            };
        }
    }
    let downtime = match body.get("reboot") {
        None | Some(serde_json::Value::Bool(false)) => None,
        Some(serde_json::Value::Bool(true)) => Some(RESTART_DOWNTIME),
        Some(value) => match value.as_f64().and_then(|s| Duration::try_from_secs_f64(s).ok()) {
            // Down for longer than the reply takes to leave.
            Some(downtime) => Some(downtime.clamp(Duration::from_millis(200), HANG_FOR)),
            None => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    "reboot: true, or the seconds it stays down (such as 0.5)",
                )
            }
        },
    };
    let reason = match body
        .get("reset_reason")
        .map(|v| v.as_str().and_then(ResetReason::parse))
    {
        None => ResetReason::Software,
        Some(Some(reason)) => reason,
        Some(None) => {
            return reply(
                StatusCode::BAD_REQUEST,
                "text/plain",
                format!(
                    "reset_reason: {}",
                    ResetReason::ALL.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")
                ),
            )
        }
    };
    if let Some(downtime) = downtime {
        miner.start_reboot(downtime, reason);
        miner.go_down_after_reply();
    }
    reply(StatusCode::OK, "text/plain", "ok")
}

/// What a fault does to the chips and the pool (and what the last one did, undone).
fn fault_in_physics(physics: &mut MinerPhysics, fault: Fault) {
    physics.chip_health.iter_mut().for_each(|h| *h = 1.0);
    if let Some(last) = physics.chip_health.last_mut() {
        match fault {
            Fault::DeadChip => *last = 0.0,
            Fault::WeakChip => *last = 0.5,
            _ => {}
        }
    }
    physics.pool_sends_work = fault != Fault::NoWork;
}

#[cfg(test)]
mod history_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_narrowed_to_a_board_or_a_firmware_never_pairs_a_fork_with_the_wrong_one() {
        // The whole mix plays every dialect.
        for dialect in Dialect::ALL {
            assert!(
                (0..DEFAULT_MIX.len()).any(|i| mix_pair(i, None, None).1 == dialect),
                "{dialect:?}"
            );
        }
        for i in 0..DEFAULT_MIX.len() {
            // A fork's board runs the fork's firmware; a fork's firmware runs on its board.
            assert_eq!(mix_pair(i, Some(Board::NerdQAxePlusPlus), None).1, Dialect::NerdQaxe);
            assert_eq!(mix_pair(i, Some(Board::LuckyLV08), None).1, Dialect::Lucky);
            assert_eq!(mix_pair(i, None, Some(Dialect::Lucky)).0.maker(), Maker::Lucky);
            assert_eq!(mix_pair(i, None, Some(Dialect::NerdQaxe)).0.maker(), Maker::NerdQaxe);
            // Upstream firmware never lands on a fork's board, nor a fork's on upstream's.
            let (board, dialect) = mix_pair(i, None, Some(Dialect::V2_10));
            assert_eq!((board.maker(), dialect), (Maker::Upstream, Dialect::V2_10));
            let (board, dialect) = mix_pair(i, Some(Board::Gamma), None);
            assert!(board == Board::Gamma && dialect.at_least(Dialect::V2_0), "{dialect:?}");
            // Both said: as said.
            assert_eq!(
                mix_pair(i, Some(Board::Hex), Some(Dialect::Lucky)),
                (Board::Hex, Dialect::Lucky)
            );
        }
    }

    #[test]
    fn fault_names_read_with_dashes_or_underscores() {
        assert_eq!(Fault::parse("dead_chip"), Some(Fault::DeadChip));
        assert_eq!(Fault::parse("Hardware-Fault"), Some(Fault::HardwareFault));
        assert_eq!(Fault::parse("no_work"), Some(Fault::NoWork));
        for fault in Fault::ALL {
            assert_eq!(Fault::parse(fault.name()).map(|f| f.name()), Some(fault.name()));
        }
    }
}
