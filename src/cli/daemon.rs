//! `serve`, `demo`, `simulate` and `check-config`: the commands that run the daemon or the
//! simulated miners, and the config files they write.

use std::net::SocketAddr;
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use super::output::emit;
use super::settings::parse_listen_arg;
use super::{Failure, Logs};
use crate::config::{self, Config, DeviceConfig, LogLevel, MinerAddress, Thresholds};
use crate::ledger as ledger_db;
use crate::sim::dialects::Dialect;
use crate::sim::physics::Board;
use crate::sim::{mix_pair, Fault, MinerSpec, SimFleet};

/// `serve`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (IP:PORT, :PORT or HOST:PORT); overrides server.listen.
    #[arg(long, value_parser = parse_listen_arg)]
    pub listen: Option<SocketAddr>,
    /// The file holding the bearer token of POST /alerts; overrides
    /// server.alerts_token_file (the compose file sets it to its Docker secret).
    #[arg(long, env = "BITAXE_EXPORTER_ALERTS_TOKEN_FILE", value_name = "PATH")]
    pub alerts_token_file: Option<PathBuf>,
}

/// `demo`'s arguments.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Address the exporter listens on (IP:PORT, :PORT or HOST:PORT).
    #[arg(long, default_value = "127.0.0.1:9842", value_parser = parse_listen_arg)]
    pub listen: SocketAddr,
    /// Folder for the demo's ledger and a config.yaml to analyse it with.
    #[arg(long, default_value = "bitaxe-demo")]
    pub data_dir: PathBuf,
}

/// `simulate`'s arguments.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Number of miners.
    #[arg(long, default_value_t = 4)]
    pub miners: usize,
    /// Port of the first miner; the others follow consecutively.
    #[arg(long, default_value_t = 18080)]
    pub base_port: u16,
    /// Seed of the simulated noise (the same seed gives the same fleet).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Only this board; default: a mix. A NerdQAxe or Lucky board runs its own
    /// firmware unless --firmware says otherwise.
    #[arg(long, value_enum, ignore_case = true)]
    pub board: Option<Board>,
    /// Only this firmware dialect (an upstream era, nerdqaxe or lucky); default: a mix.
    #[arg(long, value_enum)]
    pub firmware: Option<Dialect>,
    /// Inject a fault into a miner, INDEX=MODE (none, offline, hang, slow, http500,
    /// garbage, truncated, oversized, … dead-chip, weak-chip, hardware-fault, no-work).
    /// Repeatable.
    #[arg(long = "fault", value_name = "INDEX=MODE")]
    pub faults: Vec<String>,
    /// Ambient temperature of a miner, INDEX=CELSIUS (a hot room). Repeatable.
    #[arg(long = "ambient", value_name = "INDEX=CELSIUS")]
    pub ambients: Vec<String>,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// statsFrequency of the miners' statistics ring, seconds (v2.9+ firmware; 0 = off, the
    /// firmware's default).
    #[arg(long, default_value_t = 0)]
    pub stats_frequency: u16,
    /// Also write a config.yaml that polls these miners to this path.
    #[arg(long, value_name = "PATH")]
    pub write_config: Option<PathBuf>,
    /// logging.poll_interval for the written config, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub poll_interval: f64,
}

pub(crate) fn check_config(path: &Path) -> Result<(), Failure> {
    let config = config::load(path)?;
    let enabled = config.enabled_devices().count();
    // How many, never what: the passwords were read, and are not shown.
    let with_credentials = config
        .devices
        .iter()
        .filter(|d| d.address.credentials.is_some())
        .count();
    let credentials = if with_credentials > 0 {
        format!(" ({with_credentials} with credentials, each password read)")
    } else {
        String::new()
    };
    emit(&format!(
        "{}: OK: {} device(s), {} enabled{credentials}; poll every {} s; listen on {}\n",
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

impl ServeArgs {
    pub async fn run(self, path: &Path, logs: Logs) -> Result<(), Failure> {
        serve(path, self.listen, self.alerts_token_file, logs).await
    }
}

impl DemoArgs {
    pub async fn run(self, logs: Logs) -> Result<(), Failure> {
        demo(self.listen, &self.data_dir, logs).await
    }
}

impl SimulateArgs {
    pub async fn run(self, logs: Logs) -> Result<(), Failure> {
        let mut specs = simulation_specs(
            self.miners,
            self.seed,
            self.board,
            self.firmware,
            &self.faults,
            &self.ambients,
            self.time_scale,
        )
        .map_err(Failure::Usage)?;
        for spec in &mut specs {
            spec.stats_frequency_seconds = self.stats_frequency;
        }
        simulate(
            specs,
            self.base_port,
            self.write_config.as_deref(),
            self.poll_interval,
            logs,
        )
        .await
    }
}

async fn serve(
    path: &Path,
    listen: Option<SocketAddr>,
    alerts_token_file: Option<PathBuf>,
    logs: Logs,
) -> Result<(), Failure> {
    let mut config = config::load(path)?;
    if let Some(listen) = listen {
        config.listen = listen;
    }
    if let Some(token_file) = alerts_token_file.filter(|p| !p.as_os_str().is_empty()) {
        config.web.alerts_token_file = Some(token_file);
    }
    logs.init(config.log_level);
    // Before the port: a second daemon on this ledger says so (exit 2, with the holder's
    // pid), rather than fail on an address already in use.
    // A standalone `tune` holding it hands it over once this daemon starts.
    match ledger_db::DaemonLock::check_free(&config.database_path) {
        Err(ledger_db::LedgerError::InUse { .. })
            if ledger_db::DaemonLock::sweep_holder(&config.database_path).is_some() => {}
        checked => {
            checked.map_err(|e| serve_failure(crate::web::ServeError::Daemon(crate::daemon::StartError::Ledger(e))))?
        }
    }
    let listener = bind(config.listen).await?;
    // On standard output, whatever the log level: where to point a browser and Prometheus.
    // A full or closed stdout (a service with no reader) must not keep the daemon from
    // starting: the line is a courtesy.
    let _ = emit(&where_to_open(listener.local_addr().unwrap_or(config.listen)));
    crate::web::serve(config, listener, crate::daemon::shutdown_signal())
        .await
        .map_err(serve_failure)
}

/// The addresses a browser elsewhere on the network reaches `listen` at: the address
/// itself, or — for every interface (0.0.0.0, [::]) — this host's IPv4 addresses beyond
/// loopback, which is what people type; loopback when the host has no other.
fn reachable_addresses(listen: SocketAddr) -> Vec<SocketAddr> {
    if !listen.ip().is_unspecified() {
        return vec![listen];
    }
    let mut found: Vec<SocketAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|interface| match interface.addr {
            if_addrs::IfAddr::V4(v4) if !v4.ip.is_loopback() => Some(SocketAddr::from((v4.ip, listen.port()))),
            _ => None,
        })
        .collect();
    found.sort();
    found.dedup();
    if found.is_empty() {
        found.push(SocketAddr::from(([127, 0, 0, 1], listen.port())));
    }
    found
}

/// `serve`'s first lines: the dashboard's and the metrics' URLs on this host's addresses.
fn where_to_open(listen: SocketAddr) -> String {
    let addresses = reachable_addresses(listen);
    let mut dashboards = addresses.iter().map(|a| format!("http://{a}/"));
    let first = dashboards.next().unwrap_or_else(|| format!("http://{listen}/"));
    let others: Vec<String> = dashboards.collect();
    let also = if others.is_empty() {
        String::new()
    } else {
        format!("   (also {})", others.join(", "))
    };
    format!("dashboard {first}{also}\nmetrics   {first}metrics\n")
}

/// How to run this program again, as a shell takes it: `bitaxe-exporter` when that name on
/// `PATH` is this binary, else this binary's path (relative to the working directory when
/// it is inside it, as `./target/release/bitaxe-exporter` after `cargo run --release`).
pub(crate) fn this_command() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return env!("CARGO_PKG_NAME").into();
    };
    let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .any(|folder| std::fs::canonicalize(folder.join(env!("CARGO_PKG_NAME"))).is_ok_and(|found| found == exe))
    });
    if on_path {
        return env!("CARGO_PKG_NAME").into();
    }
    let shown = std::env::current_dir()
        .ok()
        .and_then(|cwd| {
            exe.strip_prefix(std::fs::canonicalize(&cwd).unwrap_or(cwd))
                .ok()
                .map(|p| p.to_path_buf())
        })
        .map_or_else(
            || exe.display().to_string(),
            |relative| format!("./{}", relative.display()),
        );
    shell_word(&shown)
}

/// `text` as one shell word: as it is when it holds nothing a shell would split or expand,
/// else in single quotes.
pub(crate) fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | ':' | '@' | '%' | ','));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// A second daemon on a held ledger is a configuration problem (exit 2); the rest are
/// runtime failures.
fn serve_failure(e: crate::web::ServeError) -> Failure {
    match e {
        crate::web::ServeError::Daemon(crate::daemon::StartError::Ledger(e @ ledger_db::LedgerError::InUse { .. })) => {
            Failure::Usage(e.into())
        }
        e @ crate::web::ServeError::Web(_) => Failure::Usage(e.into()),
        e => Failure::Runtime(e.into()),
    }
}

/// The demo fleet: five firmware eras, single- and multi-chip boards, one overclocked
/// miner in a warm room that crosses the temperature warning.
pub fn demo_fleet() -> Vec<(String, MinerSpec)> {
    let mut fleet = vec![
        ("ultra".to_string(), MinerSpec::new(Board::Ultra, Dialect::V2_4, 11)),
        ("supra".to_string(), MinerSpec::new(Board::Supra, Dialect::V2_10, 12)),
        ("gamma".to_string(), {
            // The miner the demo's sweep tunes: temperatures settle four times as fast.
            let mut gamma = MinerSpec::new(Board::Gamma, Dialect::V2_15, 13);
            gamma.time_scale = 4.0;
            gamma
        }),
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
    // Statistics on (v2.9+ miners keep the ring): a demo restarted after a while fills
    // the hole from the miners' own history.
    for (_, spec) in &mut fleet {
        spec.stats_frequency_seconds = 5;
    }
    fleet
}

async fn demo(listen: SocketAddr, data_dir: &Path, logs: Logs) -> Result<(), Failure> {
    logs.init(LogLevel::Info);
    // A demo already running on this folder keeps it: refused before anything is written
    // (its config.yaml names its own miners).
    if let Err(busy) = ledger_db::DaemonLock::check_free(&data_dir.join("metrics.db")) {
        return Err(Failure::Usage(anyhow::anyhow!(
            "{busy}; another demo uses {}: stop it, or give this one its own --data-dir",
            data_dir.display()
        )));
    }
    let fleet = demo_fleet();
    let specs: Vec<MinerSpec> = fleet.iter().map(|(_, s)| s.clone()).collect();
    let sims = SimFleet::start(&specs, None)
        .await
        .context("cannot start the simulated miners")?;
    // Bound first, so a port chosen by the system (`--listen 127.0.0.1:0`) is the one
    // printed and written to the demo's config.
    let listener = bind(listen).await?;
    let listen = listener.local_addr().unwrap_or(listen);
    let devices: Vec<DeviceConfig> = fleet
        .iter()
        .zip(sims.addresses())
        .map(|((name, _), address)| DeviceConfig {
            name: name.clone(),
            address: MinerAddress::new(address.ip().to_string(), address.port()),
            enabled: true,
        })
        .collect();
    let config = demo_config(devices, listen, data_dir.join("metrics.db"));
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    let demo_config = data_dir.join("config.yaml");
    std::fs::write(&demo_config, demo_config_yaml(&config))
        .with_context(|| format!("cannot write {}", demo_config.display()))?;
    emit(&demo_banner(&fleet, sims.addresses(), &config, &demo_config))?;
    // One stop signal for the daemon and the demo's sweep, which restores its miner
    // before the simulated miners go away.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        crate::daemon::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let sweep = tokio::spawn(demo_sweep(config.clone(), stop.clone()));
    let mut serve_stop = stop.clone();
    let served = crate::web::serve(config, listener, async move {
        let _ = serve_stop.wait_for(|s| *s).await;
    })
    .await;
    if let Err(e) = sweep.await {
        tracing::warn!("the demo's sweep stopped: {e}");
    }
    sims.shutdown().await;
    served.map_err(serve_failure)
}

/// The demo daemon's configuration: its simulated miners polled every 5 s, its ledger at
/// `database_path`.
fn demo_config(devices: Vec<DeviceConfig>, listen: SocketAddr, database_path: PathBuf) -> Config {
    Config {
        devices,
        poll_interval: Duration::from_secs(5),
        database_path,
        log_level: LogLevel::Info,
        thresholds: Thresholds::default(),
        listen,
        // As long as the demo sweep's warm-up, so `analyze` judges its steps as it did.
        warmup: DEMO_WARMUP,
        stale_after_polls: config::DEFAULT_STALE_AFTER_POLLS,
        tune: config::TuneSettings {
            // The demo polls every 5 s: a ±2 % interval is reached within a step.
            confidence_percent: 2.0,
            sample_interval: Duration::from_secs(1),
            ..config::TuneSettings::defaults(&Thresholds::default())
        },
        protection: config::Protection::default(),
        discovery: config::Discovery::default(),
        web: config::WebAccess::default(),
        backfill: true,
        raw_retention: Some(config::DEFAULT_RAW_RETENTION),
    }
}

/// What the demo prints as it starts: where its pages, miners and ledger are, and the
/// commands to try on them.
fn demo_banner(fleet: &[(String, MinerSpec)], addresses: &[SocketAddr], config: &Config, demo_config: &Path) -> String {
    use std::fmt::Write as _;
    let listen = reachable_addresses(config.listen)
        .first()
        .copied()
        .unwrap_or(config.listen);
    let command = this_command();
    let demo_config = shell_word(&demo_config.display().to_string());
    let mut text = format!(
        "bitaxe-exporter demo: {} simulated miners, polled every 5 s\n\n",
        fleet.len()
    );
    let _ = writeln!(
        text,
        "  dashboard      http://{listen}/   (configurations: /configs, sessions: /sessions)"
    );
    let _ = writeln!(text, "  metrics        http://{listen}/metrics");
    for ((name, spec), address) in fleet.iter().zip(addresses) {
        let _ = writeln!(
            text,
            "  miner {name:<9}  http://{address}/api/system/info   ({} {}, firmware {})",
            spec.board.name(),
            spec.board.spec().asic_model,
            spec.dialect.version()
        );
    }
    let _ = writeln!(text, "\n  ledger         {}", config.database_path.display());
    let _ = writeln!(
        text,
        "  analyse it     {command} --config {demo_config} analyze compare-configs"
    );
    let _ = writeln!(
        text,
        "  tuning         {DEMO_SWEPT} is swept over 490–600 MHz at 1200 mV (about 4 minutes); then\n                 {command} --config {demo_config} analyze optimize --metric efficiency"
    );
    let _ = writeln!(
        text,
        "  report         {command} --config {demo_config} analyze report --output report.html"
    );
    text.push_str("\nPress Ctrl-C to stop.\n");
    text
}

/// The demo's tuning sweep: `gamma` over four frequencies at 1200 mV, a step about every
/// minute, judged on the samples the demo's daemon stores; afterwards `analyze
/// compare-configs` and `analyze optimize` have several configurations to compare.
async fn demo_sweep(config: Config, stop: tokio::sync::watch::Receiver<bool>) {
    // The daemon takes the ledger first; the sweep then judges the samples it stores.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ledger_db::DaemonLock::check_free(&config.database_path).is_ok() || !config.database_path.exists() {
        if *stop.borrow() || tokio::time::Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let spec = crate::tune::spec::SweepSpec {
        devices: vec![DEMO_SWEPT.to_string()],
        plan: crate::tune::plan::PlanKind::Grid,
        freq: Some(crate::tune::plan::Span {
            from: 490.0,
            to: 600.0,
            step: None,
        }),
        voltage: Some(crate::tune::plan::Span {
            from: 1200.0,
            to: 1200.0,
            step: None,
        }),
        metric: crate::analysis::Metric::Efficiency,
        warmup_minutes: DEMO_WARMUP.as_secs_f64() / 60.0,
        dwell_minutes: 40.0 / 60.0,
        max_dwell_minutes: 1.25,
        then: crate::tune::spec::Then::Best,
        allow_unlisted: false,
        allow_small_steps: false,
        force: false,
        max_parallel: 1,
        assume_family: None,
    };
    tracing::info!("demo: sweeping {DEMO_SWEPT} over 490–600 MHz at 1200 mV (`tune`), a step about every minute");
    let observer = std::sync::Arc::new(super::tune_progress::LogObserver);
    let stopped = stop.clone();
    match crate::tune::run::execute(&config, &spec, None, stop, observer).await {
        Ok(run) => {
            let steps: usize = run.devices.iter().map(|r| r.steps.len()).sum();
            if *stopped.borrow() {
                tracing::info!(
                    "demo: sweep #{} interrupted after {steps} step(s); {DEMO_SWEPT} is back on its settings from before",
                    run.run_id
                );
            } else {
                tracing::info!(
                    "demo: sweep #{} done after {steps} step(s); `analyze compare-configs` and `analyze optimize` now compare them",
                    run.run_id
                );
            }
        }
        Err(e) => tracing::warn!("demo: the sweep stopped: {:#}", anyhow::Error::new(e)),
    }
}

/// The demo miner the demo's sweep tunes.
const DEMO_SWEPT: &str = "gamma";
/// The demo's warm-up, for the daemon's analysis and each step of its sweep.
const DEMO_WARMUP: Duration = Duration::from_secs(15);

/// A config.yaml for the demo fleet, so the CLI can analyse the demo's ledger. It sits in
/// the demo's folder, beside the ledger it names.
fn demo_config_yaml(config: &Config) -> String {
    let mut yaml =
        String::from("# Written by `bitaxe-exporter demo` to analyse its ledger (and for `top` to find it). The\n# miners' ports lived as long as that demo: `serve` with this file polls nothing.\ndevices:\n");
    for d in &config.devices {
        yaml.push_str(&format!(
            "  - name: {}\n    ip: {}\n",
            config::yaml_quoted(&d.name),
            config::yaml_quoted(&d.address.to_string())
        ));
    }
    let database = config
        .database_path
        .file_name()
        .map(Path::new)
        .unwrap_or(&config.database_path);
    // Where the demo listens, so `top --config bitaxe-demo/config.yaml` finds it.
    yaml.push_str(&format!(
        "server:\n  listen: {}\n",
        config::yaml_quoted(&config.listen.to_string())
    ));
    yaml.push_str(&format!(
        "logging:\n  poll_interval: {}\n  database_path: {}\nanalysis:\n  warmup_minutes: {}\ntune:\n  sample_interval: {}\n  confidence_percent: {}\n",
        config.poll_interval.as_secs_f64(),
        config::yaml_quoted(&database.display().to_string()),
        config.warmup.as_secs_f64() / 60.0,
        config.tune.sample_interval.as_secs_f64(),
        config.tune.confidence_percent
    ));
    yaml
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
    board: Option<Board>,
    dialect: Option<Dialect>,
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
    let mut specs: Vec<MinerSpec> = (0..miners)
        .map(|i| {
            let (board, dialect) = mix_pair(i, board, dialect);
            let mut spec = MinerSpec::new(board, dialect, seed.wrapping_add(i as u64));
            spec.hostname = format!("sim-{i:04}");
            spec.time_scale = time_scale;
            spec
        })
        .collect();
    let fault_mode = |mode: &str| <Fault as clap::ValueEnum>::from_str(mode.trim(), true).ok();
    for (index, fault) in parse_indexed(faults, miners, "fault", fault_mode)? {
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
            config::yaml_quoted(&format!("sim-{i:04}")),
            config::yaml_quoted(&address.to_string())
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
