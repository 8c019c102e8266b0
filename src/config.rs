//! config.yaml: the file schema, its defaults, and validation into a [`Config`] the rest of
//! the program can trust. Every error names the key and, where the file has it, the line.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

mod credentials;
mod edit;
mod replace;
pub use credentials::{check_username, Credentials, PasswordSource, Secret, MAX_PASSWORD_FILE_BYTES};
pub use edit::{add_devices_to_config, add_devices_to_text, parse_for_adding, yaml_quoted, EditError, NewDevice};
pub use replace::{check_writable, LockedConfig, ReplaceError};

/// Default `server.listen`. 9842 is free in the Prometheus default-port list neighbourhood
/// and clashes with none of Prometheus (9090), Alertmanager (9093), node_exporter (9100) or
/// Grafana (3000).
pub(crate) const DEFAULT_LISTEN: &str = "0.0.0.0:9842";
pub(crate) const DEFAULT_POLL_INTERVAL_SECS: f64 = 30.0;
pub(crate) const DEFAULT_DATABASE_PATH: &str = "./data/metrics.db";
pub(crate) const DEFAULT_LOG_LEVEL: &str = "INFO";
pub(crate) const DEFAULT_MAX_TEMP_WARNING: f64 = 65.0;
pub(crate) const DEFAULT_MAX_TEMP_SHUTDOWN: f64 = 70.0;
pub(crate) const DEFAULT_WARMUP_MINUTES: f64 = 10.0;
/// Default `ledger.raw_retention`: 90 days of raw samples; rollups are kept for ever.
pub(crate) const DEFAULT_RAW_RETENTION: Duration = Duration::from_secs(90 * 86_400);
pub use crate::axeos::address::DEFAULT_MINER_PORT;
/// Polling faster than this hurts the miner's small web server and gains nothing.
pub(crate) const MIN_POLL_INTERVAL_SECS: f64 = 1.0;
pub(crate) const MAX_POLL_INTERVAL_SECS: f64 = 86_400.0;
/// A week: longer warm-ups would leave no steady data.
pub(crate) const MAX_WARMUP_MINUTES: f64 = 10_080.0;

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub devices: Vec<DeviceConfig>,
    pub poll_interval: Duration,
    pub database_path: PathBuf,
    pub log_level: LogLevel,
    pub thresholds: Thresholds,
    pub listen: SocketAddr,
    pub warmup: Duration,
    /// The last good reading stays exposed (and `bitaxe_up` 1) this many poll intervals
    /// after it was taken, so one failed poll on flaky Wi-Fi does not reset alerts.
    pub stale_after_polls: u32,
    /// Limits and pace of `tune` (the `tune:` section).
    pub tune: TuneSettings,
    /// What the daemon may do to a hot miner (`safety.protective_action`).
    pub protection: Protection,
    /// Following a miner whose address changed (`discovery:`, off by default).
    pub discovery: Discovery,
    /// Who may reach the dashboard by name, and the token of `POST /alerts` (`server:`).
    pub web: WebAccess,
    /// `backfill.enabled`: fill holes in the history from the miners' own statistics ring.
    pub backfill: bool,
    /// `ledger.raw_retention`: raw samples older than this are deleted once rolled up;
    /// `None` (`"forever"`) keeps them all.
    pub raw_retention: Option<Duration>,
}

/// The `server:` keys that guard the HTTP surface (see [`crate::web::guard`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebAccess {
    /// `server.allowed_hosts`: host names (lower case, no port, no trailing dot) the
    /// dashboard and its API answer to besides IP addresses, `localhost` and this machine's
    /// name; `*` answers to any (no protection against DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// `server.alerts_token_file`: the file holding the bearer token Alertmanager sends to
    /// `POST /alerts`; the endpoint is off without it. Relative to the config file's folder.
    pub alerts_token_file: Option<PathBuf>,
}

/// The `discovery:` section: when a configured miner stops answering, `serve` looks for its
/// MAC on these networks and polls it where it answers now (the file is not rewritten).
#[derive(Debug, Clone, PartialEq)]
pub struct Discovery {
    pub enabled: bool,
    /// Empty: the host's private networks, a /24 each.
    pub subnets: Vec<ipnet::Ipv4Net>,
    pub ports: std::ops::RangeInclusive<u16>,
    /// The least time between two scans.
    pub rescan: Duration,
}

impl Default for Discovery {
    fn default() -> Self {
        Discovery {
            enabled: false,
            subnets: Vec::new(),
            ports: DEFAULT_MINER_PORT..=DEFAULT_MINER_PORT,
            rescan: Duration::from_secs(600),
        }
    }
}

/// The `tune:` section: the limits a sweep checks on every sample, and its pace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TuneSettings {
    /// ASIC temperature ceiling, °C (default `safety.max_temp_warning`).
    pub max_asic_temp: f64,
    /// Voltage-regulator temperature ceiling, °C.
    pub max_vr_temp: f64,
    /// Power ceiling as a share of the board's PSU rating.
    pub max_power_fraction: f64,
    /// An absolute power ceiling, W, for a supply smaller than the board's usual one.
    pub max_power_watts: Option<f64>,
    /// ASIC error-rate ceiling of a healthy configuration, %.
    pub max_error_percent: f64,
    /// Input-voltage window, V; default the board's (4.8–5.5 V on 5 V boards).
    pub min_input_volts: Option<f64>,
    pub max_input_volts: Option<f64>,
    /// A step ends when the 95 % confidence interval of its hashrate and J/TH is within
    /// ± this many percent (or at `--max-dwell`).
    pub confidence_percent: f64,
    /// How often a sweep reads each miner (and, when `serve` is not running, stores the
    /// sample in the ledger).
    pub sample_interval: Duration,
    /// `serve` puts a miner an interrupted sweep left behind back on its settings from
    /// before the sweep (opt-in; otherwise it only reports it).
    pub restore_interrupted: bool,
}

impl TuneSettings {
    /// Every key at its default, for these safety thresholds.
    pub fn defaults(thresholds: &Thresholds) -> TuneSettings {
        TuneSettings {
            max_asic_temp: thresholds.warning_celsius,
            max_vr_temp: DEFAULT_TUNE_MAX_VR_TEMP,
            max_power_fraction: DEFAULT_TUNE_MAX_POWER_FRACTION,
            max_power_watts: None,
            max_error_percent: DEFAULT_TUNE_MAX_ERROR_PERCENT,
            min_input_volts: None,
            max_input_volts: None,
            confidence_percent: DEFAULT_TUNE_CONFIDENCE_PERCENT,
            sample_interval: Duration::from_secs_f64(DEFAULT_TUNE_SAMPLE_SECS),
            restore_interrupted: false,
        }
    }
}

pub(crate) const DEFAULT_TUNE_MAX_VR_TEMP: f64 = 86.0;
pub(crate) const DEFAULT_TUNE_MAX_POWER_FRACTION: f64 = 0.8;
pub(crate) const DEFAULT_TUNE_MAX_ERROR_PERCENT: f64 = 3.0;
pub(crate) const DEFAULT_TUNE_CONFIDENCE_PERCENT: f64 = 1.0;
pub(crate) const DEFAULT_TUNE_SAMPLE_SECS: f64 = 5.0;
/// The fastest a sweep samples: for the simulator; a real miner wants a second or more.
pub(crate) const MIN_TUNE_SAMPLE_SECS: f64 = 0.1;

/// Default of `logging.stale_after_polls`.
pub(crate) const DEFAULT_STALE_AFTER_POLLS: u32 = 3;

impl Config {
    /// The devices the daemon polls.
    pub(crate) fn enabled_devices(&self) -> impl Iterator<Item = &DeviceConfig> {
        self.devices.iter().filter(|d| d.enabled)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceConfig {
    pub name: String,
    pub address: MinerAddress,
    pub enabled: bool,
}

pub use crate::axeos::address::MinerAddress;

/// What the daemon may do to a miner at `safety.max_temp_shutdown` (opt-in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtectiveAction {
    /// Nothing is ever written to a miner (the default).
    #[default]
    None,
    /// One frequency option lower, and one voltage option with it.
    StepDown,
    /// `POST /api/system/pause` (v2.14+); a step down on older firmware.
    Pause,
    /// After the firmware's overheat protection replaced the configuration and the miner
    /// has cooled, the last configuration that ran healthy.
    RestoreLastGood,
}

impl ProtectiveAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ProtectiveAction::None => "none",
            ProtectiveAction::StepDown => "step_down",
            ProtectiveAction::Pause => "pause",
            ProtectiveAction::RestoreLastGood => "restore_last_good",
        }
    }
}

/// `safety.protective_action` and its dry run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Protection {
    pub action: ProtectiveAction,
    /// Log what would be done, send nothing.
    pub dry_run: bool,
}

/// ASIC temperature limits from `safety`, in °C.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub warning_celsius: f64,
    pub shutdown_celsius: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            warning_celsius: DEFAULT_MAX_TEMP_WARNING,
            shutdown_celsius: DEFAULT_MAX_TEMP_SHUTDOWN,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "trace" => Some(Self::Trace),
            "debug" => Some(Self::Debug),
            "info" => Some(Self::Info),
            "warn" | "warning" => Some(Self::Warn),
            "error" | "critical" => Some(Self::Error),
            _ => None,
        }
    }

    /// The directive understood by `tracing_subscriber::EnvFilter`.
    pub(crate) fn as_filter(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// What is wrong with a configuration, and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    /// The file, when the configuration came from one.
    pub file: Option<PathBuf>,
    /// Dotted key path such as `devices[1].ip`; empty for whole-file problems.
    pub key: String,
    /// 1-based line in the file.
    pub line: Option<usize>,
    pub message: String,
    /// The other errors found in the same reading of the file, in line order: a user
    /// fixes them all in one edit instead of meeting them one `check-config` at a time.
    pub also: Vec<ConfigError>,
}

impl ConfigError {
    /// One error, with no others beside it.
    pub(crate) fn new(key: &str, line: Option<usize>, message: String) -> ConfigError {
        ConfigError {
            file: None,
            key: key.to_string(),
            line,
            message,
            also: Vec::new(),
        }
    }

    /// The same errors, each naming `file`.
    pub fn in_file(mut self, file: &Path) -> ConfigError {
        self.file = Some(file.to_path_buf());
        for other in &mut self.also {
            other.file = Some(file.to_path_buf());
        }
        self
    }

    /// Every error, the first one included.
    pub fn all(&self) -> impl Iterator<Item = &ConfigError> {
        std::iter::once(self).chain(&self.also)
    }

    /// The errors as one, in line order (those without a line last); `None` for none.
    fn gathered(mut errors: Vec<ConfigError>) -> Option<ConfigError> {
        errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        let mut errors = errors.into_iter();
        let mut first = errors.next()?;
        first.also.extend(errors);
        Some(first)
    }

    fn render(&self) -> String {
        let mut out = self.render_one();
        for other in &self.also {
            out.push('\n');
            out.push_str(&other.render_one());
        }
        if !self.also.is_empty() {
            out.push_str(&format!("\n({} errors)", self.also.len() + 1));
        }
        out
    }

    pub(crate) fn render_one(&self) -> String {
        let mut out = String::new();
        if let Some(file) = &self.file {
            out.push_str(&file.display().to_string());
            if let Some(line) = self.line {
                out.push_str(&format!(":{line}"));
            }
            out.push_str(": ");
        } else if let Some(line) = self.line {
            out.push_str(&format!("line {line}: "));
        }
        if !self.key.is_empty() {
            out.push_str(&self.key);
            out.push_str(": ");
        }
        out.push_str(&self.message);
        out
    }
}

// ---------------------------------------------------------------------------------------
// The file as written. Unknown keys are errors; every section but `devices` is optional.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    devices: Option<Vec<RawDevice>>,
    #[serde(default)]
    logging: RawLogging,
    #[serde(default)]
    safety: RawSafety,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    analysis: RawAnalysis,
    #[serde(default)]
    tune: RawTune,
    #[serde(default)]
    discovery: RawDiscovery,
    #[serde(default)]
    ledger: RawLedger,
    #[serde(default)]
    backfill: RawBackfill,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLedger {
    /// A duration (`"90d"`), seconds, or `"forever"`.
    raw_retention: Option<Seconds>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackfill {
    enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiscovery {
    enabled: Option<bool>,
    subnets: Option<Vec<String>>,
    /// `80` or `"80-90"`.
    ports: Option<serde_yaml::Value>,
    rescan_minutes: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    name: String,
    ip: String,
    #[serde(default = "default_true")]
    enabled: bool,
    /// HTTP Basic auth, for firmware that asks for it.
    username: Option<String>,
    password: Option<credentials::RawPassword>,
    password_file: Option<String>,
    password_env: Option<String>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogging {
    poll_interval: Option<Seconds>,
    database_path: Option<String>,
    log_level: Option<String>,
    stale_after_polls: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSafety {
    max_temp_warning: Option<f64>,
    max_temp_shutdown: Option<f64>,
    protective_action: Option<String>,
    protective_action_dry_run: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    allowed_hosts: Option<Vec<String>>,
    alerts_token_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnalysis {
    warmup_minutes: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTune {
    max_asic_temp: Option<f64>,
    max_vr_temp: Option<f64>,
    max_power_fraction: Option<f64>,
    max_power_watts: Option<f64>,
    max_error_percent: Option<f64>,
    min_input_volts: Option<f64>,
    max_input_volts: Option<f64>,
    confidence_percent: Option<f64>,
    sample_interval: Option<Seconds>,
    restore_interrupted: Option<bool>,
}

/// The largest configuration file read (a 1,000-miner config is about 60 KiB).
pub(crate) const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// The deepest flow-style nesting (`[[[…]]]`) accepted: the YAML parser's time grows with
/// the square of it, and no real config nests more than a few levels.
const MAX_FLOW_DEPTH: usize = 32;

/// A number of seconds, or a duration string (`"30s"`, `"1m"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Seconds {
    Number(f64),
    Text(String),
}

/// An address to listen on, written as node_exporter takes it: `IP:PORT`, `[IPv6]:PORT`,
/// `:PORT` (every interface) or `HOST:PORT` (`localhost:9842`, resolved to its first
/// address).
pub(crate) fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let problem = || {
        format!("\"{text}\" is not an address to listen on; write IP:PORT, :PORT or HOST:PORT, e.g. {DEFAULT_LISTEN}")
    };
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    if let Some(port) = text.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| problem())?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(problem)?;
    let port: u16 = port.parse().map_err(|_| problem())?;
    if host.is_empty() || host.contains(['/', ' ']) {
        return Err(problem());
    }
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| format!("{}: the host name does not resolve", problem()))
}

/// Reads and validates a config file. Only a regular file up to [`MAX_CONFIG_BYTES`] is
/// read (a FIFO would block for ever, `/dev/zero` never ends). Relative paths in it
/// (`logging.database_path`) resolve against the file's folder, not the working directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let unreadable = |message: String| ConfigError::new("", None, message).in_file(path);
    let metadata = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            unreadable(format!(
                "cannot read the configuration file: {e}; copy config.yaml.example there and edit it, \
                 or run `bitaxe-exporter discover --add-to {}` to create it with the miners on your network",
                path.display()
            ))
        } else {
            unreadable(format!("cannot read the configuration file: {e}"))
        }
    })?;
    if !metadata.is_file() {
        return Err(unreadable("the configuration is not a regular file".into()));
    }
    if metadata.len() > MAX_CONFIG_BYTES {
        return Err(unreadable(format!(
            "the configuration file is larger than {} KiB",
            MAX_CONFIG_BYTES / 1024
        )));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_CONFIG_BYTES), &mut text))
        .map_err(|e| unreadable(format!("cannot read the configuration file: {e}")))?;
    let secrets = Secrets::Read { folder: path.parent() };
    let mut config = parse_with(&text, secrets).map_err(|e| e.in_file(path))?;
    if let Some(folder) = path.parent() {
        if config.database_path.is_relative() {
            config.database_path = folder.join(&config.database_path);
        }
        if let Some(token) = config.web.alerts_token_file.as_mut().filter(|t| t.is_relative()) {
            *token = folder.join(&*token);
        }
    }
    Ok(config)
}

/// The deepest `[` / `{` nesting outside quoted strings and comments. A quote opens a
/// quoted scalar only where one can start (after a space, `[`, `{`, `,`, `:` or at the
/// start of a line), so the apostrophe in `name: Bob's miner` hides nothing from the count.
fn flow_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut comment = false;
    let mut previous = '\n';
    for c in text.chars() {
        if c == '\n' {
            comment = false;
        } else if comment {
        } else if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if q == '"' && c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
        } else {
            match c {
                '"' | '\'' if matches!(previous, '\n' | ' ' | '\t' | '[' | '{' | ',' | ':') => quote = Some(c),
                '#' if matches!(previous, '\n' | ' ' | '\t') => comment = true,
                '[' | '{' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        previous = c;
    }
    deepest
}

/// Whether parsing reads the passwords that `password_file` and `password_env` name.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Secrets<'a> {
    /// Read them; a relative `password_file` resolves against `folder` (the working
    /// directory when `None`).
    Read { folder: Option<&'a Path> },
    /// Check where they are, read nothing (for an edit of the file's text, which sends
    /// nothing to a miner): such credentials carry an empty password.
    Skip,
}

/// Validates configuration text (the contents of a config.yaml). A relative
/// `password_file` is read from the working directory; [`load`] reads it from the file's
/// folder.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_with(text, Secrets::Read { folder: None })
}

pub(crate) fn parse_with(text: &str, secrets: Secrets<'_>) -> Result<Config, ConfigError> {
    if flow_depth(text) > MAX_FLOW_DEPTH {
        return Err(ConfigError::new(
            "",
            None,
            format!("nested more than {MAX_FLOW_DEPTH} levels deep; this is not a bitaxe-exporter config"),
        ));
    }
    let lines = KeyLines::scan(text);
    let fail = |key: &str, message: String| ConfigError::new(key, lines.line_of(key), message);

    if text.trim().is_empty() {
        return Err(fail(
            "",
            format!("the file is empty; it needs at least a `devices:` list ({ADD_MINERS_HINT})"),
        ));
    }
    // A YAML or schema fault (syntax, an unknown key, a wrong type) stops the reading;
    // every check after it runs whatever the others found, so one pass reports them all.
    let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| from_yaml_error(&e))?;
    let mut errors = Vec::new();

    let devices = match raw.devices.as_deref() {
        None => {
            errors.push(fail(
                "devices",
                format!("missing: list the miners to poll under `devices:` ({ADD_MINERS_HINT})"),
            ));
            Vec::new()
        }
        Some([]) => {
            errors.push(fail(
                "devices",
                format!("the device list is empty; add at least one miner ({ADD_MINERS_HINT})"),
            ));
            Vec::new()
        }
        Some(raw_devices) => device_list(raw_devices, secrets, &lines, &fail, &mut errors),
    };

    let poll_secs = kept(
        &mut errors,
        poll_interval_seconds(raw.logging.poll_interval.as_ref(), &fail),
    );

    let stale_after_polls = raw
        .logging
        .stale_after_polls
        .unwrap_or(f64::from(DEFAULT_STALE_AFTER_POLLS));
    if !(stale_after_polls.fract() == 0.0 && (1.0..=100.0).contains(&stale_after_polls)) {
        errors.push(fail(
            "logging.stale_after_polls",
            format!("{stale_after_polls} is not a whole number of polls from 1 to 100"),
        ));
    }

    let log_level_text = raw.logging.log_level.as_deref().unwrap_or(DEFAULT_LOG_LEVEL);
    let log_level = LogLevel::parse(log_level_text);
    if log_level.is_none() {
        errors.push(fail(
            "logging.log_level",
            format!("\"{log_level_text}\" is not a level; use one of TRACE, DEBUG, INFO, WARNING, ERROR"),
        ));
    }

    let database_path = raw
        .logging
        .database_path
        .clone()
        .unwrap_or_else(|| DEFAULT_DATABASE_PATH.into());
    if database_path.trim().is_empty() {
        errors.push(fail("logging.database_path", "must not be empty".into()));
    }

    let thresholds = kept(&mut errors, thresholds(&raw.safety, &fail));

    let listen_text = raw.server.listen.clone().unwrap_or_else(|| DEFAULT_LISTEN.into());
    let listen = kept(
        &mut errors,
        parse_listen(&listen_text).map_err(|message| fail("server.listen", message)),
    );
    let web = kept(&mut errors, web_access(&raw.server, &fail));

    let warmup_minutes = raw.analysis.warmup_minutes.unwrap_or(DEFAULT_WARMUP_MINUTES);
    if !warmup_minutes.is_finite() || !(0.0..=MAX_WARMUP_MINUTES).contains(&warmup_minutes) {
        errors.push(fail(
            "analysis.warmup_minutes",
            format!("{warmup_minutes} is not a number of minutes from 0 to {MAX_WARMUP_MINUTES}"),
        ));
    }

    // The tune limits are checked against the safety thresholds, so only once those hold.
    let tune = match &thresholds {
        Some(thresholds) => kept(&mut errors, tune_settings(raw.tune, thresholds, &fail)),
        None => None,
    };
    let protection = kept(&mut errors, protection(&raw.safety, &fail));
    let discovery = kept(&mut errors, discovery_settings(raw.discovery, &fail));
    let raw_retention = kept(&mut errors, raw_retention(raw.ledger.raw_retention.as_ref(), &fail));

    if let Some(error) = ConfigError::gathered(errors) {
        return Err(error);
    }
    match (
        poll_secs,
        log_level,
        thresholds,
        listen,
        web,
        tune,
        protection,
        discovery,
        raw_retention,
    ) {
        (
            Some(poll_secs),
            Some(log_level),
            Some(thresholds),
            Some(listen),
            Some(web),
            Some(tune),
            Some(protection),
            Some(discovery),
            Some(raw_retention),
        ) => Ok(Config {
            devices,
            poll_interval: Duration::from_secs_f64(poll_secs),
            database_path: PathBuf::from(database_path),
            log_level,
            thresholds,
            listen,
            warmup: Duration::from_secs_f64(warmup_minutes * 60.0),
            stale_after_polls: stale_after_polls as u32,
            tune,
            protection,
            discovery,
            web,
            backfill: raw.backfill.enabled.unwrap_or(true),
            raw_retention,
        }),
        // Each `None` above pushed its error, so none is left here; kept typed anyway.
        _ => Err(fail("", "the configuration is invalid".into())),
    }
}

/// What to run when a config lists no miner: said wherever that is the fault.
pub(crate) const ADD_MINERS_HINT: &str = "`bitaxe-exporter discover --add-to FILE` adds the miners it finds";

/// The value of a check that succeeded; a failed one's error joins the others.
fn kept<T>(errors: &mut Vec<ConfigError>, result: Result<T, ConfigError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

/// `ledger.raw_retention`: a duration (`"90d"`, `"12h"`), seconds, or `"forever"`; at
/// least a second (tests use seconds; a person means days).
fn raw_retention(
    raw: Option<&Seconds>,
    fail: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Option<Duration>, ConfigError> {
    let key = "ledger.raw_retention";
    let seconds = match raw {
        None => return Ok(Some(DEFAULT_RAW_RETENTION)),
        Some(Seconds::Text(text)) if matches!(text.trim(), "forever" | "never") => return Ok(None),
        Some(Seconds::Number(seconds)) => *seconds,
        Some(Seconds::Text(text)) => humantime::parse_duration(text.trim())
            .map(|d| d.as_secs_f64())
            .map_err(|_| {
                fail(
                    key,
                    format!("\"{text}\" is not a duration; write \"90d\", \"12h\", seconds, or \"forever\""),
                )
            })?,
    };
    if !seconds.is_finite() || !(1.0..=1e10).contains(&seconds) {
        return Err(fail(
            key,
            format!("{seconds} s is not a retention from 1 s to 300 years (or \"forever\")"),
        ));
    }
    Ok(Some(Duration::from_secs_f64(seconds)))
}

/// The `devices:` list: each name present and unique, each address parsed, each
/// password read (or only located, with [`Secrets::Skip`]). Every device's faults join
/// `errors`; the devices without one are returned.
fn device_list(
    raw_devices: &[RawDevice],
    secrets: Secrets<'_>,
    lines: &KeyLines,
    fail: &dyn Fn(&str, String) -> ConfigError,
    errors: &mut Vec<ConfigError>,
) -> Vec<DeviceConfig> {
    let mut devices = Vec::with_capacity(raw_devices.len());
    let mut first_seen: HashMap<&str, usize> = HashMap::new();
    for (i, d) in raw_devices.iter().enumerate() {
        let name_key = format!("devices[{i}].name");
        let mut named = true;
        if d.name.trim().is_empty() {
            errors.push(fail(&name_key, "a device name must not be empty".into()));
            named = false;
        } else if let Some(&first) = first_seen.get(d.name.as_str()) {
            let first_line = lines
                .line_of(&format!("devices[{first}].name"))
                .map(|l| format!(" (first used at line {l})"))
                .unwrap_or_default();
            errors.push(fail(
                &name_key,
                format!("duplicate device name \"{}\"{first_line}; names must be unique", d.name),
            ));
            named = false;
        } else {
            first_seen.insert(&d.name, i);
        }
        let ip_key = format!("devices[{i}].ip");
        let address = kept(errors, MinerAddress::parse(&d.ip).map_err(|m| fail(&ip_key, m)));
        let credentials = kept(errors, device_credentials(i, d, secrets, fail));
        if let (true, Some(mut address), Some(credentials)) = (named, address, credentials) {
            address.credentials = credentials.map(Arc::new);
            devices.push(DeviceConfig {
                name: d.name.clone(),
                address,
                enabled: d.enabled,
            });
        }
    }
    devices
}

/// `logging.poll_interval` in seconds: a number or a duration, from the minimum to a day.
fn poll_interval_seconds(
    raw: Option<&Seconds>,
    fail: &dyn Fn(&str, String) -> ConfigError,
) -> Result<f64, ConfigError> {
    let poll_secs = match raw {
        None => DEFAULT_POLL_INTERVAL_SECS,
        Some(Seconds::Number(seconds)) => *seconds,
        Some(Seconds::Text(text)) => humantime::parse_duration(text.trim())
            .map(|d| d.as_secs_f64())
            .map_err(|_| {
                fail(
                    "logging.poll_interval",
                    format!("\"{text}\" is not a duration; write seconds (30) or a duration (\"30s\", \"1m\")"),
                )
            })?,
    };
    if !poll_secs.is_finite() || poll_secs < MIN_POLL_INTERVAL_SECS {
        return Err(fail(
            "logging.poll_interval",
            format!("{poll_secs} s is too short; the minimum is {MIN_POLL_INTERVAL_SECS} s (30 is a good default)"),
        ));
    }
    if poll_secs > 86_400.0 {
        return Err(fail(
            "logging.poll_interval",
            format!("{poll_secs} s is longer than a day"),
        ));
    }
    Ok(poll_secs)
}

/// `safety.max_temp_warning` and `max_temp_shutdown`: plausible, and the warning not above
/// the shutdown.
fn thresholds(raw: &RawSafety, fail: &dyn Fn(&str, String) -> ConfigError) -> Result<Thresholds, ConfigError> {
    let thresholds = Thresholds {
        warning_celsius: raw.max_temp_warning.unwrap_or(DEFAULT_MAX_TEMP_WARNING),
        shutdown_celsius: raw.max_temp_shutdown.unwrap_or(DEFAULT_MAX_TEMP_SHUTDOWN),
    };
    for (key, value) in [
        ("safety.max_temp_warning", thresholds.warning_celsius),
        ("safety.max_temp_shutdown", thresholds.shutdown_celsius),
    ] {
        if !value.is_finite() || !(0.0..=150.0).contains(&value) {
            return Err(fail(
                key,
                format!("{value} °C is not a plausible ASIC temperature limit"),
            ));
        }
    }
    if thresholds.warning_celsius > thresholds.shutdown_celsius {
        return Err(fail(
            "safety.max_temp_warning",
            format!(
                "the warning threshold ({} °C) is above the shutdown threshold ({} °C)",
                thresholds.warning_celsius, thresholds.shutdown_celsius
            ),
        ));
    }
    Ok(thresholds)
}

/// `safety.protective_action` and its dry run.
fn protection(raw: &RawSafety, fail: &dyn Fn(&str, String) -> ConfigError) -> Result<Protection, ConfigError> {
    let action = match raw.protective_action.as_deref().map(str::trim) {
        None | Some("none") => ProtectiveAction::None,
        Some("step_down") => ProtectiveAction::StepDown,
        Some("pause") => ProtectiveAction::Pause,
        Some("restore_last_good") => ProtectiveAction::RestoreLastGood,
        Some(other) => {
            return Err(fail(
                "safety.protective_action",
                format!("\"{other}\" is not one of none, step_down, pause, restore_last_good"),
            ))
        }
    };
    Ok(Protection {
        action,
        dry_run: raw.protective_action_dry_run.unwrap_or(false),
    })
}

/// A device's `username` and password (exactly one of `password`, `password_file`,
/// `password_env`), read. No error message holds a byte of the password.
fn device_credentials(
    index: usize,
    raw: &RawDevice,
    secrets: Secrets<'_>,
    fail: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Option<Credentials>, ConfigError> {
    let key = |name: &str| format!("devices[{index}].{name}");
    let device = &raw.name;
    let mut sources = Vec::new();
    if let Some(inline) = &raw.password {
        sources.push(PasswordSource::Inline(inline.0.clone()));
    }
    if let Some(path) = &raw.password_file {
        sources.push(PasswordSource::File(path.trim().to_string()));
    }
    if let Some(name) = &raw.password_env {
        sources.push(PasswordSource::Env(name.trim().to_string()));
    }
    if let [first, second, ..] = sources.as_slice() {
        return Err(fail(
            &key(second.key()),
            format!(
                "device \"{device}\" has both {} and {}: give its password one way only \
                 (password_file, password_env or password)",
                first.key(),
                second.key()
            ),
        ));
    }
    let Some(source) = sources.pop() else {
        return match &raw.username {
            None => Ok(None),
            Some(_) => Err(fail(
                &key("username"),
                format!(
                    "device \"{device}\" has a username but no password: add password_file (a file \
                     holding it), password_env (an environment variable) or password"
                ),
            )),
        };
    };
    let Some(username) = &raw.username else {
        return Err(fail(
            &key(source.key()),
            format!(
                "device \"{device}\" has a password but no username: add `username:` (the user name \
                 the miner's web interface asks for)"
            ),
        ));
    };
    check_username(username).map_err(|m| fail(&key("username"), format!("{m} (device \"{device}\")")))?;
    if let PasswordSource::File(name) | PasswordSource::Env(name) = &source {
        if name.is_empty() {
            return Err(fail(
                &key(source.key()),
                format!("must not be empty (device \"{device}\")"),
            ));
        }
    }
    let password = match secrets {
        Secrets::Read { folder } => source
            .read(folder)
            .map_err(|m| fail(&key(source.key()), format!("{m} (device \"{device}\")")))?,
        Secrets::Skip => Secret::new(""),
    };
    if let PasswordSource::Inline(inline) = &source {
        if inline.expose().is_empty() {
            return Err(fail(
                &key("password"),
                format!("must not be empty (device \"{device}\")"),
            ));
        }
    }
    Ok(Some(Credentials {
        username: username.clone(),
        password,
        device: device.clone(),
    }))
}

/// `server.allowed_hosts` and `server.alerts_token_file`, checked.
fn web_access(raw: &RawServer, fail: &dyn Fn(&str, String) -> ConfigError) -> Result<WebAccess, ConfigError> {
    let mut allowed_hosts = Vec::new();
    for (i, name) in raw.allowed_hosts.iter().flatten().enumerate() {
        let key = format!("server.allowed_hosts[{i}]");
        let host = parse_allowed_host(name).map_err(|message| fail(&key, message))?;
        allowed_hosts.push(host);
    }
    let alerts_token_file = match raw.alerts_token_file.as_deref().map(str::trim) {
        None => None,
        Some("") => {
            return Err(fail(
                "server.alerts_token_file",
                "must not be empty; leave the key out to turn POST /alerts off".into(),
            ))
        }
        Some(path) => Some(PathBuf::from(path)),
    };
    Ok(WebAccess {
        allowed_hosts,
        alerts_token_file,
    })
}

/// One `server.allowed_hosts` entry: a host name as a browser sends it in `Host` (any case,
/// a trailing dot allowed), or `*`. IP addresses are allowed anyway, so writing one is not
/// an error; a port or a URL is, since the port is never compared.
pub(crate) fn parse_allowed_host(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    if trimmed == "*" {
        return Ok("*".into());
    }
    let name = trimmed.trim_end_matches('.').to_ascii_lowercase();
    let is_ip = name.parse::<std::net::IpAddr>().is_ok()
        || name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .is_some_and(|n| n.parse::<std::net::Ipv6Addr>().is_ok());
    if is_ip {
        return Ok(name);
    }
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if valid {
        Ok(name)
    } else {
        Err(format!(
            "\"{trimmed}\" is not a host name; write the name alone, as in the browser's address bar \
             without http:// and without the port (e.g. \"raspberrypi.local\"), or \"*\" for any name"
        ))
    }
}

fn discovery_settings(raw: RawDiscovery, fail: &dyn Fn(&str, String) -> ConfigError) -> Result<Discovery, ConfigError> {
    use crate::axeos::discover;
    let mut subnets = Vec::new();
    for text in raw.subnets.clone().unwrap_or_default() {
        let net = discover::parse_subnet(&text).map_err(|e| fail("discovery.subnets", e.to_string()))?;
        discover::check_subnet(&net, false).map_err(|e| fail("discovery.subnets", e.to_string()))?;
        subnets.push(net);
    }
    let ports = match raw.ports {
        None => DEFAULT_MINER_PORT..=DEFAULT_MINER_PORT,
        Some(value) => {
            let text = match value {
                serde_yaml::Value::Number(n) => n.to_string(),
                serde_yaml::Value::String(s) => s,
                other => format!("{other:?}"),
            };
            discover::parse_ports(&text).map_err(|e| fail("discovery.ports", e.to_string()))?
        }
    };
    let rescan_minutes = raw.rescan_minutes.unwrap_or(10.0);
    if !(rescan_minutes.is_finite() && (0.01..=1440.0).contains(&rescan_minutes)) {
        return Err(fail(
            "discovery.rescan_minutes",
            format!("{rescan_minutes} is not a number of minutes from 0.01 to 1440"),
        ));
    }
    Ok(Discovery {
        enabled: raw.enabled.unwrap_or(false),
        subnets,
        ports,
        rescan: Duration::from_secs_f64(rescan_minutes * 60.0),
    })
}

/// Seconds from a number or a duration string (`"30s"`, `"500ms"`).
fn seconds_value(value: &Seconds) -> Option<f64> {
    match value {
        Seconds::Number(seconds) => Some(*seconds),
        Seconds::Text(text) => humantime::parse_duration(text.trim()).ok().map(|d| d.as_secs_f64()),
    }
}

fn tune_settings(
    raw: RawTune,
    thresholds: &Thresholds,
    fail: &dyn Fn(&str, String) -> ConfigError,
) -> Result<TuneSettings, ConfigError> {
    let within = |key: &str, value: Option<f64>, range: std::ops::RangeInclusive<f64>, what: &str| {
        within_range(fail, key, value, range, what)
    };
    let max_asic_temp = within(
        "tune.max_asic_temp",
        raw.max_asic_temp,
        20.0..=150.0,
        "an ASIC temperature in °C",
    )?
    .unwrap_or(thresholds.warning_celsius);
    // A sweep must stop before the daemon's protection would act on the same miner.
    if max_asic_temp > thresholds.shutdown_celsius {
        return Err(fail(
            "tune.max_asic_temp",
            format!(
                "{max_asic_temp} °C is above safety.max_temp_shutdown ({} °C): a sweep would run the miner where \
                 protection acts; keep it at or below the shutdown threshold",
                thresholds.shutdown_celsius
            ),
        ));
    }
    let max_vr_temp = within(
        "tune.max_vr_temp",
        raw.max_vr_temp,
        20.0..=150.0,
        "a regulator temperature in °C",
    )?
    .unwrap_or(DEFAULT_TUNE_MAX_VR_TEMP);
    let max_power_fraction = within(
        "tune.max_power_fraction",
        raw.max_power_fraction,
        0.05..=1.0,
        "a share of the PSU rating",
    )?
    .unwrap_or(DEFAULT_TUNE_MAX_POWER_FRACTION);
    let max_power_watts = within(
        "tune.max_power_watts",
        raw.max_power_watts,
        1.0..=2000.0,
        "a power in W",
    )?;
    let max_error_percent = within(
        "tune.max_error_percent",
        raw.max_error_percent,
        0.0..=100.0,
        "a percentage",
    )?
    .unwrap_or(DEFAULT_TUNE_MAX_ERROR_PERCENT);
    let (min_input_volts, max_input_volts) = tune_input_window(&raw, fail)?;
    let confidence_percent = within(
        "tune.confidence_percent",
        raw.confidence_percent,
        0.1..=50.0,
        "a confidence-interval width in %",
    )?
    .unwrap_or(DEFAULT_TUNE_CONFIDENCE_PERCENT);
    let sample_secs = tune_sample_seconds(raw.sample_interval.as_ref(), fail)?;
    Ok(TuneSettings {
        max_asic_temp,
        max_vr_temp,
        max_power_fraction,
        max_power_watts,
        max_error_percent,
        min_input_volts,
        max_input_volts,
        confidence_percent,
        sample_interval: Duration::from_secs_f64(sample_secs),
        restore_interrupted: raw.restore_interrupted.unwrap_or(false),
    })
}

/// `value` when it is absent or a finite number within `range`; else an error that names
/// `what` it should be.
fn within_range(
    fail: &dyn Fn(&str, String) -> ConfigError,
    key: &str,
    value: Option<f64>,
    range: std::ops::RangeInclusive<f64>,
    what: &str,
) -> Result<Option<f64>, ConfigError> {
    match value {
        Some(v) if !(v.is_finite() && range.contains(&v)) => Err(fail(
            key,
            format!("{v} is not {what} ({} to {})", range.start(), range.end()),
        )),
        _ => Ok(value),
    }
}

/// `tune.min_input_volts` and `tune.max_input_volts`: each a voltage, the lower below the
/// higher when both are given.
fn tune_input_window(
    raw: &RawTune,
    fail: &dyn Fn(&str, String) -> ConfigError,
) -> Result<(Option<f64>, Option<f64>), ConfigError> {
    let min_input_volts = within_range(
        fail,
        "tune.min_input_volts",
        raw.min_input_volts,
        1.0..=30.0,
        "a voltage in V",
    )?;
    let max_input_volts = within_range(
        fail,
        "tune.max_input_volts",
        raw.max_input_volts,
        1.0..=30.0,
        "a voltage in V",
    )?;
    if let (Some(low), Some(high)) = (min_input_volts, max_input_volts) {
        if low >= high {
            return Err(fail(
                "tune.min_input_volts",
                format!("{low} V is not below tune.max_input_volts ({high} V)"),
            ));
        }
    }
    Ok((min_input_volts, max_input_volts))
}

/// `tune.sample_interval` in seconds: a number or a duration, from the shortest the sweep
/// samples at to the longest poll interval.
fn tune_sample_seconds(raw: Option<&Seconds>, fail: &dyn Fn(&str, String) -> ConfigError) -> Result<f64, ConfigError> {
    match raw {
        None => Ok(DEFAULT_TUNE_SAMPLE_SECS),
        Some(value) => seconds_value(value)
            .filter(|s| s.is_finite() && (MIN_TUNE_SAMPLE_SECS..=MAX_POLL_INTERVAL_SECS).contains(s))
            .ok_or_else(|| {
                fail(
                    "tune.sample_interval",
                    format!("must be a number of seconds from {MIN_TUNE_SAMPLE_SECS} to {MAX_POLL_INTERVAL_SECS}, or a duration such as \"5s\""),
                )
            }),
    }
}

/// serde_yaml reports the key path and the location; keep both, drop its duplicated suffix.
fn from_yaml_error(error: &serde_yaml::Error) -> ConfigError {
    let mut message = error.to_string();
    if let Some(pos) = message.find(" at line ") {
        message.truncate(pos);
    }
    let (key, message) = match message.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') && !path.is_empty() => {
            (path.trim_start_matches('.').to_string(), rest.to_string())
        }
        _ => (String::new(), message),
    };
    let message = message.replace("unknown field", "unknown key");
    ConfigError::new(&key, error.location().map(|l| l.line()), message)
}

/// Line numbers of every key path in a YAML document (`devices[2].ip` → 9), found with a
/// marked event parser so that semantic errors can point at the line like syntax errors do.
#[derive(Debug, Default)]
struct KeyLines {
    lines: HashMap<String, usize>,
}

impl KeyLines {
    fn scan(text: &str) -> Self {
        let mut scanner = KeyLineScanner::default();
        // A syntax error is reported by serde_yaml with its own location; here it only
        // means fewer keys are known.
        let _ = Parser::new_from_str(text).load(&mut scanner, false);
        Self { lines: scanner.lines }
    }

    fn line_of(&self, key: &str) -> Option<usize> {
        self.lines.get(key).copied()
    }
}

#[derive(Debug)]
enum Frame {
    Mapping { path: String, pending_key: Option<String> },
    Sequence { path: String, next_index: usize },
}

#[derive(Debug, Default)]
struct KeyLineScanner {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

impl KeyLineScanner {
    /// The path of a value about to start in the current container, advancing it.
    fn take_value_path(&mut self, line: usize) -> Option<String> {
        match self.stack.last_mut()? {
            Frame::Mapping { path, pending_key } => {
                let key = pending_key.take()?;
                Some(if path.is_empty() { key } else { format!("{path}.{key}") })
            }
            Frame::Sequence { path, next_index } => {
                let item = format!("{path}[{next_index}]");
                *next_index += 1;
                self.lines.entry(item.clone()).or_insert(line);
                Some(item)
            }
        }
    }
}

impl MarkedEventReceiver for KeyLineScanner {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = mark.line();
        match event {
            Event::MappingStart(..) => {
                let path = if self.stack.is_empty() {
                    String::new()
                } else {
                    self.take_value_path(line).unwrap_or_default()
                };
                self.stack.push(Frame::Mapping {
                    path,
                    pending_key: None,
                });
            }
            Event::SequenceStart(..) => {
                let path = self.take_value_path(line).unwrap_or_default();
                self.stack.push(Frame::Sequence { path, next_index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Scalar(value, ..) => {
                if let Some(Frame::Mapping { path, pending_key }) = self.stack.last_mut() {
                    if pending_key.is_none() {
                        let full = if path.is_empty() {
                            value.clone()
                        } else {
                            format!("{path}.{value}")
                        };
                        self.lines.entry(full).or_insert(line);
                        *pending_key = Some(value);
                        return;
                    }
                }
                self.take_value_path(line);
            }
            Event::Alias(_) => {
                self.take_value_path(line);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_added_to_the_text_keeping_comments_order_and_indentation() {
        let text = "# my miners\ndevices:\n    - name: \"a\"   # the first\n      ip: \"10.0.0.1\"\n\n    # spare slot\nlogging:\n  poll_interval: 5\n";
        let new = [NewDevice {
            name: "b\"x".into(),
            ip: "10.0.0.2:8080".into(),
            note: "Gamma BM1370\n v2.15".into(),
        }];
        let merged = add_devices_to_text(text, &new).unwrap();
        assert_eq!(
            merged,
            "# my miners\ndevices:\n    - name: \"a\"   # the first\n      ip: \"10.0.0.1\"\n    - name: \"b\\\"x\"   # Gamma BM1370 v2.15\n      ip: \"10.0.0.2:8080\"\n\n    # spare slot\nlogging:\n  poll_interval: 5\n"
        );
        let parsed: serde_yaml::Value = serde_yaml::from_str(&merged).unwrap();
        assert_eq!(parsed["devices"][1]["name"], "b\"x");
        // No devices key, and an empty flow list.
        let added = add_devices_to_text("logging:\n  poll_interval: 5\n", &new).unwrap();
        assert!(
            added.starts_with("logging:\n  poll_interval: 5\n\ndevices:\n  - name: "),
            "{added}"
        );
        let parsed: serde_yaml::Value = serde_yaml::from_str(&added).unwrap();
        assert_eq!(parsed["devices"][0]["ip"], "10.0.0.2:8080");
        let flow = add_devices_to_text("devices: []\n", &new).unwrap();
        let parsed: serde_yaml::Value = serde_yaml::from_str(&flow).unwrap();
        assert_eq!(parsed["devices"][0]["name"], "b\"x");
    }

    const GOOD: &str = r#"
devices:
  - name: "bitaxe-1"
    ip: "192.168.1.100"
    enabled: true
  - name: "gamma"
    ip: "10.0.0.7:8080"
logging:
  poll_interval: 15
server:
  listen: "127.0.0.1:9842"
"#;

    #[test]
    fn parses_a_good_file_with_defaults() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.devices.len(), 2);
        assert_eq!(config.devices[0].address.port, 80);
        assert_eq!(config.devices[1].address.to_string(), "10.0.0.7:8080");
        assert!(config.devices[1].enabled);
        assert_eq!(config.poll_interval, Duration::from_secs(15));
        assert_eq!(config.thresholds, Thresholds::default());
        assert_eq!(config.warmup, Duration::from_secs(600));
        assert_eq!(config.log_level, LogLevel::Info);
    }

    #[test]
    fn key_lines_follow_nested_lists() {
        let lines = KeyLines::scan(GOOD);
        assert_eq!(lines.line_of("devices[1].name"), Some(6));
        assert_eq!(lines.line_of("devices[1].ip"), Some(7));
        assert_eq!(lines.line_of("logging.poll_interval"), Some(9));
        assert_eq!(lines.line_of("server.listen"), Some(11));
    }

    #[test]
    fn listen_addresses_as_node_exporter_takes_them() {
        assert_eq!(
            parse_listen("127.0.0.1:9842"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 9842)))
        );
        assert_eq!(parse_listen(":9842"), Ok(SocketAddr::from(([0, 0, 0, 0], 9842))));
        assert!(parse_listen("localhost:9842").is_ok_and(|a| a.ip().is_loopback() && a.port() == 9842));
        assert_eq!(parse_listen("[::1]:9842").map(|a| a.port()), Ok(9842));
        for bad in ["9842", "host", ":99999", "http://x:1", ""] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nesting_is_counted_past_apostrophes_and_inside_quotes_is_not() {
        assert_eq!(flow_depth("name: Bob's miner\nlogging: [[[1]]]\n"), 3);
        assert_eq!(flow_depth("name: '[[[['\nx: \"{{\\\"{{\"\n"), 0);
        assert_eq!(flow_depth("x: [a, {b: [c]}] # [[[[[[\n"), 3);
        let deep = format!(
            "devices:\n  - name: Bob's miner\n    ip: 1.2.3.4\nlogging: {}{}\n",
            "[".repeat(60_000),
            "]".repeat(60_000)
        );
        assert!(parse(&deep)
            .unwrap_err()
            .to_string()
            .contains("nested more than 32 levels"));
    }

    #[test]
    fn poll_interval_as_seconds_or_a_duration() {
        let text = |interval: &str| {
            format!("devices:\n  - {{name: a, ip: 10.0.0.1}}\nlogging:\n  poll_interval: {interval}\n")
        };
        assert_eq!(parse(&text("\"30s\"")).unwrap().poll_interval, Duration::from_secs(30));
        assert_eq!(parse(&text("1m")).unwrap().poll_interval, Duration::from_secs(60));
        assert_eq!(parse(&text("2.5")).unwrap().poll_interval, Duration::from_millis(2500));
        let error = parse(&text("soon")).unwrap_err().to_string();
        assert!(
            error.contains("logging.poll_interval") && error.contains("not a duration"),
            "{error}"
        );
    }

    #[test]
    fn addresses() {
        assert_eq!(MinerAddress::parse("bitaxe.local").unwrap().port, 80);
        assert_eq!(
            MinerAddress::parse("[::1]:8080").unwrap().url("/x"),
            "http://[::1]:8080/x"
        );
        for bad in [
            "",
            "http://1.2.3.4",
            "1.2.3.4:99999",
            "1.2.3.4:0",
            "fe80::1",
            "a b",
            "host:",
            "192.168.1.300",
            "300.1.1.1:80",
            "10.0.0",
            "1.2.3.4.5",
        ] {
            assert!(MinerAddress::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        // Names stay names, even with digits; a valid IPv4 stays an address.
        for good in ["bitaxe.local", "gamma-2", "10.0.0.255:8080", "0x1.example"] {
            assert!(MinerAddress::parse(good).is_ok(), "{good:?} should be accepted");
        }
    }

    #[test]
    fn every_error_in_one_pass_is_reported_with_its_key_and_line() {
        let text = "devices:\n  - name: a\n    ip: 192.168.1.300\n  - name: \"\"\n    ip: \"10.0.0.1:0\"\nlogging:\n  log_level: LOUD\nanalysis:\n  warmup_minutes: -1\n";
        let error = parse(text).unwrap_err();
        let found: Vec<(&str, Option<usize>)> = error.all().map(|e| (e.key.as_str(), e.line)).collect();
        assert_eq!(
            found,
            [
                ("devices[0].ip", Some(3)),
                ("devices[1].name", Some(4)),
                ("devices[1].ip", Some(5)),
                ("logging.log_level", Some(7)),
                ("analysis.warmup_minutes", Some(9)),
            ]
        );
        // The first error alone is the message of a file with one.
        let one = parse("devices:\n  - name: a\n    ip: 192.168.1.300\n").unwrap_err();
        assert!(one.also.is_empty());
        assert_eq!(one.key, "devices[0].ip");
    }

    #[test]
    fn server_guard_keys_are_checked_with_their_line() {
        let base = "devices:\n  - name: a\n    ip: 10.0.0.1\nserver:\n";
        let config = parse(&format!(
            "{base}  allowed_hosts: [\"Pi.Local.\", \"*\", \"10.0.0.5\"]\n  alerts_token_file: token\n"
        ))
        .unwrap();
        assert_eq!(config.web.allowed_hosts, ["pi.local", "*", "10.0.0.5"]);
        assert_eq!(config.web.alerts_token_file, Some(PathBuf::from("token")));
        assert_eq!(
            parse(base.trim_end_matches("server:\n")).unwrap().web,
            WebAccess::default()
        );
        for (yaml, key, line) in [
            (
                "  allowed_hosts:\n    - pi.local\n    - \"http://pi.local:9842\"\n",
                "server.allowed_hosts[1]",
                7,
            ),
            ("  allowed_hosts: [\"a b\"]\n", "server.allowed_hosts[0]", 5),
            ("  alerts_token_file: \"\"\n", "server.alerts_token_file", 5),
            ("  alerts_token: x\n", "alerts_token", 5),
        ] {
            let error = parse(&format!("{base}{yaml}")).unwrap_err();
            assert!(error.to_string().contains(key), "{yaml}: {error}");
            assert_eq!(error.line, Some(line), "{yaml}: {error}");
        }
    }

    #[test]
    fn tune_keys_default_to_the_safety_thresholds_and_name_the_key_when_wrong() {
        let base = "devices:\n  - name: a\n    ip: 10.0.0.1\nsafety:\n  max_temp_warning: 62\n";
        let config = parse(base).unwrap();
        assert_eq!(config.tune.max_asic_temp, 62.0, "defaults to the warning threshold");
        assert_eq!(config.tune.sample_interval, Duration::from_secs(5));
        let config = parse(&format!(
            "{base}tune:\n  sample_interval: \"500ms\"\n  max_power_watts: 20\n"
        ))
        .unwrap();
        assert_eq!(config.tune.sample_interval, Duration::from_millis(500));
        assert_eq!(config.tune.max_power_watts, Some(20.0));
        assert!(
            !config.tune.restore_interrupted,
            "serve only reports an interrupted sweep unless asked"
        );
        let at_the_threshold = parse(&format!(
            "{base}tune:\n  max_asic_temp: 70\n  restore_interrupted: true\n"
        ))
        .unwrap();
        assert!(at_the_threshold.tune.restore_interrupted);
        for (yaml, key) in [
            ("tune:\n  max_power_fraction: 1.5\n", "tune.max_power_fraction"),
            (
                "tune:\n  min_input_volts: 5.5\n  max_input_volts: 4.8\n",
                "tune.min_input_volts",
            ),
            ("tune:\n  sample_interval: 0\n", "tune.sample_interval"),
            ("tune:\n  max_asic_tmp: 60\n", "max_asic_tmp"),
            // Above the 70 °C shutdown threshold: a sweep would run where protection acts.
            ("tune:\n  max_asic_temp: 72\n", "above safety.max_temp_shutdown"),
        ] {
            let error = parse(&format!("{base}{yaml}")).unwrap_err().to_string();
            assert!(error.contains(key), "{yaml}: {error}");
        }
    }

    #[test]
    fn retention_and_backfill_keys_have_defaults_and_clear_errors() {
        let base = "devices:\n  - {name: a, ip: 10.0.0.1}\n";
        let config = parse(base).unwrap();
        assert!(config.backfill);
        assert_eq!(config.raw_retention, Some(Duration::from_secs(90 * 86_400)));
        let config = parse(&format!(
            "{base}backfill:\n  enabled: false\nledger:\n  raw_retention: \"12h\"\n"
        ))
        .unwrap();
        assert!(!config.backfill);
        assert_eq!(config.raw_retention, Some(Duration::from_secs(12 * 3600)));
        let forever = parse(&format!("{base}ledger:\n  raw_retention: forever\n")).unwrap();
        assert_eq!(forever.raw_retention, None);
        let seconds = parse(&format!("{base}ledger:\n  raw_retention: 5\n")).unwrap();
        assert_eq!(seconds.raw_retention, Some(Duration::from_secs(5)));
        for bad in ["\"ninety days\"", "0", "-3"] {
            let error = parse(&format!("{base}ledger:\n  raw_retention: {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(error.contains("ledger.raw_retention"), "{bad}: {error}");
        }
        let typo = parse(&format!("{base}ledger:\n  raw_retension: 5\n"))
            .unwrap_err()
            .to_string();
        assert!(typo.contains("raw_retension"), "{typo}");
    }
}
