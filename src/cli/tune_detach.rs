//! `tune --detach`: the same sweep started as a process of its own — its own process
//! group, stdin from /dev/null, output to a log file created new — so a closed terminal or
//! SSH session never reaches it; returns once the run is registered in the ledger. And the
//! signals every sweep stops on (a detached one ignores SIGHUP).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use super::output::{emit, status_line};
use super::Failure;
use crate::config::Config;
use crate::ledger::tune::TuneStatus;
use crate::ledger::Ledger;
use crate::time;

/// Set in the environment of the process `tune --detach` starts.
const DETACHED_ENV: &str = "BITAXE_EXPORTER_TUNE_DETACHED";

/// `tune --detach`: the same sweep in a process of its own (its own process group, stdin
/// from /dev/null, stdout and stderr to `log`), so closing the terminal does not touch it.
/// Returns once the sweep is registered in the ledger (or has failed, with its log).
pub(super) async fn detach(config: &Config, log: Option<PathBuf>) -> Result<(), Failure> {
    use std::os::unix::process::CommandExt as _;
    let log = log.unwrap_or_else(|| {
        let dir = config
            .database_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        dir.join(format!("tune-{}.log", time::file_stamp(time::now_unix())))
    });
    // A new file only: never through a symlink planted at the name, never over a log.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&log)
        .map_err(|e| Failure::Usage(anyhow::anyhow!("cannot create the log {}: {e}", log.display())))?;
    let errors = file
        .try_clone()
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot use the log {}: {e}", log.display())))?;
    let exe = std::env::current_exe().context("cannot find this program to start the sweep")?;
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    let mut skip_value = false;
    for arg in std::env::args_os().skip(1) {
        if skip_value {
            skip_value = false;
            continue;
        }
        match arg.to_str() {
            Some("--detach") => {}
            Some("--log-file") => skip_value = true,
            Some(a) if a.starts_with("--log-file=") => {}
            _ => args.push(arg),
        }
    }
    let mut child = std::process::Command::new(exe)
        .args(&args)
        .env(DETACHED_ENV, "1")
        .stdin(std::process::Stdio::null())
        .stdout(file)
        .stderr(errors)
        .process_group(0)
        .spawn()
        .context("cannot start the detached sweep")?;
    let pid = child.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().context("cannot watch the detached sweep")? {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            status_line(said.trim_end());
            return Err(match status.code() {
                Some(2) => Failure::Usage(anyhow::anyhow!("the sweep did not start (log: {})", log.display())),
                _ => Failure::Runtime(anyhow::anyhow!(
                    "the detached sweep ended ({status}); log: {}",
                    log.display()
                )),
            });
        }
        let registered = Ledger::open_read_only(&config.database_path)
            .ok()
            .and_then(|ledger| ledger.tune_runs().ok())
            .and_then(|runs| {
                runs.into_iter()
                    .find(|r| r.pid == pid && r.status == TuneStatus::Running)
            });
        if let Some(run) = registered {
            return emit(&format!(
                "sweep #{} runs detached (pid {pid}); log: {}
                 `tune status` follows it; `kill {pid}` (SIGTERM) stops it and restores the miners
",
                run.id,
                log.display()
            ));
        }
        if std::time::Instant::now() >= deadline {
            return emit(&format!(
                "the detached sweep (pid {pid}) has not registered yet; log: {}
",
                log.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SIGINT, SIGTERM and SIGHUP (the terminal or SSH session closed) set the flag every
/// device's sweep watches; the sweeps then restore. A detached sweep has no terminal to
/// lose: it ignores SIGHUP and stops on SIGINT or SIGTERM.
pub(super) fn cancel_on_signals() -> Result<watch::Receiver<bool>, Failure> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = watch::channel(false);
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let detached = std::env::var_os(DETACHED_ENV).is_some();
    tokio::spawn(async move {
        let name = loop {
            tokio::select! {
                _ = interrupt.recv() => break "SIGINT",
                _ = terminate.recv() => break "SIGTERM",
                _ = hangup.recv() => {
                    if detached {
                        status_line("SIGHUP ignored: this sweep runs detached (stop it with SIGTERM)");
                        continue;
                    }
                    break "SIGHUP (the terminal closed)";
                }
            }
        };
        status_line(&format!(
            "{name}: stopping the sweep and restoring every miner's original settings"
        ));
        let _ = tx.send(true);
        // Further signals are absorbed: the restore must finish.
        loop {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
                _ = hangup.recv() => {}
            }
            status_line("still restoring; the miners are put back before this exits");
        }
    });
    Ok(rx)
}
