//! Whether the ledger file is damaged, and what `serve` does about it: a ledger SQLite
//! calls corrupt or "not a database" is moved aside whole (with its `-wal` / `-shm`) under
//! `<ledger>.damaged-<UTC time>`, kept for recovery, and a fresh ledger starts at the path,
//! so a damaged file never takes the metrics, alerts and protection down with it. The
//! copies left beside the ledger are what `bitaxe_ledger_healthy` watches: it stays 0
//! until the operator has dealt with them.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rusqlite::OpenFlags;

use super::{ledger_files, Ledger, LedgerError, Result};

/// What a damaged copy's name carries after the ledger's own name.
const DAMAGED_INFIX: &str = ".damaged-";

/// The most problems `PRAGMA quick_check` lists (the first is enough to know).
const QUICK_CHECK_PROBLEMS: u32 = 3;

/// True when SQLite says the file is damaged: a corrupt page, or no database at all.
pub(crate) fn is_damage(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(e, _)
        if matches!(e.code, rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase))
}

impl LedgerError {
    /// True when the failure was SQLite finding the file damaged (corrupt, not a database).
    pub fn is_damaged(&self) -> bool {
        match self {
            LedgerError::Sqlite { source, .. } | LedgerError::NotWritable { source, .. } => is_damage(source),
            _ => false,
        }
    }
}

/// What SQLite said of a damaged ledger, without the path (the log line names it).
pub fn damage_of(error: &LedgerError) -> String {
    match error {
        LedgerError::Sqlite { source, .. } | LedgerError::NotWritable { source, .. } => source.to_string(),
        e => e.to_string(),
    }
}

/// Reads the whole ledger at `path` once (`PRAGMA quick_check`: every page's structure,
/// about 2–3 s per GiB) without writing to it. `Ok(Some(why))` when it is damaged,
/// `Ok(None)` when it is sound or does not exist yet; an error that says nothing about
/// the file's state (no permission, a lock held past the busy timeout) is returned for
/// the caller to report as before.
pub fn check(path: &Path) -> Result<Option<String>> {
    if !path.is_file() {
        return Ok(None);
    }
    let ledger = match Ledger::connect(path, OpenFlags::SQLITE_OPEN_READ_ONLY) {
        Ok(ledger) => ledger,
        Err(e) if e.is_damaged() => return Ok(Some(damage_of(&e))),
        Err(e) => return Err(e),
    };
    let problems = ledger.read(|conn| {
        let mut stmt = conn.prepare(&format!("PRAGMA quick_check({QUICK_CHECK_PROBLEMS})"))?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect::<rusqlite::Result<Vec<String>>>()
    });
    match problems {
        Ok(problems) if problems.len() == 1 && problems[0] == "ok" => Ok(None),
        Ok(problems) => Ok(Some(format!("PRAGMA quick_check: {}", problems.join("; ")))),
        Err(e) if e.is_damaged() => Ok(Some(damage_of(&e))),
        Err(e) => Err(e),
    }
}

/// Renames the ledger and its `-wal`, `-shm` and `-journal` (those that exist) to
/// `<ledger>.damaged-<UTC time>[-N]` and the same suffixes, so SQLite and a recovery tool
/// still read the copy with its unwritten pages. Nothing is deleted. Returns the copy's
/// path. No connection of this process may have the file open.
pub fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
    let stamp: String = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let named = |n: u32| {
        let mut name = path.as_os_str().to_owned();
        name.push(DAMAGED_INFIX);
        name.push(&stamp);
        if n > 0 {
            name.push(format!("-{n}"));
        }
        PathBuf::from(name)
    };
    // A name none of whose files exists yet: never over an earlier copy.
    let mut n = 0;
    let copy = loop {
        let copy = named(n);
        if ledger_files(&copy)
            .iter()
            .all(|f| std::fs::symlink_metadata(f).is_err())
        {
            break copy;
        }
        n += 1;
    };
    let [database, companions @ ..] = ledger_files(path);
    let [_, copy_companions @ ..] = ledger_files(&copy);
    std::fs::rename(&database, &copy)?;
    for (from, to) in companions.iter().zip(&copy_companions) {
        match std::fs::rename(from, to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // The database is aside already, but a companion left at the path would be
            // read as the fresh ledger's (a `-wal` replayed into it): stop here instead.
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!(
                        "moved the damaged ledger to {} but cannot move {}: {e}",
                        copy.display(),
                        from.display()
                    ),
                ))
            }
        }
    }
    Ok(copy)
}

/// The damaged copies [`move_aside`] left beside the ledger at `path` (not their `-wal` /
/// `-shm`), oldest first. An unreadable folder has none that can be named.
pub fn damaged_copies(path: &Path) -> Vec<PathBuf> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    let prefix = format!("{name}{DAMAGED_INFIX}");
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut copies: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix) && !["-wal", "-shm", "-journal"].iter().any(|s| n.ends_with(s)))
        })
        .map(|e| e.path())
        .collect();
    copies.sort();
    copies
}

/// How to get the samples back out of a damaged copy and the ledger back in place, as
/// shell commands (paths quoted for a POSIX shell).
pub fn recovery_hint(path: &Path, copy: &Path) -> String {
    let copy_q = shell_quote(&copy.display().to_string());
    let path_q = shell_quote(&path.display().to_string());
    format!(
        "to recover what it holds: sqlite3 {copy_q} .recover | sqlite3 recovered.db \
         (with a sqlite3 that lacks .recover, e.g. Debian's: sqlite3 {copy_q} .dump | sed 's/^ROLLBACK; -- due to errors$/COMMIT;/' | sqlite3 recovered.db \
         && sqlite3 recovered.db \"PRAGMA user_version = $(sqlite3 {copy_q} 'PRAGMA user_version')\"); \
         to put it back: stop serve, mv recovered.db {path_q} (the samples since {copy_q} was moved aside stay in the file it replaces; \
         keep that under another name if you want them) and start serve; bitaxe_ledger_healthy stays 0 until {copy_q} is deleted \
         or renamed (with its -wal/-shm, if any)"
    )
}

/// `text` as one word of a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_never_replaces_an_earlier_one_and_is_found_without_its_companions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.db");
        let mut copies = Vec::new();
        for _ in 0..2 {
            std::fs::write(&path, b"garbage").unwrap();
            std::fs::write(dir.path().join("metrics.db-wal"), b"wal").unwrap();
            copies.push(move_aside(&path).unwrap());
        }
        assert_ne!(copies[0], copies[1]);
        assert!(!path.exists());
        assert!(!dir.path().join("metrics.db-wal").exists());
        for copy in &copies {
            assert_eq!(std::fs::read(copy).unwrap(), b"garbage");
            let [_, wal, ..] = ledger_files(copy);
            assert_eq!(std::fs::read(wal).unwrap(), b"wal");
        }
        let mut found = damaged_copies(&path);
        found.sort();
        copies.sort();
        assert_eq!(found, copies);
    }

    #[test]
    fn the_check_finds_garbage_and_a_truncated_ledger_and_passes_a_sound_or_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.db");
        assert_eq!(check(&path).unwrap(), None, "no ledger yet");
        let ledger = Ledger::open(&path).unwrap();
        ledger
            .conn
            .execute_batch(
                "INSERT INTO devices (id, name, first_seen, last_seen) VALUES (1, 'gamma', 0, 0);
                 INSERT INTO segments (id, device_id, started_at, ended_at, reason, warmup_seconds)
                     VALUES (1, 1, 0, 0, 'first', 0);
                 WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x < 5000)
                 INSERT INTO events (device_id, t, kind, detail) SELECT 1, x * 30.0, 'note', printf('%.100c', 'y') FROM n;
                 PRAGMA wal_checkpoint(TRUNCATE);",
            )
            .unwrap();
        drop(ledger);
        assert_eq!(check(&path).unwrap(), None, "a sound ledger");
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size > 100_000, "{size} bytes");
        let truncated = dir.path().join("truncated.db");
        std::fs::copy(&path, &truncated).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&truncated)
            .unwrap()
            .set_len(size / 2)
            .unwrap();
        assert!(check(&truncated).unwrap().is_some(), "a truncated ledger");
        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
        let why = check(&garbage).unwrap().unwrap_or_default();
        assert!(why.contains("not a database"), "{why}");
    }

    #[test]
    fn quoting_survives_a_quote_in_the_path() {
        assert_eq!(shell_quote("a'b c"), r"'a'\''b c'");
    }
}
