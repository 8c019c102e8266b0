//! One device's sweep: apply a configuration and read it back, record the step as a ledger
//! session, sample the miner (storing the samples when `serve` is not doing so), check the
//! limits on every sample, measure until the confidence interval is narrow enough, judge
//! its health, and at the end — or on any stop — leave the miner on the chosen or the
//! original settings, read back.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::analysis::Metric;
use crate::axeos::sample::{format_label_number, Sample};
use crate::axeos::window::{CheckedPatch, SettingsWindow};
use crate::axeos::{AxeOsClient, SettingsPatch};
use crate::config::{MinerAddress, TuneSettings};
use crate::ledger::sessions::{self, NewSession};
use crate::ledger::tune::{TuneStatus, TuneStep};
use crate::ledger::writer::{LedgerSender, Record};
use crate::ledger::{DeviceRow, Ledger};
use crate::time;
use crate::tune::limits::{Breach, Gaps, Limits};
use crate::tune::measure::StepResult;
use crate::tune::plan::DEFAULT_VOLTAGE_STEP_MV;
use crate::tune::plan::{smallest_gap, Axis, Outcome, PlanKind, Planner, Span, MIN_FREQUENCY_STEP_MHZ};

/// Failed reads in a row that mean the miner is gone.
const UNREACHABLE_AFTER: u32 = 3;
/// How long a restore keeps trying a miner that does not answer.
pub const RESTORE_PATIENCE: Duration = Duration::from_secs(90);
/// How long a restart (firmware before v2.2) may take before the step is given up.
const RESTART_PATIENCE: Duration = Duration::from_secs(120);

/// What to leave a miner on when a sweep ends normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Then {
    /// The best healthy configuration found (the starting one if none was).
    Best,
    /// The settings it had before the sweep.
    Original,
}

/// A sweep's arguments: stored with the run so that `tune resume` continues it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepSpec {
    pub devices: Vec<String>,
    pub plan: PlanKind,
    pub freq: Option<Span>,
    pub voltage: Option<Span>,
    pub metric: Metric,
    pub dwell_minutes: f64,
    pub max_dwell_minutes: f64,
    pub warmup_minutes: f64,
    pub then: Then,
    pub allow_unlisted: bool,
    pub allow_small_steps: bool,
    pub force: bool,
    pub max_parallel: usize,
}

impl SweepSpec {
    fn warmup(&self) -> Duration {
        minutes(self.warmup_minutes)
    }
    fn dwell(&self) -> Duration {
        minutes(self.dwell_minutes)
    }
    fn max_dwell(&self) -> Duration {
        minutes(self.max_dwell_minutes)
    }

    /// The shortest a measured step takes: warm-up plus the minimum dwell.
    pub fn min_step_duration(&self) -> Duration {
        self.warmup() + self.dwell()
    }

    /// The longest one step can take: warm-up plus the most time it measures.
    pub fn max_step_duration(&self) -> Duration {
        self.warmup() + self.max_dwell().max(self.dwell())
    }
}

fn minutes(m: f64) -> Duration {
    Duration::try_from_secs_f64(m * 60.0).unwrap_or(Duration::ZERO)
}

/// A device's candidate values, fixed when its sweep starts (stored with the run, so that
/// `resume` replays the same plan whatever the miner runs by then).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanLists {
    pub frequencies: Vec<f64>,
    pub voltages: Vec<f64>,
    pub start_frequency: f64,
}

/// A device ready to be swept: what was read from it, and its plan.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub name: String,
    pub address: MinerAddress,
    pub first: Sample,
    pub original: (Option<f64>, Option<f64>),
    pub window: SettingsWindow,
    pub lists: PlanLists,
    pub planner: Planner,
    pub limits: Limits,
}

/// Reads a miner and builds its plan (from `fixed` lists when resuming); sends nothing.
/// Errors are the user's to fix.
pub async fn prepare(
    client: &AxeOsClient,
    name: &str,
    address: &MinerAddress,
    spec: &SweepSpec,
    settings: &TuneSettings,
    fixed: Option<PlanLists>,
) -> Result<Prepared, String> {
    let first = client
        .system_info(address)
        .await
        .map_err(|e| format!("{name}: cannot read the miner at {address}: {e}"))?;
    let options = client.asic_options(address).await.unwrap_or(None);
    let original = (first.frequency_mhz, first.core_voltage_mv);
    let (Some(current_frequency), Some(current_voltage)) = original else {
        return Err(format!(
            "{name}: the miner does not report its frequency and core voltage; nothing to start from"
        ));
    };
    let lists = match fixed {
        Some(lists) => lists,
        None => candidate_lists(name, spec, options.as_ref(), (current_frequency, current_voltage))?,
    };
    let firmware = first.identity.firmware.as_deref();
    if !stores_fractional_mhz(firmware) {
        if let Some(f) = lists.frequencies.iter().find(|f| f.fract().abs() > 1e-9) {
            return Err(format!(
                "{name}: firmware {} stores whole MHz, so {f} MHz would read back as {}",
                firmware.unwrap_or("?"),
                f.trunc()
            ));
        }
    }
    let window = SettingsWindow::for_miner(
        first.identity.asic_model.as_deref(),
        options.as_ref().map(|(f, v)| (f.as_slice(), v.as_slice())),
    );
    let planner = Planner::new(
        spec.plan,
        lists.frequencies.clone(),
        lists.voltages.clone(),
        lists.start_frequency,
    );
    if !spec.force {
        for (f, v) in planner.possible_pairs() {
            window
                .check(&patch_for((f, v)))
                .map_err(|e| format!("{name}: {e} (pass --force to send it anyway)"))?;
        }
    }
    let limits = Limits::for_miner(settings, &first);
    if limits.max_power_watts.is_none() && !spec.force {
        return Err(format!(
            "{name}: its PSU rating is unknown (the firmware does not report maxPower and the board version is not \
             recognised): set tune.max_power_watts, or pass --force to sweep without a power limit"
        ));
    }
    Ok(Prepared {
        name: name.to_string(),
        address: address.clone(),
        first,
        original,
        window,
        lists,
        planner,
        limits,
    })
}

/// The candidate frequencies and voltages for a miner now on `current`.
fn candidate_lists(
    name: &str,
    spec: &SweepSpec,
    options: Option<&(Vec<f64>, Vec<f64>)>,
    current: (f64, f64),
) -> Result<PlanLists, String> {
    let frequencies = Axis {
        span: spec.freq,
        options: options.map(|o| o.0.as_slice()),
        current: current.0,
        default_step: MIN_FREQUENCY_STEP_MHZ,
        default_reach: (75.0, 100.0),
        allow_unlisted: spec.allow_unlisted,
        unit: "MHz",
        flag: "--freq",
    }
    .values()
    .map_err(|e| format!("{name}: {e}"))?;
    // An undervolt sweep never starts above the voltage the miner runs, unless asked to.
    let reach_above = if spec.plan == PlanKind::Efficiency { 0.0 } else { 100.0 };
    let voltages: Vec<f64> = Axis {
        span: spec.voltage,
        options: options.map(|o| o.1.as_slice()),
        current: current.1,
        default_step: DEFAULT_VOLTAGE_STEP_MV,
        default_reach: (100.0, reach_above),
        allow_unlisted: spec.allow_unlisted,
        unit: "mV",
        flag: "--voltage",
    }
    .values()
    .map_err(|e| format!("{name}: {e}"))?
    .into_iter()
    // The firmware stores whole millivolts.
    .map(f64::round)
    .collect();
    // Only a step the user typed: the firmware's own option lists hold neighbours such as
    // 375 and 380 MHz that its PLL table supports.
    let stepped = spec.freq.is_some_and(|s| s.step.is_some());
    if let Some(gap) = smallest_gap(&frequencies).filter(|g| stepped && *g < MIN_FREQUENCY_STEP_MHZ) {
        if !spec.allow_small_steps {
            return Err(format!(
                "{name}: frequencies {gap} MHz apart; steps under {MIN_FREQUENCY_STEP_MHZ} MHz cause PLL errors on real \
                 boards (pass --allow-small-steps to try anyway)"
            ));
        }
    }
    Ok(PlanLists {
        frequencies,
        voltages,
        start_frequency: current.0,
    })
}

/// Firmware from v2.10 keeps fractional MHz; older firmware truncates them.
fn stores_fractional_mhz(firmware: Option<&str>) -> bool {
    firmware_version(firmware).is_none_or(|v| v >= (2, 10))
}

/// (major, minor) of a firmware string such as `v2.10.1`.
fn firmware_version(firmware: Option<&str>) -> Option<(u32, u32)> {
    crate::axeos::sample::firmware_version(firmware?)
}

fn patch_for(pair: (f64, f64)) -> SettingsPatch {
    SettingsPatch {
        frequency: Some(pair.0),
        core_voltage: Some(pair.1.round().clamp(0.0, f64::from(u32::MAX)) as u32),
    }
}

/// What a sweep reports as it goes (a live line per device on a terminal, log lines
/// elsewhere).
pub trait Observer: Send + Sync {
    fn step_started(&self, device: &str, step: u32, max_steps: usize, pair: (f64, f64));
    /// A reading during a step, with the interval so far (`None` during warm-up).
    fn sampled(&self, device: &str, sample: &Sample, limits: &Limits, result: Option<&StepResult>);
    fn step_finished(&self, device: &str, step: &StepReport);
    /// A message worth a line of its own (a restore, a write).
    fn note(&self, device: &str, message: &str);
}

/// One configuration tried.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    pub step: u32,
    pub frequency_mhz: f64,
    pub core_voltage_mv: f64,
    /// `healthy`, `unhealthy`, `limit`, `aborted`.
    pub outcome: String,
    /// Why it is not healthy, or what stopped it.
    pub reason: String,
    /// The interval was narrow enough before `--max-dwell`.
    pub converged: bool,
    pub result: Option<StepResult>,
    pub session_id: Option<i64>,
}

impl StepReport {
    fn planner_outcome(&self) -> Outcome {
        match self.outcome.as_str() {
            "healthy" => Outcome::Healthy,
            "unhealthy" => Outcome::Unhealthy,
            "limit" => Outcome::Limit,
            _ => Outcome::Aborted,
        }
    }

    pub fn from_ledger(step: &TuneStep) -> StepReport {
        StepReport {
            step: step.step,
            frequency_mhz: step.frequency_mhz,
            core_voltage_mv: step.core_voltage_mv,
            outcome: step.outcome.clone(),
            reason: step.reason.clone(),
            converged: false,
            result: step.result.as_deref().and_then(|r| serde_json::from_str(r).ok()),
            session_id: step.session_id,
        }
    }
}

/// How one device's sweep ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceReport {
    pub device: String,
    pub original_frequency_mhz: Option<f64>,
    pub original_core_voltage_mv: Option<f64>,
    pub steps: Vec<StepReport>,
    pub status: TuneStatus,
    /// What the miner was left on, read back.
    pub final_frequency_mhz: Option<f64>,
    pub final_core_voltage_mv: Option<f64>,
    /// The step chosen as best, if one was healthy.
    pub best_step: Option<u32>,
    /// Why the sweep stopped early, or what the restore could not do.
    pub note: String,
}

/// What every device of a run shares.
pub struct Sweep {
    pub client: AxeOsClient,
    pub settings: TuneSettings,
    pub spec: SweepSpec,
    pub run_id: i64,
    pub ledger_path: PathBuf,
    pub configured: Vec<String>,
    /// Where samples go when this process keeps the ledger's samples (no `serve` running).
    pub samples: Option<LedgerSender>,
    /// `serve`'s poll interval (config.yaml), when it keeps the samples instead.
    pub serve_poll_interval: Duration,
    pub cancel: watch::Receiver<bool>,
    pub observer: Arc<dyn Observer>,
}

/// Why a step ended early.
enum Stop {
    /// The sweep was cancelled (a signal).
    Cancelled,
    /// The miner is gone: the sweep of this device ends.
    Gone(String),
}

impl Sweep {
    fn cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Sweeps one device: `done` are the steps an interrupted run already took (resume).
    pub async fn run_device(&self, mut prepared: Prepared, device: DeviceRow, done: Vec<StepReport>) -> DeviceReport {
        let name = prepared.name.clone();
        let mut steps = Vec::new();
        for step in done {
            if prepared.planner.next_pair().is_some() {
                prepared
                    .planner
                    .report((step.frequency_mhz, step.core_voltage_mv), step.planner_outcome());
            }
            steps.push(step);
        }
        let mut stopped: Option<String> = None;
        let mut ledger = match Ledger::open_existing(&self.ledger_path) {
            Ok(ledger) => ledger,
            Err(e) => {
                return self
                    .finish(
                        &prepared,
                        &device,
                        None,
                        steps,
                        Some(format!("cannot open the ledger: {e}")),
                    )
                    .await
            }
        };
        while let Some(pair) = prepared.planner.next_pair() {
            if self.cancelled() {
                stopped = Some("interrupted".into());
                break;
            }
            let number = steps.len() as u32 + 1;
            self.observer
                .step_started(&name, number, prepared.planner.max_steps(), pair);
            let (report, stop) = self.run_step(&prepared, &device, &mut ledger, number, pair).await;
            prepared.planner.report(pair, report.planner_outcome());
            let stored = TuneStep {
                run_id: self.run_id,
                device_id: device.id,
                step: number,
                frequency_mhz: pair.0,
                core_voltage_mv: pair.1,
                session_id: report.session_id,
                outcome: report.outcome.clone(),
                reason: report.reason.clone(),
                result: report.result.as_ref().and_then(|r| serde_json::to_string(r).ok()),
            };
            if let Err(e) = ledger.tune_record_step(&stored) {
                self.observer
                    .note(&name, &format!("cannot record step {number} in the ledger: {e}"));
            }
            self.observer.step_finished(&name, &report);
            steps.push(report);
            match stop {
                Some(Stop::Cancelled) => {
                    stopped = Some("interrupted".into());
                    break;
                }
                Some(Stop::Gone(why)) => {
                    stopped = Some(why);
                    break;
                }
                None => {}
            }
        }
        self.finish(&prepared, &device, Some(&mut ledger), steps, stopped).await
    }

    /// Leaves the miner on the best or the original settings and records how it ended.
    async fn finish(
        &self,
        prepared: &Prepared,
        device: &DeviceRow,
        ledger: Option<&mut Ledger>,
        steps: Vec<StepReport>,
        stopped: Option<String>,
    ) -> DeviceReport {
        let best = best_step(&steps, self.spec.metric);
        let target = match (&stopped, self.spec.then, best) {
            (None, Then::Best, Some(step)) => (Some(step.frequency_mhz), Some(step.core_voltage_mv)),
            _ => prepared.original,
        };
        let what = if stopped.is_none() && self.spec.then == Then::Best && best.is_some() {
            "the best configuration"
        } else {
            "the original settings"
        };
        let restored = self.restore(prepared, target, what).await;
        let (status, mut note, final_settings) = match (&restored, &stopped) {
            (Ok(read_back), None) => (TuneStatus::Finished, String::new(), *read_back),
            (Ok(read_back), Some(why)) => (TuneStatus::Restored, format!("stopped: {why}"), *read_back),
            (Err(e), why) => (
                TuneStatus::RestoreFailed,
                match why {
                    Some(why) => format!("stopped: {why}; {e}"),
                    None => e.clone(),
                },
                (None, None),
            ),
        };
        let mut opened;
        let ledger = match ledger {
            Some(ledger) => Some(ledger),
            None => {
                opened = Ledger::open_existing(&self.ledger_path).ok();
                opened.as_mut()
            }
        };
        // Settings that read back right on a latched overheat (v2.10 and older stop at
        // 50 MHz / 1000 mV until cleared) are not a running miner: say so.
        if let Ok(sample) = self.client.system_info(&prepared.address).await {
            if sample.overheat == Some(true) {
                let latched =
                    "the firmware's overheat protection is still latched: clear it in AxeOS (or PATCH overheat_mode 0)";
                self.observer.note(&prepared.name, latched);
                note = if note.is_empty() {
                    latched.into()
                } else {
                    format!("{note}; {latched}")
                };
            }
        }
        if let Some(ledger) = ledger {
            // A step whose session could not be ended (a busy ledger) is ended now.
            if let Ok(Some(open)) = sessions::current(ledger, device) {
                if open.tune_run_id == Some(self.run_id) {
                    let _ = sessions::end(ledger, device, time::now_unix(), "the sweep ended");
                }
            }
            if let Err(e) = ledger.tune_finish_device(self.run_id, device.id, status, final_settings, &note) {
                self.observer
                    .note(&prepared.name, &format!("cannot record the end of the sweep: {e}"));
            }
        }
        DeviceReport {
            device: prepared.name.clone(),
            original_frequency_mhz: prepared.original.0,
            original_core_voltage_mv: prepared.original.1,
            best_step: best.map(|s| s.step),
            steps,
            status,
            final_frequency_mhz: final_settings.0,
            final_core_voltage_mv: final_settings.1,
            note,
        }
    }

    /// Puts `target` on the miner and reads it back, retrying a miner that does not answer
    /// for [`RESTORE_PATIENCE`]. Runs whatever the cancel signal says.
    pub async fn restore(
        &self,
        prepared: &Prepared,
        target: (Option<f64>, Option<f64>),
        what: &str,
    ) -> Result<(Option<f64>, Option<f64>), String> {
        restore_settings(
            &self.client,
            &prepared.name,
            &prepared.address,
            Restore {
                target,
                what,
                restart: needs_restart(prepared.first.identity.firmware.as_deref()),
            },
            &*self.observer,
        )
        .await
    }

    async fn run_step(
        &self,
        prepared: &Prepared,
        device: &DeviceRow,
        ledger: &mut Ledger,
        number: u32,
        pair: (f64, f64),
    ) -> (StepReport, Option<Stop>) {
        let mut report = StepReport {
            step: number,
            frequency_mhz: pair.0,
            core_voltage_mv: pair.1,
            outcome: "aborted".into(),
            reason: String::new(),
            converged: false,
            result: None,
            session_id: None,
        };
        let name = &prepared.name;
        let applied_at = time::now_unix();
        let applied = match self.apply(prepared, pair).await {
            Ok(sample) => sample,
            Err(ApplyError::Refused(reason)) => {
                report.reason = reason;
                return (report, None);
            }
            // Asked for one thing and running another, or gone: the miner is not
            // following; its sweep ends (and restores) rather than PATCH on.
            Err(ApplyError::Mismatch(reason)) => {
                report.outcome = "limit".into();
                report.reason = reason.clone();
                return (report, Some(Stop::Gone(reason)));
            }
            Err(ApplyError::Unreachable(reason)) => {
                report.reason = reason.clone();
                return (report, Some(Stop::Gone(reason)));
            }
        };
        let session = sessions::start(
            ledger,
            &NewSession {
                device,
                at: applied_at,
                target_frequency_mhz: Some(pair.0),
                target_core_voltage_mv: Some(pair.1),
                notes: &format!("tune #{} step {number} ({:?} plan)", self.run_id, self.spec.plan).to_lowercase(),
                applied: true,
                tune_run_id: Some(self.run_id),
            },
        );
        match session {
            Ok(row) => report.session_id = Some(row.id),
            Err(e) => self
                .observer
                .note(name, &format!("step {number} is not recorded as a session: {e}")),
        }
        let (measured, stop) = self
            .measure(prepared, device, ledger, (applied_at, applied.uptime_seconds), pair)
            .await;
        if report.session_id.is_some() {
            let notes = match &measured {
                Measured::Done { .. } => String::new(),
                Measured::Broke(breach) => format!("stopped: {breach}"),
                Measured::Unstable(why) | Measured::Aborted(why) => format!("stopped: {why}"),
            };
            if let Err(e) = sessions::end(ledger, device, time::now_unix(), &notes) {
                self.observer
                    .note(name, &format!("cannot end step {number}'s session: {e}"));
            }
        }
        match measured {
            Measured::Done { result, .. } if !result.enough_samples() => {
                report.reason = format!(
                    "only {} steady samples by --max-dwell (needs {})",
                    result.samples,
                    crate::analysis::MIN_STEADY_SAMPLES
                );
                report.result = Some(result);
            }
            Measured::Done { result, converged } => {
                let problems = result.health_problems(self.settings.max_error_percent);
                report.outcome = if problems.is_empty() { "healthy" } else { "unhealthy" }.into();
                report.reason = problems.join("; ");
                report.converged = converged;
                if !converged {
                    let note = "the interval did not narrow to the target before --max-dwell";
                    report.reason = if report.reason.is_empty() {
                        note.into()
                    } else {
                        format!("{}; {note}", report.reason)
                    };
                }
                report.result = Some(result);
            }
            Measured::Broke(breach) => {
                report.outcome = if breach.ends_climb() { "limit" } else { "aborted" }.into();
                report.reason = breach.to_string();
            }
            Measured::Unstable(why) => {
                report.outcome = "limit".into();
                report.reason = why;
            }
            Measured::Aborted(why) => report.reason = why,
        }
        (report, stop)
    }

    /// PATCH, restart where the firmware needs it, read back (the reading is returned).
    /// Logged either way.
    async fn apply(&self, prepared: &Prepared, pair: (f64, f64)) -> Result<Sample, ApplyError> {
        let name = &prepared.name;
        let patch = patch_for(pair);
        let checked = if self.spec.force {
            CheckedPatch::forced(patch)
        } else {
            prepared
                .window
                .check(&patch)
                .map_err(|e| ApplyError::Refused(e.to_string()))?
        };
        let target = format!(
            "{} MHz / {} mV",
            format_label_number(pair.0),
            format_label_number(pair.1)
        );
        if let Err(e) = self.client.patch_settings(&prepared.address, &checked).await {
            tracing::warn!(device = %name, "PATCH {target} failed: {e}");
            return Err(ApplyError::Refused(format!("the miner refused {target}: {e}")));
        }
        if needs_restart(prepared.first.identity.firmware.as_deref()) {
            if let Err(e) = self.client.restart(&prepared.address).await {
                return Err(ApplyError::Unreachable(format!(
                    "cannot restart the miner to apply {target}: {e}"
                )));
            }
            self.observer.note(
                name,
                "restarting to apply (firmware before v2.2 applies settings at boot)",
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let sample = read_back(&self.client, &prepared.address, RESTART_PATIENCE)
            .await
            .map_err(ApplyError::Unreachable)?;
        let read = (sample.frequency_mhz, sample.core_voltage_mv);
        tracing::info!(
            device = %name,
            "wrote {target}; read back {} MHz / {} mV",
            fmt_setting(read.0),
            fmt_setting(read.1)
        );
        if !matches_target(read, (Some(pair.0), Some(pair.1))) {
            return Err(ApplyError::Mismatch(format!(
                "asked for {target}, the miner reports {} MHz / {} mV",
                fmt_setting(read.0),
                fmt_setting(read.1)
            )));
        }
        Ok(sample)
    }

    /// Samples until the answer is known (or a limit, a signal, a vanished miner).
    async fn measure(
        &self,
        prepared: &Prepared,
        device: &DeviceRow,
        // `&mut`: a shared reference to a connection held across an await is not `Send`.
        ledger: &mut Ledger,
        // When the step's settings were applied, and the uptime they read back with.
        (applied_at, applied_uptime): (f64, Option<u64>),
        pair: (f64, f64),
    ) -> (Measured, Option<Stop>) {
        let interval = self.settings.sample_interval;
        let steady_from = applied_at + self.spec.warmup().as_secs_f64();
        let min_steady_until = steady_from + self.spec.dwell().as_secs_f64();
        let give_up_at = steady_from + self.spec.max_dwell().max(self.spec.dwell()).as_secs_f64();
        let mut cancel = self.cancel.clone();
        let mut failures = 0u32;
        let mut gaps = Gaps::default();
        let mut last_uptime = applied_uptime;
        let mut result: Option<StepResult> = None;
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = cancel.wait_for(|c| *c) => {}
            }
            if self.cancelled() {
                return (Measured::Aborted("interrupted".into()), Some(Stop::Cancelled));
            }
            match self.client.system_info(&prepared.address).await {
                Ok(sample) => {
                    failures = 0;
                    gaps = gaps.after(&sample);
                    if let Some(samples) = &self.samples {
                        samples.send(Record::Sample {
                            device: prepared.name.clone(),
                            at: SystemTime::now(),
                            sample: Arc::new(sample.clone()),
                        });
                    }
                    if let Some(breach) = prepared.limits.check(&sample, gaps) {
                        return (Measured::Broke(breach), None);
                    }
                    if let (Some(before), Some(now)) = (last_uptime, sample.uptime_seconds) {
                        if now < before {
                            // A configuration that makes the miner reboot is unstable: the
                            // sweep of this miner ends there.
                            let why = "the miner restarted by itself".to_string();
                            return (Measured::Unstable(why.clone()), Some(Stop::Gone(why)));
                        }
                    }
                    last_uptime = sample.uptime_seconds.or(last_uptime);
                    if !matches_target(
                        (sample.frequency_mhz, sample.core_voltage_mv),
                        (Some(pair.0), Some(pair.1)),
                    ) {
                        let why = format!(
                            "the settings changed on the miner to {} MHz / {} mV",
                            fmt_setting(sample.frequency_mhz),
                            fmt_setting(sample.core_voltage_mv)
                        );
                        return (Measured::Unstable(why.clone()), Some(Stop::Gone(why)));
                    }
                    self.observer
                        .sampled(&prepared.name, &sample, &prepared.limits, result.as_ref());
                }
                Err(e) => {
                    failures += 1;
                    if failures >= UNREACHABLE_AFTER {
                        let why = Breach::Unreachable(e.to_string()).to_string();
                        return (Measured::Aborted(why.clone()), Some(Stop::Gone(why)));
                    }
                }
            }
            let now = time::now_unix();
            if now < steady_from {
                continue;
            }
            match ledger.device_readings(device.id, steady_from, now) {
                Ok(readings) => result = Some(StepResult::from_readings(&readings)),
                Err(e) => tracing::warn!(device = %prepared.name, "cannot read the step's samples: {e}"),
            }
            if self.samples.is_none() && result.as_ref().is_some_and(|r| r.samples == 0) {
                let waited = self.spec.dwell().max(self.serve_poll_interval * 3).as_secs_f64();
                if now >= steady_from + waited {
                    let why = "no samples of this device reach the ledger: the process that holds it does not poll \
                               it (`tune` sweeps only what `serve` on this ledger polls)"
                        .to_string();
                    return (Measured::Aborted(why.clone()), Some(Stop::Gone(why)));
                }
            }
            let converged = result
                .as_ref()
                .is_some_and(|r| r.converged(self.settings.confidence_percent));
            if (now >= min_steady_until && converged) || now >= give_up_at {
                let result = result.unwrap_or_default();
                return (Measured::Done { result, converged }, None);
            }
        }
    }
}

enum Measured {
    Done {
        result: StepResult,
        converged: bool,
    },
    Broke(Breach),
    /// The miner rebooted or its firmware changed the settings.
    Unstable(String),
    Aborted(String),
}

/// Why a configuration could not be applied.
enum ApplyError {
    /// Outside the window, or the miner said no: nothing changed.
    Refused(String),
    /// It answered, but runs something else.
    Mismatch(String),
    /// It does not answer after the write.
    Unreachable(String),
}

/// What a restore puts back.
pub struct Restore<'a> {
    pub target: (Option<f64>, Option<f64>),
    /// "the original settings", "the best configuration": for messages.
    pub what: &'a str,
    /// Firmware before v2.2: the settings take effect only after a restart.
    pub restart: bool,
}

/// The healthy step ranked first by `metric`.
pub fn best_step(steps: &[StepReport], metric: Metric) -> Option<&StepReport> {
    let healthy: Vec<(&StepReport, &StepResult)> = steps
        .iter()
        .filter(|s| s.outcome == "healthy")
        .filter_map(|s| Some((s, s.result.as_ref()?)))
        .collect();
    let best_hashrate = healthy
        .iter()
        .filter_map(|(_, r)| r.mean_hashrate_ghs)
        .fold(0.0, f64::max);
    let best_jth = healthy
        .iter()
        .filter_map(|(_, r)| r.joules_per_terahash)
        .fold(f64::INFINITY, f64::min);
    healthy
        .into_iter()
        .max_by(|a, b| {
            a.1.score(metric, (best_hashrate, best_jth))
                .total_cmp(&b.1.score(metric, (best_hashrate, best_jth)))
        })
        .map(|(s, _)| s)
}

/// Puts `target` on a miner and reads it back, retrying one that does not answer for
/// [`RESTORE_PATIENCE`]: the sweep's last word on every exit path, and `tune restore`.
pub async fn restore_settings(
    client: &AxeOsClient,
    name: &str,
    address: &MinerAddress,
    restore: Restore<'_>,
    observer: &dyn Observer,
) -> Result<(Option<f64>, Option<f64>), String> {
    let Restore { target, what, restart } = restore;
    let patch = SettingsPatch {
        frequency: target.0,
        core_voltage: target.1.map(|v| v.round().clamp(0.0, f64::from(u32::MAX)) as u32),
    };
    // The settings the miner ran before (or the best it ran healthy): no window to check.
    let checked = CheckedPatch::forced(patch);
    let deadline = tokio::time::Instant::now() + RESTORE_PATIENCE;
    let mut last_error = String::new();
    let settings = |sample: &Sample| (sample.frequency_mhz, sample.core_voltage_mv);
    let left_on = |read: (Option<f64>, Option<f64>), how: &str| {
        observer.note(
            name,
            &format!(
                "left on {what}: {} MHz / {} mV ({how})",
                fmt_setting(read.0),
                fmt_setting(read.1)
            ),
        );
    };
    // A miner already on the target (a refused or ignored PATCH) needs no write, unless
    // its firmware only takes settings at boot: then what it reports is not what it runs.
    if !restart {
        if let Ok(sample) = read_back(client, address, Duration::ZERO).await {
            if matches_target(settings(&sample), target) {
                left_on(settings(&sample), "read back; already there");
                return Ok(settings(&sample));
            }
        }
    }
    while tokio::time::Instant::now() < deadline {
        let written = match client.patch_settings(address, &checked).await {
            Ok(()) if restart => match client.restart(address).await {
                Ok(()) => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    Ok(RESTART_PATIENCE)
                }
                Err(e) => Err(format!("cannot restart it to apply them: {e}")),
            },
            Ok(()) => Ok(Duration::from_secs(10)),
            Err(e) => Err(e.to_string()),
        };
        match written {
            Ok(patience) => match read_back(client, address, patience).await {
                Ok(sample) if matches_target(settings(&sample), target) => {
                    let read = settings(&sample);
                    tracing::info!(
                        device = %name,
                        "restored {what}: {} MHz / {} mV, read back",
                        fmt_setting(read.0),
                        fmt_setting(read.1)
                    );
                    left_on(read, "read back");
                    return Ok(read);
                }
                Ok(sample) => {
                    let read = settings(&sample);
                    last_error = format!(
                        "the miner reports {} MHz / {} mV",
                        fmt_setting(read.0),
                        fmt_setting(read.1)
                    );
                }
                Err(e) => last_error = e,
            },
            Err(e) => last_error = e,
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let message = format!(
        "could not restore {what} ({} MHz / {} mV): {last_error}; run `tune restore --device {name}` when it answers",
        fmt_setting(target.0),
        fmt_setting(target.1)
    );
    tracing::error!(device = %name, "{message}");
    observer.note(name, &message);
    Err(message)
}

/// What the miner reports now, trying until `patience` runs out.
async fn read_back(client: &AxeOsClient, address: &MinerAddress, patience: Duration) -> Result<Sample, String> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match client.system_info(address).await {
            Ok(sample) => return Ok(sample),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(format!("cannot read the settings back: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

fn matches_target(read: (Option<f64>, Option<f64>), target: (Option<f64>, Option<f64>)) -> bool {
    let same = |got: Option<f64>, want: Option<f64>, tolerance: f64| match want {
        None => true,
        Some(want) => got.is_some_and(|got| (got - want).abs() <= tolerance),
    };
    same(read.0, target.0, 0.01) && same(read.1, target.1, 0.5)
}

fn fmt_setting(value: Option<f64>) -> String {
    value.map_or_else(|| "?".into(), format_label_number)
}

/// Firmware before v2.2.0 takes clock settings only at boot.
pub fn needs_restart(firmware: Option<&str>) -> bool {
    firmware_version(firmware).is_some_and(|v| v < (2, 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_firmware_before_2_2_restarts_to_apply() {
        assert!(needs_restart(Some("v2.0.3")));
        assert!(needs_restart(Some("v2.1.10")));
        assert!(!needs_restart(Some("v2.2.0")));
        assert!(!needs_restart(Some("v2.15.0")));
        assert!(!needs_restart(Some("esp-miner-dev")));
        assert!(!needs_restart(None));
    }

    fn step(number: u32, outcome: &str, hashrate: f64, jth: f64) -> StepReport {
        StepReport {
            step: number,
            frequency_mhz: 500.0 + f64::from(number),
            core_voltage_mv: 1100.0,
            outcome: outcome.into(),
            reason: String::new(),
            converged: true,
            result: Some(StepResult {
                mean_hashrate_ghs: Some(hashrate),
                joules_per_terahash: Some(jth),
                ..StepResult::default()
            }),
            session_id: None,
        }
    }

    #[test]
    fn the_best_step_is_the_healthy_one_the_metric_prefers() {
        let steps = [
            step(1, "healthy", 1000.0, 15.0),
            step(2, "healthy", 1200.0, 17.0),
            step(3, "unhealthy", 1300.0, 12.0),
        ];
        assert_eq!(best_step(&steps, Metric::Efficiency).unwrap().step, 1);
        assert_eq!(best_step(&steps, Metric::Hashrate).unwrap().step, 2);
        assert!(best_step(&steps[2..], Metric::Hashrate).is_none());
    }
}
