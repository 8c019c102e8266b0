//! The command line: the clap tree and logging set-up; each command group in its own file
//! (`daemon`: serve, demo, simulate, check-config; `session`; `analyze`), output and
//! settings shared by them. This is the edge where errors become messages and exit codes: 0 success,
//! 1 runtime failure, 2 usage or configuration error.

mod analyze;
mod daemon;
mod discover;
mod events;
mod failure;
mod ledger_stats;
mod logs;
mod output;
mod session;
mod settings;
pub mod table;
mod top;
mod tune;
mod tune_detach;
mod tune_plot;
mod tune_progress;

pub use daemon::{demo_fleet, simulation_config_yaml, simulation_specs};
pub use failure::Failure;
pub use logs::{LogFormat, Logs};
pub use output::error_text;
use output::status_line;
pub use settings::LedgerSettings;
use settings::DEFAULT_CONFIG;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::LogLevel;

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

fn parse_log_level(text: &str) -> Result<LogLevel, String> {
    LogLevel::parse(text).ok_or_else(|| format!("\"{text}\" is not a level; use trace, debug, info, warning or error"))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Poll the configured miners and serve /metrics (the daemon).
    Serve(daemon::ServeArgs),
    /// Run a simulated fleet and the exporter together; no configuration needed.
    Demo(daemon::DemoArgs),
    /// Serve simulated AxeOS miners on 127.0.0.1 (for tests, benchmarks and trying things).
    Simulate(daemon::SimulateArgs),
    /// Validate the configuration file and exit (0 valid, 2 invalid).
    CheckConfig,
    /// Test sessions: a time range on one device with target settings and notes.
    Session {
        #[command(subcommand)]
        action: session::SessionCommand,
    },
    /// Questions for the ledger: which configuration is best, and the raw data.
    Analyze {
        #[command(subcommand)]
        action: analyze::AnalyzeCommand,
    },
    /// Sweep frequency × core voltage on real miners to find the best configuration;
    /// always restores. Also `tune status`, `tune resume`, `tune restore --device NAME`.
    Tune(tune::TuneArgs),
    /// A live terminal dashboard over a running exporter (never polls the miners itself).
    Top(top::TopArgs),
    /// Find the AxeOS miners on the LAN and print (or add) their config entries.
    Discover(discover::DiscoverArgs),
}

/// What clap says when the arguments do not parse, or when `--help` / `--version` asked
/// for text: printed through the same checked path as every other output (a full stdout
/// is exit 1, a closed one exit 0), with clap's exit codes otherwise (2 for usage errors).
pub fn argument_error(error: &clap::Error) -> ExitCode {
    let text = error.render().to_string();
    if error.use_stderr() {
        status_line(text.trim_end());
        return ExitCode::from(2);
    }
    match output::emit(&text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => {
            status_line("error: cannot write to standard output");
            ExitCode::from(1)
        }
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
            for line in output::error_lines(&e) {
                status_line(&format!("error: {line}"));
            }
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            for line in output::error_lines(&e) {
                status_line(&format!("error: {line}"));
            }
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
    // A config named by BITAXE_EXPORTER_CONFIG (as the Docker image names it) is the
    // default for the commands that read one; only one typed with --config on a command
    // that reads none is a mistake worth stopping for.
    let from_environment =
        std::env::var_os("BITAXE_EXPORTER_CONFIG").is_some_and(|v| Some(PathBuf::from(v)) == named_config);
    if let (Some(path), false) = (&named_config, from_environment) {
        let ignored = match &cli.command {
            Command::Demo(_) | Command::Simulate(_) => Some("`demo` and `simulate` do not read a configuration file"),
            Command::Discover(_) => {
                Some("`discover` reads no configuration file (--add-to FILE adds the miners it finds to one)")
            }
            _ => None,
        };
        if let Some(why) = ignored {
            return Err(Failure::Usage(anyhow::anyhow!("--config {}: {why}", path.display())));
        }
    }
    match cli.command {
        Command::CheckConfig => daemon::check_config(&config_path),
        Command::Serve(args) => args.run(&config_path, logs).await,
        Command::Demo(args) => args.run(logs).await,
        Command::Simulate(args) => args.run(logs).await,
        // The ledger commands run to completion on this thread; nothing else is scheduled.
        Command::Session { action } => {
            logs.init(LogLevel::Warn);
            action.run(&LedgerSettings::load(named_config.as_deref())?).await
        }
        Command::Analyze { action } => {
            logs.init(LogLevel::Warn);
            action.run(&LedgerSettings::load(named_config.as_deref())?)
        }
        // Only reads from the network; writes a config file only when asked (--add-to).
        Command::Discover(args) => {
            logs.init(LogLevel::Warn);
            args.run().await
        }
        // Logs would scribble over the screen: only errors, and those after it closes.
        Command::Top(args) => {
            logs.init(LogLevel::Error);
            args.run(&config_path, named_config.is_some()).await
        }
        // Each write to a miner is logged at INFO.
        Command::Tune(args) => {
            logs.init(LogLevel::Info);
            args.run(&config_path).await
        }
    }
}
