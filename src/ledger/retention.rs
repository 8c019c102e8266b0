//! Keeping the raw samples bounded: samples older than `ledger.raw_retention` are deleted in
//! small batches once their hour's sums are in `sample_hours`, never from the two latest
//! rolled-up hours of a device (those a writer rebuilds from the samples when it opens the
//! ledger), and the freed pages are given back to the file system (incremental vacuum).
//! Segments, sessions, events, tune runs and rollups are never deleted.

use rusqlite::{Connection, Transaction};

use crate::ledger::rollup::ROLLUP_SECONDS;
use crate::ledger::store;

/// Samples deleted per transaction: a few milliseconds of work, so no poll or scrape waits
/// on it.
pub(crate) const PRUNE_BATCH: usize = 2_000;
/// Pages given back per pass (4 KiB each).
const VACUUM_PAGES: u32 = 1_000;

/// Deletes about `budget` raw samples (whole blocks) older than `cutoff` (Unix seconds) and
/// older than `held_from` (the earliest hour whose sums are still held in memory), oldest
/// first per device; returns how many.
pub(crate) fn prune(tx: &Transaction, cutoff: f64, held_from: f64, budget: usize) -> rusqlite::Result<usize> {
    let devices: Vec<(i64, f64)> = {
        let mut stmt = tx.prepare_cached("SELECT device_id, max(hour) FROM sample_hours GROUP BY device_id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut deleted = 0;
    for (device_id, latest_hour) in devices {
        if deleted >= budget {
            break;
        }
        // Never the latest two rolled-up hours (rebuilt from their samples at open).
        let limit = cutoff.min(held_from).min(latest_hour - ROLLUP_SECONDS);
        deleted += store::delete_blocks_before(tx, device_id, limit, budget - deleted)?;
    }
    Ok(deleted)
}

/// Gives freed pages back to the file system where the ledger was made for it
/// (`auto_vacuum = INCREMENTAL`); returns the pages freed.
pub(crate) fn give_back_pages(conn: &Connection) -> rusqlite::Result<u32> {
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
    if mode != 2 {
        return Ok(0);
    }
    let free: u32 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    if free == 0 {
        return Ok(0);
    }
    conn.execute_batch(&format!("PRAGMA incremental_vacuum({VACUUM_PAGES})"))?;
    Ok(free.min(VACUUM_PAGES))
}
