//! `analyze export`: the samples as CSV or JSON, streamed row by row from SQLite to the
//! output (memory does not grow with the row count), with units in the column names.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::analysis::{csv_field, csv_number};
use crate::ledger::{ExportValue, Ledger, LedgerError, EXPORT_COLUMNS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("reading the ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("writing the export: {0}")]
    Io(#[from] io::Error),
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A symlink at the output's name that neither this user nor root made: someone else
    /// may have planted it to have the export replace a file of this user's.
    #[error(
        "{path} is a symbolic link owned by another user (uid {owner}); refusing to write through it \
         (remove it or choose another --output)"
    )]
    ForeignLink { path: PathBuf, owner: u32 },
    #[error("{path} is a symbolic link to nothing; refusing to replace the link (choose another --output)")]
    DanglingLink { path: PathBuf },
    /// The name was free when the export began and taken when it was done.
    #[error("{path} appeared while the export was written; it was left as it is and nothing was written")]
    Appeared { path: PathBuf },
}

impl ExportError {
    /// The user's output name was refused (as opposed to an export that failed).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ExportError::ForeignLink { .. } | ExportError::DanglingLink { .. } | ExportError::Appeared { .. }
        )
    }
}

/// The effective uid of this process, from the owner of `/proc/self` (which the kernel
/// gives the process's effective uid); `None` where there is no `/proc`.
fn effective_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Writes an export to `path` so that a failure never truncates what was there, and
/// nothing is written through a symlink someone else planted:
/// - a regular file is replaced through a temporary file in the same folder, renamed over
///   it once `write` succeeded, and keeps the old file's permissions and owner;
/// - a new file is created the same way, and the rename refuses to replace anything that
///   appeared at the name meanwhile (`O_EXCL`'s promise for the final name);
/// - a symlink is followed (the link stays a link) only when this user or root owns it:
///   one owned by another user is refused, as is a link to nothing;
/// - anything else — a FIFO, a terminal, `/dev/stdout`, `>(…)` — is written to directly,
///   never replaced by a file.
pub fn write_to_path(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<u64, ExportError>,
) -> Result<u64, ExportError> {
    use std::os::unix::fs::MetadataExt as _;
    let file_error = |source| ExportError::File {
        path: path.to_path_buf(),
        source,
    };
    let named = match std::fs::symlink_metadata(path) {
        Ok(named) => named,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return write_atomically(path, None, write),
        Err(e) => return Err(file_error(e)),
    };
    if named.file_type().is_symlink() {
        let owner = named.uid();
        if owner != 0 && Some(owner) != effective_uid() {
            return Err(ExportError::ForeignLink {
                path: path.to_path_buf(),
                owner,
            });
        }
    }
    let existing = match std::fs::metadata(path) {
        Ok(existing) => existing,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ExportError::DanglingLink {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(file_error(e)),
    };
    if !existing.is_file() {
        let file = std::fs::OpenOptions::new().write(true).open(path).map_err(file_error)?;
        let mut out = io::BufWriter::with_capacity(64 * 1024, file);
        let written = write(&mut out)?;
        out.flush()?;
        return Ok(written);
    }
    if named.file_type().is_symlink() {
        let target = std::fs::canonicalize(path).map_err(file_error)?;
        return write_atomically(&target, Some(&existing), write);
    }
    write_atomically(path, Some(&existing), write)
}

/// The temporary-file-and-rename write of [`write_to_path`]: over `existing`, or (`None`)
/// at a name that must still be free when the export is done.
fn write_atomically(
    path: &Path,
    existing: Option<&std::fs::Metadata>,
    write: impl FnOnce(&mut dyn Write) -> Result<u64, ExportError>,
) -> Result<u64, ExportError> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let file_error = |source| ExportError::File {
        path: path.to_path_buf(),
        source,
    };
    let folder = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // Created with O_EXCL under a random name, so never anyone else's file.
    let temporary = tempfile::Builder::new()
        .prefix(".bitaxe-export-")
        .tempfile_in(folder)
        .map_err(file_error)?;
    let mut out = io::BufWriter::with_capacity(64 * 1024, temporary);
    let written = write(&mut out)?;
    let temporary = out.into_inner().map_err(|e| file_error(e.into_error()))?;
    // The replacement looks like what it replaces; a new export is readable like any
    // other file (the temporary file starts private).
    let mode = existing.map_or(0o644, |m| m.mode() & 0o7777);
    temporary
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(file_error)?;
    if let Some(m) = existing {
        // Only root may give a file away; for anyone else the owner is already right.
        let _ = std::os::unix::fs::fchown(temporary.as_file(), Some(m.uid()), Some(m.gid()));
    }
    temporary.as_file().sync_all().map_err(file_error)?;
    match existing {
        Some(_) => {
            temporary.persist(path).map_err(|e| file_error(e.error))?;
        }
        None => match temporary.persist_noclobber(path) {
            Ok(_) => {}
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                return Err(ExportError::Appeared {
                    path: path.to_path_buf(),
                })
            }
            // A filesystem that can neither rename without replacing nor hard-link: a
            // plain rename, which still never writes through a link at the name.
            Err(e) => {
                e.file.persist(path).map_err(|e| file_error(e.error))?;
            }
        },
    }
    Ok(written)
}

/// Writes the samples of `device_id` (or all devices) in [since, until]; returns the row
/// count. The columns, their order, the CSV header and the JSON keys all come from
/// [`EXPORT_COLUMNS`].
pub fn export(
    ledger: &Ledger,
    out: &mut dyn Write,
    format: ExportFormat,
    device_id: Option<i64>,
    since: f64,
    until: f64,
) -> Result<u64, ExportError> {
    match format {
        ExportFormat::Csv => {
            let header: Vec<&str> = EXPORT_COLUMNS.iter().map(|c| c.name).collect();
            writeln!(out, "{}", header.join(","))?;
        }
        ExportFormat::Json => out.write_all(b"[")?,
    }
    let mut line = String::with_capacity(256);
    let mut first = true;
    let count = ledger.export_rows(device_id, since, until, |values| -> Result<(), ExportError> {
        line.clear();
        match format {
            ExportFormat::Csv => {
                for (index, value) in values.iter().enumerate() {
                    if index > 0 {
                        line.push(',');
                    }
                    push_csv(&mut line, value);
                }
                line.push('\n');
            }
            ExportFormat::Json => {
                let object: serde_json::Map<String, Value> = EXPORT_COLUMNS
                    .iter()
                    .zip(values)
                    .map(|(column, value)| (column.name.to_string(), json_value(value)))
                    .collect();
                if !first {
                    line.push(',');
                }
                line.push_str("\n  ");
                line.push_str(&Value::Object(object).to_string());
            }
        }
        first = false;
        out.write_all(line.as_bytes())?;
        Ok(())
    })?;
    if format == ExportFormat::Json {
        out.write_all(if count > 0 { b"\n]\n" } else { b"]\n" })?;
    }
    out.flush()?;
    Ok(count)
}

fn push_csv(line: &mut String, value: &ExportValue) {
    use std::fmt::Write as _;
    let _ = match value {
        ExportValue::Null => Ok(()),
        ExportValue::Time(t) => write!(line, "{}", crate::time::format(*t)),
        ExportValue::Real(v) => write!(line, "{}", csv_number(*v)),
        ExportValue::Integer(v) => write!(line, "{v}"),
        ExportValue::Text(text) => write!(line, "{}", csv_field(text)),
    };
}

fn json_value(value: &ExportValue) -> Value {
    match value {
        ExportValue::Null => Value::Null,
        ExportValue::Time(t) => Value::from(crate::time::format(*t)),
        ExportValue::Real(v) => Value::from(*v),
        ExportValue::Integer(v) => Value::from(*v),
        ExportValue::Text(text) => Value::from(text.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_export_leaves_the_existing_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samples.csv");
        std::fs::write(&path, "yesterday's export\n").unwrap();
        let failed = write_to_path(&path, |out| {
            out.write_all(b"half a row")?;
            Err(ExportError::Io(io::Error::other("the ledger went away")))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "yesterday's export\n");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "a temporary file was left behind"
        );

        let written = write_to_path(&path, |out| {
            out.write_all(b"new\n")?;
            Ok(1)
        });
        assert_eq!(written.unwrap(), 1);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
    }

    #[test]
    fn permissions_links_and_special_files_are_respected() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("export.csv");
        std::fs::write(&target, "old\n").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("latest.csv");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_to_path(&link, |out| {
            out.write_all(b"new\n")?;
            Ok(1)
        })
        .unwrap();
        assert!(
            std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(),
            "the link was replaced"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new\n");
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o640);
        // A character device is written to, not replaced by a file.
        write_to_path(Path::new("/dev/null"), |out| {
            out.write_all(b"discarded\n")?;
            Ok(1)
        })
        .unwrap();
        assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
        // A new export is readable by others, like any file.
        let fresh = dir.path().join("fresh.csv");
        write_to_path(&fresh, |_| Ok(0)).unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o644);
    }

    #[test]
    fn a_link_planted_by_another_user_is_refused_and_its_target_untouched() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, "precious\n").unwrap();
        let planted = dir.path().join("report.html");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        // Only root can give a link to another user.
        if std::os::unix::fs::lchown(&planted, Some(65534), Some(65534)).is_err() {
            assert_ne!(effective_uid(), Some(0), "root could not give the link away");
            eprintln!("SKIPPED: not root, cannot plant a link owned by another user");
            return;
        }
        let refused = write_to_path(&planted, |out| {
            out.write_all(b"report\n")?;
            Ok(1)
        });
        assert!(
            matches!(refused, Err(ExportError::ForeignLink { owner: 65534, .. })),
            "{refused:?}"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        let link = std::fs::symlink_metadata(&planted).unwrap();
        assert!(link.file_type().is_symlink() && link.uid() == 65534);
    }

    #[test]
    fn a_new_export_never_replaces_what_appeared_at_its_name_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, "precious\n").unwrap();
        let name = dir.path().join("samples.csv");
        let planted = name.clone();
        let target = victim.clone();
        let refused = write_to_path(&name, move |out| {
            // Planted while the export is being written.
            std::os::unix::fs::symlink(&target, &planted).unwrap();
            out.write_all(b"rows\n")?;
            Ok(1)
        });
        assert!(matches!(refused, Err(ExportError::Appeared { .. })), "{refused:?}");
        assert!(std::fs::symlink_metadata(&name).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "a temporary file was left"
        );
        // A link to nothing is not replaced by a file either.
        let dangling = dir.path().join("dangling.csv");
        std::os::unix::fs::symlink(dir.path().join("missing/file.csv"), &dangling).unwrap();
        assert!(matches!(
            write_to_path(&dangling, |_| Ok(0)),
            Err(ExportError::DanglingLink { .. })
        ));
        assert!(std::fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());
    }
}
