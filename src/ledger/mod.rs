//! The SQLite ledger: opening it (WAL, busy timeout, foreign keys, read-only when it must
//! be), migrating it, and the typed reads the CLI and analysis use, each rusqlite error
//! mapped once. The SQL itself is in the files beside this one: `schema` (migrations),
//! `devices` (identity), `history` (segments, samples, events), `export`, `sessions`,
//! `tune` (sweeps and their restore plans), `rollup` (hourly rollups and downsampled history), and `writer` (the daemon's one writer thread); `lock` says which file the ledger is, `health` whether it is damaged.

pub mod backfill;
pub mod blocks;
mod devices;
mod export;
pub mod health;
mod history;
mod lock;
mod retention;
pub mod rollup;
pub mod stats;
pub(crate) mod store;
pub(crate) use retention::PRUNE_BATCH;
mod schema;
pub mod segments;
pub mod sessions;
pub mod tune;
pub mod writer;

pub use blocks::SampleSource;
pub(crate) use devices::{device_by_name_or_new, resolve_device};
use devices::{devices, find_device};
pub use devices::{DeviceRow, Resolved};
pub use export::{ColumnKind, ExportColumn, ExportValue, EXPORT_COLUMNS};
use history::{device_readings, events_between, fleet_events, latest_events, segment_readings, segments_between};
pub(crate) use history::{insert_event, insert_segment, last_segment, save_segment};
pub use history::{EventRow, SegmentRow};
pub use lock::{
    clear_heartbeat, file_identity, heartbeat_fresh, ledger_files, same_file, touch_heartbeat, DaemonLock,
    HEARTBEAT_EVERY,
};
pub use schema::SCHEMA_VERSION;
use schema::{read_compatibility, MIGRATIONS};

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::ledger::segments::Reading;

/// How long a statement waits for another connection's write lock before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A ledger failure, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: cannot create its folder: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no ledger at {0}; `serve` creates it (check logging.database_path)")]
    Missing(PathBuf),
    #[error("{path}: written by a newer bitaxe-exporter (schema {found}, this build knows {SCHEMA_VERSION})")]
    TooNew { path: PathBuf, found: usize },
    #[error("{path}: in use by another `bitaxe-exporter serve` ({holder}); one daemon per ledger")]
    InUse { path: PathBuf, holder: String },
    #[error("{path}: cannot lock: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: schema {found} needs an upgrade to {SCHEMA_VERSION}, but an older `bitaxe-exporter serve` ({holder}) \
         writes it and would not keep what the upgrade adds: restart the service with this build first (it upgrades \
         the ledger), then run this again"
    )]
    UpgradeWhileServed {
        path: PathBuf,
        found: usize,
        holder: String,
    },
    #[error("{path}: cannot be written (a read-only file, folder or filesystem); analysis and listings still read it: {source}")]
    NotWritable {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: its -wal file holds samples not yet in the ledger, and SQLite cannot open them here (no -shm, and none can be created); copy the ledger with its -wal to a writable folder and analyse the copy")]
    UnreadableWal { path: PathBuf },
    #[error("cannot start the ledger writer thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("{path}: damaged ({damage}), and cannot be moved aside: {source}")]
    MoveAside {
        path: PathBuf,
        damage: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: holds no ledger yet (schema 0); `serve` creates its tables")]
    NotALedger(PathBuf),
}

fn is_read_only_or_cannot_open(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(e, _)
        if matches!(e.code, rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen))
}

impl LedgerError {
    /// True when SQLite refused for lack of write access (file, folder, `-shm`).
    pub(crate) fn is_read_only(&self) -> bool {
        matches!(self, LedgerError::Sqlite { source: rusqlite::Error::SqliteFailure(e, _), .. }
            if e.code == rusqlite::ErrorCode::ReadOnly)
    }

    /// True when SQLite could not open a file it needs: for a ledger that exists, its
    /// `-shm` on a read-only filesystem.
    pub(crate) fn is_cannot_open(&self) -> bool {
        matches!(self, LedgerError::Sqlite { source: rusqlite::Error::SqliteFailure(e, _), .. }
            if e.code == rusqlite::ErrorCode::CannotOpen)
    }

    /// True when another process held the database lock past the busy timeout.
    pub fn is_busy(&self) -> bool {
        matches!(self, LedgerError::Sqlite { source: rusqlite::Error::SqliteFailure(e, _), .. }
            if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
    }
}

/// An open ledger file.
#[derive(Debug)]
pub struct Ledger {
    conn: Connection,
    pub path: PathBuf,
}

pub type Result<T> = std::result::Result<T, LedgerError>;

impl Ledger {
    /// Opens (creating the file and its folder if needed) and migrates to the current schema.
    pub fn open(path: &Path) -> Result<Ledger> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| LedgerError::CreateDir {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let ledger = Self::connect(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)?;
        ledger.migrate(SCHEMA_VERSION)?;
        Ok(ledger)
    }

    /// Opens an existing ledger for the CLI commands that write (sessions); a missing file
    /// is an error, not a new ledger: only `serve` creates one.
    pub fn open_existing(path: &Path) -> Result<Ledger> {
        require_file(path)?;
        Self::open_existing_file(path).map_err(|e| match e {
            // The file is there and readable: what cannot be opened or written is the file,
            // its folder (for the `-wal` / `-shm`) or the filesystem. (Not readable, or out
            // of descriptors, stays SQLite's own message.)
            LedgerError::Sqlite { path, source }
                if is_read_only_or_cannot_open(&source) && std::fs::File::open(&path).is_ok() =>
            {
                LedgerError::NotWritable { path, source }
            }
            e => e,
        })
    }

    fn open_existing_file(path: &Path) -> Result<Ledger> {
        let ledger = Self::connect(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        let found = ledger.schema_version()?;
        if found < SCHEMA_VERSION {
            // A daemon of an older build would go on writing without what the upgrade
            // adds (the hourly rollups), so the upgrade waits for the daemon's restart.
            // Checked with our connection closed: the lock check opens the file, and
            // closing that descriptor would drop SQLite's locks of this process.
            drop(ledger);
            if let Err(LedgerError::InUse { holder, .. }) = DaemonLock::check_free(path) {
                return Err(LedgerError::UpgradeWhileServed {
                    path: path.to_path_buf(),
                    found,
                    holder,
                });
            }
            let ledger = Self::connect(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
            ledger.migrate(SCHEMA_VERSION)?;
            return Ok(ledger);
        }
        // Refuses a file of a newer schema.
        ledger.migrate(SCHEMA_VERSION)?;
        Ok(ledger)
    }

    /// Opens an existing ledger for reading only (analysis, listings), so a ledger on a
    /// read-only filesystem or owned by another user can still be analysed. Nothing is
    /// ever written: a file of an older schema is read as it is (see
    /// [`schema::read_compatibility`]), and upgraded only by `serve` or a command that
    /// records.
    pub fn open_read_only(path: &Path) -> Result<Ledger> {
        require_file(path)?;
        let ledger = Self::connect(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let (ledger, found) = match ledger.schema_version() {
            Ok(found) => (ledger, found),
            // A WAL ledger without its `-wal` / `-shm` files, in a folder this user cannot
            // write or on a read-only filesystem: SQLite cannot create them, and reads the
            // file as immutable instead. No daemon has it open (a daemon's connection keeps
            // its `-wal` file in place, and cannot write a read-only filesystem).
            Err(e) if e.is_read_only() || e.is_cannot_open() => {
                drop(ledger);
                // Immutable mode ignores a `-wal`: one that holds pages (a copy taken while
                // a daemon ran) would silently hide its latest samples.
                let [_, wal, ..] = ledger_files(path);
                if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
                    return Err(LedgerError::UnreadableWal {
                        path: path.to_path_buf(),
                    });
                }
                let ledger = Self::connect_immutable(path)?;
                let found = ledger.schema_version()?;
                (ledger, found)
            }
            Err(e) => return Err(e),
        };
        if found > SCHEMA_VERSION {
            return Err(LedgerError::TooNew {
                path: path.to_path_buf(),
                found,
            });
        }
        if found == 0 {
            return Err(LedgerError::NotALedger(path.to_path_buf()));
        }
        if found < SCHEMA_VERSION {
            ledger.read(|conn| conn.execute_batch(&read_compatibility(found)))?;
            if found < store::BLOCKS_SCHEMA_VERSION {
                // An older file keeps a row per sample: read through blocks made in memory.
                ledger.read(|conn| store::blocks_from_rows(conn, "samples", "temp"))?;
            }
        }
        Ok(ledger)
    }

    fn connect(path: &Path, flags: OpenFlags) -> Result<Ledger> {
        let wrap = |source| LedgerError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(wrap)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(wrap)?;
        if !flags.contains(OpenFlags::SQLITE_OPEN_READ_ONLY) {
            // WAL: readers never block the writer, the writer never blocks readers.
            // synchronous=NORMAL in WAL mode loses at most the last transactions on power
            // loss, never consistency.
            conn.pragma_update(None, "journal_mode", "WAL").map_err(wrap)?;
            conn.pragma_update(None, "synchronous", "NORMAL").map_err(wrap)?;
        }
        conn.pragma_update(None, "foreign_keys", "ON").map_err(wrap)?;
        Ok(Ledger {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn connect_immutable(path: &Path) -> Result<Ledger> {
        // An SQLite URI: `%`, `?` and `#` in the path must be escaped.
        let mut uri = String::from("file:");
        for c in path.to_string_lossy().chars() {
            match c {
                '%' => uri.push_str("%25"),
                '?' => uri.push_str("%3f"),
                '#' => uri.push_str("%23"),
                c => uri.push(c),
            }
        }
        uri.push_str("?immutable=1");
        let conn = Connection::open_with_flags(
            &uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| LedgerError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Ledger {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// How long a write waits for another connection's lock (the writer thread waits less
    /// than the CLI: it keeps its records and retries, and must not hold up a shutdown).
    pub fn set_busy_timeout(&self, timeout: Duration) -> Result<()> {
        self.conn.busy_timeout(timeout).map_err(|e| self.err(e))
    }

    /// The most memory SQLite's page cache of this connection may hold, KiB.
    pub fn set_cache_kib(&self, kib: u32) -> Result<()> {
        // A negative cache_size is a size in KiB rather than a page count.
        self.conn
            .pragma_update(None, "cache_size", -i64::from(kib))
            .map_err(|e| self.err(e))
    }

    /// Folds the WAL into the database file and empties it (`wal_checkpoint(TRUNCATE)`);
    /// false when a reader kept it from finishing.
    pub(crate) fn checkpoint_truncate(&self) -> Result<bool> {
        let busy: i64 = self.read(|conn| conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0)))?;
        Ok(busy == 0)
    }

    /// The one place a read's rusqlite error becomes a [`LedgerError`] naming the file.
    fn read<T>(&self, query: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        query(&self.conn).map_err(|e| self.err(e))
    }

    /// Every device, by name.
    pub fn devices(&self) -> Result<Vec<DeviceRow>> {
        self.read(devices)
    }

    /// A device by its current name, or by a name it was polled under before.
    pub fn find_device(&self, name: &str) -> Result<Option<DeviceRow>> {
        self.read(|conn| find_device(conn, name))
    }

    /// Segments overlapping [since, until], optionally of one device, oldest first.
    pub fn segments_between(&self, device_id: Option<i64>, since: f64, until: f64) -> Result<Vec<SegmentRow>> {
        self.read(|conn| segments_between(conn, device_id, since, until))
    }

    /// The readings of one segment's samples in [since, until], with their times.
    pub fn segment_readings(&self, segment: &SegmentRow, since: f64, until: f64) -> Result<Vec<(f64, Reading)>> {
        self.read(|conn| segment_readings(conn, segment, since, until))
    }

    /// A device's readings in [since, until], oldest first.
    pub fn device_readings(&self, device_id: i64, since: f64, until: f64) -> Result<Vec<(f64, Reading)>> {
        self.read(|conn| device_readings(conn, device_id, since, until))
    }

    /// (time, kind, detail) of a device's events in a range, oldest first.
    pub fn events_between(&self, device_id: i64, since: f64, until: f64) -> Result<Vec<EventRow>> {
        self.read(|conn| events_between(conn, device_id, since, until))
    }

    /// The events of every device, or of one, in [since, until], oldest first, each with
    /// its device's name (`analyze events`).
    pub fn fleet_events(&self, device_id: Option<i64>, since: f64, until: f64) -> Result<Vec<(String, EventRow)>> {
        self.read(|conn| fleet_events(conn, device_id, since, until))
    }

    /// A device's history over [since, until], downsampled to buckets of about `step`
    /// seconds (see [`rollup::history`] for when the hourly rollups answer).
    pub fn history(&self, device_id: i64, since: f64, until: f64, step: f64) -> Result<rollup::History> {
        self.read(|conn| rollup::history(conn, device_id, since, until, step))
    }

    /// The times of a device's first and last samples; `None` before the first.
    pub fn sample_span(&self, device_id: i64) -> Result<Option<(f64, f64)>> {
        self.read(|conn| store::span(conn, device_id))
    }

    /// The newest `limit` events of a device in a range (oldest first) and how many the
    /// range holds in all.
    pub fn latest_events(
        &self,
        device_id: i64,
        since: f64,
        until: f64,
        limit: usize,
    ) -> Result<(Vec<EventRow>, usize)> {
        self.read(|conn| latest_events(conn, device_id, since, until, limit))
    }

    fn err(&self, source: rusqlite::Error) -> LedgerError {
        LedgerError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    pub fn schema_version(&self) -> Result<usize> {
        let v: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        Ok(usize::try_from(v).unwrap_or(0))
    }

    /// Applies the migrations past the file's version, up to `target`, in one transaction.
    pub fn migrate(&self, target: usize) -> Result<()> {
        let current = self.schema_version()?;
        if current > SCHEMA_VERSION {
            return Err(LedgerError::TooNew {
                path: self.path.clone(),
                found: current,
            });
        }
        if current >= target {
            return Ok(());
        }
        if current == 0 {
            // A new file: made so that the pages retention frees go back to the file system
            // (this takes effect only before the first table exists).
            self.conn
                .execute_batch("PRAGMA auto_vacuum = INCREMENTAL")
                .map_err(|e| self.err(e))?;
        }
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
        // Another process may have migrated while we waited for the lock.
        let current: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let current = usize::try_from(current).unwrap_or(0);
        for (index, sql) in MIGRATIONS.iter().enumerate().take(target).skip(current) {
            tx.execute_batch(sql).map_err(|e| self.err(e))?;
            if index + 1 == rollup::ROLLUP_SCHEMA_VERSION {
                rollup::backfill(&tx).map_err(|e| self.err(e))?;
            }
            if index + 1 == store::BLOCKS_SCHEMA_VERSION {
                let moved = store::blocks_from_rows(&tx, "main.samples", "main").map_err(|e| self.err(e))?;
                tx.execute_batch("DROP TABLE main.samples").map_err(|e| self.err(e))?;
                if moved > 0 {
                    tracing::info!("moved {moved} samples of {} into compact blocks", self.path.display());
                }
            }
            tx.pragma_update(None, "user_version", (index + 1) as i64)
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// A device's rolled-up hours wholly inside [from, to] (for statistics over a range whose
    /// raw samples retention deleted).
    pub fn hours_within(&self, device_id: i64, from: f64, to: f64) -> Result<Vec<segments::HourSums>> {
        self.read(|conn| rollup::hours_within(conn, device_id, from, to))
    }

    /// Rows and bytes per table and per raw sample (`analyze ledger-stats`).
    pub fn stats(&self) -> Result<stats::LedgerStats> {
        self.read(stats::ledger_stats)
    }

    /// Rewrites this ledger's samples as the one-row-per-sample table of schema 5 (and drops
    /// their blocks): a file as an older release wrote it, for tests of upgrades. Not for use.
    #[doc(hidden)]
    pub fn rewrite_samples_as_rows_for_tests(&self) -> Result<()> {
        self.read(store::rows_from_blocks)
    }

    /// Makes a ledger created before incremental vacuum able to shrink (one `VACUUM`, which
    /// rewrites the file): done for files up to `max_bytes`, whose rewrite takes seconds; a
    /// larger one keeps reusing freed pages in place. True when the ledger can shrink.
    pub(crate) fn enable_incremental_vacuum(&self, max_bytes: u64) -> Result<bool> {
        let mode: i64 = self
            .conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if mode == 2 {
            return Ok(true);
        }
        let bytes = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(u64::MAX);
        if bytes > max_bytes {
            return Ok(false);
        }
        self.conn
            .execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")
            .map_err(|e| self.err(e))?;
        Ok(true)
    }

    /// One pass of retention: up to [`retention::PRUNE_BATCH`] raw samples older than
    /// `cutoff` and than `held_from` deleted in one short transaction, then freed pages given
    /// back. Returns the samples deleted.
    pub(crate) fn prune_raw_samples(&mut self, cutoff: f64, held_from: f64) -> Result<usize> {
        let path = self.path.clone();
        let wrap = |source| LedgerError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.write()?;
        let deleted = retention::prune(&tx, cutoff, held_from, retention::PRUNE_BATCH).map_err(wrap)?;
        tx.commit().map_err(wrap)?;
        if deleted > 0 {
            retention::give_back_pages(&self.conn).map_err(wrap)?;
        }
        Ok(deleted)
    }

    /// Starts a write transaction that takes the write lock at once (no upgrade deadlocks).
    /// See [`rollup::rebuild_recent`]: run by a writer each time it opens the ledger.
    pub(crate) fn rebuild_recent_rollups(&mut self) -> Result<()> {
        let path = self.path.clone();
        let wrap = |source| LedgerError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.write()?;
        rollup::rebuild_recent(&tx).map_err(wrap)?;
        tx.commit().map_err(wrap)
    }

    fn write(&mut self) -> Result<Transaction<'_>> {
        let path = self.path.clone();
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| LedgerError::Sqlite { path, source })
    }

    /// One write transaction around `change`, committed; its rusqlite errors mapped here.
    fn write_with<T>(&mut self, change: impl FnOnce(&Transaction) -> rusqlite::Result<T>) -> Result<T> {
        let path = self.path.clone();
        let wrap = |source| LedgerError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.write()?;
        let value = change(&tx).map_err(wrap)?;
        tx.commit().map_err(wrap)?;
        Ok(value)
    }
}

/// Only `serve` creates a ledger: every other command needs one to exist.
fn require_file(path: &Path) -> Result<()> {
    if path.is_file() {
        Ok(())
    } else {
        Err(LedgerError::Missing(path.to_path_buf()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_older_schema_is_read_as_it_is_without_an_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        for from in 1..SCHEMA_VERSION {
            let path = dir.path().join(format!("from-{from}.db"));
            let old =
                Ledger::connect(&path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE).unwrap();
            old.migrate(from).unwrap();
            old.conn
                .execute_batch(
                    "INSERT INTO devices (id, name, first_seen, last_seen) VALUES (1, 'gamma', 0, 7200);
                     INSERT INTO segments (id, device_id, started_at, ended_at, reason, warmup_seconds)
                         VALUES (1, 1, 0, 7200, 'first', 0);
                     INSERT INTO samples (device_id, t, segment_id, dt, hashrate_ghs, power_w)
                         VALUES (1, 0, 1, 0, 1000, 18), (1, 3600, 1, 30, 1100, 19), (1, 7200, 1, 30, 1200, 20);
                     INSERT INTO sessions (device_id, started_at, notes) VALUES (1, 0, 'trying');",
                )
                .unwrap();
            // A ledger of a schema with rollups has them, as its writer kept them.
            if from >= rollup::ROLLUP_SCHEMA_VERSION {
                let tx = old.conn.unchecked_transaction().unwrap();
                rollup::backfill(&tx).unwrap();
                tx.commit().unwrap();
            }
            old.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
            drop(old);
            let before = std::fs::read(&path).unwrap();
            let ledger = Ledger::open_read_only(&path).unwrap();
            let device = ledger.find_device("gamma").unwrap().expect("found by name");
            assert_eq!(ledger.sessions(Some(device.id)).unwrap().len(), 1, "from schema {from}");
            assert!(ledger.tune_runs().unwrap().is_empty());
            let history = ledger.history(device.id, 0.0, 7200.0, 3600.0).unwrap();
            assert!(!history.points.is_empty(), "from schema {from}");
            // The hourly rollups a long range reads, as the migration would fill them.
            let rolled: (i64, f64) = ledger
                .read(|conn| {
                    conn.query_row("SELECT count(*), total(samples) FROM sample_hours", [], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                })
                .unwrap();
            assert_eq!(rolled, (3, 3.0), "from schema {from}");
            // Samples and events of a ledger from before `source` and `log_tail` read as polls
            // and events without a log.
            let mut sources = Vec::new();
            ledger
                .export_rows(None, f64::MIN, f64::MAX, |row| {
                    sources.push(row.last().cloned());
                    Ok::<(), LedgerError>(())
                })
                .unwrap();
            assert_eq!(
                sources,
                vec![Some(ExportValue::Text("poll".into())); 3],
                "from schema {from}"
            );
            assert!(ledger.fleet_events(None, f64::MIN, f64::MAX).unwrap().is_empty());
            assert_eq!(ledger.schema_version().unwrap(), from);
            drop(ledger);
            assert!(
                std::fs::read(&path).unwrap() == before,
                "schema {from}: the file changed"
            );
        }
    }

    #[test]
    fn every_older_schema_upgrades_and_migrating_twice_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        for from in 0..SCHEMA_VERSION {
            let path = dir.path().join(format!("from-{from}.db"));
            let old =
                Ledger::connect(&path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE).unwrap();
            old.migrate(from).unwrap();
            assert_eq!(old.schema_version().unwrap(), from);
            drop(old);
            let ledger = Ledger::open(&path).unwrap();
            assert_eq!(ledger.schema_version().unwrap(), SCHEMA_VERSION, "from schema {from}");
            let schema = |ledger: &Ledger| -> Vec<String> {
                ledger
                    .read(|conn| {
                        let mut stmt =
                            conn.prepare("SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY name")?;
                        let rows = stmt.query_map([], |r| r.get(0))?;
                        rows.collect()
                    })
                    .unwrap()
            };
            let before = schema(&ledger);
            ledger.migrate(SCHEMA_VERSION).unwrap();
            ledger.migrate(SCHEMA_VERSION).unwrap();
            assert_eq!(schema(&ledger), before, "migrating again changed the schema");
            assert!(ledger.devices().unwrap().is_empty());
            assert!(ledger.sessions(None).unwrap().is_empty());
        }
    }
}
