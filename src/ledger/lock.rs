//! Which file the ledger is: its identity on disk (to notice a deleted or replaced file,
//! and to refuse an export over it), its companion files, and the one-writer lock — held by
//! `serve`, or by a `tune` that stores its own samples and hands the ledger over when a
//! `serve` asks for it.

use std::path::{Path, PathBuf};

use super::{LedgerError, Result};

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

/// A running sweep touches its heartbeat file this often…
pub const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(3);
/// …so one untouched for this long belongs to a sweep that is gone.
pub(crate) const HEARTBEAT_STALE: std::time::Duration = std::time::Duration::from_secs(15);

/// The file a running sweep keeps touching (`<ledger>.tune-<run>.alive`), so a process in
/// another pid namespace (`serve` in a container, `tune` on the host) can tell a live sweep
/// from an interrupted one, where `/proc` cannot.
pub(crate) fn heartbeat_path(ledger: &Path, run_id: i64) -> PathBuf {
    let real = std::fs::canonicalize(ledger).unwrap_or_else(|_| ledger.to_path_buf());
    let mut name = real.into_os_string();
    name.push(format!(".tune-{run_id}.alive"));
    PathBuf::from(name)
}

/// Marks a sweep alive now (never through a symlink planted at the name).
pub fn touch_heartbeat(ledger: &Path, run_id: i64) {
    let path = heartbeat_path(ledger, run_id);
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
        return;
    }
    let _ = std::fs::write(&path, format!("{}\n", std::process::id()));
}

/// Whether a sweep touched its heartbeat within [`HEARTBEAT_STALE`].
pub fn heartbeat_fresh(ledger: &Path, run_id: i64) -> bool {
    std::fs::symlink_metadata(heartbeat_path(ledger, run_id))
        .ok()
        .and_then(|m| m.modified().ok())
        .and_then(|at| at.elapsed().ok())
        .is_some_and(|age| age < HEARTBEAT_STALE)
}

/// The sweep ended (its restore done): its heartbeat goes.
pub fn clear_heartbeat(ledger: &Path, run_id: i64) {
    let _ = std::fs::remove_file(heartbeat_path(ledger, run_id));
}

/// How long a `serve`'s request for the ledger stands (it waits 15 s for the handover).
pub(crate) const HANDOVER_FRESH: std::time::Duration = std::time::Duration::from_secs(20);

/// Who holds the lock: what the pid file says after the pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `serve` (or `demo`): keeps the ledger until it stops.
    Serve,
    /// A standalone `tune`: writes its own samples until a `serve` asks for the ledger.
    Sweep,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Serve => "serve",
            Role::Sweep => "tune",
        }
    }
}

impl DaemonLock {
    /// Where the holder's pid is written: beside the file the ledger path resolves to.
    pub fn lock_path(ledger: &Path) -> PathBuf {
        let real = std::fs::canonicalize(ledger).unwrap_or_else(|_| ledger.to_path_buf());
        let mut name = real.into_os_string();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Locks the (existing) ledger file for `serve`, or says which process holds it.
    pub fn acquire(ledger: &Path) -> Result<DaemonLock> {
        Self::acquire_as(ledger, Role::Serve)
    }

    /// Locks the (existing) ledger file, recording who holds it, or says which process does.
    pub fn acquire_as(ledger: &Path, role: Role) -> Result<DaemonLock> {
        let file = std::fs::File::open(ledger).map_err(|source| LedgerError::Lock {
            path: ledger.to_path_buf(),
            source,
        })?;
        Self::try_lock(ledger, &file)?;
        Self::write_pid(ledger, role);
        Ok(DaemonLock { file })
    }

    /// The pid of the standalone `tune` that holds the lock now, if a sweep (not a `serve`)
    /// does: what the pid file says (a failed `try_lock` already proves the holder alive,
    /// in whatever pid namespace). The holder writes that file just after it takes the
    /// lock, so it is read after a moment.
    pub fn sweep_holder(ledger: &Path) -> Option<u32> {
        std::thread::sleep(std::time::Duration::from_millis(100));
        match Self::holder_of(ledger)? {
            (pid, Some(Role::Sweep)) => Some(pid),
            _ => None,
        }
    }

    fn holder_of(ledger: &Path) -> Option<(u32, Option<Role>)> {
        let text = std::fs::read_to_string(Self::lock_path(ledger)).ok()?;
        let mut words = text.split_whitespace();
        let pid = words.next()?.parse().ok()?;
        let role = match words.next() {
            Some("tune") => Some(Role::Sweep),
            Some("serve") => Some(Role::Serve),
            _ => None,
        };
        Some((pid, role))
    }

    /// Where a `serve` asks a sweep for the ledger: beside the file the path resolves to.
    pub(crate) fn handover_path(ledger: &Path) -> PathBuf {
        let real = std::fs::canonicalize(ledger).unwrap_or_else(|_| ledger.to_path_buf());
        let mut name = real.into_os_string();
        name.push(".handover");
        PathBuf::from(name)
    }

    /// Asks the sweep holding the ledger to hand it over (it flushes and lets go within a
    /// second or two, and polls on without storing).
    pub fn request_handover(ledger: &Path) -> std::io::Result<()> {
        let path = Self::handover_path(ledger);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(std::io::Error::other(format!("{} is a symbolic link", path.display())));
        }
        std::fs::write(&path, format!("{}\n", std::process::id()))
    }

    /// Whether a `serve` asked for the ledger in the last [`HANDOVER_FRESH`]: a request
    /// left behind by a `serve` that died while it waited is stale, never honoured.
    pub fn handover_requested(ledger: &Path) -> bool {
        std::fs::symlink_metadata(Self::handover_path(ledger))
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|age| age < HANDOVER_FRESH)
    }

    /// The request is done with (the lock is taken, or waiting ended).
    pub fn clear_handover(ledger: &Path) {
        let _ = std::fs::remove_file(Self::handover_path(ledger));
    }

    /// Fails with [`LedgerError::InUse`] when a daemon holds the ledger now (checked before
    /// `serve` binds its port, so a second daemon says why it cannot run). A ledger that
    /// does not exist yet is free.
    pub fn check_free(ledger: &Path) -> Result<()> {
        match std::fs::File::open(ledger) {
            Ok(file) => match Self::try_lock(ledger, &file) {
                Err(busy @ LedgerError::InUse { .. }) => Err(busy),
                _ => Ok(()),
            },
            Err(_) => Ok(()),
        }
    }

    fn try_lock(ledger: &Path, file: &std::fs::File) -> Result<()> {
        match file.try_lock() {
            Ok(()) => Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => Err(LedgerError::InUse {
                path: ledger.to_path_buf(),
                holder: Self::holder(ledger),
            }),
            Err(std::fs::TryLockError::Error(source)) => Err(LedgerError::Lock {
                path: ledger.to_path_buf(),
                source,
            }),
        }
    }

    fn holder(ledger: &Path) -> String {
        match Self::holder_of(ledger) {
            Some((pid, Some(Role::Sweep))) => format!("tune, pid {pid}"),
            Some((pid, _)) => format!("pid {pid}"),
            None => "another process".into(),
        }
    }

    /// Records this process as the holder. Informational only, so it never follows a
    /// symlink planted at its name (which would truncate whatever the link points at).
    fn write_pid(ledger: &Path, role: Role) {
        let pid_file = Self::lock_path(ledger);
        if std::fs::symlink_metadata(&pid_file).is_ok_and(|m| m.file_type().is_symlink()) {
            tracing::warn!("{} is a symbolic link; not writing the pid into it", pid_file.display());
            return;
        }
        if let Err(e) = std::fs::write(&pid_file, format!("{} {}\n", std::process::id(), role.as_str())) {
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
