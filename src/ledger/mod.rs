//! The SQLite ledger: opening it (WAL, busy timeout, foreign keys), its append-only schema
//! migrations keyed by `PRAGMA user_version`, device identity (by MAC address when the
//! firmware reports one, so renames and new IPs keep their history), and the typed reads
//! and writes the writer thread, sessions and analysis use.

pub mod segments;
pub mod sessions;
pub mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};

use crate::axeos::sample::{Identity, Sample};
use crate::ledger::segments::{Boundary, Reading, SteadyStats};

/// How long a statement waits for another connection's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema, one entry per version. Never edit or reorder an entry; append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: devices, segments with running aggregates, samples, sessions, events.
    "CREATE TABLE devices (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        mac TEXT UNIQUE,
        hostname TEXT,
        asic_model TEXT,
        board_version TEXT,
        firmware TEXT,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL
    );
    CREATE TABLE segments (
        id INTEGER PRIMARY KEY,
        device_id INTEGER NOT NULL REFERENCES devices(id),
        started_at REAL NOT NULL,
        ended_at REAL NOT NULL,
        reason TEXT NOT NULL,
        frequency_mhz REAL,
        core_voltage_mv REAL,
        firmware TEXT,
        samples INTEGER NOT NULL DEFAULT 0,
        last_uptime INTEGER,
        warmup_seconds REAL NOT NULL,
        steady TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX segments_by_device ON segments(device_id, started_at);
    CREATE TABLE samples (
        device_id INTEGER NOT NULL REFERENCES devices(id),
        t REAL NOT NULL,
        segment_id INTEGER NOT NULL REFERENCES segments(id),
        dt REAL NOT NULL,
        hashrate_ghs REAL,
        expected_ghs REAL,
        power_w REAL,
        asic_temp_c REAL,
        vr_temp_c REAL,
        frequency_mhz REAL,
        core_voltage_mv REAL,
        core_voltage_measured_mv REAL,
        input_voltage_v REAL,
        input_current_a REAL,
        fan_percent REAL,
        fan_rpm REAL,
        shares_accepted INTEGER,
        shares_rejected INTEGER,
        error_percent REAL,
        uptime_s INTEGER,
        best_difficulty REAL,
        PRIMARY KEY (device_id, t)
    ) WITHOUT ROWID;
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY,
        device_id INTEGER NOT NULL REFERENCES devices(id),
        started_at REAL NOT NULL,
        ended_at REAL,
        target_frequency_mhz REAL,
        target_core_voltage_mv REAL,
        notes TEXT NOT NULL DEFAULT '',
        end_notes TEXT NOT NULL DEFAULT '',
        applied INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX sessions_one_open_per_device ON sessions(device_id) WHERE ended_at IS NULL;
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        device_id INTEGER NOT NULL REFERENCES devices(id),
        t REAL NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX events_by_device ON events(device_id, t);",
    // 2: the names a device has been polled under, so a renamed device is found by either.
    "CREATE TABLE device_names (
        device_id INTEGER NOT NULL REFERENCES devices(id),
        name TEXT NOT NULL,
        first_seen REAL NOT NULL,
        PRIMARY KEY (device_id, name)
    );
    INSERT INTO device_names (device_id, name, first_seen) SELECT id, name, first_seen FROM devices;",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

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
    #[error("cannot start the ledger writer thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("{path}: schema {found} needs an upgrade to {SCHEMA_VERSION}, and the file cannot be written: {source}")]
    ReadOnlyUpgrade {
        path: PathBuf,
        found: usize,
        #[source]
        source: rusqlite::Error,
    },
}

impl LedgerError {
    /// True when SQLite refused for lack of write access (file, folder, `-shm`).
    pub fn is_read_only(&self) -> bool {
        matches!(self, LedgerError::Sqlite { source: rusqlite::Error::SqliteFailure(e, _), .. }
            if e.code == rusqlite::ErrorCode::ReadOnly)
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
        if !path.is_file() {
            return Err(LedgerError::Missing(path.to_path_buf()));
        }
        let ledger = Self::connect(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        ledger.migrate(SCHEMA_VERSION)?;
        Ok(ledger)
    }

    /// Opens an existing ledger for reading only (analysis, listings), so a ledger on a
    /// read-only filesystem or owned by another user can still be analysed. A file of an
    /// older schema is upgraded first when it can be written.
    pub fn open_read_only(path: &Path) -> Result<Ledger> {
        if !path.is_file() {
            return Err(LedgerError::Missing(path.to_path_buf()));
        }
        let ledger = Self::connect(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let (ledger, found) = match ledger.schema_version() {
            Ok(found) => (ledger, found),
            // A WAL ledger without its `-wal` / `-shm` files, in a folder this user cannot
            // write: SQLite cannot create them, and reads the file as immutable instead. No
            // daemon has it open (a daemon's connection keeps its `-wal` file in place).
            Err(e) if e.is_read_only() => {
                drop(ledger);
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
        if found == SCHEMA_VERSION {
            return Ok(ledger);
        }
        drop(ledger);
        Self::open_existing(path).map_err(|e| match e {
            LedgerError::Sqlite { path, source } => LedgerError::ReadOnlyUpgrade { path, found, source },
            e => e,
        })
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

    /// (time, kind, detail) of a device's events in a range, oldest first.
    pub fn events_between(&self, device_id: i64, since: f64, until: f64) -> Result<Vec<(f64, String, String)>> {
        self.read(|conn| events_between(conn, device_id, since, until))
    }

    /// A session by id.
    pub fn session(&self, id: i64) -> Result<Option<sessions::SessionRow>> {
        self.read(|conn| sessions::get(conn, id))
    }

    /// Sessions, optionally of one device, oldest first.
    pub fn sessions(&self, device_id: Option<i64>) -> Result<Vec<sessions::SessionRow>> {
        self.read(|conn| sessions::list(conn, device_id))
    }

    /// Streams the samples of `device_id` (or every device) in [since, until], oldest
    /// first, as the values of [`EXPORT_COLUMNS`]; `each` may stop the stream with its
    /// error. Returns the row count.
    pub fn export_rows<E: From<LedgerError>>(
        &self,
        device_id: Option<i64>,
        since: f64,
        until: f64,
        mut each: impl FnMut(&[ExportValue]) -> std::result::Result<(), E>,
    ) -> std::result::Result<u64, E> {
        let columns: Vec<&str> = EXPORT_COLUMNS.iter().map(|c| c.sql).collect();
        let sql = format!(
            "SELECT {} FROM samples s JOIN devices d ON d.id = s.device_id
             WHERE (?1 IS NULL OR s.device_id = ?1) AND s.t >= ?2 AND s.t <= ?3
             ORDER BY s.t, d.name",
            columns.join(", ")
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| E::from(self.err(e)))?;
        let mut rows = stmt
            .query(params![device_id, since, until])
            .map_err(|e| E::from(self.err(e)))?;
        let mut values = Vec::with_capacity(EXPORT_COLUMNS.len());
        let mut count = 0u64;
        while let Some(row) = rows.next().map_err(|e| E::from(self.err(e)))? {
            values.clear();
            for (index, column) in EXPORT_COLUMNS.iter().enumerate() {
                let value = match column.kind {
                    ColumnKind::Time => row.get::<_, f64>(index).map(ExportValue::Time),
                    ColumnKind::Real => row
                        .get::<_, Option<f64>>(index)
                        .map(|v| v.map_or(ExportValue::Null, ExportValue::Real)),
                    ColumnKind::Integer => row
                        .get::<_, Option<i64>>(index)
                        .map(|v| v.map_or(ExportValue::Null, ExportValue::Integer)),
                    ColumnKind::Text => row
                        .get::<_, Option<String>>(index)
                        .map(|v| v.map_or(ExportValue::Null, ExportValue::Text)),
                };
                values.push(value.map_err(|e| E::from(self.err(e)))?);
            }
            each(&values)?;
            count += 1;
        }
        Ok(count)
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
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
        // Another process may have migrated while we waited for the lock.
        let current: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let current = usize::try_from(current).unwrap_or(0);
        for (index, sql) in MIGRATIONS.iter().enumerate().take(target).skip(current) {
            tx.execute_batch(sql).map_err(|e| self.err(e))?;
            tx.pragma_update(None, "user_version", (index + 1) as i64)
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Starts a write transaction that takes the write lock at once (no upgrade deadlocks).
    fn write(&mut self) -> Result<Transaction<'_>> {
        let path = self.path.clone();
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| LedgerError::Sqlite { path, source })
    }
}

/// The (device, inode) of a file, to notice when the ledger path no longer names the file
/// this process has open (deleted, or replaced by a restore).
pub fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// True when both paths exist and name the same file (same device and inode, whatever
/// the names, symlinks or hard links).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (file_identity(a), file_identity(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// The files that make up a ledger: the database, its WAL and shared-memory files, and
/// the rollback journal SQLite would use outside WAL mode.
pub fn ledger_files(path: &Path) -> [PathBuf; 4] {
    let with = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [path.to_path_buf(), with("-wal"), with("-shm"), with("-journal")]
}

/// How an export column's values come out of SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Unix seconds, shown as RFC 3339.
    Time,
    Real,
    Integer,
    Text,
}

/// A column of `analyze export`: its name (with its unit), read from this SQL expression.
/// One table drives the SELECT, the CSV header and the JSON keys.
#[derive(Debug, Clone, Copy)]
pub struct ExportColumn {
    pub name: &'static str,
    sql: &'static str,
    pub kind: ColumnKind,
}

const fn column(name: &'static str, sql: &'static str, kind: ColumnKind) -> ExportColumn {
    ExportColumn { name, sql, kind }
}

/// The columns of an export, in order.
pub const EXPORT_COLUMNS: &[ExportColumn] = &[
    column("time", "s.t", ColumnKind::Time),
    // Milliseconds are all a poll time means.
    column("unix_time_s", "round(s.t, 3)", ColumnKind::Real),
    column("device", "d.name", ColumnKind::Text),
    column("segment_id", "s.segment_id", ColumnKind::Integer),
    column("frequency_mhz", "s.frequency_mhz", ColumnKind::Real),
    column("core_voltage_mv", "s.core_voltage_mv", ColumnKind::Real),
    column("hashrate_ghs", "s.hashrate_ghs", ColumnKind::Real),
    column("expected_hashrate_ghs", "s.expected_ghs", ColumnKind::Real),
    column("power_w", "s.power_w", ColumnKind::Real),
    column(
        "efficiency_j_per_th",
        "CASE WHEN s.hashrate_ghs > 0 THEN s.power_w / (s.hashrate_ghs / 1000.0) END",
        ColumnKind::Real,
    ),
    column("asic_temp_c", "s.asic_temp_c", ColumnKind::Real),
    column("vr_temp_c", "s.vr_temp_c", ColumnKind::Real),
    column(
        "core_voltage_measured_mv",
        "s.core_voltage_measured_mv",
        ColumnKind::Real,
    ),
    column("input_voltage_v", "s.input_voltage_v", ColumnKind::Real),
    column("input_current_a", "s.input_current_a", ColumnKind::Real),
    column("fan_percent", "s.fan_percent", ColumnKind::Real),
    column("fan_rpm", "s.fan_rpm", ColumnKind::Real),
    column("shares_accepted", "s.shares_accepted", ColumnKind::Integer),
    column("shares_rejected", "s.shares_rejected", ColumnKind::Integer),
    column("error_percent", "s.error_percent", ColumnKind::Real),
    column("uptime_s", "s.uptime_s", ColumnKind::Integer),
    column("best_difficulty", "s.best_difficulty", ColumnKind::Real),
];

/// One value of an exported row.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportValue {
    Null,
    /// Unix seconds.
    Time(f64),
    Real(f64),
    Integer(i64),
    Text(String),
}

/// The exclusive lock one `serve` holds on its ledger, so a second daemon on the same file
/// refuses to start instead of corrupting the running aggregates. The lock is the kernel's
/// `flock` on the database file itself, so every name for the file (a symlink, a hard link,
/// another relative path) meets it, and it dies with the process: a crash never leaves a
/// stale lock. The holder's pid is written beside the file (`<ledger>.lock`) for the
/// message a second daemon prints.
///
/// `flock` locks are independent of the POSIX byte-range locks SQLite takes, but closing
/// any descriptor of the file drops this process's POSIX locks on it: the writer closes
/// its connection before this lock (field order), and never holds it beside another
/// connection to the same file.
#[derive(Debug)]
pub struct DaemonLock {
    file: std::fs::File,
}

impl DaemonLock {
    /// Where the holder's pid is written: beside the file the ledger path resolves to.
    pub fn lock_path(ledger: &Path) -> PathBuf {
        let real = std::fs::canonicalize(ledger).unwrap_or_else(|_| ledger.to_path_buf());
        let mut name = real.into_os_string();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Locks the (existing) ledger file, or says which daemon holds it.
    pub fn acquire(ledger: &Path) -> Result<DaemonLock> {
        let lock_error = |source| LedgerError::Lock {
            path: ledger.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(ledger).map_err(lock_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(LedgerError::InUse {
                    path: ledger.to_path_buf(),
                    holder: Self::holder(ledger),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(lock_error(e)),
        }
        Self::write_pid(ledger);
        Ok(DaemonLock { file })
    }

    /// Fails with [`LedgerError::InUse`] when a daemon holds the ledger now (checked before
    /// `serve` binds its port, so a second daemon says why it cannot run). A ledger that
    /// does not exist yet is free.
    pub fn check_free(ledger: &Path) -> Result<()> {
        match std::fs::File::open(ledger) {
            Ok(file) => match file.try_lock() {
                Ok(()) => Ok(()),
                Err(std::fs::TryLockError::WouldBlock) => Err(LedgerError::InUse {
                    path: ledger.to_path_buf(),
                    holder: Self::holder(ledger),
                }),
                Err(std::fs::TryLockError::Error(_)) => Ok(()),
            },
            Err(_) => Ok(()),
        }
    }

    fn holder(ledger: &Path) -> String {
        let pid_file = Self::lock_path(ledger);
        match std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
        {
            Some(pid) => format!("pid {pid}"),
            None => "another process".into(),
        }
    }

    /// Records this process as the holder. Informational only, so it never follows a
    /// symlink planted at its name (which would truncate whatever the link points at).
    fn write_pid(ledger: &Path) {
        let pid_file = Self::lock_path(ledger);
        if std::fs::symlink_metadata(&pid_file).is_ok_and(|m| m.file_type().is_symlink()) {
            tracing::warn!("{} is a symbolic link; not writing the pid into it", pid_file.display());
            return;
        }
        if let Err(e) = std::fs::write(&pid_file, format!("{}\n", std::process::id())) {
            tracing::warn!("cannot write {}: {e}", pid_file.display());
        }
    }

    /// True while the file at `ledger` is the one this lock holds.
    pub fn holds(&self, ledger: &Path) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        match (self.file.metadata(), std::fs::metadata(ledger)) {
            (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
            _ => false,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Devices

/// Finds or creates the device row a poll of `name` belongs to. With a MAC, the MAC decides
/// (a rename or a new IP keeps the history) — unless the device with that MAC is configured
/// under another name (`polled_elsewhere`): two miners claiming one MAC are kept apart by
/// name. A new MAC at a name whose device has another one is believed (a swapped unit,
/// a new device) only when `allow_new_mac` says it persisted; until then the sample stays
/// with the name's device and the MAC is reported as a conflict.
pub(crate) fn resolve_device(
    tx: &Transaction,
    name: &str,
    identity: &Identity,
    t: f64,
    polled_elsewhere: &dyn Fn(&str) -> bool,
    allow_new_mac: bool,
) -> rusqlite::Result<Resolved> {
    let mut mac_conflict = false;
    let by_name = |tx: &Transaction| -> rusqlite::Result<Option<(i64, Option<String>)>> {
        tx.query_row("SELECT id, mac FROM devices WHERE name = ?1", [name], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
    };
    let (id, bound_mac) = match &identity.mac {
        Some(mac) => {
            let by_mac: Option<(i64, String)> = tx
                .query_row("SELECT id, name FROM devices WHERE mac = ?1", [mac], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            match by_mac {
                Some((_, other)) if other != name && polled_elsewhere(&other) => {
                    mac_conflict = true;
                    match by_name(tx)? {
                        Some(row) => row,
                        None => (insert_device(tx, name, None, t)?, None),
                    }
                }
                Some((id, old_name)) => {
                    if old_name != name {
                        free_name(tx, name, id)?;
                        tx.execute("UPDATE devices SET name = ?1 WHERE id = ?2", params![name, id])?;
                    }
                    (id, Some(mac.clone()))
                }
                None => match by_name(tx)? {
                    Some((id, None)) => {
                        tx.execute("UPDATE devices SET mac = ?1 WHERE id = ?2", params![mac, id])?;
                        (id, Some(mac.clone()))
                    }
                    Some((id, Some(other_mac))) if !allow_new_mac => {
                        mac_conflict = true;
                        (id, Some(other_mac))
                    }
                    _ => {
                        // Another miner now answers at this name: keep the old one's history
                        // under a name that says which.
                        free_name(tx, name, -1)?;
                        (insert_device(tx, name, Some(mac), t)?, Some(mac.clone()))
                    }
                },
            }
        }
        None => match by_name(tx)? {
            Some(row) => row,
            None => (insert_device(tx, name, None, t)?, None),
        },
    };
    tx.execute(
        "UPDATE devices SET hostname = coalesce(?1, hostname), asic_model = coalesce(?2, asic_model),
         board_version = coalesce(?3, board_version), firmware = coalesce(?4, firmware), last_seen = max(last_seen, ?5)
         WHERE id = ?6",
        params![
            identity.hostname,
            identity.asic_model,
            identity.board_version,
            identity.firmware,
            t,
            id
        ],
    )?;
    tx.execute(
        "INSERT OR IGNORE INTO device_names (device_id, name, first_seen) VALUES (?1, ?2, ?3)",
        params![id, name, t],
    )?;
    Ok(Resolved {
        id,
        mac_conflict,
        bound_mac,
    })
}

/// The device a poll belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub id: i64,
    /// The MAC the miner reported belongs to a device configured under another name, or is
    /// not (yet) believed to be a new miner at this name.
    pub mac_conflict: bool,
    /// The MAC of the device row the sample went to.
    pub bound_mac: Option<String>,
}

/// The device row for a name with no poll yet (an event of a device never reached).
fn device_by_name_or_new(tx: &Transaction, name: &str, t: f64) -> rusqlite::Result<i64> {
    match tx
        .query_row("SELECT id FROM devices WHERE name = ?1", [name], |r| r.get(0))
        .optional()?
    {
        Some(id) => Ok(id),
        None => {
            let id = insert_device(tx, name, None, t)?;
            tx.execute(
                "INSERT OR IGNORE INTO device_names (device_id, name, first_seen) VALUES (?1, ?2, ?3)",
                params![id, name, t],
            )?;
            Ok(id)
        }
    }
}

fn insert_device(tx: &Transaction, name: &str, mac: Option<&str>, t: f64) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO devices (name, mac, first_seen, last_seen) VALUES (?1, ?2, ?3, ?3)",
        params![name, mac, t],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Renames whichever other device holds `name` to `name (MAC)`.
fn free_name(tx: &Transaction, name: &str, except: i64) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE devices SET name = name || ' (' || coalesce(mac, 'id ' || id) || ')' WHERE name = ?1 AND id != ?2",
        params![name, except],
    )?;
    Ok(())
}

/// A device row as the CLI shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    pub id: i64,
    pub name: String,
    pub mac: Option<String>,
}

fn devices(conn: &Connection) -> rusqlite::Result<Vec<DeviceRow>> {
    let mut stmt = conn.prepare("SELECT id, name, mac FROM devices ORDER BY name")?;
    let rows = stmt.query_map([], |r| {
        Ok(DeviceRow {
            id: r.get(0)?,
            name: r.get(1)?,
            mac: r.get(2)?,
        })
    })?;
    rows.collect()
}

/// A device by its current name, or by a name it was polled under before.
fn find_device(conn: &Connection, name: &str) -> rusqlite::Result<Option<DeviceRow>> {
    conn.query_row(
        "SELECT d.id, d.name, d.mac FROM devices d WHERE d.name = ?1
         UNION ALL
         SELECT d.id, d.name, d.mac FROM device_names n JOIN devices d ON d.id = n.device_id WHERE n.name = ?1
         LIMIT 1",
        [name],
        |r| {
            Ok(DeviceRow {
                id: r.get(0)?,
                name: r.get(1)?,
                mac: r.get(2)?,
            })
        },
    )
    .optional()
}

// ---------------------------------------------------------------------------------------
// Segments and samples

/// A segment as stored, with its running steady-state aggregate.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRow {
    pub id: i64,
    pub device_id: i64,
    pub started_at: f64,
    pub ended_at: f64,
    pub reason: Boundary,
    pub frequency_mhz: Option<f64>,
    pub core_voltage_mv: Option<f64>,
    pub firmware: Option<String>,
    pub samples: u64,
    pub last_uptime: Option<u64>,
    pub warmup_seconds: f64,
    pub steady: SteadyStats,
}

/// Reads a stored aggregate; `None` when it does not parse (a file written by a build that
/// let a non-finite sum through stored `null` there), and the caller rebuilds it.
fn parse_steady(text: &str) -> Option<SteadyStats> {
    serde_json::from_str::<SteadyStats>(text)
        .ok()
        .filter(SteadyStats::is_finite)
}

const SEGMENT_COLUMNS: &str = "id, device_id, started_at, ended_at, reason, frequency_mhz, core_voltage_mv, firmware, \
     samples, last_uptime, warmup_seconds, steady";

fn segment_from_row(r: &rusqlite::Row) -> rusqlite::Result<(SegmentRow, bool)> {
    let reason: String = r.get(4)?;
    let steady: String = r.get(11)?;
    Ok(SegmentRow {
        id: r.get(0)?,
        device_id: r.get(1)?,
        started_at: r.get(2)?,
        ended_at: r.get(3)?,
        reason: Boundary::parse(&reason).unwrap_or(Boundary::Gap),
        frequency_mhz: r.get(5)?,
        core_voltage_mv: r.get(6)?,
        firmware: r.get(7)?,
        samples: r.get::<_, i64>(8)?.max(0) as u64,
        last_uptime: r.get::<_, Option<i64>>(9)?.map(|v| v.max(0) as u64),
        warmup_seconds: r.get(10)?,
        steady: parse_steady(&steady).unwrap_or_default(),
    })
    .map(|row| (row, parse_steady(&steady).is_none()))
}

/// A segment whose stored aggregate is unreadable gets it back from its own samples: the
/// samples are the truth, the aggregate only a cache of them.
fn with_rebuilt_steady(
    conn: &Connection,
    (mut segment, unreadable): (SegmentRow, bool),
) -> rusqlite::Result<SegmentRow> {
    if unreadable {
        let steady_from = segment.started_at + segment.warmup_seconds;
        let mut steady = SteadyStats::default();
        for (t, reading) in segment_readings(conn, &segment, segment.started_at, segment.ended_at)? {
            if t >= steady_from {
                steady.add(&reading);
            }
        }
        tracing::warn!(
            "{}: segment {} had an unreadable aggregate; rebuilt it from its {} steady samples",
            conn.path().unwrap_or("ledger"),
            segment.id,
            steady.samples
        );
        segment.steady = steady;
    }
    Ok(segment)
}

fn last_segment(conn: &Connection, device_id: i64) -> rusqlite::Result<Option<SegmentRow>> {
    // The segment written last (highest id), which after a clock stepped back is not the
    // one that starts latest.
    conn.query_row(
        &format!("SELECT {SEGMENT_COLUMNS} FROM segments WHERE device_id = ?1 ORDER BY id DESC LIMIT 1"),
        [device_id],
        segment_from_row,
    )
    .optional()?
    .map(|row| with_rebuilt_steady(conn, row))
    .transpose()
}

/// Segments overlapping [since, until], optionally of one device, oldest first.
fn segments_between(
    conn: &Connection,
    device_id: Option<i64>,
    since: f64,
    until: f64,
) -> rusqlite::Result<Vec<SegmentRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SEGMENT_COLUMNS} FROM segments
         WHERE (?1 IS NULL OR device_id = ?1) AND ended_at >= ?2 AND started_at <= ?3
         ORDER BY device_id, started_at"
    ))?;
    let rows = stmt.query_map(params![device_id, since, until], segment_from_row)?;
    let rows: Vec<(SegmentRow, bool)> = rows.collect::<rusqlite::Result<_>>()?;
    rows.into_iter().map(|row| with_rebuilt_steady(conn, row)).collect()
}

fn insert_segment(tx: &Transaction, s: &SegmentRow) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO segments (device_id, started_at, ended_at, reason, frequency_mhz, core_voltage_mv, firmware,
         samples, last_uptime, warmup_seconds, steady) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            s.device_id,
            s.started_at,
            s.ended_at,
            s.reason.as_str(),
            s.frequency_mhz,
            s.core_voltage_mv,
            s.firmware,
            s.samples as i64,
            s.last_uptime.map(|u| u as i64),
            s.warmup_seconds,
            steady_json(&s.steady),
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

fn save_segment(tx: &Transaction, s: &SegmentRow) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "UPDATE segments SET ended_at = ?1, samples = ?2, last_uptime = ?3, steady = ?4 WHERE id = ?5",
    )?;
    stmt.execute(params![
        s.ended_at,
        s.samples as i64,
        s.last_uptime.map(|u| u as i64),
        steady_json(&s.steady),
        s.id
    ])?;
    Ok(())
}

/// The stored form of an aggregate. A non-finite one (which `SteadyStats::add` never
/// makes) is stored as unreadable, so the next reader rebuilds it from the samples instead
/// of trusting a `null`.
fn steady_json(stats: &SteadyStats) -> String {
    if stats.is_finite() {
        serde_json::to_string(stats).unwrap_or_default()
    } else {
        String::new()
    }
}

fn insert_sample(
    tx: &Transaction,
    device_id: i64,
    segment_id: i64,
    t: f64,
    dt: f64,
    s: &Sample,
) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO samples (device_id, t, segment_id, dt, hashrate_ghs, expected_ghs, power_w, asic_temp_c,
         vr_temp_c, frequency_mhz, core_voltage_mv, core_voltage_measured_mv, input_voltage_v, input_current_a,
         fan_percent, fan_rpm, shares_accepted, shares_rejected, error_percent, uptime_s, best_difficulty)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
    )?;
    stmt.execute(params![
        device_id,
        t,
        segment_id,
        dt,
        s.hashrate_ghs,
        s.expected_hashrate_ghs,
        s.power_watts,
        s.asic_temp_celsius,
        s.vr_temp_celsius,
        s.frequency_mhz,
        s.core_voltage_mv,
        s.core_voltage_measured_mv,
        s.input_voltage_volts,
        s.input_current_amperes,
        s.fan_duty_percent,
        s.fan_rpm,
        s.shares_accepted.map(|v| v.min(i64::MAX as u64) as i64),
        s.shares_rejected.map(|v| v.min(i64::MAX as u64) as i64),
        s.error_percent,
        s.uptime_seconds.map(|v| v.min(i64::MAX as u64) as i64),
        s.best_difficulty,
    ])?;
    Ok(())
}

/// The readings of one segment's samples in [since, until], with their times.
fn segment_readings(
    conn: &Connection,
    segment: &SegmentRow,
    since: f64,
    until: f64,
) -> rusqlite::Result<Vec<(f64, Reading)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT t, dt, hashrate_ghs, expected_ghs, power_w, asic_temp_c, vr_temp_c, error_percent, shares_accepted,
         shares_rejected FROM samples WHERE device_id = ?1 AND t >= ?2 AND t <= ?3 AND segment_id = ?4 ORDER BY t",
    )?;
    let rows = stmt.query_map(params![segment.device_id, since, until, segment.id], |r| {
        Ok((
            r.get::<_, f64>(0)?,
            Reading {
                dt: r.get(1)?,
                hashrate_ghs: r.get(2)?,
                expected_ghs: r.get(3)?,
                power_watts: r.get(4)?,
                asic_celsius: r.get(5)?,
                vr_celsius: r.get(6)?,
                error_percent: r.get(7)?,
                shares_accepted: r.get::<_, Option<i64>>(8)?.map(|v| v.max(0) as u64),
                shares_rejected: r.get::<_, Option<i64>>(9)?.map(|v| v.max(0) as u64),
            },
        ))
    })?;
    rows.collect()
}

// ---------------------------------------------------------------------------------------
// Events

fn insert_event(tx: &Transaction, device_id: i64, t: f64, kind: &str, detail: &str) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached("INSERT INTO events (device_id, t, kind, detail) VALUES (?1, ?2, ?3, ?4)")?;
    stmt.execute(params![device_id, t, kind, detail])?;
    Ok(())
}

/// (time, kind, detail) of a device's events in a range, oldest first.
fn events_between(
    conn: &Connection,
    device_id: i64,
    since: f64,
    until: f64,
) -> rusqlite::Result<Vec<(f64, String, String)>> {
    let mut stmt =
        conn.prepare("SELECT t, kind, detail FROM events WHERE device_id = ?1 AND t >= ?2 AND t <= ?3 ORDER BY t, id")?;
    let rows = stmt.query_map(params![device_id, since, until], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
