//! `discover [--subnet CIDR …] [--port P[-Q]] [--mdns-only | --no-mdns] [--timeout S]
//! [--format table|yaml|json] [--add-to CONFIG] [--allow-public]`: finds the AxeOS miners on
//! the LAN (mDNS announcements of v2.15+ and a gentle subnet scan) and prints their
//! config entries (a miner that asks for credentials too, marked so), or adds the new ones to a config file (its text edited under a lock,
//! comments, order, line endings and mode kept, a backup beside it, the result checked to
//! load as the old config plus the new miners).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::output::{emit, print_json, status_line};
use super::table::{self, Column};
use super::Failure;
use crate::axeos::discover::{self, DiscoverError, Found};
use crate::config::{self, NewDevice};
use crate::ledger::Ledger;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiscoverFormat {
    Table,
    /// The `devices:` entries to paste into config.yaml.
    Yaml,
    Json,
}

/// `discover`'s arguments.
#[derive(Debug, clap::Args)]
pub struct DiscoverArgs {
    /// IPv4 subnets to scan, e.g. 192.168.1.0/24 (default: this host's private networks, a
    /// /24 each).
    #[arg(long = "subnet", value_name = "CIDR")]
    pub subnets: Vec<String>,
    /// The port, or a range (80-90), to ask on.
    #[arg(long, default_value = "80", value_name = "P[-Q]")]
    pub port: String,
    /// Seconds to wait for each address.
    #[arg(long, default_value_t = 1.5)]
    pub timeout: f64,
    #[arg(long, value_enum, default_value_t = DiscoverFormat::Table)]
    pub format: DiscoverFormat,
    /// Add the miners not yet in this config file to it (a backup is kept as FILE.bak).
    #[arg(long, value_name = "CONFIG")]
    pub add_to: Option<PathBuf>,
    /// Scan a subnet that is not private (AxeOS only answers private clients anyway).
    #[arg(long)]
    pub allow_public: bool,
    /// Only listen for the mDNS announcements of firmware v2.15+ (no subnet scan).
    #[arg(long, conflicts_with_all = ["no_mdns", "subnets"])]
    pub mdns_only: bool,
    /// Only scan the subnets (no mDNS).
    #[arg(long)]
    pub no_mdns: bool,
    /// Seconds to listen for mDNS announcements.
    #[arg(long, default_value_t = 2.0)]
    pub mdns_wait: f64,
}

fn usage(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Usage(e.into())
}

impl DiscoverArgs {
    pub async fn run(self) -> Result<(), Failure> {
        let networks = if self.mdns_only {
            Vec::new()
        } else if self.subnets.is_empty() {
            discover::local_networks().map_err(usage)?
        } else {
            self.subnets
                .iter()
                .map(|s| discover::parse_subnet(s))
                .collect::<Result<Vec<_>, DiscoverError>>()
                .map_err(usage)?
        };
        for net in &networks {
            discover::check_subnet(net, self.allow_public).map_err(usage)?;
        }
        let ports = discover::parse_ports(&self.port).map_err(usage)?;
        if !(self.timeout.is_finite() && (0.05..=60.0).contains(&self.timeout)) {
            return Err(usage(anyhow::anyhow!("--timeout must be between 0.05 and 60 seconds")));
        }
        if !(self.mdns_wait.is_finite() && (0.1..=60.0).contains(&self.mdns_wait)) {
            return Err(usage(anyhow::anyhow!("--mdns-wait must be between 0.1 and 60 seconds")));
        }
        // Checked before the scan: a config that does not load is not worth a scan.
        let existing = match &self.add_to {
            Some(path) => Some(Existing::load(path)?),
            None => None,
        };
        let mut targets = discover::subnet_targets(&networks, ports);
        if !networks.is_empty() {
            let listed: Vec<String> = networks.iter().map(ToString::to_string).collect();
            status_line(&format!(
                "discover: asking {} on port {} ({} at a time, {} s each)…",
                listed.join(", "),
                self.port,
                discover::IN_FLIGHT,
                self.timeout
            ));
        }
        if !self.no_mdns {
            let wait = Duration::from_secs_f64(self.mdns_wait);
            match tokio::task::spawn_blocking(move || discover::mdns_browse(wait)).await {
                Ok(Ok(announced)) => {
                    status_line(&format!(
                        "discover: {} miner(s) announced over mDNS ({})",
                        announced.len(),
                        discover::MDNS_SERVICE
                    ));
                    targets.extend(announced);
                }
                Ok(Err(e)) => status_line(&format!("discover: {e}; the subnet scan still finds every era")),
                Err(e) => status_line(&format!("discover: mDNS failed: {e}")),
            }
        }
        let mut found = discover::probe(targets, Duration::from_secs_f64(self.timeout))
            .await
            .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot scan: {e}")))?;
        let taken = existing.as_ref().map(|e| e.names.clone()).unwrap_or_default();
        discover::unique_names(&mut found, &taken);
        match &existing {
            Some(existing) => add_to(existing, &found),
            None => show(&found, self.format),
        }
    }
}

fn show(found: &[Found], format: DiscoverFormat) -> Result<(), Failure> {
    match format {
        DiscoverFormat::Json => print_json(&found),
        DiscoverFormat::Yaml => emit(&yaml_entries(found)),
        DiscoverFormat::Table => {
            let columns: [Column; 7] = [
                table::key("name"),
                table::label("address"),
                table::label("board / model"),
                table::label("firmware (family)"),
                table::label("MAC"),
                table::label("MHz/mV"),
                table::number("GH/s"),
            ];
            let rows: Vec<Vec<String>> = found
                .iter()
                .map(|f| {
                    let what = if f.needs_credentials() {
                        "needs credentials".to_string()
                    } else {
                        format!(
                            "{} {}",
                            f.board.as_deref().unwrap_or("?"),
                            f.model.as_deref().unwrap_or("?")
                        )
                    };
                    vec![
                        f.name.clone(),
                        f.address.clone(),
                        what,
                        match (&f.firmware, f.firmware_family) {
                            (Some(firmware), Some(family)) => format!("{firmware} ({family})"),
                            (firmware, _) => firmware.clone().unwrap_or_else(|| "?".into()),
                        },
                        f.mac.clone().unwrap_or_else(|| "?".into()),
                        crate::axeos::sample::short_clock_label(f.frequency_mhz, f.core_voltage_mv),
                        f.hashrate_ghs.map_or("-".into(), |h| format!("{h:.1}")),
                    ]
                })
                .collect();
            let mut text = table::render(&columns, &rows);
            text.push_str(&format!(
                "\n{} miner(s) found. `--format yaml` prints their config entries; `--add-to config.yaml` adds the new ones.\n",
                found.len()
            ));
            let locked = found.iter().filter(|f| f.needs_credentials()).count();
            if locked > 0 {
                text.push_str(&format!(
                    "{locked} of them need(s) credentials (HTTP 401 on /api/system/info): give each a username and \
                     password_file in config.yaml.\n"
                ));
            }
            emit(&text)
        }
    }
}

fn note(f: &Found) -> String {
    if f.needs_credentials() {
        return "found by discover: needs credentials (HTTP 401): add username and password_file".into();
    }
    let what = [
        f.board.as_deref(),
        f.model.as_deref(),
        f.firmware.as_deref(),
        f.firmware_family,
        f.mac.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    format!("found by discover: {what}")
}

fn new_devices(found: &[&Found]) -> Vec<NewDevice> {
    found
        .iter()
        .map(|f| NewDevice {
            name: f.name.clone(),
            ip: f.address.clone(),
            note: note(f),
        })
        .collect()
}

fn yaml_entries(found: &[Found]) -> String {
    let all: Vec<&Found> = found.iter().collect();
    // An empty text always takes block entries.
    config::add_devices_to_text("", &new_devices(&all)).unwrap_or_default()
}

/// The config file `--add-to` edits, as checked before the scan: the names it has and the
/// MACs the ledger knows for its devices.
struct Existing {
    path: PathBuf,
    names: BTreeSet<String>,
    macs: BTreeSet<String>,
    /// There was no file: `--add-to` creates it when it has miners to write.
    missing: bool,
}

impl Existing {
    fn load(path: &Path) -> Result<Existing, Failure> {
        // A first run starts from no file at all; a dangling symlink is not "no file".
        if std::fs::symlink_metadata(path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
            let folder = match path.parent() {
                Some(folder) if !folder.as_os_str().is_empty() => folder,
                _ => Path::new("."),
            };
            if !folder.is_dir() {
                return Err(Failure::Usage(anyhow::anyhow!(
                    "cannot create {}: the folder {} does not exist",
                    path.display(),
                    folder.display()
                )));
            }
            return Ok(Existing {
                path: path.to_path_buf(),
                names: BTreeSet::new(),
                macs: BTreeSet::new(),
                missing: true,
            });
        }
        let config = match config::load(path) {
            Ok(config) => config,
            // A config that lists no miner yet (an empty file, `devices: []`) is what
            // `--add-to` is for; any other fault is reported as `check-config` would.
            Err(error) => {
                let regular = std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() <= config::MAX_CONFIG_BYTES);
                let text = regular.then(|| std::fs::read_to_string(path).ok()).flatten();
                match text.map(|t| config::parse_for_adding(&t)) {
                    Some(Ok(config)) => config,
                    Some(Err(other)) => return Err(other.in_file(path).into()),
                    None => return Err(error.into()),
                }
            }
        };
        config::check_writable(path).map_err(|e| Failure::Usage(e.into()))?;
        let names: BTreeSet<String> = config.devices.iter().map(|d| d.name.clone()).collect();
        // A miner whose address changed is still the same miner: the ledger knows which
        // MAC each configured name had.
        let macs = match Ledger::open_read_only(&config.database_path) {
            Ok(ledger) => ledger
                .devices()
                .unwrap_or_default()
                .into_iter()
                .filter(|d| names.contains(&d.name))
                .filter_map(|d| d.mac)
                .collect(),
            Err(_) => BTreeSet::new(),
        };
        Ok(Existing {
            path: path.to_path_buf(),
            names,
            macs,
            missing: false,
        })
    }
}

/// `host` and `host:80` are one address.
fn normalise(address: &str) -> String {
    address.strip_suffix(":80").unwrap_or(address).to_ascii_lowercase()
}

fn replace_failure(e: config::ReplaceError) -> Failure {
    match e {
        config::ReplaceError::ReadOnly { .. }
        | config::ReplaceError::NotWritable { .. }
        | config::ReplaceError::NotAFile { .. }
        | config::ReplaceError::TooLarge { .. } => Failure::Usage(e.into()),
        e => Failure::Runtime(e.into()),
    }
}

/// Creates the missing config file empty, so that it is edited (locked, checked,
/// replaced) as any other; whether this run created it. Another `--add-to` may have
/// created it meanwhile: then it is that one's file, and simply edited.
fn create_missing(existing: &Existing) -> Result<bool, Failure> {
    if !existing.missing {
        return Ok(false);
    }
    match std::fs::File::create_new(&existing.path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Failure::Usage(
            anyhow::Error::new(e).context(format!("cannot create {}", existing.path.display())),
        )),
    }
}

fn add_to(existing: &Existing, found: &[Found]) -> Result<(), Failure> {
    let path = &existing.path;
    let created = create_missing(existing)?;
    // The file is read again under its lock: another `discover --add-to` may have added
    // miners since the scan began, and they must stay.
    let locked = config::LockedConfig::open(path).map_err(replace_failure)?;
    let current = config::parse_for_adding(locked.text()).map_err(|e| {
        Failure::Usage(
            anyhow::Error::new(e.in_file(path)).context("the file changed during the scan and no longer loads"),
        )
    })?;
    let addresses: BTreeSet<String> = current
        .devices
        .iter()
        .map(|d| normalise(&d.address.to_string()))
        .collect();
    let mut new: Vec<Found> = found
        .iter()
        .filter(|f| !addresses.contains(&normalise(&f.address)))
        .filter(|f| f.mac.as_ref().is_none_or(|mac| !existing.macs.contains(mac)))
        .cloned()
        .collect();
    if new.is_empty() && created {
        // Nothing to write: leave no empty file (it would not load) behind.
        drop(locked);
        let _ = std::fs::remove_file(path);
        status_line(&format!(
            "{}: not created: no miner found (check --subnet and --port)",
            path.display()
        ));
        return Ok(());
    }
    if new.is_empty() {
        status_line(&format!(
            "{}: nothing to add ({} miner(s) found, all already in it)",
            path.display(),
            found.len()
        ));
        return Ok(());
    }
    let taken: BTreeSet<String> = current.devices.iter().map(|d| d.name.clone()).collect();
    if taken != existing.names {
        discover::unique_names(&mut new, &taken);
    }
    let new: Vec<&Found> = new.iter().collect();
    let devices = new_devices(&new);
    let text = match config::add_devices_to_config(locked.text(), &devices) {
        Ok(text) => text,
        Err(e) => {
            // Nothing is lost: the file stays, and the entries are printed to paste.
            emit(&config::add_devices_to_text("", &devices).unwrap_or_default())?;
            let message = anyhow::anyhow!(
                "cannot add to {}: {e}; it is unchanged (the entries to add by hand are on standard output)",
                path.display()
            );
            return Err(match e {
                config::EditError::Invalid(_) => Failure::Runtime(message),
                _ => Failure::Usage(message),
            });
        }
    };
    let backup = locked.replace(&text).map_err(replace_failure)?;
    let names: Vec<&str> = new.iter().map(|f| f.name.as_str()).collect();
    if created {
        // The backup of a file this run created holds nothing.
        let _ = std::fs::remove_file(&backup);
        status_line(&format!(
            "{}: created with {} miner(s) ({}); poll them with: {} --config {} serve",
            path.display(),
            new.len(),
            names.join(", "),
            super::daemon::this_command(),
            super::daemon::shell_word(&path.display().to_string())
        ));
        return Ok(());
    }
    status_line(&format!(
        "{}: added {} miner(s) ({}); the previous file is {}",
        path.display(),
        new.len(),
        names.join(", "),
        backup.display()
    ));
    Ok(())
}
