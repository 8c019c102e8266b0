//! Command output: stdout that survives a closed pipe, stderr that never panics, JSON, and
//! an error with its causes said once.

use anyhow::Context;

use super::Failure;
use crate::axeos::printable;

/// How a listing command prints: a table for a reader, or JSON for a script
/// (`--format table|json`, shared by `session` and `analyze`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

/// Writes command output to stdout; a reader that went away (`| head`) is not an error.
pub(crate) fn emit(text: &str) -> Result<(), Failure> {
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

/// The lines a failure prints, each after `error: `: one per configuration error when a
/// config has several (each escaped on its own, so the breaks between them stay breaks),
/// and how many there are; else the one line of [`error_text`].
pub(crate) fn error_lines(error: &anyhow::Error) -> Vec<String> {
    match error.downcast_ref::<crate::config::ConfigError>() {
        Some(config) if !config.also.is_empty() => {
            let mut lines: Vec<String> = config.all().map(|e| printable(&e.render_one()).into_owned()).collect();
            lines.push(format!("{} errors in all", lines.len()));
            lines
        }
        _ => vec![error_text(error)],
    }
}

/// A line for the operator on stderr. A closed or full stderr is ignored: there is
/// nowhere left to report it, and it must never turn into a panic.
pub(crate) fn status_line(text: &str) {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.write_all(b"\n"));
}

pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> Result<(), Failure> {
    let mut text = serde_json::to_string_pretty(value).context("cannot encode JSON")?;
    text.push('\n');
    emit(&text)
}
