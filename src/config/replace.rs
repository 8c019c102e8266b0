//! Editing a config file in place as safely as the ledger is written: the file a symlink
//! names is the one edited (the link stays a link), an exclusive `flock` on it keeps two
//! editors from losing each other's change, a read-only file is refused, and the new text
//! replaces the old atomically (temporary file and rename) with the old mode and owner, a
//! backup of the old text kept beside the name given.

use std::fs::{File, Metadata};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::MAX_CONFIG_BYTES;

/// How long an edit waits for another one to finish before it gives up.
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// Why a config file cannot be edited. Each leaves the file as it was.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    #[error(
        "{path} is read-only (mode {mode:04o}); nothing was changed; make it writable (chmod u+w) to let it be edited"
    )]
    ReadOnly { path: PathBuf, mode: u32 },
    #[error("{path} cannot be written: {source}")]
    NotWritable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path} is larger than {} KiB", MAX_CONFIG_BYTES / 1024)]
    TooLarge { path: PathBuf },
    #[error("another process has been editing {path} for {} s", LOCK_WAIT.as_secs())]
    Busy { path: PathBuf },
    #[error("{path} kept being replaced while this edit waited for it")]
    Unstable { path: PathBuf },
    #[error("{path}: cannot {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> ReplaceError {
    let path = path.to_path_buf();
    move |source| ReplaceError::Io { path, action, source }
}

/// Refuses a file that may not be written: no write permission bit at all (even root, who
/// could, is told no: the mode is the owner's decision), or one this user cannot open for
/// writing (another owner, a read-only filesystem). Follows symlinks.
pub fn check_writable(path: &Path) -> Result<(), ReplaceError> {
    let metadata = std::fs::metadata(path).map_err(io(path, "read it"))?;
    if !metadata.is_file() {
        return Err(ReplaceError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mode = metadata.mode() & 0o7777;
    if mode & 0o222 == 0 {
        return Err(ReplaceError::ReadOnly {
            path: path.to_path_buf(),
            mode,
        });
    }
    // Opened for appending, never truncated; nothing is written.
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map(drop)
        .map_err(|source| ReplaceError::NotWritable {
            path: path.to_path_buf(),
            source,
        })
}

/// A config file held for an edit: the file itself (symlinks followed), locked against
/// every other edit through this type until it is replaced or dropped, and its text as it
/// was read under the lock.
#[derive(Debug)]
pub struct LockedConfig {
    /// The name the user gave (the backup goes beside it).
    named: PathBuf,
    /// The file it resolves to: the one replaced.
    target: PathBuf,
    /// Holds the `flock` (on the file's inode: a waiting editor sees that the name now
    /// points at a new file and locks that one instead).
    file: File,
    metadata: Metadata,
    text: String,
}

impl LockedConfig {
    /// Locks the file `path` names (waiting up to a minute for another edit) and reads it.
    pub fn open(path: &Path) -> Result<LockedConfig, ReplaceError> {
        let deadline = Instant::now() + LOCK_WAIT;
        // Another editor replaces the file while this one waits: the lock it held was on
        // the old file, so lock again whatever the name points at now.
        for _ in 0..1000 {
            let target = std::fs::canonicalize(path).map_err(io(path, "read it"))?;
            check_writable(&target)?;
            let file = File::open(&target).map_err(io(&target, "open it"))?;
            loop {
                match file.try_lock() {
                    Ok(()) => break,
                    Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(std::fs::TryLockError::WouldBlock) => {
                        return Err(ReplaceError::Busy {
                            path: path.to_path_buf(),
                        })
                    }
                    Err(std::fs::TryLockError::Error(e)) => return Err(io(&target, "lock it")(e)),
                }
            }
            let metadata = file.metadata().map_err(io(&target, "read it"))?;
            let still_named = std::fs::metadata(&target)
                .is_ok_and(|named| named.dev() == metadata.dev() && named.ino() == metadata.ino());
            if !still_named {
                continue;
            }
            if metadata.len() > MAX_CONFIG_BYTES {
                return Err(ReplaceError::TooLarge { path: target });
            }
            let mut text = String::new();
            (&file)
                .take(MAX_CONFIG_BYTES)
                .read_to_string(&mut text)
                .map_err(io(&target, "read it"))?;
            return Ok(LockedConfig {
                named: path.to_path_buf(),
                target,
                file,
                metadata,
                text,
            });
        }
        Err(ReplaceError::Unstable {
            path: path.to_path_buf(),
        })
    }

    /// The file's text, read under the lock.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The file edited: where the given name leads.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Where the previous text is kept: the given name with `.bak` appended.
    pub(crate) fn backup_path(&self) -> PathBuf {
        let mut name = self.named.clone().into_os_string();
        name.push(".bak");
        PathBuf::from(name)
    }

    /// Keeps the old text as [`Self::backup_path`] and puts `text` in the file's place,
    /// each written to a temporary file renamed into place: a failure leaves the old file,
    /// and neither write follows a symlink planted at its name. Both keep the file's mode
    /// (a config may hold secrets) and, where this user may, its owner. The lock is
    /// released after the rename.
    pub fn replace(self, text: &str) -> Result<PathBuf, ReplaceError> {
        let backup = self.backup_path();
        write_beside(&backup, self.text.as_bytes(), &self.metadata)?;
        write_beside(&self.target, text.as_bytes(), &self.metadata)?;
        drop(self.file);
        Ok(backup)
    }
}

/// Writes `bytes` to `path` through a temporary file in its folder renamed over it, with
/// the mode and owner of `like`.
fn write_beside(path: &Path, bytes: &[u8], like: &Metadata) -> Result<(), ReplaceError> {
    let folder = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut staged = tempfile::Builder::new()
        .prefix(".bitaxe-config-")
        .tempfile_in(folder)
        .map_err(io(path, "write beside it"))?;
    staged.write_all(bytes).map_err(io(path, "write beside it"))?;
    let file = staged.as_file();
    file.set_permissions(std::fs::Permissions::from_mode(like.mode() & 0o7777))
        .map_err(io(path, "set the permissions of its replacement"))?;
    // Only root may give a file away; for anyone else the owner is already right.
    let _ = std::os::unix::fs::fchown(file, Some(like.uid()), Some(like.gid()));
    file.sync_all().map_err(io(path, "write beside it"))?;
    staged.persist(path).map_err(|e| io(path, "replace it")(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_editor_waits_for_the_first_and_reads_its_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "first\n").unwrap();
        let held = LockedConfig::open(&path).unwrap();
        let waiting = {
            let path = path.clone();
            std::thread::spawn(move || LockedConfig::open(&path).map(|c| c.text().to_string()))
        };
        // Time for the second editor to read, were it not held back (correctness does not
        // depend on it: with the lock it waits whatever the timing).
        std::thread::sleep(Duration::from_millis(300));
        held.replace("second\n").unwrap();
        assert_eq!(waiting.join().unwrap().unwrap(), "second\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("config.yaml.bak")).unwrap(),
            "first\n"
        );
    }

    #[test]
    fn a_read_only_file_is_refused_even_for_root() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "x\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(matches!(
            LockedConfig::open(&path),
            Err(ReplaceError::ReadOnly { mode: 0o400, .. })
        ));
    }
}
