//! What a sweep will do to one miner, decided before anything is sent: its candidate
//! values (the miner's option lists, spans, steps), the plan, the window every pair must
//! fit, the limits, and what its firmware needs (fractional MHz, a restart to apply).

use serde::{Deserialize, Serialize};

use crate::axeos::boards::{board_defaults, BoardDefaults};
use crate::axeos::family::{unknown_refusal, FirmwareFamily};
use crate::axeos::sample::Sample;
use crate::axeos::window::SettingsWindow;
use crate::axeos::{AxeOsClient, SettingsPatch};
use crate::config::{MinerAddress, TuneSettings};
use crate::tune::limits::Limits;
use crate::tune::plan::{
    smallest_gap, Axis, PlanKind, Planner, DEFAULT_VOLTAGE_STEP_MV, MAX_PAIRS, MIN_FREQUENCY_STEP_MHZ,
};
use crate::tune::spec::SweepSpec;

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
    let mut first = client
        .system_info(address)
        .await
        .map_err(|e| format!("{name}: cannot read the miner at {address}: {e}"))?;
    // Writes follow the family's rules: an unknown family is never guessed at.
    if first.identity.family == FirmwareFamily::Unknown {
        match spec.assume_family {
            Some(assumed) => first.identity.family = assumed,
            None => return Err(unknown_refusal(name, first.identity.firmware.as_deref())),
        }
    }
    let options = client.asic_options(address).await.unwrap_or(None);
    let original = (first.frequency_mhz, first.core_voltage_mv);
    let (Some(current_frequency), Some(current_voltage)) = original else {
        return Err(format!(
            "{name}: the miner does not report its frequency and core voltage; nothing to start from"
        ));
    };
    let board = first
        .identity
        .board
        .as_deref()
        .and_then(|name| board_defaults(name, first.identity.family));
    let lists = match fixed {
        Some(lists) => lists,
        None => candidate_lists(
            name,
            spec,
            options.as_ref(),
            board.as_ref(),
            (current_frequency, current_voltage),
        )?,
    };
    let firmware = first.identity.firmware.as_deref();
    // The family's rule, as the apply path will use it (a fork's version is not
    // upstream's): refused here, before anything is sent, not at the first such step.
    let fractional = crate::axeos::family::takes_fractional_mhz(first.identity.family, firmware);
    if fractional != Some(true) {
        if let Some(f) = lists.frequencies.iter().find(|f| f.fract().abs() > 1e-9) {
            return Err(format!(
                "{name}: firmware {} ({}) takes whole MHz only, so {f} MHz would be cut to {} or ignored",
                firmware.unwrap_or("?"),
                first.identity.family.as_label(),
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

/// The candidate frequencies and voltages for a miner now on `current`: the miner's own
/// option lists, else its board's (`board`), near the current and the stock settings.
fn candidate_lists(
    name: &str,
    spec: &SweepSpec,
    options: Option<&(Vec<f64>, Vec<f64>)>,
    board: Option<&BoardDefaults>,
    current: (f64, f64),
) -> Result<PlanLists, String> {
    let frequencies = Axis {
        span: spec.freq,
        options: options.map(|o| o.0.as_slice()),
        board_options: board.map(|b| b.frequency_options),
        current: current.0,
        board_default: board.map(|b| b.default_mhz),
        default_step: MIN_FREQUENCY_STEP_MHZ,
        default_reach: (75.0, 100.0),
        allow_unlisted: spec.allow_unlisted,
        unit: "MHz",
        flag: "--freq",
    }
    .values()
    .map_err(|e| format!("{name}: {e}"))?;
    // An undervolt sweep never starts above the voltage the miner runs, unless asked to
    // (so not at a higher stock voltage either).
    let undervolt = spec.plan == PlanKind::Efficiency;
    let reach_above = if undervolt { 0.0 } else { 100.0 };
    let voltages: Vec<f64> = Axis {
        span: spec.voltage,
        options: options.map(|o| o.1.as_slice()),
        board_options: board.map(|b| b.voltage_options),
        current: current.1,
        board_default: board.map(|b| b.default_mv).filter(|_| !undervolt),
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
    // Values that round to the same millivolt are one configuration, tried once.
    let mut voltages = voltages;
    voltages.dedup_by(|a, b| (*a - *b).abs() < 1e-6);
    let pairs = frequencies.len() * voltages.len();
    if pairs > MAX_PAIRS {
        return Err(format!(
            "{name}: {} frequencies × {} voltages are {pairs} configurations, more than the {MAX_PAIRS} one sweep \
             tries; narrow --freq / --voltage or take a larger step",
            frequencies.len(),
            voltages.len()
        ));
    }
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

pub(crate) fn patch_for(pair: (f64, f64)) -> SettingsPatch {
    SettingsPatch {
        frequency: Some(pair.0),
        core_voltage: Some(pair.1.round().clamp(0.0, f64::from(u32::MAX)) as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(plan: PlanKind) -> SweepSpec {
        SweepSpec::for_test("max", plan)
    }

    #[test]
    fn firmware_without_option_lists_sweeps_the_boards_documented_options() {
        // A Max on v2.0 (no /api/system/asic), running its stock 425 MHz / 1400 mV.
        let max = board_defaults("Max", crate::axeos::family::FirmwareFamily::EspMiner);
        let lists = candidate_lists("max", &spec(PlanKind::Grid), None, max.as_ref(), (425.0, 1400.0)).unwrap();
        assert_eq!(lists.frequencies, vec![400.0, 425.0, 450.0, 475.0, 485.0, 500.0, 525.0]);
        assert_eq!(lists.voltages, vec![1300.0, 1350.0, 1400.0, 1450.0, 1500.0]);
        // Undervolting from 1400 mV: nothing above it.
        let lists = candidate_lists("max", &spec(PlanKind::Efficiency), None, max.as_ref(), (425.0, 1400.0)).unwrap();
        assert_eq!(lists.voltages, vec![1300.0, 1350.0, 1400.0]);
        // A Supra someone left at 550 MHz / 1250 mV: the stock 490 / 1166 is tried as well.
        let supra = board_defaults("Supra", crate::axeos::family::FirmwareFamily::EspMiner);
        let lists = candidate_lists("supra", &spec(PlanKind::Grid), None, supra.as_ref(), (550.0, 1250.0)).unwrap();
        assert!(lists.frequencies.contains(&490.0), "{lists:?}");
        assert!(lists.voltages.contains(&1166.0), "{lists:?}");
        assert_eq!(lists.frequencies.last(), Some(&575.0));
        // The miner's own lists win over the board's.
        let listed = (vec![425.0, 450.0], vec![1350.0, 1400.0]);
        let lists = candidate_lists(
            "max",
            &spec(PlanKind::Grid),
            Some(&listed),
            max.as_ref(),
            (425.0, 1400.0),
        )
        .unwrap();
        assert_eq!((lists.frequencies, lists.voltages), listed);
        // Neither a list nor a known board: only the current settings.
        let lists = candidate_lists("odd", &spec(PlanKind::Grid), None, None, (425.0, 1400.0)).unwrap();
        assert_eq!((lists.frequencies, lists.voltages), (vec![425.0], vec![1400.0]));
    }
}
