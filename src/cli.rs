//! The command line: argument definitions (clap derive), logging set-up, and one function
//! per command. This is the edge where errors become messages and exit codes: 0 success,
//! 1 runtime failure, 2 usage or configuration error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::config::{self, Config, ConfigError, DeviceConfig, LogLevel, MinerAddress, Thresholds};
use crate::firmware::Dialect;
use crate::physics::Board;
use crate::simulator::{Fault, MinerSpec, SimFleet, DEFAULT_MIX};

#[derive(Debug, Parser)]
#[command(
    name = "bitaxe-exporter",
    version,
    about = "Prometheus exporter and configuration ledger for Bitaxe (AxeOS) miners",
    after_help = "Start with `bitaxe-exporter demo`: a simulated fleet, no configuration needed."
)]
pub struct Cli {
    /// Path of the configuration file.
    #[arg(long, global = true, default_value = "config.yaml", env = "BITAXE_EXPORTER_CONFIG")]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Poll the configured miners and serve /metrics (the daemon).
    Serve {
        /// Address to listen on; overrides server.listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Run a simulated fleet and the exporter together; no configuration needed.
    Demo {
        /// Address the exporter listens on.
        #[arg(long, default_value = "127.0.0.1:9842")]
        listen: SocketAddr,
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
    let result = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(dispatch(cli)),
        Err(e) => Err(Failure::Runtime(
            anyhow::Error::new(e).context("cannot start the async runtime"),
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::CheckConfig => check_config(&cli.config),
        Command::Serve { listen } => serve(&cli.config, listen).await,
        Command::Demo { listen } => demo(listen).await,
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
            simulate(specs, base_port, write_config.as_deref(), poll_interval).await
        }
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the level from the config.
pub fn init_logging(level: LogLevel) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{},hyper=warn,reqwest=warn", level.as_filter()))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn check_config(path: &Path) -> Result<(), Failure> {
    let config = config::load(path)?;
    let enabled = config.enabled_devices().count();
    println!(
        "{}: OK: {} device(s), {} enabled; poll every {} s; listen on {}",
        path.display(),
        config.devices.len(),
        enabled,
        config.poll_interval.as_secs_f64(),
        config.listen
    );
    Ok(())
}

async fn bind(address: SocketAddr) -> Result<TcpListener, Failure> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))
        .map_err(Failure::Runtime)
}

async fn serve(path: &Path, listen: Option<SocketAddr>) -> Result<(), Failure> {
    let mut config = config::load(path)?;
    if let Some(listen) = listen {
        config.listen = listen;
    }
    init_logging(config.log_level);
    let listener = bind(config.listen).await?;
    tracing::info!(
        "bitaxe-exporter {} polling {} device(s) every {:?}; metrics on http://{}/metrics",
        env!("CARGO_PKG_VERSION"),
        config.enabled_devices().count(),
        config.poll_interval,
        config.listen
    );
    crate::serve(config, listener, crate::shutdown_signal())
        .await
        .context("serve failed")?;
    Ok(())
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

async fn demo(listen: SocketAddr) -> Result<(), Failure> {
    init_logging(LogLevel::Info);
    let fleet = demo_fleet();
    let specs: Vec<MinerSpec> = fleet.iter().map(|(_, s)| s.clone()).collect();
    let sims = SimFleet::start(&specs, None)
        .await
        .context("cannot start the simulated miners")?;
    let devices = fleet
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
    let config = Config {
        devices,
        poll_interval: Duration::from_secs(5),
        database_path: PathBuf::from(config::DEFAULT_DATABASE_PATH),
        log_level: LogLevel::Info,
        thresholds: Thresholds::default(),
        listen,
        warmup: Duration::from_secs(600),
    };
    let listener = bind(listen).await?;
    println!(
        "bitaxe-exporter demo: {} simulated miners, polled every 5 s\n",
        fleet.len()
    );
    println!("  landing page   http://{listen}/");
    println!("  metrics        http://{listen}/metrics");
    for ((name, spec), address) in fleet.iter().zip(sims.addresses()) {
        println!(
            "  miner {name:<9}  http://{address}/api/system/info   ({} {}, firmware {})",
            spec.board.name(),
            spec.board.spec().asic_model,
            spec.dialect.version()
        );
    }
    println!("\nPress Ctrl-C to stop.");
    let served = crate::serve(config, listener, crate::shutdown_signal()).await;
    sims.shutdown().await;
    served.context("serve failed")?;
    Ok(())
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
        yaml.push_str(&format!("  - name: \"sim-{i:04}\"\n    ip: \"{address}\"\n"));
    }
    yaml.push_str(&format!("logging:\n  poll_interval: {poll_interval}\n"));
    yaml
}

async fn simulate(
    specs: Vec<MinerSpec>,
    base_port: u16,
    write_config: Option<&Path>,
    poll_interval: f64,
) -> Result<(), Failure> {
    init_logging(LogLevel::Info);
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
    println!("simulating {} miner(s) on {first} .. port {last}", addresses.len());
    for (spec, address) in specs.iter().zip(&addresses).take(8) {
        println!(
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
        println!("  ...");
    }
    if let Some(path) = write_config {
        println!("config for these miners written to {}", path.display());
    }
    crate::shutdown_signal().await;
    sims.shutdown().await;
    Ok(())
}
