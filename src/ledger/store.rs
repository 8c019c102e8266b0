//! Where raw samples live: rows of `sample_blocks`, each a device's consecutive samples of
//! one segment in the compact form of [`blocks`]. Writing the open block of a device, reading
//! samples back (by segment, by device, in time order across devices), deleting old blocks
//! for retention, and moving a ledger's older one-row-per-sample table into blocks.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use rusqlite::{params, Connection, Transaction};

use crate::ledger::blocks::{self, BlockBuilder, SampleSource, StoredSample};
use crate::ledger::segments::Reading;

/// The schema version that moved samples into blocks.
pub(crate) const BLOCKS_SCHEMA_VERSION: usize = 6;

/// The block a device's next samples go into.
#[derive(Debug, Clone)]
pub(crate) struct OpenBlock {
    /// Its row, once written.
    pub id: Option<i64>,
    pub segment_id: i64,
    pub builder: BlockBuilder,
    /// Holds samples not yet written.
    pub dirty: bool,
}

impl OpenBlock {
    pub(crate) fn new(segment_id: i64, t: f64) -> Self {
        Self {
            id: None,
            segment_id,
            builder: BlockBuilder::new(t),
            dirty: false,
        }
    }

    /// Writes the block's row (inserted the first time, rewritten after): padded while it
    /// stays `open`, at its own size once closed.
    pub(crate) fn save(&mut self, tx: &Transaction, device_id: i64, open: bool) -> rusqlite::Result<()> {
        if !self.dirty && open {
            return Ok(());
        }
        let b = &self.builder;
        let data = if open { b.padded() } else { b.data.clone() };
        match self.id {
            Some(id) => {
                let mut stmt = tx.prepare_cached(
                    "UPDATE sample_blocks SET t_last = ?2, samples = ?3, backfilled = ?4, data = ?5 WHERE id = ?1",
                )?;
                stmt.execute(params![id, b.t_last, b.samples as i64, b.backfilled as i64, data])?;
            }
            None => {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO sample_blocks (device_id, segment_id, t_first, t_last, samples, backfilled, data)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                stmt.execute(params![
                    device_id,
                    self.segment_id,
                    b.t_first,
                    b.t_last,
                    b.samples as i64,
                    b.backfilled as i64,
                    data
                ])?;
                self.id = Some(tx.last_insert_rowid());
            }
        }
        self.dirty = false;
        Ok(())
    }
}

/// A device's newest block, to go on filling it (`None` when it has none, or its newest is
/// full or unreadable).
pub(crate) fn last_open_block(conn: &Connection, device_id: i64) -> rusqlite::Result<Option<OpenBlock>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, segment_id, t_first, samples, data FROM sample_blocks WHERE device_id = ?1
         ORDER BY t_first DESC, id DESC LIMIT 1",
    )?;
    let mut rows = stmt.query(params![device_id])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let (id, segment_id, t_first): (i64, i64, f64) = (row.get(0)?, row.get(1)?, row.get(2)?);
    let samples = usize::try_from(row.get::<_, i64>(3)?).unwrap_or(0);
    let data: Vec<u8> = row.get(4)?;
    Ok(BlockBuilder::resume(t_first, samples, data)
        .filter(|b| !b.is_full())
        .map(|builder| OpenBlock {
            id: Some(id),
            segment_id,
            builder,
            dirty: false,
        }))
}

/// One sample read back, with where it belongs.
#[derive(Debug, Clone)]
pub(crate) struct Located {
    pub segment_id: i64,
    pub sample: StoredSample,
}

/// Decodes the blocks a query returns (columns: device_id, segment_id, t_first, samples, data),
/// keeping the samples in [since, until]; a damaged block is skipped and said once.
fn decode_rows(
    rows: &mut rusqlite::Rows<'_>,
    since: f64,
    until: f64,
    mut each: impl FnMut(Located),
) -> rusqlite::Result<()> {
    while let Some(row) = rows.next()? {
        let (device_id, segment_id, t_first): (i64, i64, f64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let count = usize::try_from(row.get::<_, i64>(3)?).unwrap_or(0);
        let data: Vec<u8> = row.get(4)?;
        let Some(samples) = blocks::decode(t_first, count, &data) else {
            tracing::warn!(
                "a block of samples of device #{device_id} from {} does not decode; skipped",
                crate::time::format(t_first)
            );
            continue;
        };
        for sample in samples.into_iter().filter(|s| s.t >= since && s.t <= until) {
            each(Located { segment_id, sample });
        }
    }
    Ok(())
}

/// A device's samples in [since, until] (of one segment, when given), oldest first.
pub(crate) fn device_samples(
    conn: &Connection,
    device_id: i64,
    segment_id: Option<i64>,
    since: f64,
    until: f64,
) -> rusqlite::Result<Vec<Located>> {
    let mut stmt = conn.prepare_cached(
        "SELECT device_id, segment_id, t_first, samples, data FROM sample_blocks
         WHERE device_id = ?1 AND (?2 IS NULL OR segment_id = ?2) AND t_first >= ?3 - ?5 AND t_first <= ?4
           AND t_last >= ?3
         ORDER BY t_first, id",
    )?;
    let mut rows = stmt.query(params![
        device_id,
        segment_id,
        since,
        until,
        blocks::MAX_BLOCK_SPAN_SECONDS
    ])?;
    let mut out = Vec::new();
    decode_rows(&mut rows, since, until, |s| out.push(s))?;
    // Blocks of a device do not overlap, except across a clock that stepped back.
    out.sort_by(|a, b| a.sample.t.total_cmp(&b.sample.t));
    Ok(out)
}

/// Whether a device already has a sample at exactly this time (a sample delivered twice).
pub(crate) fn holds_moment(conn: &Connection, device_id: i64, t: f64) -> rusqlite::Result<bool> {
    let samples = device_samples(conn, device_id, None, t, t)?;
    Ok(samples.iter().any(|l| l.sample.t == t))
}

/// The statistics readings of a stored sample.
pub(crate) fn reading(s: &StoredSample) -> Reading {
    let count = |name| s.value(name).map(|v| v.max(0.0) as u64);
    Reading {
        dt: s.dt,
        hashrate_ghs: s.value("hashrate_ghs"),
        expected_ghs: s.value("expected_ghs"),
        power_watts: s.value("power_w"),
        asic_celsius: s.value("asic_temp_c"),
        vr_celsius: s.value("vr_temp_c"),
        error_percent: s.value("error_percent"),
        shares_accepted: count("shares_accepted"),
        shares_rejected: count("shares_rejected"),
    }
}

/// The first and last sample time of a device.
pub(crate) fn span(conn: &Connection, device_id: i64) -> rusqlite::Result<Option<(f64, f64)>> {
    conn.query_row(
        "SELECT min(t_first), max(t_last) FROM sample_blocks WHERE device_id = ?1",
        [device_id],
        |r| Ok(r.get::<_, Option<f64>>(0)?.zip(r.get::<_, Option<f64>>(1)?)),
    )
}

/// Samples of every device (or one) in [since, until], in time order (ties by device
/// name), with their device's name; `each` may stop the stream with its error. Only the
/// samples of blocks that overlap in time are held at once.
pub(crate) fn stream_in_order<E>(
    conn: &Connection,
    device_id: Option<i64>,
    since: f64,
    until: f64,
    mut each: impl FnMut(&str, &Located) -> Result<(), E>,
) -> Result<u64, E>
where
    E: From<rusqlite::Error>,
{
    #[derive(Debug)]
    struct Pending(String, Located);
    impl PartialEq for Pending {
        fn eq(&self, other: &Self) -> bool {
            self.cmp(other) == Ordering::Equal
        }
    }
    impl Eq for Pending {}
    impl PartialOrd for Pending {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for Pending {
        // Reversed: the heap pops the earliest.
        fn cmp(&self, other: &Self) -> Ordering {
            other
                .1
                .sample
                .t
                .total_cmp(&self.1.sample.t)
                .then_with(|| other.0.cmp(&self.0))
        }
    }
    let names: HashMap<i64, String> = {
        let mut stmt = conn.prepare("SELECT id, name FROM devices")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut stmt = conn.prepare(
        "SELECT device_id, segment_id, t_first, samples, data FROM sample_blocks
         WHERE (?1 IS NULL OR device_id = ?1) AND t_first >= ?2 - ?4 AND t_first <= ?3 AND t_last >= ?2
         ORDER BY t_first, id",
    )?;
    let mut rows = stmt.query(params![device_id, since, until, blocks::MAX_BLOCK_SPAN_SECONDS])?;
    let mut heap: BinaryHeap<Pending> = BinaryHeap::new();
    let mut count = 0u64;
    let mut emit = |heap: &mut BinaryHeap<Pending>, before: f64, count: &mut u64| -> Result<(), E> {
        while heap.peek().is_some_and(|p| p.1.sample.t < before) {
            if let Some(Pending(name, located)) = heap.pop() {
                each(&name, &located)?;
                *count += 1;
            }
        }
        Ok(())
    };
    while let Some(row) = rows.next()? {
        let (device, segment_id, t_first): (i64, i64, f64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let in_block = usize::try_from(row.get::<_, i64>(3)?).unwrap_or(0);
        let data: Vec<u8> = row.get(4)?;
        // Nothing later read can come before this block's first sample.
        emit(&mut heap, t_first, &mut count)?;
        let Some(samples) = blocks::decode(t_first, in_block, &data) else {
            tracing::warn!("a block of samples of device #{device} does not decode; skipped");
            continue;
        };
        let name = names.get(&device).cloned().unwrap_or_default();
        for sample in samples.into_iter().filter(|s| s.t >= since && s.t <= until) {
            heap.push(Pending(name.clone(), Located { segment_id, sample }));
        }
    }
    emit(&mut heap, f64::INFINITY, &mut count)?;
    Ok(count)
}

/// Deletes whole blocks of raw samples that end before `limit` on `device_id`, oldest first,
/// up to about `budget` samples; returns the samples deleted.
pub(crate) fn delete_blocks_before(
    tx: &Transaction,
    device_id: i64,
    limit: f64,
    budget: usize,
) -> rusqlite::Result<usize> {
    let mut stmt = tx.prepare_cached(
        "SELECT id, samples FROM sample_blocks WHERE device_id = ?1 AND t_first < ?2 AND t_last < ?2
         ORDER BY t_first LIMIT 64",
    )?;
    let candidates: Vec<(i64, i64)> = stmt
        .query_map(params![device_id, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut delete = tx.prepare_cached("DELETE FROM sample_blocks WHERE id = ?1")?;
    let mut deleted = 0usize;
    for (id, samples) in candidates {
        if deleted >= budget {
            break;
        }
        delete.execute([id])?;
        deleted += usize::try_from(samples).unwrap_or(0);
    }
    Ok(deleted)
}

/// Moves the rows of an older ledger's `samples` table (one row per sample) into blocks
/// in `target` (`main` when migrating, `temp` for a read-only look at an old file).
pub(crate) fn blocks_from_rows(conn: &Connection, source: &str, target: &str) -> rusqlite::Result<u64> {
    let mut read = conn.prepare(&format!(
        "SELECT device_id, segment_id, t, dt, hashrate_ghs, expected_ghs, power_w, asic_temp_c, vr_temp_c,
                frequency_mhz, core_voltage_mv, core_voltage_measured_mv, input_voltage_v, input_current_a,
                fan_percent, fan_rpm, shares_accepted, shares_rejected, error_percent, uptime_s, best_difficulty,
                source
         FROM {source} ORDER BY device_id, segment_id, t"
    ))?;
    let mut insert = conn.prepare(&format!(
        "INSERT INTO {target}.sample_blocks (device_id, segment_id, t_first, t_last, samples, backfilled, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
    ))?;
    let mut flush = |device_id: i64, segment_id: i64, b: &BlockBuilder| -> rusqlite::Result<()> {
        insert.execute(params![
            device_id,
            segment_id,
            b.t_first,
            b.t_last,
            b.samples as i64,
            b.backfilled as i64,
            b.data
        ])?;
        Ok(())
    };
    let mut rows = read.query([])?;
    let mut open: Option<(i64, i64, BlockBuilder)> = None;
    let mut moved = 0u64;
    while let Some(r) = rows.next()? {
        let (device_id, segment_id, t, dt): (i64, i64, f64, f64) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        let real = |i: usize| r.get::<_, Option<f64>>(i);
        let count = |i: usize| r.get::<_, Option<i64>>(i).map(|v| v.map(|v| v.max(0) as u64));
        let sample = crate::axeos::sample::Sample {
            hashrate_ghs: real(4)?,
            expected_hashrate_ghs: real(5)?,
            power_watts: real(6)?,
            asic_temp_celsius: real(7)?,
            vr_temp_celsius: real(8)?,
            frequency_mhz: real(9)?,
            core_voltage_mv: real(10)?,
            core_voltage_measured_mv: real(11)?,
            input_voltage_volts: real(12)?,
            input_current_amperes: real(13)?,
            fan_duty_percent: real(14)?,
            fan_rpm: real(15)?,
            shares_accepted: count(16)?,
            shares_rejected: count(17)?,
            error_percent: real(18)?,
            uptime_seconds: count(19)?,
            best_difficulty: real(20)?,
            ..Default::default()
        };
        let source = if r.get::<_, i64>(21)? == 1 {
            SampleSource::MinerHistory
        } else {
            SampleSource::Poll
        };
        let stored = StoredSample::of(t, dt, &sample, source);
        let same = open
            .as_ref()
            .is_some_and(|(d, s, b)| *d == device_id && *s == segment_id && b.takes(t));
        if !same {
            if let Some((d, s, b)) = open.take() {
                flush(d, s, &b)?;
            }
            open = Some((device_id, segment_id, BlockBuilder::new(t)));
        }
        if let Some((_, _, b)) = open.as_mut() {
            b.push(&stored);
        }
        moved += 1;
    }
    if let Some((d, s, b)) = open.take() {
        flush(d, s, &b)?;
    }
    Ok(moved)
}

/// The inverse of [`blocks_from_rows`]: the one-row-per-sample table of schema 5 made from
/// the blocks, and the blocks dropped (a ledger as an older release wrote it, for tests).
pub(crate) fn rows_from_blocks(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE samples (
            device_id INTEGER NOT NULL REFERENCES devices(id), t REAL NOT NULL,
            segment_id INTEGER NOT NULL REFERENCES segments(id), dt REAL NOT NULL,
            hashrate_ghs REAL, expected_ghs REAL, power_w REAL, asic_temp_c REAL, vr_temp_c REAL,
            frequency_mhz REAL, core_voltage_mv REAL, core_voltage_measured_mv REAL, input_voltage_v REAL,
            input_current_a REAL, fan_percent REAL, fan_rpm REAL, shares_accepted INTEGER, shares_rejected INTEGER,
            error_percent REAL, uptime_s INTEGER, best_difficulty REAL, source INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (device_id, t)) WITHOUT ROWID;",
    )?;
    let devices: Vec<i64> = {
        let mut stmt = conn.prepare("SELECT DISTINCT device_id FROM sample_blocks")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut insert = conn.prepare(
        "INSERT OR IGNORE INTO samples VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
         ?17, ?18, ?19, ?20, ?21, ?22)",
    )?;
    for device_id in devices {
        for l in device_samples(conn, device_id, None, f64::MIN, f64::MAX)? {
            let s = &l.sample;
            let mut row: Vec<rusqlite::types::Value> =
                vec![device_id.into(), s.t.into(), l.segment_id.into(), s.dt.into()];
            for (name, _) in blocks::FIELDS {
                let value = s.value(name);
                row.push(match name {
                    "shares_accepted" | "shares_rejected" | "uptime_s" => value.map(|v| v as i64).into(),
                    _ => value.into(),
                });
            }
            row.push(s.value("best_difficulty").into());
            row.push(i64::from(s.source == SampleSource::MinerHistory).into());
            insert.execute(rusqlite::params_from_iter(row))?;
        }
    }
    conn.execute_batch("DROP TABLE sample_blocks;")
}
