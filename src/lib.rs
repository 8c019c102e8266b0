//! bitaxe-exporter: polls Bitaxe (AxeOS) miners, serves their state on `/metrics` labelled
//! by clock configuration, keeps every reading in a SQLite ledger segmented by
//! configuration, and answers "which configuration is best?" from it.
//!
//! ```text
//! config.yaml ──> daemon::poller (a task per miner) ──> axeos::Sample (normalised units)
//!                                                  ├─> daemon::fleet snapshot ──> /metrics, rendered at scrape time;
//!                                                  │                              web: the fleet page and /api/v1/fleet
//!                                                  ├─> ledger::writer (one thread, batched transactions) ──> SQLite
//!                                                  └─> daemon::events, daemon::health, daemon::protect (opt-in writes)
//! CLI `session` / `analyze` ──> ledger + analysis, on the same SQLite file (WAL), safe while the daemon runs
//! web (/device, /configs, /sessions, /api/v1) ──> read-only ledger connections ──> analysis ──> web::render
//! CLI `analyze report` ──> the same history, charts and tables as one offline HTML file (web::report)
//! CLI `top` ──> a running exporter's /api/v1 (web::api, one contract) ──> tui (ratatui), never the miners
//! CLI `tune` / `demo` ──> tune::run (plans, claims the run, ends it) ──> tune::sweep (a task per miner: PATCH,
//!                          read back, sample, limits) ──> ledger sessions + tune plans
//! sim: AxeOS miners on loopback, for `demo`, the tests and the benchmarks
//! ```
//!
//! ARCHITECTURE.md draws the rooms (modules), what each may import (`tests/layers.rs`
//! checks it) and where each common kind of change belongs.
//!
//! The binary (`src/main.rs`) only parses arguments and calls into [`cli`]; everything else
//! lives here so that tests drive the same code in-process.

/// compare-configs, optimize (the health gate), export; a device's history.
pub mod analysis;
/// Talking to a miner: the HTTP client and the pure decoder of every firmware era.
pub mod axeos;
/// The command line: the clap tree, one function per command, table rendering.
pub mod cli;
/// config.yaml: schema, defaults, validation with key and line.
pub mod config;
/// What `serve` runs behind the web: pollers, the fleet snapshot, `/metrics`, events, the judgements.
pub mod daemon;
/// Every SQL string: schema and migrations, the writer thread, segments, sessions, tune plans.
pub mod ledger;
/// Other processes on this machine (from `/proc`): whether a sweep's owner still runs.
pub mod process;
/// Simulated AxeOS miners (demo, tests, benchmarks only).
pub mod sim;
/// One notion of time: Unix seconds, `24h` / RFC 3339 parsing and formatting.
pub mod time;
/// `top`: the terminal dashboard over a running exporter's JSON API.
pub mod tui;
/// Tuning sweeps: plans, limits, measurement, apply / verify / restore.
pub mod tune;
/// The web surface: router, HTTP server, dashboard pages, the `/api/v1` contract,
/// HTML / SVG rendering, the offline report.
pub mod web;
