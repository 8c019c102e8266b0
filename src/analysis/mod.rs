//! Which configuration is best: per device × clock configuration statistics built from the
//! segments' running aggregates (samples are rescanned only where a time range cuts a
//! segment or its warm-up differs from the one asked for), the health gate, the ranking,
//! and their table / JSON / CSV renderings.

pub mod activity;
pub mod export;
pub mod good;
pub mod history;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::axeos::sample::{format_label_number, short_clock_label};
use crate::ledger::segments::SteadyStats;
use crate::ledger::{self, Ledger, SegmentRow};

pub use good::{MIN_PERCENT_OF_EXPECTED, MIN_STEADY_SAMPLES};

/// What to analyse.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub device_id: Option<i64>,
    /// Unix seconds; `None` = from the beginning / until now.
    pub since: Option<f64>,
    pub until: Option<f64>,
    pub warmup_seconds: f64,
}

/// One device × configuration.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, Default)]
#[serde(default)]
pub struct ConfigRow {
    pub device: String,
    pub frequency_mhz: Option<f64>,
    pub core_voltage_mv: Option<f64>,
    /// All samples, warm-up included.
    pub samples: u64,
    pub steady_samples: u64,
    pub steady_seconds: f64,
    pub mean_hashrate_ghs: Option<f64>,
    pub hashrate_ci95_ghs: Option<f64>,
    pub median_hashrate_ghs: Option<f64>,
    pub percent_of_expected: Option<f64>,
    pub joules_per_terahash: Option<f64>,
    pub gigahashes_per_watt: Option<f64>,
    pub asic_temp_mean_c: Option<f64>,
    pub asic_temp_p95_c: Option<f64>,
    pub asic_temp_max_c: Option<f64>,
    pub vr_temp_max_c: Option<f64>,
    pub reject_percent: Option<f64>,
    pub error_percent: Option<f64>,
    /// Enough steady data to judge: ≥ 7 steady samples covering at least the warm-up time.
    pub enough_data: bool,
    pub first_seen: f64,
    pub last_seen: f64,
    /// Steady samples counted from hourly rollups, because retention deleted their raw
    /// samples: in the means, J/TH and maxima, not in the interval, median, p95, reject or
    /// error figures.
    pub hourly_samples: u64,
}

impl ConfigRow {
    pub fn label(&self) -> String {
        format!(
            "{} MHz / {} mV",
            self.frequency_mhz.map_or("?".into(), format_label_number),
            self.core_voltage_mv.map_or("?".into(), format_label_number)
        )
    }

    pub fn short_label(&self) -> String {
        short_clock_label(self.frequency_mhz, self.core_voltage_mv)
    }
}

/// Segments grouped by (device, frequency bits, voltage bits).
type Groups = BTreeMap<(String, u64, u64), (Option<f64>, Option<f64>, Group)>;

struct Group {
    samples: u64,
    steady: SteadyStats,
    first: f64,
    last: f64,
}

/// Per device × configuration statistics.
pub fn compare_configs(ledger: &Ledger, query: &Query) -> ledger::Result<Vec<ConfigRow>> {
    let since = query.since.unwrap_or(f64::MIN);
    let until = query.until.unwrap_or(f64::MAX);
    let names: BTreeMap<i64, String> = ledger.devices()?.into_iter().map(|d| (d.id, d.name)).collect();
    let mut groups = Groups::new();
    for segment in ledger.segments_between(query.device_id, since, until)? {
        let (samples, steady, first, last) = segment_stats(ledger, &segment, since, until, query.warmup_seconds)?;
        if samples == 0 {
            continue;
        }
        let device = names.get(&segment.device_id).cloned().unwrap_or_default();
        let key = (
            device,
            segment.frequency_mhz.map_or(0, f64::to_bits),
            segment.core_voltage_mv.map_or(0, f64::to_bits),
        );
        let entry = groups.entry(key).or_insert_with(|| {
            (
                segment.frequency_mhz,
                segment.core_voltage_mv,
                Group {
                    samples: 0,
                    steady: SteadyStats::default(),
                    first,
                    last,
                },
            )
        });
        let group = &mut entry.2;
        group.samples += samples;
        group.steady.merge(&steady);
        group.first = group.first.min(first);
        group.last = group.last.max(last);
    }
    let mut rows: Vec<ConfigRow> = groups
        .into_iter()
        .map(|((device, _, _), (frequency_mhz, core_voltage_mv, g))| {
            let s = &g.steady;
            ConfigRow {
                device,
                frequency_mhz,
                core_voltage_mv,
                samples: g.samples,
                steady_samples: s.samples,
                steady_seconds: s.seconds,
                mean_hashrate_ghs: s.mean_hashrate(),
                hashrate_ci95_ghs: s.hashrate_ci95(),
                median_hashrate_ghs: s.median_hashrate(),
                percent_of_expected: s.percent_of_expected(),
                joules_per_terahash: s.joules_per_terahash(),
                gigahashes_per_watt: s.gigahashes_per_watt(),
                asic_temp_mean_c: s.temp_mean(),
                asic_temp_p95_c: s.temp_p95(),
                asic_temp_max_c: s.temp_max,
                vr_temp_max_c: s.vr_max,
                reject_percent: s.reject_percent(),
                error_percent: s.error_percent(),
                enough_data: s.samples >= MIN_STEADY_SAMPLES && s.seconds >= query.warmup_seconds,
                first_seen: g.first,
                last_seen: g.last,
                hourly_samples: s.hourly_samples,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        a.device
            .cmp(&b.device)
            .then(
                a.frequency_mhz
                    .unwrap_or(0.0)
                    .total_cmp(&b.frequency_mhz.unwrap_or(0.0)),
            )
            .then(
                a.core_voltage_mv
                    .unwrap_or(0.0)
                    .total_cmp(&b.core_voltage_mv.unwrap_or(0.0)),
            )
    });
    Ok(rows)
}

/// A segment's (samples, steady stats, first, last) within [since, until]: the stored
/// aggregate when it covers exactly that, else a rescan of its samples.
fn segment_stats(
    ledger: &Ledger,
    segment: &SegmentRow,
    since: f64,
    until: f64,
    warmup_seconds: f64,
) -> ledger::Result<(u64, SteadyStats, f64, f64)> {
    let whole = segment.started_at >= since && segment.ended_at <= until;
    if whole && (segment.warmup_seconds - warmup_seconds).abs() < 1e-6 {
        return Ok((
            segment.samples,
            segment.steady.clone(),
            segment.started_at,
            segment.ended_at,
        ));
    }
    let readings = ledger.segment_readings(segment, since, until)?;
    let mut steady = SteadyStats::default();
    let steady_from = segment.started_at + warmup_seconds;
    for (t, reading) in &readings {
        if *t >= steady_from {
            steady.add(reading);
        }
    }
    let mut samples = readings.len() as u64;
    let mut first = readings.first().map_or(segment.started_at, |r| r.0);
    let last = readings.last().map_or(segment.ended_at, |r| r.0);
    // Where retention deleted the raw samples of the range, the hourly rollups answer for
    // the whole hours of this segment's steady part inside it.
    let raw_from = ledger
        .sample_span(segment.device_id)?
        .map_or(f64::INFINITY, |(first_raw, _)| first_raw);
    let covered_from = since.max(segment.started_at);
    if covered_from < raw_from {
        let to = until.min(segment.ended_at).min(raw_from);
        let hours = ledger.hours_within(segment.device_id, covered_from.max(steady_from), to)?;
        let dt = if segment.steady.samples > 0 {
            segment.steady.seconds / segment.steady.samples as f64
        } else {
            0.0
        };
        for hour in &hours {
            steady.add_hour(hour, dt);
            samples += hour.samples;
        }
        if !hours.is_empty() {
            first = first.min(covered_from.max(steady_from));
        }
    }
    Ok((samples, steady, first, last))
}

/// What `optimize` ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Lowest J/TH.
    Efficiency,
    /// Highest mean hashrate.
    Hashrate,
    /// Best product of relative hashrate and relative efficiency.
    Balanced,
}

/// A configuration that failed the health gate, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejection {
    #[serde(flatten)]
    pub row: ConfigRow,
    pub reasons: Vec<String>,
}

/// `optimize`'s answer for one device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    pub device: String,
    pub metric: Metric,
    pub max_temp_c: f64,
    /// Passing configurations, best first.
    pub ranked: Vec<ConfigRow>,
    pub rejected: Vec<Rejection>,
}

impl Recommendation {
    pub fn best(&self) -> Option<&ConfigRow> {
        self.ranked.first()
    }
}

/// Why a configuration fails the gate (empty when it passes): the one rule of
/// [`good`], over the row's steady statistics (its ASIC temperature p95).
pub fn gate(row: &ConfigRow, max_temp_c: f64) -> Vec<String> {
    good::Rule::new(max_temp_c).shortfalls(&good::Steady {
        samples: row.steady_samples,
        covers_warmup: row.enough_data,
        seconds: row.steady_seconds,
        percent_of_expected: row.percent_of_expected,
        asic_temp_c: row.asic_temp_p95_c,
        asic_temp_is: "p95",
        error_percent: row.error_percent,
        joules_per_terahash: row.joules_per_terahash,
    })
}

/// Ranks each device's configurations that pass the gate.
pub fn optimize(rows: Vec<ConfigRow>, metric: Metric, max_temp_c: f64) -> Vec<Recommendation> {
    let mut by_device: BTreeMap<String, Vec<ConfigRow>> = BTreeMap::new();
    for row in rows {
        by_device.entry(row.device.clone()).or_default().push(row);
    }
    by_device
        .into_iter()
        .map(|(device, rows)| {
            let (mut ranked, mut rejected) = (Vec::new(), Vec::new());
            for row in rows {
                let reasons = gate(&row, max_temp_c);
                if reasons.is_empty() {
                    ranked.push(row);
                } else {
                    rejected.push(Rejection { row, reasons });
                }
            }
            let best_hashrate = ranked.iter().filter_map(|r| r.mean_hashrate_ghs).fold(0.0, f64::max);
            let best_jth = ranked
                .iter()
                .filter_map(|r| r.joules_per_terahash)
                .fold(f64::INFINITY, f64::min);
            let score = |r: &ConfigRow| -> f64 {
                let h = r.mean_hashrate_ghs.unwrap_or(0.0);
                let j = r.joules_per_terahash.unwrap_or(f64::INFINITY);
                match metric {
                    Metric::Efficiency => -j,
                    Metric::Hashrate => h,
                    Metric::Balanced => (h / best_hashrate.max(f64::MIN_POSITIVE)) * (best_jth / j),
                }
            };
            ranked.sort_by(|a, b| score(b).total_cmp(&score(a)));
            Recommendation {
                device,
                metric,
                max_temp_c,
                ranked,
                rejected,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Rendering

/// A value with `decimals` places, or `-` when absent or not a number; past a trillion in
/// scientific notation, so no cell runs to hundreds of digits.
pub fn opt(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) if v.is_finite() && v.abs() < 1e12 => format!("{v:.decimals$}"),
        Some(v) if v.is_finite() => format!("{v:.decimals$e}"),
        _ => "-".into(),
    }
}

/// A number for CSV: exact (the shortest text that reads back as the same value) between
/// 10⁻⁶ and 10¹⁵, in scientific notation (`1e-320`) outside, so never hundreds of digits;
/// nothing for infinity or NaN, which no CSV reader agrees on.
pub fn csv_number(value: f64) -> String {
    if !value.is_finite() {
        String::new()
    } else if value == 0.0 || (1e-6..1e15).contains(&value.abs()) {
        format!("{value}")
    } else {
        format!("{value:e}")
    }
}

pub fn duration_text(seconds: f64) -> String {
    if seconds >= 86_400.0 {
        format!("{:.1}d", seconds / 86_400.0)
    } else if seconds >= 3600.0 {
        format!("{:.1}h", seconds / 3600.0)
    } else if seconds >= 60.0 {
        format!("{:.0}m", seconds / 60.0)
    } else {
        format!("{seconds:.0}s")
    }
}

/// The CSV columns of compare-configs, with units.
pub(crate) const CONFIG_CSV_HEADER: &str =
    "device,frequency_mhz,core_voltage_mv,samples,steady_samples,steady_seconds,\
mean_hashrate_ghs,hashrate_ci95_ghs,median_hashrate_ghs,percent_of_expected,joules_per_terahash,gigahashes_per_watt,\
asic_temp_mean_c,asic_temp_p95_c,asic_temp_max_c,vr_temp_max_c,reject_percent,error_percent,enough_data,hourly_samples";

pub fn configs_csv(rows: &[ConfigRow]) -> String {
    let mut out = String::from(CONFIG_CSV_HEADER);
    out.push('\n');
    let num = |v: Option<f64>| v.map(csv_number).unwrap_or_default();
    for r in rows {
        let fields = [
            csv_field(&r.device),
            num(r.frequency_mhz),
            num(r.core_voltage_mv),
            r.samples.to_string(),
            r.steady_samples.to_string(),
            csv_number(r.steady_seconds),
            num(r.mean_hashrate_ghs),
            num(r.hashrate_ci95_ghs),
            num(r.median_hashrate_ghs),
            num(r.percent_of_expected),
            num(r.joules_per_terahash),
            num(r.gigahashes_per_watt),
            num(r.asic_temp_mean_c),
            num(r.asic_temp_p95_c),
            num(r.asic_temp_max_c),
            num(r.vr_temp_max_c),
            num(r.reject_percent),
            num(r.error_percent),
            r.enough_data.to_string(),
            r.hourly_samples.to_string(),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// Quotes a CSV field when it needs it (RFC 4180).
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// optimize as text.
impl ConfigRow {
    /// The half-width of a 95 % interval of J/TH, from the hashrate's: power varies far
    /// less than hashrate from sample to sample, so J/TH's relative uncertainty is the
    /// hashrate's.
    pub fn joules_per_terahash_ci95(&self) -> Option<f64> {
        let (jth, ci, mean) = (
            self.joules_per_terahash?,
            self.hashrate_ci95_ghs?,
            self.mean_hashrate_ghs?,
        );
        (mean > 0.0).then(|| jth * ci / mean)
    }
}

/// How many of its configurations a device has measured.
fn measured(rec: &Recommendation) -> usize {
    rec.ranked.len() + rec.rejected.len()
}

/// The answer in one sentence: "gamma: 600 MHz / 1200 mV, 17.42 ± 0.20 J/TH, 6.1 % better
/// than 490 MHz / 1200 mV; 4 configurations measured", or what to do when there is nothing
/// to compare.
pub fn best_sentence(rec: &Recommendation) -> String {
    let count = measured(rec);
    let Some(best) = rec.best() else {
        return format!(
            "{}: no configuration passes the health gate ({count} measured)",
            rec.device
        );
    };
    let figure = match rec.metric {
        Metric::Hashrate => format!(
            "{} ± {} GH/s",
            opt(best.mean_hashrate_ghs, 1),
            opt(best.hashrate_ci95_ghs, 1)
        ),
        Metric::Efficiency | Metric::Balanced => format!(
            "{} ± {} J/TH",
            opt(best.joules_per_terahash, 2),
            opt(best.joules_per_terahash_ci95(), 2)
        ),
    };
    if count == 1 {
        return format!(
            "{}: one configuration measured ({}, {figure}): run `tune` to compare others",
            rec.device,
            best.label()
        );
    }
    let against = match rec.ranked.get(1) {
        Some(runner) => {
            let gain = match rec.metric {
                Metric::Hashrate => best
                    .mean_hashrate_ghs
                    .zip(runner.mean_hashrate_ghs)
                    .filter(|(_, r)| *r > 0.0)
                    .map(|(b, r)| (b - r) / r * 100.0),
                Metric::Efficiency | Metric::Balanced => best
                    .joules_per_terahash
                    .zip(runner.joules_per_terahash)
                    .filter(|(_, r)| *r > 0.0)
                    .map(|(b, r)| (r - b) / r * 100.0),
            };
            match (rec.metric, gain) {
                (Metric::Balanced, _) | (_, None) => format!(", ahead of {}", runner.label()),
                (Metric::Hashrate, Some(g)) => format!(", {g:.1} % more hashrate than {}", runner.label()),
                (Metric::Efficiency, Some(g)) => format!(", {g:.1} % more efficient than {}", runner.label()),
            }
        }
        None => ", the only one that passes the health gate".into(),
    };
    format!(
        "{}: {}, {figure}{against}; {count} configurations measured",
        rec.device,
        best.label()
    )
}

pub fn recommendations_text(recommendations: &[Recommendation]) -> String {
    let mut out = String::new();
    if recommendations.is_empty() {
        out.push_str("(no samples to judge)\n");
    }
    for rec in recommendations {
        let metric = match rec.metric {
            Metric::Efficiency => "efficiency",
            Metric::Hashrate => "hashrate",
            Metric::Balanced => "balanced",
        };
        match rec.best() {
            Some(best) => {
                let _ = writeln!(out, "{}", crate::axeos::printable(&best_sentence(rec)));
                let _ = writeln!(out, "  best for {metric}: {}", best.label());
                let _ = writeln!(
                    out,
                    "  {} J/TH, {} GH/s ({}% of expected), ASIC p95 {} °C, {} steady",
                    opt(best.joules_per_terahash, 2),
                    opt(best.mean_hashrate_ghs, 1),
                    opt(best.percent_of_expected, 1),
                    opt(best.asic_temp_p95_c, 1),
                    duration_text(best.steady_seconds)
                );
            }
            None => {
                let _ = writeln!(out, "{}: no configuration passes the health gate", rec.device);
            }
        }
        for (i, row) in rec.ranked.iter().enumerate().skip(1) {
            let _ = writeln!(
                out,
                "  {}. {:<22} {} J/TH, {} GH/s",
                i + 1,
                row.label(),
                opt(row.joules_per_terahash, 2),
                opt(row.mean_hashrate_ghs, 1)
            );
        }
        for rejection in &rec.rejected {
            let _ = writeln!(
                out,
                "  rejected {}: {}",
                rejection.row.label(),
                rejection.reasons.join("; ")
            );
        }
    }
    out
}

/// A compare-configs row for unit tests: a Gamma at `freq` MHz / 1150 mV with these
/// figures, with enough steady data or not.
#[cfg(test)]
pub(crate) fn test_row(freq: f64, hashrate: f64, percent: f64, jth: f64, p95: f64, enough: bool) -> ConfigRow {
    ConfigRow {
        device: "gamma".into(),
        frequency_mhz: Some(freq),
        core_voltage_mv: Some(1150.0),
        samples: 100,
        steady_samples: if enough { 80 } else { 3 },
        steady_seconds: if enough { 2400.0 } else { 90.0 },
        mean_hashrate_ghs: Some(hashrate),
        hashrate_ci95_ghs: Some(2.0),
        median_hashrate_ghs: Some(hashrate),
        percent_of_expected: Some(percent),
        joules_per_terahash: Some(jth),
        gigahashes_per_watt: Some(1000.0 / jth),
        asic_temp_mean_c: Some(p95 - 1.0),
        asic_temp_p95_c: Some(p95),
        asic_temp_max_c: Some(p95 + 0.5),
        vr_temp_max_c: None,
        reject_percent: Some(0.1),
        error_percent: Some(0.5),
        enough_data: enough,
        first_seen: 0.0,
        last_seen: 1.0,
        hourly_samples: 0,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_best_configuration_is_said_in_one_sentence() {
        let two = optimize(
            vec![
                test_row(490.0, 1000.0, 100.0, 16.0, 60.0, true),
                test_row(525.0, 1070.0, 100.0, 17.0, 60.0, true),
            ],
            Metric::Efficiency,
            65.0,
        );
        let sentence = best_sentence(&two[0]);
        assert!(
            sentence.starts_with(
                "gamma: 490 MHz / 1150 mV, 16.00 ± 0.03 J/TH, 5.9 % more efficient than 525 MHz / 1150 mV;"
            ),
            "{sentence}"
        );
        assert!(sentence.ends_with("2 configurations measured"), "{sentence}");
        let faster = optimize(two[0].ranked.clone(), Metric::Hashrate, 65.0);
        assert!(best_sentence(&faster[0]).contains("7.0 % more hashrate than 490 MHz / 1150 mV"));
        let one = optimize(
            vec![test_row(490.0, 1000.0, 100.0, 16.0, 60.0, true)],
            Metric::Efficiency,
            65.0,
        );
        assert!(
            best_sentence(&one[0]).contains("one configuration measured"),
            "{}",
            best_sentence(&one[0])
        );
        assert!(best_sentence(&one[0]).contains("run `tune`"));
        let none = optimize(
            vec![test_row(490.0, 1000.0, 80.0, 16.0, 60.0, true)],
            Metric::Efficiency,
            65.0,
        );
        assert_eq!(
            best_sentence(&none[0]),
            "gamma: no configuration passes the health gate (1 measured)"
        );
    }

    use super::*;

    use test_row as row;

    #[test]
    fn the_gate_and_each_ranking() {
        let rows = vec![
            row(490.0, 1000.0, 99.0, 16.5, 58.0, true),
            row(525.0, 1070.0, 99.5, 17.1, 60.0, true),
            row(600.0, 1220.0, 99.7, 17.9, 63.0, true),
            row(650.0, 1200.0, 90.0, 19.0, 64.0, true),
            row(800.0, 1630.0, 99.0, 18.4, 72.6, true),
            row(700.0, 1420.0, 99.0, 18.0, 61.0, false),
        ];
        let by = |metric| optimize(rows.clone(), metric, 65.0).remove(0);
        let efficiency = by(Metric::Efficiency);
        assert_eq!(efficiency.best().unwrap().frequency_mhz, Some(490.0));
        assert_eq!(efficiency.ranked.len(), 3);
        let reasons: Vec<String> = efficiency.rejected.iter().map(|r| r.reasons.join("; ")).collect();
        assert_eq!(reasons.len(), 3);
        assert!(reasons.iter().any(|r| r.contains("hashrate 90.0% of expected")));
        assert!(reasons
            .iter()
            .any(|r| r.contains("ASIC temperature p95 72.6 °C (limit 65 °C)")));
        assert!(reasons.iter().any(|r| r.contains("not enough steady data")));
        assert_eq!(by(Metric::Hashrate).best().unwrap().frequency_mhz, Some(600.0));
        // Balanced: 490 → 0.820·1 = 0.820; 525 → 0.877·0.965 = 0.846; 600 → 1·0.922 = 0.922.
        assert_eq!(by(Metric::Balanced).best().unwrap().frequency_mhz, Some(600.0));
        // A lower temperature limit rejects more.
        let strict = optimize(rows, Metric::Efficiency, 59.0).remove(0);
        assert_eq!(strict.ranked.len(), 1);
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn numbers_are_never_inf_nan_or_hundreds_of_digits() {
        assert_eq!(csv_number(1e-320), "1e-320");
        assert_eq!(csv_number(1.5e300), "1.5e300");
        assert_eq!(csv_number(f64::INFINITY), "");
        assert_eq!(csv_number(f64::NAN), "");
        assert_eq!(csv_number(0.0), "0");
        assert_eq!(csv_number(17.25), "17.25");
        assert_eq!(csv_number(0.000001), "0.000001");
        assert_eq!(opt(Some(f64::INFINITY), 2), "-");
        assert_eq!(opt(Some(1.5e300), 2), "1.50e300");
        assert_eq!(opt(Some(17.256), 2), "17.26");
    }
}
