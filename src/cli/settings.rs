//! What the ledger commands (`session`, `analyze`) share: their settings from config.yaml,
//! opening the ledger, finding a device, reading a time argument, and error mapping.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::Failure;
use crate::config::{self, DeviceConfig, Thresholds};
use crate::ledger::sessions::SessionError;
use crate::ledger::{self as ledger_db, DeviceRow, Ledger};
use crate::time;

/// What the session and analyze commands need from config.yaml.
#[derive(Debug, Clone)]
pub struct LedgerSettings {
    pub database_path: PathBuf,
    /// The configuration file these settings came from, when there is one.
    pub config_path: Option<PathBuf>,
    pub warmup_seconds: f64,
    pub thresholds: Thresholds,
    pub devices: Vec<DeviceConfig>,
}

impl LedgerSettings {
    /// From the named config file (which must exist); with none named, from
    /// `./config.yaml` when there is one, else the defaults.
    pub fn load(named: Option<&Path>) -> Result<Self, Failure> {
        let path = named.unwrap_or(Path::new(DEFAULT_CONFIG));
        if named.is_none() && !path.exists() {
            return Ok(Self {
                database_path: PathBuf::from(config::DEFAULT_DATABASE_PATH),
                config_path: None,
                warmup_seconds: config::DEFAULT_WARMUP_MINUTES * 60.0,
                thresholds: Thresholds::default(),
                devices: Vec::new(),
            });
        }
        let config = config::load(path)?;
        Ok(Self {
            database_path: config.database_path,
            config_path: Some(path.to_path_buf()),
            warmup_seconds: config.warmup.as_secs_f64(),
            thresholds: config.thresholds,
            devices: config.devices,
        })
    }

    /// The ledger for reading (analysis, listings): works on a read-only file.
    pub fn open(&self) -> Result<Ledger, Failure> {
        Ledger::open_read_only(&self.database_path).map_err(ledger_failure)
    }

    /// The ledger for the commands that record something (sessions). Never creates one.
    pub fn open_for_writing(&self) -> Result<Ledger, Failure> {
        Ledger::open_existing(&self.database_path).map_err(ledger_failure)
    }

    /// Refuses an output file that is the ledger, one of its companion files, its lock or
    /// the configuration, by identity (device and inode), so no other name, symlink or
    /// hard link for them slips through.
    pub fn refuse_to_overwrite(&self, output: &Path) -> Result<(), Failure> {
        let ledger_files = ledger_db::ledger_files(&self.database_path);
        let lock = ledger_db::DaemonLock::lock_path(&self.database_path);
        let protected = ledger_files.iter().chain([&lock]).chain(self.config_path.as_ref());
        for file in protected {
            // The same file, or the name one of the ledger's companions will have (a
            // `-journal` or `-wal` that does not exist yet would be taken for SQLite's).
            if ledger_db::same_file(output, file) || same_name(output, file) {
                return Err(Failure::Usage(anyhow::anyhow!(
                    "refusing to write the export over {} (it is {}); choose another --output",
                    output.display(),
                    if Some(file) == self.config_path.as_ref() {
                        format!("the configuration file {}", file.display())
                    } else {
                        format!("part of the ledger {}", self.database_path.display())
                    }
                )));
            }
        }
        Ok(())
    }

    pub fn configured_names(&self) -> Vec<String> {
        self.devices.iter().map(|d| d.name.clone()).collect()
    }
}

pub fn ledger_failure(e: ledger_db::LedgerError) -> Failure {
    match e {
        ledger_db::LedgerError::Missing(_) | ledger_db::LedgerError::UpgradeWhileServed { .. } => {
            Failure::Usage(e.into())
        }
        e => Failure::Runtime(e.into()),
    }
}

pub fn session_failure(e: SessionError) -> Failure {
    if e.is_usage() {
        Failure::Usage(e.into())
    } else {
        Failure::Runtime(e.into())
    }
}

/// A device the ledger knows (by current or former name), else a usage error naming them.
pub fn known_device(ledger: &Ledger, name: &str) -> Result<DeviceRow, Failure> {
    if let Some(device) = ledger.find_device(name).map_err(ledger_failure)? {
        return Ok(device);
    }
    let known: Vec<String> = ledger
        .devices()
        .map_err(ledger_failure)?
        .into_iter()
        .map(|d| d.name)
        .collect();
    Err(Failure::Usage(anyhow::anyhow!(
        "unknown device \"{name}\"; devices in the ledger: {}",
        if known.is_empty() {
            "(none yet)".into()
        } else {
            known.join(", ")
        }
    )))
}

pub fn parse_time_arg(flag: &str, value: Option<&str>) -> Result<Option<f64>, Failure> {
    value
        .map(|text| time::parse(text, SystemTime::now()))
        .transpose()
        .map_err(|e| Failure::Usage(anyhow::anyhow!("{flag}: {e}")))
}

/// True when both paths name the same entry of the same (existing) folder.
fn same_name(a: &Path, b: &Path) -> bool {
    let entry = |p: &Path| -> Option<PathBuf> {
        let folder = match p.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        Some(std::fs::canonicalize(folder).ok()?.join(p.file_name()?))
    };
    matches!((entry(a), entry(b)), (Some(x), Some(y)) if x == y)
}

pub(super) fn parse_listen_arg(text: &str) -> Result<std::net::SocketAddr, String> {
    config::parse_listen(text)
}

/// The config file when none is named.
pub(super) const DEFAULT_CONFIG: &str = "config.yaml";
