//! How the command line asks for logs (`--log-format`, `--log-level`) and setting them up
//! on stderr.

use crate::config::LogLevel;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
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
            // A log line that cannot be written (stderr a file on a full disk, a closed
            // pipe) is dropped: the default reports it with eprintln!, which panics when
            // stderr fails, and took the ledger writer thread down with it.
            .log_internal_errors(false)
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
