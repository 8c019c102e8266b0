//! `tune`'s progress: a live line per device on a terminal (indicatif), plain lines
//! elsewhere, and log lines for the demo's sweep beside the daemon's own log.

use std::time::Duration;

use super::output::status_line;
use crate::axeos::printable;
use crate::axeos::sample::{format_label_number, Sample};
use crate::tune::limits::Limits;
use crate::tune::measure::StepResult;
use crate::tune::report::{Observer, StepReport};
use crate::tune::spec::SweepSpec;

/// A live line per device on a terminal (indicatif), plain lines otherwise: the step (k of
/// at most n) and its configuration, the time on it, the current width of the intervals
/// against the target, and the temperatures against their limits.
pub(super) struct Progress {
    /// The live lines, on a terminal.
    multi: Option<indicatif::MultiProgress>,
    devices: std::sync::Mutex<std::collections::HashMap<String, DeviceLine>>,
    /// The interval target, ± %.
    target_percent: f64,
    /// Off a terminal: at most one progress line per device this often.
    plain_every: Duration,
}

/// Where one device's sweep is.
struct DeviceLine {
    bar: Option<indicatif::ProgressBar>,
    /// `gamma: step 2 of at most 12: 525 MHz / 1100 mV`.
    step: String,
    started: std::time::Instant,
    last_line: std::time::Instant,
}

/// The most a plain progress line is held back: once a minute per device.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(60);

impl Progress {
    pub(super) fn new(spec: &SweepSpec, target_percent: f64) -> Progress {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        Progress {
            multi: terminal.then(indicatif::MultiProgress::new),
            devices: std::sync::Mutex::default(),
            target_percent,
            // About ten lines over the longest a step can take, at most one a minute.
            plain_every: (spec.max_step_duration() / 10).min(PLAIN_PROGRESS_EVERY),
        }
    }

    pub(super) fn plain() -> Progress {
        Progress {
            multi: None,
            devices: std::sync::Mutex::default(),
            target_percent: 0.0,
            plain_every: PLAIN_PROGRESS_EVERY,
        }
    }

    fn devices(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, DeviceLine>> {
        self.devices.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn new_bar(&self) -> Option<indicatif::ProgressBar> {
        let multi = self.multi.as_ref()?;
        // Cut at the terminal's width: the temperatures come before the interval.
        let style = indicatif::ProgressStyle::with_template("{spinner} {prefix}, {elapsed_precise}, {wide_msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
        let bar = multi.add(indicatif::ProgressBar::new_spinner().with_style(style));
        bar.enable_steady_tick(Duration::from_millis(250));
        Some(bar)
    }

    fn line(&self, text: &str) {
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(text);
            }
            None => status_line(text),
        }
    }

    /// The intervals so far against the target.
    fn interval_text(&self, result: Option<&StepResult>) -> String {
        let finite = |c: Option<f64>| c.filter(|c| c.is_finite());
        match result {
            None => "warming up".to_string(),
            Some(r) => match (finite(r.hashrate_ci_percent), finite(r.jth_ci_percent)) {
                (Some(hashrate), Some(jth)) => format!(
                    "±{hashrate:.1} % hashrate, ±{jth:.1} % J/TH (target ±{} %) over {} samples",
                    format_label_number(self.target_percent),
                    r.samples
                ),
                _ => format!("{} steady sample(s), no interval yet", r.samples),
            },
        }
    }
}

/// The temperatures against their limits.
fn temperatures_text(sample: &Sample, limits: &Limits) -> String {
    format!(
        "ASIC {}/{} °C, VR {}/{} °C",
        sample.asic_temp_celsius.map_or("?".into(), |t| format!("{t:.1}")),
        format_label_number(limits.max_asic_celsius),
        sample.vr_temp_celsius.map_or("-".into(), |t| format!("{t:.1}")),
        format_label_number(limits.max_vr_celsius),
    )
}

/// `0:02:05`.
fn clock_text(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    format!("{}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60)
}

impl Observer for Progress {
    fn step_started(&self, device: &str, step: u32, max_steps: usize, pair: (f64, f64)) {
        let text = format!(
            "{}: step {step} of at most {max_steps}: {} MHz / {} mV",
            printable(device),
            format_label_number(pair.0),
            format_label_number(pair.1)
        );
        let now = std::time::Instant::now();
        let mut devices = self.devices();
        let line = devices.entry(device.to_string()).or_insert_with(|| DeviceLine {
            bar: self.new_bar(),
            step: String::new(),
            started: now,
            last_line: now,
        });
        line.step = text.clone();
        line.started = now;
        line.last_line = now;
        match &line.bar {
            Some(bar) => {
                bar.set_prefix(format!(
                    "{}: step {step}/{max_steps}, {}/{}",
                    printable(device),
                    format_label_number(pair.0),
                    format_label_number(pair.1)
                ));
                bar.set_message("applying");
                bar.reset_elapsed();
            }
            None => self.line(&text),
        }
    }

    fn sampled(&self, device: &str, sample: &Sample, limits: &Limits, result: Option<&StepResult>) {
        let (interval, temperatures) = (self.interval_text(result), temperatures_text(sample, limits));
        let mut devices = self.devices();
        let Some(line) = devices.get_mut(device) else {
            return;
        };
        if let Some(bar) = &line.bar {
            bar.set_message(format!("{temperatures}, {interval}"));
            return;
        }
        let now = std::time::Instant::now();
        if now.duration_since(line.last_line) >= self.plain_every {
            line.last_line = now;
            let text = format!(
                "{}, {} elapsed, {interval}, {temperatures}",
                line.step,
                clock_text(now.duration_since(line.started))
            );
            drop(devices);
            self.line(&text);
        }
    }

    fn step_finished(&self, device: &str, step: &StepReport) {
        let r = step.result.as_ref();
        let figures = match r {
            Some(r) => format!(
                " — {} GH/s ±{}, {} J/TH ±{}",
                r.mean_hashrate_ghs.map_or("-".into(), |h| format!("{h:.1}")),
                r.hashrate_ci_percent
                    .filter(|c| c.is_finite())
                    .map_or("-".into(), |c| format!("{c:.1} %")),
                r.joules_per_terahash.map_or("-".into(), |j| format!("{j:.2}")),
                r.jth_ci_percent.map_or("-".into(), |c| format!("{c:.1} %")),
            ),
            None => String::new(),
        };
        self.line(&format!(
            "{}: step {} {} MHz / {} mV: {}{}{figures}",
            printable(device),
            step.step,
            format_label_number(step.frequency_mhz),
            format_label_number(step.core_voltage_mv),
            step.outcome,
            if step.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", printable(&step.reason))
            }
        ));
    }

    fn note(&self, device: &str, message: &str) {
        self.line(&format!("{}: {}", printable(device), printable(message)));
        if message.starts_with("left on") || message.starts_with("could not restore") {
            if let Some(bar) = self.devices().get(device).and_then(|l| l.bar.as_ref()) {
                bar.finish_and_clear();
            }
        }
    }

    fn run_note(&self, message: &str) {
        status_line(message);
    }
}

/// Every step and note as a log line: the demo's sweep, beside the daemon's own log.
pub(super) struct LogObserver;

impl Observer for LogObserver {
    fn step_started(&self, device: &str, step: u32, max_steps: usize, pair: (f64, f64)) {
        tracing::info!(
            device = %printable(device),
            "tune: step {step} of at most {max_steps}: {} MHz / {} mV",
            format_label_number(pair.0),
            format_label_number(pair.1)
        );
    }

    fn sampled(&self, _: &str, _: &Sample, _: &Limits, _: Option<&StepResult>) {}

    fn step_finished(&self, device: &str, step: &StepReport) {
        let r = step.result.as_ref();
        tracing::info!(
            device = %printable(device),
            "tune: step {} {} MHz / {} mV {}{}: {} J/TH",
            step.step,
            format_label_number(step.frequency_mhz),
            format_label_number(step.core_voltage_mv),
            step.outcome,
            if step.reason.is_empty() { String::new() } else { format!(" ({})", printable(&step.reason)) },
            r.and_then(|r| r.joules_per_terahash).map_or("-".into(), |j| format!("{j:.2}"))
        );
    }

    fn note(&self, device: &str, message: &str) {
        tracing::info!(device = %printable(device), "tune: {}", printable(message));
    }

    /// Straight to stderr, as from `tune` itself.
    fn run_note(&self, message: &str) {
        status_line(message);
    }
}
