//! Hourly rollups of the samples (`sample_hours`) and the downsampled history the web pages
//! and the report draw: count, sum, minimum and maximum of each charted reading per device
//! and hour, kept up to date by the writer in the transaction that stores the samples, so
//! a year of history is read from 8,760 rows per device instead of a million samples.

use std::sync::LazyLock;

use rusqlite::{params, Connection, Transaction};
use serde::Serialize;

use crate::axeos::sample::Sample;
use crate::ledger::store;

/// The schema version that created `sample_hours`; the migration to it fills the table
/// from the samples already stored.
pub(crate) const ROLLUP_SCHEMA_VERSION: usize = 4;

/// The width of a rollup bucket, seconds.
pub(crate) const ROLLUP_SECONDS: f64 = 3600.0;

/// A range holding more samples than this is answered from the hourly rollups; smaller
/// ones from the samples themselves (finer steps, exact bucket edges).
pub(crate) const MAX_RAW_SAMPLES: u64 = 30_000;

/// The largest magnitude a reading may have to enter a rollup (as for segment aggregates).
const MAX_ROLLED: f64 = 1e12;

/// The charted readings: (prefix of the rollup columns, sample column).
const ROLLED: [(&str, &str); 7] = [
    ("hashrate", "hashrate_ghs"),
    ("expected", "expected_ghs"),
    ("power", "power_w"),
    ("asic", "asic_temp_c"),
    ("vr", "vr_temp_c"),
    ("fan_pct", "fan_percent"),
    ("fan_rpm", "fan_rpm"),
];

fn rolled_values(s: &Sample) -> [Option<f64>; 7] {
    [
        s.hashrate_ghs,
        s.expected_hashrate_ghs,
        s.power_watts,
        s.asic_temp_celsius,
        s.vr_temp_celsius,
        s.fan_duty_percent,
        s.fan_rpm,
    ]
    .map(|v| v.filter(|v| v.is_finite() && v.abs() <= MAX_ROLLED))
}

/// Samples with both a positive hashrate and a power reading: the ones J/TH is made of.
const EFFICIENCY_CASE: &str = "hashrate_ghs > 0 AND abs(hashrate_ghs) <= 1e12 AND abs(power_w) <= 1e12";

/// `count, sum, min, max` of every rolled reading over sample rows, then the efficiency
/// sums: the one aggregate shape shared by the backfill and the raw history query.
fn sample_aggregates() -> String {
    let mut columns = vec!["count(*)".to_string()];
    for (_, column) in ROLLED {
        let value = format!("CASE WHEN abs({column}) <= 1e12 THEN {column} END");
        columns.push(format!("count({value}), total({value}), min({value}), max({value})"));
    }
    columns.push(format!("total(CASE WHEN {EFFICIENCY_CASE} THEN power_w END)"));
    columns.push(format!("total(CASE WHEN {EFFICIENCY_CASE} THEN hashrate_ghs END)"));
    columns.join(", ")
}

/// The same shape over rollup rows.
fn rollup_aggregates() -> String {
    let mut columns = vec!["total(samples)".to_string()];
    for (prefix, _) in ROLLED {
        columns.push(format!(
            "total({prefix}_n), total({prefix}_sum), min({prefix}_min), max({prefix}_max)"
        ));
    }
    columns.push("total(eff_power_sum), total(eff_hashrate_sum)".into());
    columns.join(", ")
}

/// Fills `sample_hours` from the stored samples (the migration that creates it).
pub(crate) fn backfill(tx: &Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(&format!(
        "INSERT INTO sample_hours SELECT device_id, CAST(t / 3600 AS INTEGER) * 3600.0, {}
         FROM samples GROUP BY device_id, CAST(t / 3600 AS INTEGER)",
        sample_aggregates()
    ))
}

/// `sample_hours` as a temporary view over the samples, for a read-only connection to a
/// ledger older than the rollups (nothing is written to the file): the same rows the
/// migration's backfill would store, computed as they are read.
pub(crate) fn hours_view() -> String {
    let mut columns = vec!["device_id".to_string(), "hour".into(), "samples".into()];
    for (prefix, _) in ROLLED {
        for suffix in ["n", "sum", "min", "max"] {
            columns.push(format!("{prefix}_{suffix}"));
        }
    }
    columns.push("eff_power_sum".into());
    columns.push("eff_hashrate_sum".into());
    format!(
        "CREATE TEMP VIEW sample_hours ({}) AS SELECT device_id, CAST(t / 3600 AS INTEGER) * 3600.0, {}
         FROM main.samples GROUP BY device_id, CAST(t / 3600 AS INTEGER);",
        columns.join(", "),
        sample_aggregates()
    )
}

/// Rebuilds every device's latest rolled-up hours from its samples: from the hour before
/// its latest `sample_hours` row (or from its first sample when it has none). The writer
/// keeps up to [`crate::ledger::writer`]'s rollup interval of sums in memory, so a crash
/// can leave the latest one or two hours short of their newest samples; this puts them
/// right, from the samples that were committed, each time a writer opens the ledger.
pub(crate) fn rebuild_recent(tx: &Transaction) -> rusqlite::Result<()> {
    let devices: Vec<(i64, Option<f64>)> = {
        let mut stmt =
            tx.prepare("SELECT d.id, (SELECT max(hour) FROM sample_hours h WHERE h.device_id = d.id) FROM devices d")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut delete = tx.prepare("DELETE FROM sample_hours WHERE device_id = ?1 AND hour >= ?2")?;
    for (device_id, latest) in devices {
        let from = latest.map_or(f64::NEG_INFINITY, |hour| hour - ROLLUP_SECONDS);
        delete.execute(params![device_id, from])?;
        let mut batch = RollupBatch::default();
        for located in store::device_samples(tx, device_id, None, from, f64::INFINITY)? {
            batch.add_values(device_id, located.sample.t, stored_values(&located.sample));
        }
        batch.flush(tx)?;
    }
    Ok(())
}

static UPSERT: LazyLock<String> = LazyLock::new(|| {
    let mut columns = vec!["device_id".to_string(), "hour".into(), "samples".into()];
    let mut updates = vec!["samples = samples + excluded.samples".to_string()];
    for (prefix, _) in ROLLED {
        for suffix in ["n", "sum", "min", "max"] {
            columns.push(format!("{prefix}_{suffix}"));
        }
        updates.push(format!(
            "{p}_n = {p}_n + excluded.{p}_n, {p}_sum = {p}_sum + excluded.{p}_sum, \
             {p}_min = min(coalesce({p}_min, excluded.{p}_min), coalesce(excluded.{p}_min, {p}_min)), \
             {p}_max = max(coalesce({p}_max, excluded.{p}_max), coalesce(excluded.{p}_max, {p}_max))",
            p = prefix
        ));
    }
    columns.push("eff_power_sum".into());
    columns.push("eff_hashrate_sum".into());
    updates.push("eff_power_sum = eff_power_sum + excluded.eff_power_sum".into());
    updates.push("eff_hashrate_sum = eff_hashrate_sum + excluded.eff_hashrate_sum".into());
    let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO sample_hours ({}) VALUES ({}) ON CONFLICT (device_id, hour) DO UPDATE SET {}",
        columns.join(", "),
        placeholders.join(", "),
        updates.join(", ")
    )
});

/// One reading's share of an hour: count, sum, minimum, maximum.
#[derive(Debug, Clone, Copy, Default)]
struct Partial {
    n: i64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
}

impl Partial {
    fn merge(&mut self, other: &Partial) {
        self.n += other.n;
        self.sum += other.sum;
        self.min = match (self.min, other.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max = match (self.max, other.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    fn add(&mut self, value: Option<f64>) {
        if let Some(v) = value {
            self.n += 1;
            self.sum += v;
            self.min = Some(self.min.map_or(v, |m| m.min(v)));
            self.max = Some(self.max.map_or(v, |m| m.max(v)));
        }
    }
}

#[derive(Debug, Clone, Default)]
struct HourPartial {
    samples: i64,
    readings: [Partial; 7],
    eff_power: f64,
    eff_hashrate: f64,
}

impl HourPartial {
    fn add(&mut self, values: [Option<f64>; 7]) {
        self.samples += 1;
        for (reading, value) in self.readings.iter_mut().zip(values) {
            reading.add(value);
        }
        if let (Some(hashrate), Some(power)) = (values[0], values[2]) {
            if hashrate > 0.0 {
                self.eff_power += power;
                self.eff_hashrate += hashrate;
            }
        }
    }

    /// The point this bucket draws.
    fn point(&self, t: f64) -> HistoryPoint {
        let spans = self.readings.map(|r| match (r.n > 0, r.min, r.max) {
            (true, Some(min), Some(max)) => Some(Span {
                min,
                mean: r.sum / r.n as f64,
                max,
            }),
            _ => None,
        });
        let [hashrate_ghs, expected_ghs, power_w, asic_temp_c, vr_temp_c, fan_percent, fan_rpm] = spans;
        HistoryPoint {
            t,
            samples: self.samples.max(0) as u64,
            hashrate_ghs,
            expected_ghs,
            power_w,
            asic_temp_c,
            vr_temp_c,
            fan_percent,
            fan_rpm,
            joules_per_terahash: (self.eff_hashrate > 0.0).then(|| self.eff_power / self.eff_hashrate * 1000.0),
        }
    }
}

/// The rolled readings of a stored sample, as [`rolled_values`] gives them of a poll.
fn stored_values(s: &crate::ledger::blocks::StoredSample) -> [Option<f64>; 7] {
    ROLLED
        .map(|(_, column)| s.value(column))
        .map(|v| v.filter(|v| v.is_finite() && v.abs() <= MAX_ROLLED))
}

/// The rollup changes of one write transaction, summed in memory and written once per
/// device and hour when the transaction commits (one upsert per hour touched, not one per
/// sample).
#[derive(Debug, Clone, Default)]
pub(crate) struct RollupBatch {
    hours: std::collections::HashMap<(i64, i64), HourPartial>,
}

impl RollupBatch {
    /// Adds one stored sample to its hour.
    pub(crate) fn add(&mut self, device_id: i64, t: f64, sample: &Sample) {
        self.add_values(device_id, t, rolled_values(sample));
    }

    /// Adds the rolled readings of one sample to its hour.
    pub(crate) fn add_values(&mut self, device_id: i64, t: f64, values: [Option<f64>; 7]) {
        let hour = (t / ROLLUP_SECONDS).floor() as i64;
        self.hours.entry((device_id, hour)).or_default().add(values);
    }

    /// Adds another batch's sums (a committed transaction's, kept until the next write).
    pub(crate) fn absorb(&mut self, other: RollupBatch) {
        for (key, theirs) in other.hours {
            let ours = self.hours.entry(key).or_default();
            ours.samples += theirs.samples;
            for (mine, other) in ours.readings.iter_mut().zip(theirs.readings.iter()) {
                mine.merge(other);
            }
            ours.eff_power += theirs.eff_power;
            ours.eff_hashrate += theirs.eff_hashrate;
        }
    }

    /// The start (Unix seconds) of the earliest hour whose sums are held here.
    pub(crate) fn earliest_hour(&self) -> Option<f64> {
        self.hours
            .keys()
            .map(|(_, hour)| *hour)
            .min()
            .map(|hour| hour as f64 * ROLLUP_SECONDS)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.hours.is_empty()
    }

    /// Writes the sums into `sample_hours`.
    pub(crate) fn flush(&mut self, tx: &Transaction) -> rusqlite::Result<()> {
        let mut stmt = tx.prepare_cached(&UPSERT)?;
        for ((device_id, hour), partial) in self.hours.drain() {
            let mut row: Vec<rusqlite::types::Value> = Vec::with_capacity(5 + 4 * ROLLED.len());
            row.push(device_id.into());
            row.push((hour as f64 * ROLLUP_SECONDS).into());
            row.push(partial.samples.into());
            for reading in partial.readings {
                row.push(reading.n.into());
                row.push(reading.sum.into());
                row.push(reading.min.into());
                row.push(reading.max.into());
            }
            row.push(partial.eff_power.into());
            row.push(partial.eff_hashrate.into());
            stmt.execute(rusqlite::params_from_iter(row))?;
        }
        Ok(())
    }
}

/// Minimum, mean and maximum of one reading over a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize, Default)]
#[serde(default)]
pub struct Span {
    pub min: f64,
    pub mean: f64,
    pub max: f64,
}

/// One downsampled point of a device's history.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, Default)]
#[serde(default)]
pub struct HistoryPoint {
    /// Start of the bucket, Unix seconds.
    pub t: f64,
    pub samples: u64,
    pub hashrate_ghs: Option<Span>,
    pub expected_ghs: Option<Span>,
    pub power_w: Option<Span>,
    pub asic_temp_c: Option<Span>,
    pub vr_temp_c: Option<Span>,
    pub fan_percent: Option<Span>,
    pub fan_rpm: Option<Span>,
    /// Energy over work across the bucket's samples with both readings.
    pub joules_per_terahash: Option<f64>,
}

/// Where a history was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistorySource {
    #[default]
    Samples,
    HourlyRollups,
}

/// A downsampled history: buckets of `step` seconds from `since`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, Default)]
#[serde(default)]
pub struct History {
    pub since: f64,
    pub until: f64,
    pub step: f64,
    pub source: HistorySource,
    pub points: Vec<HistoryPoint>,
}

fn point_from_row(r: &rusqlite::Row, since: f64, step: f64) -> rusqlite::Result<HistoryPoint> {
    let bucket: i64 = r.get(0)?;
    let mut sums = HourPartial {
        samples: r.get::<_, f64>(1)? as i64,
        ..HourPartial::default()
    };
    for (i, reading) in sums.readings.iter_mut().enumerate() {
        let base = 2 + 4 * i;
        *reading = Partial {
            n: r.get::<_, f64>(base)? as i64,
            sum: r.get(base + 1)?,
            min: r.get(base + 2)?,
            max: r.get(base + 3)?,
        };
    }
    let base = 2 + 4 * ROLLED.len();
    (sums.eff_power, sums.eff_hashrate) = (r.get(base)?, r.get(base + 1)?);
    Ok(sums.point(since + bucket as f64 * step))
}

/// How many samples a device has in [since, until], counted from the rollups (whole hours,
/// so a slight overestimate at the edges).
fn samples_in_range(conn: &Connection, device_id: i64, since: f64, until: f64) -> rusqlite::Result<u64> {
    let count: f64 = conn.query_row(
        "SELECT total(samples) FROM sample_hours WHERE device_id = ?1 AND hour > ?2 - 3600 AND hour <= ?3",
        params![device_id, since, until],
        |r| r.get(0),
    )?;
    Ok(count.max(0.0) as u64)
}

/// The rolled-up hours of a device that lie wholly inside [from, to], oldest first.
pub(crate) fn hours_within(
    conn: &Connection,
    device_id: i64,
    from: f64,
    to: f64,
) -> rusqlite::Result<Vec<crate::ledger::segments::HourSums>> {
    let mut stmt = conn.prepare_cached(
        "SELECT samples, hashrate_n, hashrate_sum, expected_n, expected_sum, asic_n, asic_sum, asic_max, vr_max,
                eff_power_sum, eff_hashrate_sum
         FROM sample_hours WHERE device_id = ?1 AND hour >= ?2 AND hour + 3600 <= ?3 ORDER BY hour",
    )?;
    let count = |r: &rusqlite::Row<'_>, i: usize| r.get::<_, i64>(i).map(|n| n.max(0) as u64);
    let rows = stmt.query_map(params![device_id, from, to], |r| {
        Ok(crate::ledger::segments::HourSums {
            samples: count(r, 0)?,
            hashrate_n: count(r, 1)?,
            hashrate_sum: r.get(2)?,
            expected_n: count(r, 3)?,
            expected_sum: r.get(4)?,
            asic_n: count(r, 5)?,
            asic_sum: r.get(6)?,
            asic_max: r.get(7)?,
            vr_max: r.get(8)?,
            eff_power_sum: r.get(9)?,
            eff_hashrate_sum: r.get(10)?,
        })
    })?;
    rows.collect()
}

/// Whether [since, …] starts before the device's oldest raw sample in an hour the rollups
/// still hold (retention deleted the samples there): such a range is drawn from the
/// rollups, which cover it, and the page says so.
fn reaches_past_raw_window(conn: &Connection, device_id: i64, since: f64) -> rusqlite::Result<bool> {
    let first_raw: Option<f64> = conn.query_row(
        "SELECT min(t_first) FROM sample_blocks WHERE device_id = ?1",
        [device_id],
        |r| r.get(0),
    )?;
    let Some(first_raw) = first_raw.filter(|first| since < *first) else {
        return Ok(false);
    };
    let first_hour = (first_raw / ROLLUP_SECONDS).floor() * ROLLUP_SECONDS;
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sample_hours WHERE device_id = ?1 AND hour < ?2 AND hour >= ?3 - 3600)",
        params![device_id, first_hour, since],
        |r| r.get(0),
    )
}

/// A device's history over [since, until] in buckets of about `step` seconds. Ranges of up
/// to [`MAX_RAW_SAMPLES`] samples are aggregated from the samples; longer ones from the
/// hourly rollups (the step then a whole number of hours, buckets aligned to hours).
pub(crate) fn history(
    conn: &Connection,
    device_id: i64,
    since: f64,
    until: f64,
    step: f64,
) -> rusqlite::Result<History> {
    let raw = step < ROLLUP_SECONDS
        && samples_in_range(conn, device_id, since, until)? <= MAX_RAW_SAMPLES
        && !reaches_past_raw_window(conn, device_id, since)?;
    if raw {
        // Buckets of the samples themselves, summed as the rollups are.
        let mut buckets: std::collections::BTreeMap<i64, HourPartial> = std::collections::BTreeMap::new();
        for located in store::device_samples(conn, device_id, None, since, until)? {
            let bucket = ((located.sample.t - since) / step) as i64;
            buckets.entry(bucket).or_default().add(stored_values(&located.sample));
        }
        return Ok(History {
            since,
            until,
            step,
            source: HistorySource::Samples,
            points: buckets
                .iter()
                .map(|(bucket, partial)| partial.point(since + *bucket as f64 * step))
                .collect(),
        });
    }
    let (source, origin, step) = (
        HistorySource::HourlyRollups,
        (since / ROLLUP_SECONDS).floor() * ROLLUP_SECONDS,
        (step / ROLLUP_SECONDS).ceil().max(1.0) * ROLLUP_SECONDS,
    );
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT CAST((hour - ?2) / ?4 AS INTEGER) AS bucket, {}
         FROM sample_hours WHERE device_id = ?1 AND hour >= ?2 AND hour <= ?3 GROUP BY bucket ORDER BY bucket",
        rollup_aggregates()
    ))?;
    let rows = stmt.query_map(params![device_id, origin, until, step], |r| {
        point_from_row(r, origin, step)
    })?;
    Ok(History {
        since: origin,
        until,
        step,
        source,
        points: rows.collect::<rusqlite::Result<_>>()?,
    })
}
