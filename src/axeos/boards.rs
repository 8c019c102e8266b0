//! Which board a miner is, from evidence: the board table of each firmware family (chips,
//! ASIC, supply voltage and input window, PSU rating, stock clock and option lists) and the
//! rules that pick a row. A board number means something only inside its family: Lucky's
//! `302` is not upstream's six-chip Hex, and a chip count the miner reports (`asicCount`,
//! `hashrateMonitor.asics`, `asicTemps`) always beats a table.

use crate::axeos::family::FirmwareFamily;

/// The stock clock of a board and the option lists AxeOS offers for it
/// (`device_config.h`, reference/axeos-api.md §5). Firmware before v2.7 serves no list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoardDefaults {
    pub default_mhz: f64,
    pub default_mv: f64,
    pub frequency_options: &'static [f64],
    pub voltage_options: &'static [f64],
}

/// One row of a family's board table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoardSpec {
    /// The human name (`board` label): `Gamma`, `Gamma Hex`, `LV07`.
    pub name: &'static str,
    pub family: FirmwareFamily,
    /// Upstream `boardVersion` values, or Lucky `minerModel` values.
    pub ids: &'static [&'static str],
    pub asic_model: &'static str,
    pub chips: u32,
    /// The PSU rating the board ships with, W.
    pub rated_watts: f64,
    /// Its supply voltage, V (5 or 12).
    pub nominal_volts: f64,
    pub defaults: Option<BoardDefaults>,
}

const BM1397_MHZ: &[f64] = &[400.0, 425.0, 450.0, 475.0, 485.0, 500.0, 525.0, 550.0, 575.0, 600.0];
const BM1397_MV: &[f64] = &[1100.0, 1150.0, 1200.0, 1250.0, 1300.0, 1350.0, 1400.0, 1450.0, 1500.0];
const BM1366_MHZ: &[f64] = &[400.0, 425.0, 450.0, 475.0, 485.0, 500.0, 525.0, 550.0, 575.0];
const BM1366_MV: &[f64] = &[1100.0, 1150.0, 1200.0, 1250.0, 1300.0];
const BM1368_MHZ: &[f64] = &[400.0, 425.0, 450.0, 475.0, 485.0, 490.0, 500.0, 525.0, 550.0, 575.0];
const BM1368_MV: &[f64] = &[1100.0, 1150.0, 1166.0, 1200.0, 1250.0, 1300.0];
/// 690 MHz since the Gamma Hex (upstream master after v2.15.0), its stock frequency.
const BM1370_MHZ: &[f64] = &[400.0, 490.0, 525.0, 550.0, 600.0, 625.0, 690.0];
/// The GammaDuo's "XP" configuration of the same chip.
const BM1370_XP_MHZ: &[f64] = &[350.0, 375.0, 380.0, 400.0, 410.0];
const BM1370_MV: &[f64] = &[1000.0, 1060.0, 1100.0, 1150.0, 1200.0, 1250.0];
/// BM1372/BM1373 (upstream master after v2.15.0): about 327–410 MHz, 1000–1250 mV.
const BM1373_MHZ: &[f64] = &[327.0, 350.0, 375.0, 380.0, 400.0, 410.0];
const BM1373_MV: &[f64] = &[1000.0, 1060.0, 1100.0, 1150.0, 1200.0, 1250.0];

const fn defaults(mhz: f64, mv: f64, f: &'static [f64], v: &'static [f64]) -> Option<BoardDefaults> {
    Some(BoardDefaults {
        default_mhz: mhz,
        default_mv: mv,
        frequency_options: f,
        voltage_options: v,
    })
}

#[allow(clippy::too_many_arguments)]
const fn board(
    name: &'static str,
    family: FirmwareFamily,
    ids: &'static [&'static str],
    asic_model: &'static str,
    chips: u32,
    rated_watts: f64,
    nominal_volts: f64,
    defaults: Option<BoardDefaults>,
) -> BoardSpec {
    BoardSpec {
        name,
        family,
        ids,
        asic_model,
        chips,
        rated_watts,
        nominal_volts,
        defaults,
    }
}

use FirmwareFamily::{EspMiner, Lucky};

/// Upstream ESP-Miner boards by `boardVersion` (reference/axeos-api.md §5 and
/// firmware-families.md for the boards after v2.15.0).
const UPSTREAM: &[BoardSpec] = &[
    board(
        "Max",
        EspMiner,
        &["2.2", "102"],
        "BM1397",
        1,
        25.0,
        5.0,
        defaults(425.0, 1400.0, BM1397_MHZ, BM1397_MV),
    ),
    board(
        "Ultra",
        EspMiner,
        &["0.11", "201", "202", "203", "204", "205", "207"],
        "BM1366",
        1,
        25.0,
        5.0,
        defaults(485.0, 1200.0, BM1366_MHZ, BM1366_MV),
    ),
    board(
        "Hex",
        EspMiner,
        &["302", "303"],
        "BM1366",
        6,
        90.0,
        12.0,
        defaults(485.0, 1200.0, BM1366_MHZ, BM1366_MV),
    ),
    board(
        "Supra",
        EspMiner,
        &["400", "401", "402", "403"],
        "BM1368",
        1,
        40.0,
        5.0,
        defaults(490.0, 1166.0, BM1368_MHZ, BM1368_MV),
    ),
    board(
        "Gamma",
        EspMiner,
        &["600", "601", "602", "603"],
        "BM1370",
        1,
        40.0,
        5.0,
        defaults(525.0, 1150.0, BM1370_MHZ, BM1370_MV),
    ),
    // One BM1370 on a 12 V input (an open upstream pull request).
    board(
        "GammaV2",
        EspMiner,
        &["601a"],
        "BM1370",
        1,
        40.0,
        12.0,
        defaults(525.0, 1150.0, BM1370_MHZ, BM1370_MV),
    ),
    board(
        "GammaDuo",
        EspMiner,
        &["650"],
        "BM1370",
        2,
        40.0,
        5.0,
        defaults(400.0, 1150.0, BM1370_XP_MHZ, BM1370_MV),
    ),
    board(
        "SupraHex",
        EspMiner,
        &["701", "702"],
        "BM1368",
        6,
        120.0,
        12.0,
        defaults(490.0, 1166.0, BM1368_MHZ, BM1368_MV),
    ),
    board(
        "GammaTurbo",
        EspMiner,
        &["800", "801"],
        "BM1370",
        2,
        60.0,
        12.0,
        defaults(525.0, 1150.0, BM1370_MHZ, BM1370_MV),
    ),
    board(
        "Gamma Hex",
        EspMiner,
        &["1300"],
        "BM1370",
        6,
        180.0,
        12.0,
        defaults(690.0, 1200.0, BM1370_MHZ, BM1370_MV),
    ),
    board(
        "Naja Duo",
        EspMiner,
        &["1201"],
        "BM1372/BM1373",
        2,
        60.0,
        12.0,
        defaults(327.0, 1000.0, BM1373_MHZ, BM1373_MV),
    ),
];

/// Lucky Miner boards by `minerModel` (user-posted bodies: pyasic issues #278, #280). The
/// LV07 and LV08 run on 12 V (`voltagei` ≈ 12 015 mV, `voltage` ≈ 12 140 mV); the LV08
/// draws about 100 W at its stock clock.
const LUCKY: &[BoardSpec] = &[
    board(
        "LV06",
        Lucky,
        &["LV06"],
        "BM1366",
        1,
        25.0,
        5.0,
        defaults(485.0, 1200.0, BM1366_MHZ, BM1366_MV),
    ),
    board(
        "LV07",
        Lucky,
        &["LV07"],
        "BM1366",
        2,
        60.0,
        12.0,
        defaults(485.0, 1200.0, BM1366_MHZ, BM1366_MV),
    ),
    board(
        "LV08",
        Lucky,
        &["LV08"],
        "BM1366",
        9,
        150.0,
        12.0,
        defaults(485.0, 1200.0, BM1366_MHZ, BM1366_MV),
    ),
];

/// What a body says about the board.
#[derive(Debug, Clone, Copy, Default)]
pub struct BoardEvidence<'a> {
    pub family: FirmwareFamily,
    pub board_version: Option<&'a str>,
    /// NerdQAxe `deviceModel`, already escaped and bounded.
    pub device_model: Option<&'a str>,
    /// Lucky `minerModel`.
    pub miner_model: Option<&'a str>,
    pub asic_model: Option<&'a str>,
    /// Chips the miner itself counts (`asicCount`, the length of `hashrateMonitor.asics`).
    pub reported_chips: Option<u32>,
    /// Whether the body has the keys of v2.1.9+ (`fanrpm`): before, only one-chip boards ran
    /// upstream firmware.
    pub has_v219_keys: bool,
}

/// The board a miner is: its table row, or only its own name where a family has no table.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub name: Option<String>,
    pub spec: Option<&'static BoardSpec>,
    /// The chip count to use: the miner's own, else the row's.
    pub chips: Option<u32>,
}

/// Picks the board from the evidence of one body.
pub fn resolve(e: &BoardEvidence<'_>) -> Resolved {
    // A Lucky model name is the hardware whatever firmware runs on it (upstream builds for
    // Lucky hardware report board 302 too): it beats a board number.
    let by_lucky_model = e.miner_model.and_then(|_| lucky_board(e));
    let spec = by_lucky_model.or_else(|| match e.family {
        FirmwareFamily::EspMiner | FirmwareFamily::Unknown => upstream_board(e),
        FirmwareFamily::Lucky => lucky_board(e),
        // The NerdQAxe family names its board and counts its chips itself.
        FirmwareFamily::NerdQaxe => None,
    });
    let name = match (spec, e.family) {
        (Some(spec), _) => Some(spec.name.to_string()),
        (None, FirmwareFamily::NerdQaxe) => e.device_model.filter(|m| !m.is_empty()).map(str::to_string),
        (None, FirmwareFamily::Lucky) => e.miner_model.filter(|m| !m.is_empty()).map(str::to_string),
        _ => None,
    };
    let table_chips = spec.map(|s| s.chips).or_else(|| {
        // Before v2.1.9 (no `fanrpm`) and without a board version, upstream ran on one-chip
        // boards only.
        let old_single = matches!(e.family, FirmwareFamily::EspMiner | FirmwareFamily::Unknown)
            && e.board_version.is_none()
            && !e.has_v219_keys;
        old_single.then_some(1)
    });
    Resolved {
        name,
        spec,
        chips: e.reported_chips.or(table_chips),
    }
}

fn upstream_board(e: &BoardEvidence<'_>) -> Option<&'static BoardSpec> {
    match e.board_version.map(str::trim) {
        Some(version) => {
            let spec = UPSTREAM.iter().find(|b| b.ids.contains(&version))?;
            // `302` is also what upstream builds for Lucky hardware report: it is a Hex
            // only when the miner's own chip count (if any) and chip agree.
            let chips_agree = e.reported_chips.is_none_or(|n| n == spec.chips);
            let chip_agrees = e.asic_model.is_none_or(|m| chip_matches(m, spec.asic_model));
            if version == "302" && e.reported_chips.is_none() {
                // Upstream firmware joined the Hex at v2.12, which always counts its chips
                // (hashrateMonitor): without a count, a 302 is not known to be a Hex.
                return None;
            }
            (chips_agree && chip_agrees).then_some(spec)
        }
        // Firmware before v2.0.7 sends no board version: a chip alone says the board where
        // only one board has that chip in that number.
        None => {
            let chips = e.reported_chips.unwrap_or(1);
            let candidates: Vec<&BoardSpec> = UPSTREAM
                .iter()
                .filter(|b| e.asic_model.is_some_and(|m| chip_matches(m, b.asic_model)) && b.chips == chips)
                .collect();
            // Two BM1370s are a GammaDuo (5 V) or a GammaTurbo (12 V): not known.
            match candidates.as_slice() {
                [only] => Some(only),
                [first, ..] if first.chips == 1 && candidates.iter().all(|c| c.nominal_volts == 5.0) => Some(first),
                _ => None,
            }
        }
    }
}

fn lucky_board(e: &BoardEvidence<'_>) -> Option<&'static BoardSpec> {
    let by_model = e.miner_model.and_then(|model| {
        let model = model.to_ascii_uppercase();
        LUCKY.iter().find(|b| b.ids.iter().any(|id| model.contains(id)))
    });
    let spec = by_model.or_else(|| LUCKY.iter().find(|b| Some(b.chips) == e.reported_chips && b.chips > 2))?;
    let chips_agree = e.reported_chips.is_none_or(|n| n == spec.chips);
    chips_agree.then_some(spec)
}

/// Whether a reported ASIC model is a table's chip (`BM1372/BM1373` is one string upstream).
pub fn chip_matches(reported: &str, table: &str) -> bool {
    let reported = reported.trim();
    reported == table || table.split('/').any(|part| part == reported) || reported.split('/').any(|p| p == table)
}

/// A row by its name (the `board` a sample carries), in the table that can have named it:
/// a NerdQAxe whose `deviceModel` is `Ultra` is no upstream Ultra. A Lucky model name is
/// the hardware whatever firmware runs on it.
pub fn by_name(name: &str, family: FirmwareFamily) -> Option<&'static BoardSpec> {
    let lucky = LUCKY.iter().find(|b| b.name == name);
    match family {
        FirmwareFamily::EspMiner | FirmwareFamily::Unknown => UPSTREAM.iter().find(|b| b.name == name).or(lucky),
        FirmwareFamily::Lucky => lucky,
        FirmwareFamily::NerdQaxe => None,
    }
}

/// The stock clock and option lists of a board, by name, in its family's table.
pub fn board_defaults(name: &str, family: FirmwareFamily) -> Option<BoardDefaults> {
    by_name(name, family).and_then(|b| b.defaults)
}

/// The supply window a board runs safely in, V: 4.8–5.5 V on 5 V boards (the benchmark
/// scripts' bounds), 11.7–13.2 V on 12 V boards (the firmware's own low-input threshold,
/// ESP-Miner#1682, and 10 % over nominal).
pub fn input_window(nominal_volts: f64) -> (f64, f64) {
    if nominal_volts > 8.0 {
        (11.7, 13.2)
    } else {
        (4.8, 5.5)
    }
}

/// Every row, for the README's table and the tests.
pub fn all() -> impl Iterator<Item = &'static BoardSpec> {
    UPSTREAM.iter().chain(LUCKY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(board: Option<&str>, chip: &str, reported: Option<u32>) -> Resolved {
        resolve(&BoardEvidence {
            family: EspMiner,
            board_version: board,
            asic_model: Some(chip),
            reported_chips: reported,
            has_v219_keys: true,
            ..BoardEvidence::default()
        })
    }

    #[test]
    fn a_board_number_is_read_inside_its_family_and_the_miners_count_wins() {
        let hex = upstream(Some("302"), "BM1366", Some(6));
        assert_eq!((hex.name.as_deref(), hex.chips), (Some("Hex"), Some(6)));
        // Upstream built for Lucky hardware: 302 with two chips is no Hex.
        let lv07_upstream = upstream(Some("302"), "BM1366", Some(2));
        assert_eq!((lv07_upstream.spec, lv07_upstream.chips), (None, Some(2)));
        let unknown_302 = upstream(Some("302"), "BM1366", None);
        assert_eq!(unknown_302.chips, None, "never six chips on a guess");
        let naja = upstream(Some("1201"), "BM1372/BM1373", None);
        assert_eq!((naja.name.as_deref(), naja.chips), (Some("Naja Duo"), Some(2)));
        let gamma_hex = upstream(Some("1300"), "BM1370", None);
        assert_eq!(gamma_hex.spec.map(|s| (s.chips, s.nominal_volts)), Some((6, 12.0)));
        let v2 = upstream(Some("601a"), "BM1370", None);
        assert_eq!(v2.spec.map(|s| s.nominal_volts), Some(12.0));
        let lucky = |model: Option<&str>, chips: Option<u32>| {
            resolve(&BoardEvidence {
                family: Lucky,
                board_version: Some("302"),
                miner_model: model,
                asic_model: Some("BM1366"),
                reported_chips: chips,
                ..BoardEvidence::default()
            })
        };
        assert_eq!(lucky(Some("LV07"), None).chips, Some(2));
        assert_eq!(lucky(Some("LV08"), Some(9)).name.as_deref(), Some("LV08"));
        assert_eq!(lucky(None, Some(9)).name.as_deref(), Some("LV08"));
        assert_eq!(lucky(None, None).chips, None);
        // Upstream firmware on an LV07 names the model: the hardware is an LV07 still.
        let upstream_on_lv07 = resolve(&BoardEvidence {
            family: EspMiner,
            board_version: Some("302"),
            miner_model: Some("LV07"),
            asic_model: Some("BM1366"),
            ..BoardEvidence::default()
        });
        assert_eq!(
            (upstream_on_lv07.name.as_deref(), upstream_on_lv07.chips),
            (Some("LV07"), Some(2))
        );
        let nerd = resolve(&BoardEvidence {
            family: FirmwareFamily::NerdQaxe,
            device_model: Some("NerdQAxe++"),
            asic_model: Some("BM1370"),
            reported_chips: Some(4),
            ..BoardEvidence::default()
        });
        assert_eq!(
            (nerd.name.as_deref(), nerd.chips, nerd.spec),
            (Some("NerdQAxe++"), Some(4), None)
        );
        // v2.0 sends neither a board version nor a chip count: one chip.
        let old_max = resolve(&BoardEvidence {
            family: EspMiner,
            asic_model: Some("BM1397"),
            ..BoardEvidence::default()
        });
        assert_eq!((old_max.name.as_deref(), old_max.chips), (Some("Max"), Some(1)));
        assert_eq!(
            upstream(None, "BM1370", Some(2)).spec,
            None,
            "a GammaDuo or a GammaTurbo"
        );
    }

    #[test]
    fn every_board_has_its_stock_clock_among_its_options() {
        for b in all() {
            let d = b.defaults.unwrap();
            assert!(d.frequency_options.contains(&d.default_mhz), "{}", b.name);
            assert!(d.voltage_options.contains(&d.default_mv), "{}", b.name);
            assert!(d.frequency_options.windows(2).all(|w| w[0] < w[1]), "{}", b.name);
            assert!(
                crate::axeos::sample::small_cores_of(b.asic_model).is_some(),
                "{}",
                b.name
            );
        }
        assert_eq!(board_defaults("Max", EspMiner).unwrap().default_mv, 1400.0);
        assert_eq!(board_defaults("GammaDuo", EspMiner).unwrap().default_mhz, 400.0);
        // A fork that names its board like an upstream one gets none of its facts.
        assert!(board_defaults("Ultra", FirmwareFamily::NerdQaxe).is_none());
        assert!(board_defaults("unknown", EspMiner).is_none());
    }
}
