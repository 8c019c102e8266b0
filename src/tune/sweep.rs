//! One device's sweep: apply a configuration and read it back, record the step as a ledger
//! session, sample the miner (storing the samples when `serve` is not doing so), check the
//! limits on every sample, measure until the confidence interval is narrow enough, judge
//! its health, and at the end — or on any stop — leave the miner on the chosen or the
//! original settings, read back.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::axeos::apply::{self, matches_target, Write};
use crate::axeos::sample::{format_label_number, needs_restart, Sample};
use crate::axeos::window::CheckedPatch;
use crate::axeos::AxeOsClient;
use crate::config::TuneSettings;
use crate::ledger::sessions::{self, NewSession};
use crate::ledger::tune::{TuneStatus, TuneStep};
use crate::ledger::writer::{LedgerSender, Record};
use crate::ledger::{DeviceRow, Ledger};
use crate::time;
use crate::tune::limits::{Breach, Gaps};
use crate::tune::measure::StepResult;
use crate::tune::plan::Outcome;
use crate::tune::prepare::{patch_for, Prepared};
use crate::tune::report::{best_step, DeviceReport, Observer, StepReport};
use crate::tune::restore::{fmt_setting, restore_settings, Restore};
use crate::tune::spec::{SweepSpec, Then};

/// Failed reads in a row that mean the miner is gone.
const UNREACHABLE_AFTER: u32 = 3;
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
    /// `serve`'s protective action acted on the miner during the step: the sweep of this
    /// device ends, and does not put hotter settings back.
    Protected(String),
}

/// How long a sweep beside `serve` waits for the ledger to show a protective action that
/// may explain what it saw (the daemon's writer commits every second).
const PROTECTION_EVENT_WAIT: Duration = Duration::from_secs(6);

impl Sweep {
    fn cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Whether this process stores the samples (no `serve` holds the ledger, and none took
    /// it over since).
    fn stores_samples(&self) -> bool {
        self.samples.as_ref().is_some_and(|s| !s.handed_over())
    }

    /// Sweeps one device: `done` are the steps an interrupted run already took (resume).
    pub async fn run_device(&self, mut prepared: Prepared, device: DeviceRow, done: Vec<StepReport>) -> DeviceReport {
        let name = prepared.name.clone();
        let mut steps = Vec::new();
        for step in done {
            if prepared.planner.next_pair().is_some() {
                prepared
                    .planner
                    .report((step.frequency_mhz, step.core_voltage_mv), step.outcome);
            }
            steps.push(step);
        }
        let mut stopped: Option<String> = None;
        let mut protected = false;
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
                        false,
                    )
                    .await
            }
        };
        let mut previous_step_at: Option<f64> = None;
        while let Some(pair) = prepared.planner.next_pair() {
            if self.cancelled() {
                stopped = Some("interrupted".into());
                break;
            }
            // Protection that acted just as the last step ended: no next (maybe hotter) pair.
            if let Some(since) = previous_step_at {
                if let Some(action) = self.protective_action_since(&mut ledger, &device, since, false).await {
                    stopped = Some(format!("stopped by protection: {action}"));
                    protected = true;
                    break;
                }
            }
            previous_step_at = Some(time::now_unix());
            let number = steps.len() as u32 + 1;
            self.observer
                .step_started(&name, number, prepared.planner.max_steps(), pair);
            let (report, stop) = self.run_step(&prepared, &device, &mut ledger, number, pair).await;
            prepared.planner.report(pair, report.outcome);
            let stored = TuneStep {
                run_id: self.run_id,
                device_id: device.id,
                step: number,
                frequency_mhz: pair.0,
                core_voltage_mv: pair.1,
                session_id: report.session_id,
                outcome: report.outcome.as_str().to_string(),
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
                Some(Stop::Protected(why)) => {
                    stopped = Some(why);
                    protected = true;
                    break;
                }
                None => {}
            }
        }
        self.finish(&prepared, &device, Some(&mut ledger), steps, stopped, protected)
            .await
    }

    /// Leaves the miner on the best or the original settings and records how it ended.
    async fn finish(
        &self,
        prepared: &Prepared,
        device: &DeviceRow,
        ledger: Option<&mut Ledger>,
        steps: Vec<StepReport>,
        stopped: Option<String>,
        protected: bool,
    ) -> DeviceReport {
        // After a protective action the miner keeps what protection set, unless the
        // original settings run cooler still (lower or equal frequency and voltage).
        if protected {
            if let Some(kept) = self.keep_protections_settings(prepared).await {
                return self.finish_protected(prepared, device, ledger, steps, stopped.as_deref(), kept);
            }
        }
        let best = best_step(&steps, self.spec.metric);
        let best_step = best.map(|s| s.step);
        let (target, what) = match (&stopped, self.spec.then, best) {
            (None, Then::Best, Some(step)) => (
                (Some(step.frequency_mhz), Some(step.core_voltage_mv)),
                "the best configuration",
            ),
            _ => (prepared.original, "the original settings"),
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
        if let Some(latched) = self.latched_overheat(prepared).await {
            note = if note.is_empty() {
                latched.into()
            } else {
                format!("{note}; {latched}")
            };
        }
        if let Some(ledger) = ledger {
            self.record_end(ledger, prepared, device, status, final_settings, &note);
        }
        DeviceReport {
            device: prepared.name.clone(),
            original_frequency_mhz: prepared.original.0,
            original_core_voltage_mv: prepared.original.1,
            best_step,
            steps,
            status,
            final_frequency_mhz: final_settings.0,
            final_core_voltage_mv: final_settings.1,
            note,
        }
    }

    /// Ends a device's sweep that protection stopped, leaving the miner on what protection
    /// set (`kept`): nothing is written to it.
    fn finish_protected(
        &self,
        prepared: &Prepared,
        device: &DeviceRow,
        ledger: Option<&mut Ledger>,
        steps: Vec<StepReport>,
        stopped: Option<&str>,
        kept: (Option<f64>, Option<f64>),
    ) -> DeviceReport {
        let note = format!(
            "{}; left on the protection's {} (the original {} runs hotter)",
            stopped.unwrap_or("stopped by protection"),
            crate::axeos::apply::pair_text(kept),
            crate::axeos::apply::pair_text(prepared.original)
        );
        self.observer.note(&prepared.name, &note);
        if let Some(ledger) = ledger {
            self.record_end(ledger, prepared, device, TuneStatus::Protected, kept, &note);
        }
        DeviceReport {
            device: prepared.name.clone(),
            original_frequency_mhz: prepared.original.0,
            original_core_voltage_mv: prepared.original.1,
            best_step: None,
            steps,
            status: TuneStatus::Protected,
            final_frequency_mhz: kept.0,
            final_core_voltage_mv: kept.1,
            note,
        }
    }

    /// Records how the device's sweep ended. A step whose session could not be ended (a
    /// busy ledger) is ended now.
    fn record_end(
        &self,
        ledger: &mut Ledger,
        prepared: &Prepared,
        device: &DeviceRow,
        status: TuneStatus,
        settings: (Option<f64>, Option<f64>),
        note: &str,
    ) {
        if let Ok(Some(open)) = sessions::current(ledger, device) {
            if open.tune_run_id == Some(self.run_id) {
                let _ = sessions::end(ledger, device, time::now_unix(), "the sweep ended");
            }
        }
        if let Err(e) = ledger.tune_finish_device(self.run_id, device.id, status, settings, note) {
            self.observer
                .note(&prepared.name, &format!("cannot record the end of the sweep: {e}"));
        }
    }

    /// Settings that read back right on a latched overheat (v2.10 and older stop at
    /// 50 MHz / 1000 mV until cleared) are not a running miner: says so.
    async fn latched_overheat(&self, prepared: &Prepared) -> Option<&'static str> {
        let sample = self.client.system_info(&prepared.address).await.ok()?;
        if sample.overheat != Some(true) {
            return None;
        }
        let latched =
            "the firmware's overheat protection is still latched: clear it in AxeOS (or PATCH overheat_mode 0)";
        self.observer.note(&prepared.name, latched);
        Some(latched)
    }

    /// What protection left on the miner, when the original settings would run hotter than
    /// it (a higher frequency or voltage): then nothing is written. `None`: restore as usual.
    async fn keep_protections_settings(&self, prepared: &Prepared) -> Option<(Option<f64>, Option<f64>)> {
        // A miner protection restarted may take a moment to answer; not knowing what it
        // runs, nothing is written (the original may be the hotter one).
        let mut read = None;
        for _ in 0..5 {
            if let Ok(sample) = self.client.system_info(&prepared.address).await {
                read = Some(sample);
                break;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let Some(now) = read else {
            return Some((None, None));
        };
        let current = crate::axeos::apply::settings(&now);
        let hotter = |original: Option<f64>, current: Option<f64>| match (original, current) {
            (Some(o), Some(c)) => o > c + 1e-6,
            _ => true,
        };
        (hotter(prepared.original.0, current.0) || hotter(prepared.original.1, current.1)).then_some(current)
    }

    /// The protective action `serve` took on this device since `since`, if it took one.
    /// Only a sweep beside `serve` (which alone protects) looks, for a few seconds: the
    /// daemon's event reaches the ledger within about a second of its write.
    async fn protective_action_since(
        &self,
        ledger: &mut Ledger,
        device: &DeviceRow,
        since: f64,
        wait: bool,
    ) -> Option<String> {
        if self.stores_samples() {
            return None;
        }
        let patience = if wait && !self.cancelled() {
            PROTECTION_EVENT_WAIT
        } else {
            Duration::ZERO
        };
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let events = ledger
                .events_between(device.id, since - 1.0, f64::MAX)
                .unwrap_or_default();
            if let Some(event) = events
                .iter()
                .find(|e| e.kind == "protective_action" && e.detail.contains("(applied)"))
            {
                return Some(event.detail.clone());
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
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
                restart: needs_restart(&prepared.first.identity),
            },
            &*self.observer,
        )
        .await
    }

    /// Tries one configuration: applies it, records it as a session, measures it and
    /// judges it. A stop says the device's sweep ends here.
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
            outcome: Outcome::Aborted,
            reason: String::new(),
            converged: false,
            result: None,
            session_id: None,
        };
        let applied_at = time::now_unix();
        let applied = match self.apply(prepared, pair).await {
            Ok(sample) => sample,
            Err(e) => return self.not_applied(ledger, device, applied_at, report, e).await,
        };
        report.session_id = self.start_session(ledger, prepared, device, applied_at, number, pair);
        let (measured, mut stop) = self
            .measure(prepared, device, ledger, (applied_at, applied.uptime_seconds), pair)
            .await;
        // A step that broke off may have been cut short by `serve`'s protection (on a
        // signal, only what the ledger already says: the stop is not held up).
        let protected = match (&measured, &stop) {
            (Measured::Done { .. }, _) => None,
            (_, Some(Stop::Cancelled)) => self.protective_action_since(ledger, device, applied_at, false).await,
            _ => self.protective_action_since(ledger, device, applied_at, true).await,
        };
        if report.session_id.is_some() {
            if let Err(e) = sessions::end(ledger, device, time::now_unix(), &measured.session_notes()) {
                self.observer
                    .note(&prepared.name, &format!("cannot end step {number}'s session: {e}"));
            }
        }
        measured.judge(&mut report, self.settings.max_error_percent);
        if let Some(action) = protected {
            report.outcome = Outcome::Limit;
            report.reason = format!("stopped by protection: {action}");
            stop = Some(Stop::Protected(report.reason.clone()));
        }
        (report, stop)
    }

    /// A configuration that could not be applied: refused (the sweep goes on), or a miner
    /// that does not follow, does not answer, or a stop signal (its sweep ends).
    async fn not_applied(
        &self,
        ledger: &mut Ledger,
        device: &DeviceRow,
        applied_at: f64,
        mut report: StepReport,
        error: ApplyError,
    ) -> (StepReport, Option<Stop>) {
        match error {
            ApplyError::Refused(reason) => {
                report.reason = reason;
                (report, None)
            }
            // Asked for one thing and running another, or gone: the miner is not
            // following; its sweep ends (and restores) rather than PATCH on.
            ApplyError::Mismatch(reason) => {
                if let Some(protected) = self
                    .protected_during_apply(ledger, device, applied_at, report.clone())
                    .await
                {
                    return protected;
                }
                report.outcome = Outcome::Limit;
                report.reason = reason.clone();
                (report, Some(Stop::Gone(reason)))
            }
            ApplyError::Unreachable(reason) => {
                report.reason = reason.clone();
                (report, Some(Stop::Gone(reason)))
            }
            ApplyError::Cancelled => {
                if let Some(action) = self.protective_action_since(ledger, device, applied_at, false).await {
                    report.outcome = Outcome::Limit;
                    report.reason = format!("stopped by protection: {action}");
                    return (report.clone(), Some(Stop::Protected(report.reason)));
                }
                report.reason = "interrupted".into();
                (report, Some(Stop::Cancelled))
            }
        }
    }

    /// The step as a ledger session (its id), so that `analyze` sees each configuration
    /// tried; a session that cannot be started is said, and the step goes on.
    fn start_session(
        &self,
        ledger: &mut Ledger,
        prepared: &Prepared,
        device: &DeviceRow,
        applied_at: f64,
        number: u32,
        pair: (f64, f64),
    ) -> Option<i64> {
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
            Ok(row) => Some(row.id),
            Err(e) => {
                self.observer.note(
                    &prepared.name,
                    &format!("step {number} is not recorded as a session: {e}"),
                );
                None
            }
        }
    }

    /// A step whose write did not hold: was it `serve`'s protection changing the settings
    /// meanwhile? Then the sweep of this device ends as stopped by protection.
    async fn protected_during_apply(
        &self,
        ledger: &mut Ledger,
        device: &DeviceRow,
        since: f64,
        mut report: StepReport,
    ) -> Option<(StepReport, Option<Stop>)> {
        let action = self.protective_action_since(ledger, device, since, true).await?;
        report.outcome = Outcome::Limit;
        report.reason = format!("stopped by protection: {action}");
        let stop = Stop::Protected(report.reason.clone());
        Some((report, Some(stop)))
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
        let restart = needs_restart(&prepared.first.identity);
        if restart {
            self.observer.note(
                name,
                "restarting to apply (firmware before v2.2 applies settings at boot)",
            );
        }
        let applied = apply::apply(
            &self.client,
            &prepared.address,
            Write::for_miner(&checked, &prepared.first.identity),
            Some(&self.cancel),
        )
        .await;
        match applied {
            Ok(applied) => {
                tracing::info!(device = %name, "wrote {target}; read back {}", applied.read_back_text());
                Ok(applied.sample)
            }
            Err(apply::ApplyError::Refused(reason)) => {
                tracing::warn!(device = %name, "{reason}");
                Err(ApplyError::Refused(reason))
            }
            Err(apply::ApplyError::Mismatch { message, .. }) => {
                tracing::warn!(device = %name, "wrote {target}: {message}");
                Err(ApplyError::Mismatch(message))
            }
            Err(apply::ApplyError::Unreachable(reason)) => Err(ApplyError::Unreachable(reason)),
            Err(apply::ApplyError::Stopped { .. }) => Err(ApplyError::Cancelled),
        }
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
        let write_errors_before = self.samples.as_ref().map_or(0, |s| s.write_errors());
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
                    if let Some(samples) = self.samples.as_ref().filter(|s| !s.handed_over()) {
                        samples.send(Record::Sample {
                            device: prepared.name.clone(),
                            at: SystemTime::now(),
                            sample: Arc::new(sample.clone()),
                        });
                    }
                    if let Some(broken) = reading_ends_step(prepared, &sample, gaps, last_uptime, pair) {
                        return broken;
                    }
                    last_uptime = sample.uptime_seconds.or(last_uptime);
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
            let nothing_stored = result.as_ref().is_some_and(|r| r.samples == 0);
            if let Some(why) = self.why_nothing_is_stored(nothing_stored, now, steady_from, write_errors_before) {
                return (Measured::Aborted(why.clone()), Some(Stop::Gone(why)));
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

    /// Why a step that has no steady sample stored yet never will: the ledger's commits
    /// fail (past the minimum dwell), or the process that holds the ledger does not poll
    /// this device.
    fn why_nothing_is_stored(
        &self,
        nothing_stored: bool,
        now: f64,
        steady_from: f64,
        write_errors_before: u64,
    ) -> Option<String> {
        if !nothing_stored {
            return None;
        }
        let failing_writes = self
            .samples
            .as_ref()
            .filter(|s| !s.handed_over())
            .is_some_and(|s| s.write_errors() > write_errors_before);
        if failing_writes && now >= steady_from + self.spec.dwell().as_secs_f64() {
            return Some(
                "the ledger cannot be written (its commits fail: a full disk, a read-only or locked file; see the \
                 log), so nothing this sweep measures is stored"
                    .to_string(),
            );
        }
        let waited = self.spec.dwell().max(self.serve_poll_interval * 3).as_secs_f64();
        (!self.stores_samples() && now >= steady_from + waited).then(|| {
            "no samples of this device reach the ledger: the process that holds it does not poll it (`tune` sweeps \
             only what `serve` on this ledger polls)"
                .to_string()
        })
    }
}

/// A reading that ends the step: a limit broken, the miner restarted by itself (a
/// configuration that makes it reboot is unstable: the sweep of this miner ends there),
/// or settings that are no longer the step's.
fn reading_ends_step(
    prepared: &Prepared,
    sample: &Sample,
    gaps: Gaps,
    last_uptime: Option<u64>,
    pair: (f64, f64),
) -> Option<(Measured, Option<Stop>)> {
    if let Some(breach) = prepared.limits.check(sample, gaps) {
        return Some((Measured::Broke(breach), None));
    }
    if let (Some(before), Some(now)) = (last_uptime, sample.uptime_seconds) {
        if now < before {
            let why = "the miner restarted by itself".to_string();
            return Some((Measured::Unstable(why.clone()), Some(Stop::Gone(why))));
        }
    }
    if !matches_target(
        (sample.frequency_mhz, sample.core_voltage_mv),
        (Some(pair.0), Some(pair.1)),
    ) {
        let why = format!(
            "the settings changed on the miner to {} MHz / {} mV",
            fmt_setting(sample.frequency_mhz),
            fmt_setting(sample.core_voltage_mv)
        );
        return Some((Measured::Unstable(why.clone()), Some(Stop::Gone(why))));
    }
    None
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

impl Measured {
    /// What the step's session ends with: nothing for a measured step, else what stopped it.
    fn session_notes(&self) -> String {
        match self {
            Measured::Done { .. } => String::new(),
            Measured::Broke(breach) => format!("stopped: {breach}"),
            Measured::Unstable(why) | Measured::Aborted(why) => format!("stopped: {why}"),
        }
    }

    /// The step's outcome and why: healthy or not for a step measured with enough steady
    /// samples; a limit for one that broke a limit more settings would only make worse or
    /// made the miner unstable; aborted otherwise.
    fn judge(self, report: &mut StepReport, max_error_percent: f64) {
        match self {
            Measured::Done { result, .. } if !result.enough_samples() => {
                report.reason = format!(
                    "only {} steady samples by --max-dwell (needs {})",
                    result.samples,
                    crate::analysis::MIN_STEADY_SAMPLES
                );
                report.result = Some(result);
            }
            Measured::Done { result, converged } => {
                let problems = result.health_problems(max_error_percent);
                report.outcome = if problems.is_empty() {
                    Outcome::Healthy
                } else {
                    Outcome::Unhealthy
                };
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
                report.outcome = if breach.ends_climb() {
                    Outcome::Limit
                } else {
                    Outcome::Aborted
                };
                report.reason = breach.to_string();
            }
            Measured::Unstable(why) => {
                report.outcome = Outcome::Limit;
                report.reason = why;
            }
            Measured::Aborted(why) => report.reason = why,
        }
    }
}

/// Why a configuration could not be applied.
enum ApplyError {
    /// Outside the window, or the miner said no: nothing changed.
    Refused(String),
    /// It answered, but runs something else.
    Mismatch(String),
    /// It does not answer after the write.
    Unreachable(String),
    /// A stop signal came while waiting for the miner.
    Cancelled,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_firmware_before_2_2_restarts_to_apply() {
        use crate::axeos::family::FirmwareFamily;
        let identity = |firmware: Option<&str>, family| crate::axeos::Identity {
            firmware: firmware.map(String::from),
            family,
            ..Default::default()
        };
        assert!(needs_restart(&identity(Some("v2.0.3"), FirmwareFamily::EspMiner)));
        assert!(needs_restart(&identity(Some("v2.1.10"), FirmwareFamily::EspMiner)));
        assert!(!needs_restart(&identity(Some("v2.2.0"), FirmwareFamily::EspMiner)));
        assert!(!needs_restart(&identity(Some("v2.15.0"), FirmwareFamily::EspMiner)));
        assert!(!needs_restart(&identity(
            Some("esp-miner-dev"),
            FirmwareFamily::Unknown
        )));
        assert!(!needs_restart(&identity(None, FirmwareFamily::Unknown)));
        // A NerdQAxe's v1.0.x is not "before v2.2": it applies live.
        assert!(!needs_restart(&identity(Some("v1.0.37"), FirmwareFamily::NerdQaxe)));
        assert!(needs_restart(&identity(Some("1.1.0"), FirmwareFamily::Lucky)));
    }
}
