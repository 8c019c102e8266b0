//! The command line: argument definitions (clap derive), logging set-up, and one function
//! per command. This is the edge where errors become messages and exit codes: 0 success,
//! 1 runtime failure, 2 usage or configuration error.

pub mod table;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::analysis::export::ExportFormat;
use crate::analysis::{self, Metric, Query};
use crate::axeos::sample::printable;
use crate::axeos::window::{CheckedPatch, SettingsWindow};
use crate::axeos::{AxeOsClient, SettingsPatch};
use crate::config::{self, Config, ConfigError, DeviceConfig, LogLevel, MinerAddress, Thresholds};
use crate::ledger::sessions::{self, NewSession, SessionError};
use crate::ledger::{self as ledger_db, DeviceRow, Ledger};
use crate::sim::dialects::Dialect;
use crate::sim::physics::Board;
use crate::sim::{Fault, MinerSpec, SimFleet, DEFAULT_MIX};
use crate::time;

#[derive(Debug, Parser)]
#[command(
    name = "bitaxe-exporter",
    version,
    about = "Prometheus exporter and configuration ledger for Bitaxe (AxeOS) miners",
    after_help = "Start with `bitaxe-exporter demo`: a simulated fleet, no configuration needed."
)]
pub struct Cli {
    /// Path of the configuration file [default: ./config.yaml].
    #[arg(long, global = true, env = "BITAXE_EXPORTER_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log format on stderr: text, or json (one object per line, for journald, docker, Loki).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log level (trace, debug, info, warning, error); overrides logging.log_level.
    #[arg(long, global = true, value_parser = parse_log_level)]
    pub log_level: Option<LogLevel>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

fn parse_log_level(text: &str) -> Result<LogLevel, String> {
    LogLevel::parse(text).ok_or_else(|| format!("\"{text}\" is not a level; use trace, debug, info, warning or error"))
}

fn parse_listen_arg(text: &str) -> Result<SocketAddr, String> {
    config::parse_listen(text)
}

/// The config file when none is named.
const DEFAULT_CONFIG: &str = "config.yaml";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Poll the configured miners and serve /metrics (the daemon).
    Serve {
        /// Address to listen on (IP:PORT, :PORT or HOST:PORT); overrides server.listen.
        #[arg(long, value_parser = parse_listen_arg)]
        listen: Option<SocketAddr>,
    },
    /// Run a simulated fleet and the exporter together; no configuration needed.
    Demo {
        /// Address the exporter listens on (IP:PORT, :PORT or HOST:PORT).
        #[arg(long, default_value = "127.0.0.1:9842", value_parser = parse_listen_arg)]
        listen: SocketAddr,
        /// Folder for the demo's ledger and a config.yaml to analyse it with.
        #[arg(long, default_value = "bitaxe-demo")]
        data_dir: PathBuf,
    },
    /// Serve simulated AxeOS miners on 127.0.0.1 (for tests, benchmarks and trying things).
    Simulate {
        /// Number of miners.
        #[arg(long, default_value_t = 4)]
        miners: usize,
        /// Port of the first miner; the others follow consecutively.
        #[arg(long, default_value_t = 18080)]
        base_port: u16,
        /// Seed of the simulated noise (the same seed gives the same fleet).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Only this board (Max, Ultra, Supra, Gamma, GammaTurbo, Hex, SupraHex); default: a mix.
        #[arg(long)]
        board: Option<String>,
        /// Only this firmware dialect (2.0, 2.4, 2.9, 2.10, 2.15); default: a mix.
        #[arg(long)]
        firmware: Option<String>,
        /// Inject a fault into a miner, INDEX=MODE (modes: none, offline, hang, slow, http500,
        /// garbage, truncated, oversized). Repeatable.
        #[arg(long = "fault", value_name = "INDEX=MODE")]
        faults: Vec<String>,
        /// Ambient temperature of a miner, INDEX=CELSIUS (a hot room). Repeatable.
        #[arg(long = "ambient", value_name = "INDEX=CELSIUS")]
        ambients: Vec<String>,
        /// Simulated seconds per real second.
        #[arg(long, default_value_t = 1.0)]
        time_scale: f64,
        /// Also write a config.yaml that polls these miners to this path.
        #[arg(long, value_name = "PATH")]
        write_config: Option<PathBuf>,
        /// logging.poll_interval for the written config, seconds.
        #[arg(long, default_value_t = 30.0)]
        poll_interval: f64,
    },
    /// Validate the configuration file and exit (0 valid, 2 invalid).
    CheckConfig,
    /// Test sessions: a time range on one device with target settings and notes.
    Session {
        #[command(subcommand)]
        action: SessionCommand,
    },
    /// Questions for the ledger: which configuration is best, and the raw data.
    Analyze {
        #[command(subcommand)]
        action: AnalyzeCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Open a session on a device (one open session per device).
    Start {
        #[arg(long)]
        device: String,
        /// Target frequency, MHz.
        #[arg(long)]
        freq: Option<f64>,
        /// Target core voltage, mV.
        #[arg(long)]
        voltage: Option<u32>,
        #[arg(long, default_value = "")]
        notes: String,
        /// Send the targets to the miner (PATCH /api/system) and read them back.
        #[arg(long)]
        apply: bool,
        /// With --apply: send targets outside the chip's plausibility window too.
        #[arg(long, requires = "apply")]
        force: bool,
    },
    /// Close the device's open session.
    End {
        #[arg(long)]
        device: String,
        #[arg(long, default_value = "")]
        notes: String,
    },
    /// List sessions.
    List {
        #[arg(long)]
        device: Option<String>,
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// A session with the steady-state statistics of its time range.
    Show {
        id: i64,
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TableFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Subcommand)]
pub enum AnalyzeCommand {
    /// Statistics per device × clock configuration (warm-up excluded).
    CompareConfigs {
        #[arg(long)]
        device: Option<String>,
        /// Only the time range of this session (and its device).
        #[arg(long)]
        session: Option<i64>,
        /// Start of the range: RFC 3339 or a duration ago (24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// End of the range: RFC 3339 or a duration ago.
        #[arg(long)]
        until: Option<String>,
        #[arg(long, value_enum, default_value_t = TableFormat::Table)]
        format: TableFormat,
    },
    /// The best configuration per device among those that pass the health gate.
    Optimize {
        #[arg(long, value_enum)]
        metric: Metric,
        #[arg(long)]
        device: Option<String>,
        /// ASIC temperature limit for the p95, °C (default: safety.max_temp_warning).
        #[arg(long)]
        max_temp: Option<f64>,
        /// Start of the data considered: RFC 3339 or a duration ago.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// The samples, streamed as CSV or JSON.
    Export {
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// File to write, or - for standard output.
        #[arg(long, default_value = "-")]
        output: String,
        #[arg(long)]
        device: Option<String>,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
    },
}

/// An error and the exit code it deserves.
#[derive(Debug)]
pub enum Failure {
    /// Exit 2: the user asked for something invalid or the config is wrong.
    Usage(anyhow::Error),
    /// Exit 1: something failed while running.
    Runtime(anyhow::Error),
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Usage(e.into())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

/// Runs a parsed command line; prints errors and returns the exit code.
pub fn run(cli: Cli) -> ExitCode {
    // One thread drives every poller and the HTTP server: a 1,000-miner fleet needs a few
    // percent of one core, and a single thread spares the cross-thread wake-ups that would
    // cost more than the work. Rendering /metrics and SQLite run on their own threads.
    let result = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(dispatch(cli)),
        Err(e) => Err(Failure::Runtime(
            anyhow::Error::new(e).context("cannot start the async runtime"),
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            status_line(&format!("error: {}", error_text(&e)));
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            status_line(&format!("error: {}", error_text(&e)));
            ExitCode::from(1)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), Failure> {
    let logs = Logs {
        format: cli.log_format,
        level: cli.log_level,
    };
    let named_config = cli.config.clone();
    let config_path = cli.config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    if let (Some(path), Command::Demo { .. } | Command::Simulate { .. }) = (&named_config, &cli.command) {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--config {}: `demo` and `simulate` do not read a configuration file",
            path.display()
        )));
    }
    match cli.command {
        Command::CheckConfig => check_config(&config_path),
        Command::Serve { listen } => serve(&config_path, listen, logs).await,
        Command::Demo { listen, data_dir } => demo(listen, &data_dir, logs).await,
        // The ledger commands run to completion on this thread; nothing else is scheduled.
        Command::Session { action } => {
            logs.init(LogLevel::Warn);
            let settings = LedgerSettings::load(named_config.as_deref())?;
            match action {
                SessionCommand::Start {
                    device,
                    freq,
                    voltage,
                    notes,
                    apply,
                    force,
                } => {
                    let targets = Targets {
                        freq,
                        voltage,
                        apply,
                        force,
                    };
                    session_start(&settings, &device, targets, &notes).await
                }
                SessionCommand::End { device, notes } => session_end(&settings, &device, &notes),
                SessionCommand::List { device, format } => session_list(&settings, device.as_deref(), format),
                SessionCommand::Show { id, format } => session_show(&settings, id, format),
            }
        }
        Command::Analyze { action } => {
            logs.init(LogLevel::Warn);
            let settings = LedgerSettings::load(named_config.as_deref())?;
            analyze_command(&settings, action)
        }
        Command::Simulate {
            miners,
            base_port,
            seed,
            board,
            firmware,
            faults,
            ambients,
            time_scale,
            write_config,
            poll_interval,
        } => {
            let specs = simulation_specs(
                miners,
                seed,
                board.as_deref(),
                firmware.as_deref(),
                &faults,
                &ambients,
                time_scale,
            )
            .map_err(Failure::Usage)?;
            simulate(specs, base_port, write_config.as_deref(), poll_interval, logs).await
        }
    }
}

/// How the command line asked for logs.
#[derive(Debug, Clone, Copy)]
pub struct Logs {
    pub format: LogFormat,
    /// `--log-level`, over the configuration's level.
    pub level: Option<LogLevel>,
}

impl Logs {
    /// Logs go to stderr at `--log-level`, else `default`; `RUST_LOG` overrides both.
    pub fn init(self, default: LogLevel) {
        let level = self.level.unwrap_or(default);
        let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("{},hyper=warn,reqwest=warn", level.as_filter()))
        });
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false);
        let _ = match self.format {
            LogFormat::Json => builder.json().flatten_event(true).try_init(),
            LogFormat::Text => {
                // Colour only on a terminal: escape codes in journald, docker logs or a
                // file are noise.
                let colour =
                    std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
                builder.with_ansi(colour).try_init()
            }
        };
    }
}

fn check_config(path: &Path) -> Result<(), Failure> {
    let config = config::load(path)?;
    let enabled = config.enabled_devices().count();
    emit(&format!(
        "{}: OK: {} device(s), {} enabled; poll every {} s; listen on {}\n",
        path.display(),
        config.devices.len(),
        enabled,
        config.poll_interval.as_secs_f64(),
        config.listen
    ))
}

async fn bind(address: SocketAddr) -> Result<TcpListener, Failure> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))
        .map_err(Failure::Runtime)
}

async fn serve(path: &Path, listen: Option<SocketAddr>, logs: Logs) -> Result<(), Failure> {
    let mut config = config::load(path)?;
    if let Some(listen) = listen {
        config.listen = listen;
    }
    logs.init(config.log_level);
    let listener = bind(config.listen).await?;
    tracing::info!("metrics on http://{}/metrics", config.listen);
    crate::daemon::serve(config, listener, crate::daemon::shutdown_signal())
        .await
        .map_err(serve_failure)
}

/// A second daemon on a held ledger is a configuration problem (exit 2); the rest are
/// runtime failures.
fn serve_failure(e: crate::daemon::ServeError) -> Failure {
    match e {
        crate::daemon::ServeError::Ledger(e @ ledger_db::LedgerError::InUse { .. }) => Failure::Usage(e.into()),
        e => Failure::Runtime(e.into()),
    }
}

/// The demo fleet: five firmware eras, single- and multi-chip boards, one overclocked
/// miner in a warm room that crosses the temperature warning.
pub fn demo_fleet() -> Vec<(String, MinerSpec)> {
    let mut fleet = vec![
        ("ultra".to_string(), MinerSpec::new(Board::Ultra, Dialect::V2_4, 11)),
        ("supra".to_string(), MinerSpec::new(Board::Supra, Dialect::V2_10, 12)),
        ("gamma".to_string(), MinerSpec::new(Board::Gamma, Dialect::V2_15, 13)),
        ("hex".to_string(), MinerSpec::new(Board::Hex, Dialect::V2_15, 14)),
        ("max".to_string(), MinerSpec::new(Board::Max, Dialect::V2_0, 15)),
        (
            "turbo-oc".to_string(),
            MinerSpec::new(Board::GammaTurbo, Dialect::V2_9, 16),
        ),
    ];
    if let Some((_, hot)) = fleet.last_mut() {
        hot.frequency_mhz = Some(700.0);
        hot.core_voltage_mv = Some(1250);
        hot.ambient_celsius = 28.0;
    }
    if let Some((_, supra)) = fleet.get_mut(1) {
        supra.frequency_mhz = Some(512.5);
    }
    fleet
}

async fn demo(listen: SocketAddr, data_dir: &Path, logs: Logs) -> Result<(), Failure> {
    logs.init(LogLevel::Info);
    let fleet = demo_fleet();
    let specs: Vec<MinerSpec> = fleet.iter().map(|(_, s)| s.clone()).collect();
    let sims = SimFleet::start(&specs, None)
        .await
        .context("cannot start the simulated miners")?;
    let devices: Vec<DeviceConfig> = fleet
        .iter()
        .zip(sims.addresses())
        .map(|((name, _), address)| DeviceConfig {
            name: name.clone(),
            address: MinerAddress {
                host: address.ip().to_string(),
                port: address.port(),
            },
            enabled: true,
        })
        .collect();
    let database_path = data_dir.join("metrics.db");
    let config = Config {
        devices,
        poll_interval: Duration::from_secs(5),
        database_path: database_path.clone(),
        log_level: LogLevel::Info,
        thresholds: Thresholds::default(),
        listen,
        warmup: Duration::from_secs(60),
        stale_after_polls: config::DEFAULT_STALE_AFTER_POLLS,
    };
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    let demo_config = data_dir.join("config.yaml");
    std::fs::write(&demo_config, demo_config_yaml(&config))
        .with_context(|| format!("cannot write {}", demo_config.display()))?;
    let listener = bind(listen).await?;
    use std::fmt::Write as _;
    let mut text = format!(
        "bitaxe-exporter demo: {} simulated miners, polled every 5 s\n\n",
        fleet.len()
    );
    let _ = writeln!(text, "  landing page   http://{listen}/");
    let _ = writeln!(text, "  metrics        http://{listen}/metrics");
    for ((name, spec), address) in fleet.iter().zip(sims.addresses()) {
        let _ = writeln!(
            text,
            "  miner {name:<9}  http://{address}/api/system/info   ({} {}, firmware {})",
            spec.board.name(),
            spec.board.spec().asic_model,
            spec.dialect.version()
        );
    }
    let _ = writeln!(text, "\n  ledger         {}", database_path.display());
    let _ = writeln!(
        text,
        "  analyse it     bitaxe-exporter --config {} analyze compare-configs",
        demo_config.display()
    );
    text.push_str("\nPress Ctrl-C to stop.\n");
    emit(&text)?;
    let served = crate::daemon::serve(config, listener, crate::daemon::shutdown_signal()).await;
    sims.shutdown().await;
    served.map_err(serve_failure)
}

/// A config.yaml for the demo fleet, so the CLI can analyse the demo's ledger. It sits in
/// the demo's folder, beside the ledger it names.
fn demo_config_yaml(config: &Config) -> String {
    let mut yaml =
        String::from("# Written by `bitaxe-exporter demo` (simulated miners on ephemeral ports).\ndevices:\n");
    for d in &config.devices {
        yaml.push_str(&format!(
            "  - name: {}\n    ip: {}\n",
            yaml_string(&d.name),
            yaml_string(&d.address.to_string())
        ));
    }
    let database = config
        .database_path
        .file_name()
        .map(Path::new)
        .unwrap_or(&config.database_path);
    yaml.push_str(&format!(
        "logging:\n  poll_interval: {}\n  database_path: {}\nanalysis:\n  warmup_minutes: {}\n",
        config.poll_interval.as_secs_f64(),
        yaml_string(&database.display().to_string()),
        config.warmup.as_secs_f64() / 60.0
    ));
    yaml
}

/// A double-quoted YAML scalar (a JSON string is one), whatever the text holds.
fn yaml_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

fn parse_indexed<T>(
    items: &[String],
    miners: usize,
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> anyhow::Result<Vec<(usize, T)>> {
    items
        .iter()
        .map(|item| {
            let (index, value) = item
                .split_once('=')
                .with_context(|| format!("--{what} {item:?}: expected INDEX=VALUE"))?;
            let index: usize = index.trim().parse().ok().filter(|i| *i < miners).with_context(|| {
                format!(
                    "--{what} {item:?}: INDEX must be a miner number from 0 to {}",
                    miners - 1
                )
            })?;
            let value = parse(value).with_context(|| format!("--{what} {item:?}: cannot understand {value:?}"))?;
            Ok((index, value))
        })
        .collect()
}

/// The miners `simulate` serves.
pub fn simulation_specs(
    miners: usize,
    seed: u64,
    board: Option<&str>,
    firmware: Option<&str>,
    faults: &[String],
    ambients: &[String],
    time_scale: f64,
) -> anyhow::Result<Vec<MinerSpec>> {
    if miners == 0 {
        anyhow::bail!("--miners must be at least 1");
    }
    if !(time_scale.is_finite() && time_scale > 0.0 && time_scale <= 10_000.0) {
        anyhow::bail!("--time-scale must be a number above 0 and at most 10000");
    }
    let board = board
        .map(|b| {
            Board::parse(b).with_context(|| {
                format!("unknown board {b:?}; boards: Max, Ultra, Supra, Gamma, GammaTurbo, Hex, SupraHex")
            })
        })
        .transpose()?;
    let dialect = firmware
        .map(|f| {
            Dialect::parse(f).with_context(|| format!("unknown firmware {f:?}; dialects: 2.0, 2.4, 2.9, 2.10, 2.15"))
        })
        .transpose()?;
    let mut specs: Vec<MinerSpec> = (0..miners)
        .map(|i| {
            let (mix_board, mix_dialect) = DEFAULT_MIX[i % DEFAULT_MIX.len()];
            let mut spec = MinerSpec::new(
                board.unwrap_or(mix_board),
                dialect.unwrap_or(mix_dialect),
                seed.wrapping_add(i as u64),
            );
            spec.hostname = format!("sim-{i:04}");
            spec.time_scale = time_scale;
            spec
        })
        .collect();
    for (index, fault) in parse_indexed(faults, miners, "fault", Fault::parse)? {
        specs[index].fault = fault;
    }
    for (index, celsius) in parse_indexed(ambients, miners, "ambient", |v| v.trim().parse::<f64>().ok())? {
        specs[index].ambient_celsius = celsius;
    }
    Ok(specs)
}

/// A config.yaml polling the simulated miners.
pub fn simulation_config_yaml(addresses: &[SocketAddr], poll_interval: f64) -> String {
    let mut yaml = String::from("# Written by `bitaxe-exporter simulate`: polls the simulated miners.\ndevices:\n");
    for (i, address) in addresses.iter().enumerate() {
        yaml.push_str(&format!(
            "  - name: {}\n    ip: {}\n",
            yaml_string(&format!("sim-{i:04}")),
            yaml_string(&address.to_string())
        ));
    }
    yaml.push_str(&format!("logging:\n  poll_interval: {poll_interval}\n"));
    yaml
}

async fn simulate(
    specs: Vec<MinerSpec>,
    base_port: u16,
    write_config: Option<&Path>,
    poll_interval: f64,
    logs: Logs,
) -> Result<(), Failure> {
    logs.init(LogLevel::Info);
    let sims = SimFleet::start(&specs, Some(base_port))
        .await
        .context("cannot start the simulated miners")?;
    let addresses = sims.addresses().to_vec();
    if let Some(path) = write_config {
        std::fs::write(path, simulation_config_yaml(&addresses, poll_interval))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let first = addresses.first().map(ToString::to_string).unwrap_or_default();
    let last = addresses.last().map(|a| a.port()).unwrap_or_default();
    use std::fmt::Write as _;
    let mut text = format!("simulating {} miner(s) on {first} .. port {last}\n", addresses.len());
    for (spec, address) in specs.iter().zip(&addresses).take(8) {
        let _ = writeln!(
            text,
            "  http://{address}/api/system/info  {} ({}), firmware {}{}",
            spec.board.name(),
            spec.board.spec().asic_model,
            spec.dialect.version(),
            if spec.fault == Fault::None {
                String::new()
            } else {
                format!(", fault {:?}", spec.fault)
            }
        );
    }
    if addresses.len() > 8 {
        text.push_str("  ...\n");
    }
    if let Some(path) = write_config {
        let _ = writeln!(text, "config for these miners written to {}", path.display());
    }
    emit(&text)?;
    crate::daemon::shutdown_signal().await;
    sims.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Ledger commands

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
    fn load(named: Option<&Path>) -> Result<Self, Failure> {
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
    fn open(&self) -> Result<Ledger, Failure> {
        Ledger::open_read_only(&self.database_path).map_err(ledger_failure)
    }

    /// The ledger for the commands that record something (sessions). Never creates one.
    fn open_for_writing(&self) -> Result<Ledger, Failure> {
        Ledger::open_existing(&self.database_path).map_err(ledger_failure)
    }

    /// Refuses an output file that is the ledger, one of its companion files, its lock or
    /// the configuration, by identity (device and inode), so no other name, symlink or
    /// hard link for them slips through.
    fn refuse_to_overwrite(&self, output: &Path) -> Result<(), Failure> {
        let ledger_files = ledger_db::ledger_files(&self.database_path);
        let lock = ledger_db::DaemonLock::lock_path(&self.database_path);
        let protected = ledger_files.iter().chain([&lock]).chain(self.config_path.as_ref());
        for file in protected {
            if ledger_db::same_file(output, file) {
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

    fn configured_names(&self) -> Vec<String> {
        self.devices.iter().map(|d| d.name.clone()).collect()
    }
}

fn ledger_failure(e: ledger_db::LedgerError) -> Failure {
    match e {
        ledger_db::LedgerError::Missing(_) => Failure::Usage(e.into()),
        e => Failure::Runtime(e.into()),
    }
}

fn session_failure(e: SessionError) -> Failure {
    if e.is_usage() {
        Failure::Usage(e.into())
    } else {
        Failure::Runtime(e.into())
    }
}

/// A device the ledger knows (by current or former name), else a usage error naming them.
fn known_device(ledger: &Ledger, name: &str) -> Result<DeviceRow, Failure> {
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

fn parse_time_arg(flag: &str, value: Option<&str>) -> Result<Option<f64>, Failure> {
    value
        .map(|text| time::parse(text, SystemTime::now()))
        .transpose()
        .map_err(|e| Failure::Usage(anyhow::anyhow!("{flag}: {e}")))
}

/// Writes command output to stdout; a reader that went away (`| head`) is not an error.
fn emit(text: &str) -> Result<(), Failure> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::Runtime(
            anyhow::Error::new(e).context("cannot write to standard output"),
        )),
    }
}

/// An error and its causes on one line, each said once: typed errors often show their
/// cause in their own message too, and SQLite repeats its message in its error code.
pub fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        let said = |part: &str| !part.is_empty() && text.contains(part);
        if said(&cause) || cause.split_once(": ").is_some_and(|(_, rest)| said(rest)) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    printable(&text).into_owned()
}

/// A line for the operator on stderr. A closed or full stderr is ignored: there is
/// nowhere left to report it, and it must never turn into a panic.
fn status_line(text: &str) {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.write_all(b"\n"));
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), Failure> {
    let mut text = serde_json::to_string_pretty(value).context("cannot encode JSON")?;
    text.push('\n');
    emit(&text)
}

/// What `session start` asks of the miner.
#[derive(Debug, Clone, Copy)]
struct Targets {
    freq: Option<f64>,
    voltage: Option<u32>,
    apply: bool,
    force: bool,
}

async fn session_start(settings: &LedgerSettings, device: &str, targets: Targets, notes: &str) -> Result<(), Failure> {
    let Targets {
        freq,
        voltage,
        apply,
        force,
    } = targets;
    if freq.is_some_and(|f| !(f.is_finite() && f > 0.0 && f <= 65_535.0)) {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--freq must be a frequency in MHz between 1 and 65535"
        )));
    }
    if voltage.is_some_and(|v| v == 0 || v > 65_535) {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--voltage must be a core voltage in mV between 1 and 65535"
        )));
    }
    let mut ledger = settings.open_for_writing()?;
    let row = sessions::resolve_device(&mut ledger, device, &settings.configured_names()).map_err(session_failure)?;
    sessions::check_none_open(&ledger, &row).map_err(session_failure)?;

    let mut mismatch = None;
    if apply {
        if freq.is_none() && voltage.is_none() {
            return Err(Failure::Usage(anyhow::anyhow!("--apply needs --freq and/or --voltage")));
        }
        let address = settings
            .devices
            .iter()
            .find(|d| d.name == device || d.name == row.name)
            .map(|d| d.address.clone())
            .ok_or_else(|| {
                Failure::Usage(anyhow::anyhow!(
                    "--apply needs \"{device}\" in config.yaml to know its address"
                ))
            })?;
        let client =
            AxeOsClient::new(Duration::from_secs(5), Duration::ZERO).context("cannot create the HTTP client")?;
        let patch = SettingsPatch {
            frequency: freq,
            core_voltage: voltage,
        };
        let checked = if force {
            status_line(&format!(
                "{device}: --force: sending {} without checking the plausibility window",
                patch_text(&patch)
            ));
            CheckedPatch::forced(patch)
        } else {
            let current = client
                .system_info(&address)
                .await
                .with_context(|| format!("cannot read {device} at {address} to check the targets; nothing sent"))?;
            let options = client.asic_options(&address).await.unwrap_or(None);
            let window = SettingsWindow::for_miner(
                current.identity.asic_model.as_deref(),
                options.as_ref().map(|(f, v)| (f.as_slice(), v.as_slice())),
            );
            window
                .check(&patch)
                .map_err(|e| Failure::Usage(anyhow::anyhow!("{device}: {e}")))?
        };
        client
            .patch_settings(&address, &checked)
            .await
            .with_context(|| format!("cannot apply the settings to {device} at {address}; no session started"))?;
        let read_back = client
            .system_info(&address)
            .await
            .with_context(|| format!("applied the settings, but cannot read {device} back; no session started"))?;
        let mut differences = Vec::new();
        if let Some(f) = freq {
            if read_back.frequency_mhz.is_none_or(|got| (got - f).abs() > 0.01) {
                differences.push(format!(
                    "frequency {} MHz (asked {f})",
                    fmt_setting(read_back.frequency_mhz)
                ));
            }
        }
        if let Some(v) = voltage {
            if read_back
                .core_voltage_mv
                .is_none_or(|got| (got - f64::from(v)).abs() > 0.5)
            {
                differences.push(format!(
                    "core voltage {} mV (asked {v})",
                    fmt_setting(read_back.core_voltage_mv)
                ));
            }
        }
        if !differences.is_empty() {
            mismatch = Some(differences.join(", "));
        }
    }

    let started = sessions::start(
        &mut ledger,
        &NewSession {
            device: &row,
            at: time::now_unix(),
            target_frequency_mhz: freq,
            target_core_voltage_mv: voltage.map(f64::from),
            notes,
            applied: apply,
        },
    )
    .map_err(session_failure)?;
    emit(&format!(
        "session #{} started on {} at {}; target {}{}\n",
        started.id,
        started.device,
        time::format(started.started_at),
        started.target(),
        if apply { " (applied to the miner)" } else { "" }
    ))?;
    match mismatch {
        Some(m) => Err(Failure::Runtime(anyhow::anyhow!(
            "session #{} is recorded, but {} reports {m}",
            started.id,
            started.device
        ))),
        None => Ok(()),
    }
}

/// `frequency 700 MHz, core voltage 1300 mV`: what a patch sets.
fn patch_text(patch: &SettingsPatch) -> String {
    let mut parts = Vec::new();
    if let Some(f) = patch.frequency {
        parts.push(format!("frequency {f} MHz"));
    }
    if let Some(v) = patch.core_voltage {
        parts.push(format!("core voltage {v} mV"));
    }
    parts.join(", ")
}

fn fmt_setting(value: Option<f64>) -> String {
    value.map_or("unknown".into(), crate::axeos::sample::format_label_number)
}

fn session_end(settings: &LedgerSettings, device: &str, notes: &str) -> Result<(), Failure> {
    let mut ledger = settings.open_for_writing()?;
    let row = sessions::resolve_device(&mut ledger, device, &settings.configured_names()).map_err(session_failure)?;
    let ended = sessions::end(&mut ledger, &row, time::now_unix(), notes).map_err(session_failure)?;
    emit(&format!(
        "session #{} on {} ended at {} after {}\n",
        ended.id,
        ended.device,
        time::format(ended.ended_at.unwrap_or(ended.started_at)),
        analysis::duration_text(ended.ended_at.unwrap_or(ended.started_at) - ended.started_at)
    ))
}

fn session_list(settings: &LedgerSettings, device: Option<&str>, format: ListFormat) -> Result<(), Failure> {
    let ledger = settings.open()?;
    let device_id = match device {
        Some(name) => Some(known_device(&ledger, name)?.id),
        None => None,
    };
    let sessions = ledger.sessions(device_id).map_err(ledger_failure)?;
    match format {
        ListFormat::Table => emit(&sessions::table(&sessions))?,
        ListFormat::Json => print_json(&sessions)?,
    }
    Ok(())
}

fn session_show(settings: &LedgerSettings, id: i64, format: ListFormat) -> Result<(), Failure> {
    let ledger = settings.open()?;
    let found = ledger.session(id).map_err(ledger_failure)?;
    let shown = found.ok_or_else(|| session_failure(SessionError::NotFound(id)))?;
    let device = known_device(&ledger, &shown.device)?;
    let until = shown.ended_at.unwrap_or_else(time::now_unix);
    let rows = analysis::compare_configs(
        &ledger,
        &Query {
            device_id: Some(device.id),
            since: Some(shown.started_at),
            until: Some(until),
            warmup_seconds: settings.warmup_seconds,
        },
    )
    .map_err(ledger_failure)?;
    let events = ledger
        .events_between(device.id, shown.started_at, until)
        .map_err(ledger_failure)?;
    match format {
        ListFormat::Json => print_json(&serde_json::json!({
            "session": shown,
            "configurations": rows,
            "events": events.iter().map(|(t, kind, detail)| serde_json::json!({
                "time": time::format(*t), "kind": kind, "detail": detail
            })).collect::<Vec<_>>(),
        }))?,
        ListFormat::Table => {
            use std::fmt::Write as _;
            let mut text = String::new();
            let _ = writeln!(text, "session #{} on {}", shown.id, shown.device);
            let _ = writeln!(
                text,
                "  from {} to {} ({})",
                time::format(shown.started_at),
                shown.ended_at.map_or("now (open)".into(), time::format),
                analysis::duration_text(until - shown.started_at)
            );
            let applied = if shown.applied { " (applied)" } else { "" };
            let _ = writeln!(text, "  target {}{applied}", shown.target());
            // Stored text may predate the decoder's escaping: escape again on the way out.
            if !shown.notes.is_empty() {
                let _ = writeln!(text, "  notes: {}", printable(&shown.notes));
            }
            if !shown.end_notes.is_empty() {
                let _ = writeln!(text, "  end notes: {}", printable(&shown.end_notes));
            }
            text.push('\n');
            text.push_str(&analysis::configs_table(&rows));
            if !events.is_empty() {
                text.push_str("\nevents:\n");
                for (t, _, detail) in &events {
                    let _ = writeln!(text, "  {}  {}", time::format(*t), printable(detail));
                }
            }
            emit(&text)?;
        }
    }
    Ok(())
}

fn analyze_command(settings: &LedgerSettings, action: AnalyzeCommand) -> Result<(), Failure> {
    let ledger = settings.open()?;
    match action {
        AnalyzeCommand::CompareConfigs {
            device,
            session: session_id,
            since,
            until,
            format,
        } => {
            let mut query = Query {
                device_id: match &device {
                    Some(name) => Some(known_device(&ledger, name)?.id),
                    None => None,
                },
                since: parse_time_arg("--since", since.as_deref())?,
                until: parse_time_arg("--until", until.as_deref())?,
                warmup_seconds: settings.warmup_seconds,
            };
            if let Some(id) = session_id {
                let found = ledger.session(id).map_err(ledger_failure)?;
                let shown = found.ok_or_else(|| session_failure(SessionError::NotFound(id)))?;
                let session_device = known_device(&ledger, &shown.device)?;
                if query.device_id.is_some_and(|d| d != session_device.id) {
                    return Err(Failure::Usage(anyhow::anyhow!(
                        "session #{id} is on {}, not on {}",
                        shown.device,
                        device.unwrap_or_default()
                    )));
                }
                query.device_id = Some(session_device.id);
                query.since = Some(query.since.map_or(shown.started_at, |s| s.max(shown.started_at)));
                let end = shown.ended_at.unwrap_or_else(time::now_unix);
                query.until = Some(query.until.map_or(end, |u| u.min(end)));
            }
            let rows = analysis::compare_configs(&ledger, &query).map_err(ledger_failure)?;
            match format {
                TableFormat::Table => emit(&analysis::configs_table(&rows))?,
                TableFormat::Json => print_json(&rows)?,
                TableFormat::Csv => emit(&analysis::configs_csv(&rows))?,
            }
            Ok(())
        }
        AnalyzeCommand::Optimize {
            metric,
            device,
            max_temp,
            since,
            format,
        } => {
            let query = Query {
                device_id: match &device {
                    Some(name) => Some(known_device(&ledger, name)?.id),
                    None => None,
                },
                since: parse_time_arg("--since", since.as_deref())?,
                until: None,
                warmup_seconds: settings.warmup_seconds,
            };
            let max_temp = max_temp.unwrap_or(settings.thresholds.warning_celsius);
            if !max_temp.is_finite() {
                return Err(Failure::Usage(anyhow::anyhow!(
                    "--max-temp must be a temperature in °C"
                )));
            }
            let rows = analysis::compare_configs(&ledger, &query).map_err(ledger_failure)?;
            let recommendations = analysis::optimize(rows, metric, max_temp);
            match format {
                ListFormat::Table => emit(&analysis::recommendations_text(&recommendations))?,
                ListFormat::Json => print_json(&recommendations)?,
            }
            Ok(())
        }
        AnalyzeCommand::Export {
            format,
            output,
            device,
            since,
            until,
        } => {
            let device_id = match &device {
                Some(name) => Some(known_device(&ledger, name)?.id),
                None => None,
            };
            let since = parse_time_arg("--since", since.as_deref())?.unwrap_or(f64::MIN);
            let until = parse_time_arg("--until", until.as_deref())?.unwrap_or(f64::MAX);
            let result = if output == "-" {
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
                crate::analysis::export::export(&ledger, &mut out, format, device_id, since, until)
            } else {
                let output = Path::new(&output);
                settings.refuse_to_overwrite(output)?;
                let written = crate::analysis::export::write_atomically(output, |out| {
                    crate::analysis::export::export(&ledger, out, format, device_id, since, until)
                });
                if let Ok(n) = &written {
                    status_line(&format!("wrote {n} samples to {}", output.display()));
                }
                written
            };
            match result {
                Ok(_) => Ok(()),
                // `… | head` closing the pipe early is not an error.
                Err(crate::analysis::export::ExportError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    Ok(())
                }
                Err(e) => Err(Failure::Runtime(e.into())),
            }
        }
    }
}
