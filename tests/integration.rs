//! The one integration-test binary (one link step). Modules:
//! - `auth`: miners that ask for HTTP Basic auth: polled and written with the configured
//!   password, clear refusals (`kind="auth"`), `discover`, config errors, no leak anywhere.
//! - `discover`: finding simulated miners on loopback and adding them to a config.
//! - `decode`: `/api/system/info` bodies of every firmware era → normalised samples.
//! - `exporter`: simulator + real `serve` process, checked through `/metrics` (goldens,
//!   retune, faults, escaping, restart, shutdown, demo).
//! - `client`: the AxeOS client on the wire (headers, redirects, size cap, timeout).
//! - `ledger`: the SQLite ledger through its writer on hand-built data (segments,
//!   warm-up, statistics, identity, migrations, export).
//! - `tuning`: a tuning sweep with sessions and `analyze` while `serve` writes; SIGKILL.
//! - `sweep`: `tune` on simulated miners: the optimum, every limit and exit path, restore,
//!   resume, dry run, beside `serve`.
//! - `stack`: Prometheus rules, Alertmanager, dashboards and compose, with the real
//!   promtool, amtool, prometheus, alertmanager and docker-compose.
//! - `cli`: the command line's exit codes and messages.
//! - `hardening`: what a typo, a hostile miner, a second process or a signal must not
//!   break (data loss, availability, hardware safety, bad input).
//! - `simulator`: the simulated miners' endpoints and physics as a client sees them.
//! - `health`: "is it really mining?" verdicts for each simulated fault mode.
//! - `availability`: an idle-connection flood and a scrape storm against `serve`.
//! - `top`: the terminal dashboard's screens (golden text) and the binary in a real pty.
//! - `web`: the dashboard pages and the report in the real headless Chromium; the JSON API.
//! - `writes`: protection and `tune` writes against miners that refuse, lag, lie and reboot.
//! - `websurface`: `POST /alerts` only with its token, the `Host` check against DNS
//!   rebinding, security headers, `/configs` of 1,000 devices paginated and rendered a few at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod auth;
mod availability;
mod backfill;
mod cli;
mod client;
mod decode;
mod discover;
mod exporter;
mod hardening;
mod health;
mod layers;
mod ledger;
mod simulator;
mod stack;
mod sweep;
mod top;
mod tuning;
mod web;
mod websurface;
mod writes;
