//! The simulated miner's physics, good enough to tune against: the board table (real core
//! counts and defaults), hashrate from frequency × cores that falls off when the core
//! voltage is too low for the frequency, power rising with f·V², an ASIC temperature that
//! follows power with a thermal lag and the fan, shares and best difficulty, overheat
//! protection, per-chip health (a dead or weak chip, each chip's error counter), the
//! pool's work notifications and a lifetime hash total, and seeded noise.

use std::time::Duration;

/// A board family (shared/reference/axeos-api.md §5; the later ones
/// shared/reference/firmware-families.md and tests/fixtures/axeos/SOURCES.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Board {
    Max,
    Ultra,
    Supra,
    Gamma,
    GammaTurbo,
    Hex,
    SupraHex,
    /// Upstream board `1300`: six BM1370 on 12 V (ESP-Miner PR #1894, merged in #1916).
    GammaHex,
    /// Upstream board `1201`: two BM1372/BM1373 on 12 V (ESP-Miner PRs #1890, #1892).
    NajaDuo,
    /// Board `601a`: a Gamma on a 12 V input (ESP-Miner PRs #1784, #1804, #1838).
    GammaV2,
    /// NerdQAxe++ (shufps/ESP-Miner-NerdQAxePlus `main/boards/nerdqaxeplus2.cpp`).
    NerdQAxePlusPlus,
    /// NerdOCTAXE-γ (`main/boards/nerdoctaxegamma.cpp`, the 4-phase TPS53647 build).
    NerdOctaxe,
    /// Lucky Miner LV06: one BM1366.
    LuckyLV06,
    /// Lucky Miner LV07: two BM1366 on 12 V (pyasic issue #280).
    LuckyLV07,
    /// Lucky Miner LV08: nine BM1366 on 12 V (pyasic issue #278).
    LuckyLV08,
}

/// Which firmware a board ships with, and so which dialect it speaks by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Maker {
    /// Upstream ESP-Miner (bitaxeorg).
    Upstream,
    /// The NerdQAxe family's fork.
    NerdQaxe,
    /// Lucky Miner's vendor firmware.
    Lucky,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoardSpec {
    pub device_model: &'static str,
    pub asic_model: &'static str,
    pub small_cores: u32,
    pub chips: u32,
    pub board_version: &'static str,
    pub default_mhz: f64,
    pub default_mv: f64,
    pub nominal_volts: f64,
    pub max_power_watts: f64,
    /// Board power beyond the ASIC core rail: regulator offset on TPS546 boards, measured
    /// overhead on INA260 boards.
    pub overhead_watts: f64,
    /// TPS546 regulator (reports `vrTemp`, power is an estimate) rather than an INA260.
    pub has_vr_sensor: bool,
    /// Relative energy per hash of the ASIC generation (BM1370 = 1).
    pub energy_factor: f64,
    /// The board's own `/api/system/asic` option lists (MHz, mV) when they differ from
    /// the chip's (NerdQAxe boards, the Gamma Hex's 690 MHz, the BM1372/BM1373).
    pub options: Option<(&'static [f64], &'static [f64])>,
    /// The firmware's lower power bound for the board (`minPower`, NerdQAxe), W.
    pub min_power_watts: f64,
    /// How far the input sags per watt drawn (cable and supply), mV/W; `None` for the
    /// usual 6 (5 V boards) or 10 (12 V boards).
    pub sag_mv_per_watt: Option<f64>,
}

/// NerdQAxe++ option lists (`nerdqaxeplus2.cpp`), shared by the NerdOCTAXE-γ on its
/// TPS53647 regulator.
const NERDQAXE_PLUS_PLUS_MHZ: [f64; 7] = [500.0, 515.0, 525.0, 550.0, 575.0, 590.0, 600.0];
const NERDQAXE_PLUS_PLUS_MV: [f64; 9] = [1120.0, 1130.0, 1140.0, 1150.0, 1160.0, 1170.0, 1180.0, 1190.0, 1200.0];
/// Upstream master's BM1370 list with the Gamma Hex's 690 MHz (`device_config.h`).
const GAMMA_HEX_MHZ: [f64; 7] = [400.0, 490.0, 525.0, 550.0, 600.0, 625.0, 690.0];
const BM1370_MV: [f64; 6] = [1000.0, 1060.0, 1100.0, 1150.0, 1200.0, 1250.0];
/// `BM1373_FREQUENCY_OPTIONS` / `BM1373_VOLTAGE_OPTIONS` (ESP-Miner master, #1890).
const BM1373_MHZ: [f64; 6] = [327.0, 350.0, 375.0, 380.0, 400.0, 410.0];
const BM1373_MV: [f64; 6] = [1000.0, 1060.0, 1100.0, 1150.0, 1200.0, 1250.0];

impl Board {
    pub const ALL: [Board; 15] = [
        Board::Max,
        Board::Ultra,
        Board::Supra,
        Board::Gamma,
        Board::GammaTurbo,
        Board::Hex,
        Board::SupraHex,
        Board::GammaHex,
        Board::NajaDuo,
        Board::GammaV2,
        Board::NerdQAxePlusPlus,
        Board::NerdOctaxe,
        Board::LuckyLV06,
        Board::LuckyLV07,
        Board::LuckyLV08,
    ];

    /// Whose firmware the board ships with.
    pub fn maker(self) -> Maker {
        match self {
            Board::NerdQAxePlusPlus | Board::NerdOctaxe => Maker::NerdQaxe,
            Board::LuckyLV06 | Board::LuckyLV07 | Board::LuckyLV08 => Maker::Lucky,
            Board::Max
            | Board::Ultra
            | Board::Supra
            | Board::Gamma
            | Board::GammaTurbo
            | Board::Hex
            | Board::SupraHex
            | Board::GammaHex
            | Board::NajaDuo
            | Board::GammaV2 => Maker::Upstream,
        }
    }

    pub fn spec(self) -> BoardSpec {
        let base = BoardSpec {
            device_model: "Gamma",
            asic_model: "BM1370",
            small_cores: 2040,
            chips: 1,
            board_version: "601",
            default_mhz: 525.0,
            default_mv: 1150.0,
            nominal_volts: 5.0,
            max_power_watts: 40.0,
            overhead_watts: 5.0,
            has_vr_sensor: true,
            energy_factor: 1.0,
            options: None,
            min_power_watts: 0.0,
            sag_mv_per_watt: None,
        };
        match self {
            Board::Max => BoardSpec {
                device_model: "Max",
                asic_model: "BM1397",
                small_cores: 672,
                board_version: "102",
                default_mhz: 425.0,
                default_mv: 1400.0,
                max_power_watts: 25.0,
                overhead_watts: 1.5,
                has_vr_sensor: false,
                energy_factor: 2.4,
                ..base
            },
            Board::Ultra => BoardSpec {
                device_model: "Ultra",
                asic_model: "BM1366",
                small_cores: 894,
                board_version: "204",
                default_mhz: 485.0,
                default_mv: 1200.0,
                max_power_watts: 25.0,
                overhead_watts: 1.5,
                has_vr_sensor: false,
                energy_factor: 1.7,
                ..base
            },
            Board::Supra => BoardSpec {
                device_model: "Supra",
                asic_model: "BM1368",
                small_cores: 1276,
                board_version: "401",
                default_mhz: 490.0,
                default_mv: 1166.0,
                overhead_watts: 1.5,
                has_vr_sensor: false,
                energy_factor: 1.3,
                ..base
            },
            Board::Gamma => base,
            Board::GammaTurbo => BoardSpec {
                device_model: "GammaTurbo",
                chips: 2,
                board_version: "800",
                nominal_volts: 12.0,
                max_power_watts: 60.0,
                overhead_watts: 10.0,
                ..base
            },
            Board::Hex => BoardSpec {
                device_model: "Hex",
                asic_model: "BM1366",
                small_cores: 894,
                chips: 6,
                board_version: "302",
                default_mhz: 485.0,
                default_mv: 1200.0,
                nominal_volts: 12.0,
                max_power_watts: 90.0,
                overhead_watts: 12.0,
                energy_factor: 1.7,
                ..base
            },
            Board::SupraHex => BoardSpec {
                device_model: "SupraHex",
                asic_model: "BM1368",
                small_cores: 1276,
                chips: 6,
                board_version: "701",
                default_mhz: 490.0,
                default_mv: 1166.0,
                nominal_volts: 12.0,
                max_power_watts: 120.0,
                overhead_watts: 25.0,
                energy_factor: 1.3,
                ..base
            },
            // FAMILY_GAMMA_HEX: ASIC_BM1370_HEX (690 MHz / 1200 mV), six chips, 180 W,
            // power offset 25 W, 12 V.
            Board::GammaHex => BoardSpec {
                device_model: "GammaHex",
                chips: 6,
                board_version: "1300",
                default_mhz: 690.0,
                default_mv: 1200.0,
                nominal_volts: 12.0,
                max_power_watts: 180.0,
                overhead_watts: 25.0,
                options: Some((&GAMMA_HEX_MHZ, &BM1370_MV)),
                // A 180 W supply: 12 V boards this big come with a stiff one.
                sag_mv_per_watt: Some(4.0),
                ..base
            },
            // FAMILY_NAJA_DUO: ASIC_BM1373 ("BM1372/BM1373", 6,725 small cores, 327 MHz /
            // 1000 mV), two chips, 60 W, no power offset, 12 V. The factory test measured
            // 4.58 TH/s at 327 MHz (#1890), about what 2 × 6,725 cores give.
            Board::NajaDuo => BoardSpec {
                device_model: "NajaDuo",
                asic_model: "BM1372/BM1373",
                small_cores: 6725,
                chips: 2,
                board_version: "1201",
                default_mhz: 327.0,
                default_mv: 1000.0,
                nominal_volts: 12.0,
                max_power_watts: 60.0,
                overhead_watts: 4.0,
                energy_factor: 0.9,
                options: Some((&BM1373_MHZ, &BM1373_MV)),
                ..base
            },
            // The 601a runs the Gamma family with the TPS546 set for 12 V (#1838): the
            // same model, PSU rating and chip; a user measured 1.04 TH/s at 20 W (#1784).
            Board::GammaV2 => BoardSpec {
                board_version: "601a",
                nominal_volts: 12.0,
                ..base
            },
            // NerdQaxePlus2: 4 × BM1370, 600 MHz / 1150 mV, maxPin 100 W, minPin 52 W,
            // 11–13 V.
            Board::NerdQAxePlusPlus => BoardSpec {
                device_model: "NerdQAxe++",
                chips: 4,
                board_version: "",
                default_mhz: 600.0,
                default_mv: 1150.0,
                nominal_volts: 12.0,
                max_power_watts: 100.0,
                min_power_watts: 52.0,
                overhead_watts: 8.0,
                sag_mv_per_watt: Some(6.0),
                options: Some((&NERDQAXE_PLUS_PLUS_MHZ, &NERDQAXE_PLUS_PLUS_MV)),
                ..base
            },
            // NerdOctaxeGamma on a TPS53647: 8 × BM1370, the NerdQAxe++ defaults and
            // lists, maxPin 200 W, minPin 100 W.
            Board::NerdOctaxe => BoardSpec {
                device_model: "NerdOCTAXE-γ",
                chips: 8,
                board_version: "",
                default_mhz: 600.0,
                default_mv: 1150.0,
                nominal_volts: 12.0,
                max_power_watts: 200.0,
                min_power_watts: 100.0,
                overhead_watts: 15.0,
                sag_mv_per_watt: Some(4.0),
                options: Some((&NERDQAXE_PLUS_PLUS_MHZ, &NERDQAXE_PLUS_PLUS_MV)),
                ..base
            },
            // No LV06 body has been seen; it is built like the Ultra it copies.
            Board::LuckyLV06 => BoardSpec {
                device_model: "LV06",
                board_version: "302",
                ..Board::Ultra.spec()
            },
            // A posted LV07: 857 GH/s at 575 MHz and 26.5 W on 12 V — two BM1366.
            Board::LuckyLV07 => BoardSpec {
                device_model: "LV07",
                chips: 2,
                board_version: "302",
                nominal_volts: 12.0,
                max_power_watts: 40.0,
                overhead_watts: 4.0,
                has_vr_sensor: true,
                // 12.02 V at 26.5 W as posted.
                sag_mv_per_watt: Some(2.0),
                ..Board::Ultra.spec()
            },
            // A posted LV08: asicCount 9, 3.59 TH/s at 485 MHz, 99.8 W on 12 V.
            Board::LuckyLV08 => BoardSpec {
                device_model: "LV08",
                chips: 9,
                board_version: "302",
                nominal_volts: 12.0,
                max_power_watts: 120.0,
                overhead_watts: 12.0,
                has_vr_sensor: true,
                // 12.14 V at 99.8 W as posted.
                sag_mv_per_watt: Some(2.0),
                ..Board::Ultra.spec()
            },
        }
    }

    /// The board as the command line names it (`--board GammaHex`); also the start of a
    /// simulated miner's hostname.
    pub fn name(self) -> &'static str {
        match self {
            Board::Max => "Max",
            Board::Ultra => "Ultra",
            Board::Supra => "Supra",
            Board::Gamma => "Gamma",
            Board::GammaTurbo => "GammaTurbo",
            Board::Hex => "Hex",
            Board::SupraHex => "SupraHex",
            Board::GammaHex => "GammaHex",
            Board::NajaDuo => "NajaDuo",
            Board::GammaV2 => "GammaV2",
            Board::NerdQAxePlusPlus => "NerdQAxePlusPlus",
            Board::NerdOctaxe => "NerdOctaxe",
            Board::LuckyLV06 => "LuckyLV06",
            Board::LuckyLV07 => "LuckyLV07",
            Board::LuckyLV08 => "LuckyLV08",
        }
    }

    /// The frequency and voltage option lists its firmware offers (MHz, mV).
    pub fn options(self) -> (&'static [f64], &'static [f64]) {
        let spec = self.spec();
        spec.options
            .or_else(|| crate::axeos::window::chip_options(spec.asic_model))
            .unwrap_or((&[], &[]))
    }
}

/// The boards as the command line lists and reads them (`--board Gamma`, any case).
impl clap::ValueEnum for Board {
    fn value_variants<'a>() -> &'a [Self] {
        &Board::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

/// Thermal resistance chip→air per chip (°C/W) at full fan, and the extra at no fan.
const THERMAL_RESISTANCE_FULL_FAN: f64 = 1.9;
const THERMAL_RESISTANCE_FAN_SPAN: f64 = 2.6;
/// Time constant of the heatsink (seconds of simulated time).
const THERMAL_TIME_CONSTANT_S: f64 = 40.0;
/// Core voltage margin below the default voltage at the default frequency before errors.
const VOLTAGE_MARGIN_MV: f64 = 60.0;
/// Extra core voltage each additional MHz needs.
const MV_PER_MHZ: f64 = 0.5;
/// Simulated seconds between two jobs from the pool (a `mining.notify` every so often).
const WORK_INTERVAL_S: f64 = 20.0;
/// How fast a chip's error counter runs: counts per second per GH/s at a 1 % error rate
/// (a v2.15 Gamma at 1.09 TH/s and 0.41 % counted 1.84 million in 74 hours).
const ERROR_COUNTS_PER_GHS_PERCENT: f64 = 1.6;
/// Error counts a dead chip's counter gains per second (it answers with garbage).
const DEAD_CHIP_ERRORS_PER_S: f64 = 200.0;
/// Firmware overheat protection trips above this ASIC temperature.
pub(crate) const OVERHEAT_CELSIUS: f64 = 75.0;
const MAX_FAN_RPM: f64 = 7000.0;

/// Steady-state behaviour of a chip at a clock configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Operating {
    /// Fraction of the theoretical hashrate actually produced.
    pub hashrate_factor: f64,
    /// ASIC hardware error percentage.
    pub error_percent: f64,
    /// Power on the core rail, all chips, W.
    pub core_watts: f64,
}

/// The lowest core voltage (mV) that runs `mhz` cleanly on this board.
pub(crate) fn min_stable_mv(spec: &BoardSpec, mhz: f64) -> f64 {
    spec.default_mv - VOLTAGE_MARGIN_MV + MV_PER_MHZ * (mhz - spec.default_mhz)
}

pub fn operating_point(spec: &BoardSpec, mhz: f64, mv: f64) -> Operating {
    let volts = mv / 1000.0;
    let margin = mv - min_stable_mv(spec, mhz);
    let hashrate_factor = if margin >= 0.0 {
        1.0
    } else {
        (1.0 - (margin / 70.0).powi(2)).max(0.0)
    };
    let error_percent = (0.15 + 6.0 * (-margin / 10.0).exp()).min(100.0);
    let per_chip =
        spec.energy_factor * f64::from(spec.small_cores) / 2040.0 * 0.01728 * mhz * volts * volts + volts * volts;
    Operating {
        hashrate_factor,
        error_percent,
        core_watts: per_chip * f64::from(spec.chips),
    }
}

/// Theoretical hashrate, GH/s.
pub fn expected_ghs(spec: &BoardSpec, mhz: f64) -> f64 {
    mhz * f64::from(spec.small_cores) * f64::from(spec.chips) / 1000.0
}

fn thermal_resistance(fan_duty: f64) -> f64 {
    THERMAL_RESISTANCE_FULL_FAN + THERMAL_RESISTANCE_FAN_SPAN * (1.0 - fan_duty.clamp(0.0, 1.0))
}

/// Fan settings as the firmware keeps them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FanSettings {
    pub auto: bool,
    pub manual_percent: f64,
    pub min_percent: f64,
    pub target_celsius: f64,
}

impl Default for FanSettings {
    fn default() -> Self {
        Self {
            auto: true,
            manual_percent: 100.0,
            min_percent: 25.0,
            target_celsius: 60.0,
        }
    }
}

/// One simulated miner's evolving state. Time is simulated seconds, advanced by the caller.
#[derive(Debug, Clone)]
pub struct MinerPhysics {
    pub spec: BoardSpec,
    pub frequency_mhz: f64,
    pub core_voltage_mv: f64,
    pub fan: FanSettings,
    pub ambient_celsius: f64,
    pub asic_celsius: f64,
    pub fan_duty: f64,
    pub overheat: bool,
    /// Overheat behaviour of firmware ≥ v2.11: cool down, retry 100 MHz / 100 mV lower.
    pub overheat_self_clears: bool,
    pub uptime_s: f64,
    pub shares_accepted: f64,
    pub shares_rejected: f64,
    pub best_difficulty: f64,
    pub session_best_difficulty: f64,
    pub pool_difficulty: f64,
    pub noise: bool,
    /// Shares arrive at random (a Poisson count per step), as a pool sees them, instead of
    /// evenly (a running fraction).
    pub random_shares: bool,
    /// Each chip's part of the board's hashrate (they differ a little, and sum to 1).
    pub chip_shares: Vec<f64>,
    /// How much of its part each chip delivers: 1 healthy, 0 dead, between weak.
    pub chip_health: Vec<f64>,
    /// Each chip's hardware error counter (`hashrateMonitor.asics[i].errorCount`), since boot.
    pub chip_errors: Vec<f64>,
    /// `mining.notify` jobs received from the pool since boot (`workReceived`).
    pub work_received: f64,
    /// Whether the pool sends new work (a pool that stops leaves the counter still).
    pub pool_sends_work: bool,
    /// Hashes done over the miner's life, kept across reboots (`totalHashes`).
    pub total_hashes: f64,
    rng: fastrand::Rng,
}

/// One reading of the simulated sensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub hashrate_ghs: f64,
    pub expected_ghs: f64,
    pub power_watts: f64,
    pub input_mv: f64,
    pub current_ma: f64,
    pub asic_celsius: f64,
    pub vr_celsius: f64,
    pub core_mv_measured: f64,
    pub fan_percent: f64,
    pub fan_rpm: f64,
    pub error_percent: f64,
}

impl MinerPhysics {
    pub fn new(spec: BoardSpec, seed: u64, noise: bool) -> Self {
        let mut physics = Self {
            spec,
            frequency_mhz: spec.default_mhz,
            core_voltage_mv: spec.default_mv,
            fan: FanSettings::default(),
            ambient_celsius: 25.0,
            asic_celsius: 0.0,
            fan_duty: 0.5,
            overheat: false,
            overheat_self_clears: true,
            uptime_s: 0.0,
            shares_accepted: 0.0,
            shares_rejected: 0.0,
            best_difficulty: 0.0,
            session_best_difficulty: 0.0,
            pool_difficulty: 1000.0,
            noise,
            random_shares: false,
            chip_shares: Vec::new(),
            chip_health: vec![1.0; spec.chips as usize],
            chip_errors: vec![0.0; spec.chips as usize],
            work_received: 0.0,
            pool_sends_work: true,
            total_hashes: 0.0,
            rng: fastrand::Rng::with_seed(seed),
        };
        physics.settle();
        physics.best_difficulty = 1.0e9 * (1.0 + physics.rng.f64() * 4.0);
        // Drawn apart from the noise, so adding them changed no reading a seed gave before.
        let mut board_rng = fastrand::Rng::with_seed(seed ^ 0x5EED_C41B);
        // Chips of one board differ by a few percent.
        let weights: Vec<f64> = (0..spec.chips).map(|_| 0.97 + 0.06 * board_rng.f64()).collect();
        let sum: f64 = weights.iter().sum();
        physics.chip_shares = weights.iter().map(|w| w / sum).collect();
        // A miner with some weeks of hashing behind it.
        physics.total_hashes = expected_ghs(&spec, spec.default_mhz) * 1e9 * 86_400.0 * (20.0 + 20.0 * board_rng.f64());
        physics
    }

    /// The fraction of the board's hashrate its chips deliver (1 with every chip healthy).
    pub fn live_fraction(&self) -> f64 {
        if self.chip_health.iter().all(|h| *h >= 1.0) {
            // Exactly 1: a healthy board's readings are what they were before chips had shares.
            return 1.0;
        }
        self.chip_shares
            .iter()
            .zip(&self.chip_health)
            .map(|(share, health)| share * health.clamp(0.0, 1.0))
            .sum()
    }

    /// Each chip's hashrate (GH/s) for a board total of `board_ghs` at full health: what
    /// `hashrateMonitor.asics[i].total` reports; they sum to the board's reading.
    pub fn chip_hashrates(&self, board_ghs: f64) -> Vec<f64> {
        let live = self.live_fraction();
        self.chip_shares
            .iter()
            .zip(&self.chip_health)
            .map(|(share, health)| {
                if live > 0.0 {
                    board_ghs * share * health.clamp(0.0, 1.0) / live
                } else {
                    0.0
                }
            })
            .collect()
    }

    fn operating(&self) -> Operating {
        if self.overheat {
            // Mining stopped: the core rail idles.
            return Operating {
                hashrate_factor: 0.0,
                error_percent: 0.0,
                core_watts: 0.3 * f64::from(self.spec.chips),
            };
        }
        operating_point(&self.spec, self.frequency_mhz, self.core_voltage_mv)
    }

    /// Fan duty (0–1) the controller settles on for a core power.
    fn fan_duty_for(&self, core_watts: f64) -> f64 {
        if self.overheat {
            return 1.0;
        }
        if !self.fan.auto {
            return (self.fan.manual_percent / 100.0).clamp(0.0, 1.0);
        }
        let per_chip = core_watts / f64::from(self.spec.chips);
        let wanted_resistance = (self.fan.target_celsius - self.ambient_celsius) / per_chip.max(0.1);
        let duty = 1.0 - (wanted_resistance - THERMAL_RESISTANCE_FULL_FAN) / THERMAL_RESISTANCE_FAN_SPAN;
        duty.clamp(self.fan.min_percent / 100.0, 1.0)
    }

    pub(crate) fn steady_state_celsius(&self) -> f64 {
        let core = self.operating().core_watts;
        let per_chip = core / f64::from(self.spec.chips);
        self.ambient_celsius + thermal_resistance(self.fan_duty_for(core)) * per_chip
    }

    /// Jumps to the steady state of the current settings (fan and temperature settled).
    pub fn settle(&mut self) {
        self.fan_duty = self.fan_duty_for(self.operating().core_watts);
        self.asic_celsius = self.steady_state_celsius();
    }

    /// Advances simulated time by `dt`.
    pub fn advance(&mut self, dt: Duration) {
        let dt = dt.as_secs_f64();
        if dt <= 0.0 {
            return;
        }
        let op = self.operating();
        self.fan_duty = self.fan_duty_for(op.core_watts);
        let target = self.steady_state_celsius();
        self.asic_celsius += (target - self.asic_celsius) * (1.0 - (-dt / THERMAL_TIME_CONSTANT_S).exp());
        self.uptime_s += dt;

        let hashes =
            expected_ghs(&self.spec, self.frequency_mhz) * op.hashrate_factor * self.live_fraction() * 1e9 * dt;
        self.total_hashes += hashes;
        if self.pool_sends_work {
            self.work_received += dt / WORK_INTERVAL_S;
        }
        // Each chip's error counter: its share of the hashing, times the error rate; a dead
        // chip's climbs fast.
        let board_ghs = expected_ghs(&self.spec, self.frequency_mhz) * op.hashrate_factor;
        for (i, errors) in self.chip_errors.iter_mut().enumerate() {
            let health = self.chip_health.get(i).copied().unwrap_or(1.0);
            let share = self.chip_shares.get(i).copied().unwrap_or(0.0);
            *errors += if health <= 0.0 {
                DEAD_CHIP_ERRORS_PER_S * dt
            } else {
                board_ghs * share * op.error_percent * ERROR_COUNTS_PER_GHS_PERCENT * dt * (1.0 + 20.0 * (1.0 - health))
            };
        }
        let expected_shares = hashes / (self.pool_difficulty * 4_294_967_296.0);
        let new_shares = if self.random_shares {
            poisson(&mut self.rng, expected_shares)
        } else {
            expected_shares
        };
        let whole_before = self.shares_accepted.floor();
        self.shares_accepted += new_shares;
        self.shares_rejected += expected_shares * (0.001 + op.error_percent / 1000.0);
        let found = (self.shares_accepted.floor() - whole_before) as i32;
        if found > 0 {
            // The best of `found` shares whose difficulty is pool_difficulty / U.
            let u = self.rng.f64().max(1e-12);
            let best = self.pool_difficulty / (1.0 - u.powf(1.0 / f64::from(found))).max(1e-15);
            self.session_best_difficulty = self.session_best_difficulty.max(best);
            self.best_difficulty = self.best_difficulty.max(best);
        }

        if !self.overheat && self.asic_celsius > OVERHEAT_CELSIUS {
            self.overheat = true;
            if !self.overheat_self_clears {
                // Up to v2.10 the firmware latches at 50 MHz / 1000 mV until cleared.
                self.frequency_mhz = 50.0;
                self.core_voltage_mv = 1000.0;
            }
        } else if self.overheat && self.overheat_self_clears && self.asic_celsius < 55.0 {
            self.overheat = false;
            self.frequency_mhz = (self.frequency_mhz - 100.0).max(100.0);
            self.core_voltage_mv = (self.core_voltage_mv - 100.0).max(900.0);
        }
    }

    /// Clears a latched overheat (`PATCH overheat_mode: 0`).
    pub fn clear_overheat(&mut self) {
        self.overheat = false;
    }

    /// A reboot: counters since boot start again (the lifetime hash total stays).
    pub fn reboot(&mut self) {
        self.uptime_s = 0.0;
        self.shares_accepted = 0.0;
        self.shares_rejected = 0.0;
        self.session_best_difficulty = 0.0;
        self.work_received = 0.0;
        self.chip_errors.iter_mut().for_each(|e| *e = 0.0);
    }

    fn jitter(&mut self, relative: f64) -> f64 {
        if !self.noise {
            return 1.0;
        }
        // Sum of uniforms: a cheap bell curve with standard deviation `relative`.
        let bell = (self.rng.f64() + self.rng.f64() + self.rng.f64() - 1.5) * 2.0;
        1.0 + relative * bell
    }

    pub fn read(&mut self) -> Reading {
        let op = self.operating();
        let expected = expected_ghs(&self.spec, self.frequency_mhz);
        let hashrate = expected * op.hashrate_factor * self.live_fraction() * self.jitter(0.02);
        let power = (op.core_watts + self.spec.overhead_watts) * self.jitter(0.005);
        // The supply sags with load (cable and PSU resistance): what makes an overclock
        // trip a tuner's input-voltage floor before anything else on a weak supply.
        let sag_mv_per_watt =
            self.spec
                .sag_mv_per_watt
                .unwrap_or(if self.spec.nominal_volts > 6.0 { 10.0 } else { 6.0 });
        let input_mv = (self.spec.nominal_volts * 1000.0 - sag_mv_per_watt * power) * self.jitter(0.004);
        let current_ma = if self.spec.has_vr_sensor {
            op.core_watts / (self.core_voltage_mv / 1000.0) * 1000.0 / f64::from(self.spec.chips.div_ceil(2))
        } else {
            power / (input_mv / 1000.0) * 1000.0
        };
        let asic = self.asic_celsius + if self.noise { (self.rng.f64() - 0.5) * 0.5 } else { 0.0 };
        Reading {
            hashrate_ghs: hashrate.max(0.0),
            expected_ghs: expected,
            power_watts: power,
            input_mv,
            current_ma,
            asic_celsius: asic,
            vr_celsius: 30.0 + 0.6 * (asic - self.ambient_celsius) + 0.3 * op.core_watts / f64::from(self.spec.chips),
            core_mv_measured: (self.core_voltage_mv - 2.0 - 0.2 * op.core_watts / f64::from(self.spec.chips))
                * self.jitter(0.001),
            fan_percent: self.fan_duty * 100.0,
            fan_rpm: (self.fan_duty * MAX_FAN_RPM).round(),
            error_percent: op.error_percent * self.jitter(0.05),
        }
    }
}

/// A Poisson draw with mean `lambda`: Knuth's product of uniforms for small means, the
/// normal approximation (rounded, never negative) above 30.
fn poisson(rng: &mut fastrand::Rng, lambda: f64) -> f64 {
    if lambda <= 0.0 {
        return 0.0;
    }
    if lambda > 30.0 {
        // Box-Muller.
        let (u1, u2) = (rng.f64().max(1e-12), rng.f64());
        let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        return (lambda + normal * lambda.sqrt()).round().max(0.0);
    }
    let limit = (-lambda).exp();
    let (mut count, mut product) = (0.0, rng.f64());
    while product > limit {
        count += 1.0;
        product *= rng.f64();
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_reference_expected_hashrate() {
        assert!((expected_ghs(&Board::Gamma.spec(), 525.0) - 1071.0).abs() < 0.1);
        assert!((expected_ghs(&Board::Hex.spec(), 485.0) - 2601.5).abs() < 0.5);
        assert!((expected_ghs(&Board::Ultra.spec(), 485.0) - 433.6).abs() < 0.1);
    }

    #[test]
    fn too_little_voltage_costs_hashrate_and_more_voltage_costs_power() {
        let spec = Board::Gamma.spec();
        let stable = operating_point(&spec, 600.0, 1200.0);
        let starved = operating_point(&spec, 600.0, 1050.0);
        assert_eq!(stable.hashrate_factor, 1.0);
        assert!(starved.hashrate_factor < 0.9, "{starved:?}");
        assert!(starved.error_percent > stable.error_percent);
        assert!(operating_point(&spec, 600.0, 1250.0).core_watts > stable.core_watts);
        assert!(operating_point(&spec, 650.0, 1200.0).core_watts > stable.core_watts);
    }

    #[test]
    fn random_shares_vary_as_a_pools_do_and_even_ones_do_not() {
        // Per 1-s step, whole shares found: a Poisson count has its variance equal to its
        // mean; evenly spaced shares vary by at most one.
        let counts = |random: bool, difficulty: f64| {
            let mut m = MinerPhysics::new(Board::Gamma.spec(), 3, false);
            m.random_shares = random;
            m.pool_difficulty = difficulty;
            (0..4000)
                .map(|_| {
                    let before = m.shares_accepted.floor();
                    m.advance(Duration::from_secs(1));
                    m.shares_accepted.floor() - before
                })
                .collect::<Vec<f64>>()
        };
        for difficulty in [100.0, 2.0] {
            let found = counts(true, difficulty);
            let mean = found.iter().sum::<f64>() / found.len() as f64;
            let variance = found.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / found.len() as f64;
            assert!(
                (0.85..1.15).contains(&(variance / mean)),
                "mean {mean}, variance {variance}"
            );
        }
        let even = counts(false, 100.0);
        assert!(even.iter().all(|c| (1.0..=3.0).contains(c)), "{even:?}");
    }

    #[test]
    fn every_board_hashes_by_frequency_cores_and_chips_within_its_rating() {
        for board in Board::ALL {
            let spec = board.spec();
            let ghs = expected_ghs(&spec, spec.default_mhz);
            assert_eq!(
                ghs,
                spec.default_mhz * f64::from(spec.small_cores) * f64::from(spec.chips) / 1000.0
            );
            let mut m = MinerPhysics::new(spec, 5, false);
            let at_default = m.read();
            assert!(
                at_default.power_watts < spec.max_power_watts,
                "{board:?}: {} W at its defaults, rated {} W",
                at_default.power_watts,
                spec.max_power_watts
            );
            assert!(at_default.hashrate_ghs > 0.0, "{board:?}");
            // Tunable: ten percent more clock (with the voltage it needs) is ten percent more.
            m.frequency_mhz = spec.default_mhz * 1.1;
            m.core_voltage_mv = spec.default_mv + 50.0;
            let faster = m.read();
            assert!(
                (faster.hashrate_ghs / at_default.hashrate_ghs - 1.1).abs() < 1e-9,
                "{board:?}"
            );
            assert!(faster.power_watts > at_default.power_watts, "{board:?}");
            let (frequencies, voltages) = board.options();
            assert!(!frequencies.is_empty() && !voltages.is_empty(), "{board:?}");
        }
        // What users posted: an LV08 at 485 MHz (3.59 TH/s, ~100 W), an LV07 at 575 MHz
        // (857 GH/s), a NerdQAxe++ at ~4.9 TH/s, a Naja Duo's factory test 4.58 TH/s.
        assert!((expected_ghs(&Board::LuckyLV08.spec(), 485.0) - 3_902.3).abs() < 1.0);
        assert!((expected_ghs(&Board::LuckyLV07.spec(), 575.0) - 1_028.1).abs() < 1.0);
        assert!((expected_ghs(&Board::NerdQAxePlusPlus.spec(), 600.0) - 4_896.0).abs() < 1.0);
        assert!((expected_ghs(&Board::NajaDuo.spec(), 327.0) - 4_398.2).abs() < 1.0);
        assert_eq!(Board::GammaHex.spec().default_mhz, 690.0);
    }

    #[test]
    fn work_and_lifetime_hashes_accumulate_and_only_the_work_counter_restarts_at_boot() {
        let mut m = MinerPhysics::new(Board::Gamma.spec(), 2, false);
        let (work, total) = (m.work_received, m.total_hashes);
        m.advance(Duration::from_secs(100));
        assert_eq!(m.work_received - work, 5.0, "a job every 20 s");
        let expected = expected_ghs(&m.spec, m.frequency_mhz) * 1e9 * 100.0;
        assert!((m.total_hashes - total - expected).abs() < expected * 1e-9);
        m.pool_sends_work = false;
        let still = m.work_received;
        m.advance(Duration::from_secs(100));
        assert_eq!(m.work_received, still, "no work from the pool");
        let lifetime = m.total_hashes;
        m.reboot();
        assert_eq!(m.work_received, 0.0);
        assert_eq!(m.total_hashes, lifetime, "kept across a reboot");
    }

    #[test]
    fn temperature_follows_power_with_lag_and_saturates_the_fan() {
        let mut m = MinerPhysics::new(Board::Gamma.spec(), 1, false);
        let start = m.asic_celsius;
        assert!(
            (start - 60.0).abs() < 0.5,
            "auto fan holds the target at defaults: {start}"
        );
        m.frequency_mhz = 800.0;
        m.core_voltage_mv = 1300.0;
        m.advance(Duration::from_secs(5));
        let early = m.asic_celsius;
        m.advance(Duration::from_secs(600));
        assert!(early < m.asic_celsius, "lags");
        assert!(
            m.asic_celsius > 65.0,
            "hot config exceeds the warning threshold: {}",
            m.asic_celsius
        );
        assert_eq!(m.fan_duty, 1.0);
    }
}
