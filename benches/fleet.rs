//! Fleet benchmark: one exporter polling 1,000 simulated miners every 5 s.
//!
//! Run with `cargo bench --bench fleet` (optional environment: BENCH_MINERS, BENCH_SECONDS,
//! BENCH_POLL_INTERVAL). The simulator runs in its own process so only the exporter's CPU is
//! counted. Prints: exporter CPU time per poll, peak RSS, and the median time to serve
//! `/metrics` (render plus loopback transfer), each with its target.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bitaxe-exporter");

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port_block(count: u16) -> u16 {
    // Find `count` consecutive free ports.
    'search: for base in (20_000..60_000u16).step_by(1000) {
        if base.checked_add(count).is_none() {
            break;
        }
        for port in base..base + count {
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue 'search;
            }
        }
        return base;
    }
    panic!("no block of {count} free ports");
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU seconds of a process (all threads).
fn cpu_seconds(pid: u32, ticks: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields[11].parse().unwrap();
    let stime: f64 = fields[12].parse().unwrap();
    (utime + stime) / ticks
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn scrape_value(body: &str, prefix: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    let miners: u16 = env_or("BENCH_MINERS", 1000);
    let seconds: u64 = env_or("BENCH_SECONDS", 60);
    let poll_interval: f64 = env_or("BENCH_POLL_INTERVAL", 5.0);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let base = free_port_block(miners);

    println!("fleet benchmark: {miners} simulated miners, poll every {poll_interval} s, measured over {seconds} s");
    let _simulator = Killed(
        Command::new(BIN)
            .args([
                "simulate",
                "--miners",
                &miners.to_string(),
                "--base-port",
                &base.to_string(),
            ])
            .args(["--poll-interval", &poll_interval.to_string(), "--write-config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !config.exists() || std::net::TcpStream::connect(("127.0.0.1", base + miners - 1)).is_err() {
        assert!(Instant::now() < deadline, "the simulator did not start");
        std::thread::sleep(Duration::from_millis(100));
    }

    let listen_port = free_port_block(1);
    let exporter = Killed(
        Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .args(["serve", "--listen", &format!("127.0.0.1:{listen_port}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = exporter.0.id();
    let url = format!("http://127.0.0.1:{listen_port}/metrics");
    let client = reqwest::Client::new();
    let scrape = || async { client.get(&url).send().await.ok()?.text().await.ok() };

    // Warm up: every miner polled at least once.
    let warmup_until = Instant::now() + Duration::from_secs_f64(poll_interval * 2.0 + 2.0);
    while Instant::now() < warmup_until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ticks = clock_ticks_per_second();
    let body = scrape().await.expect("the exporter answers");
    let up = body
        .lines()
        .filter(|l| l.starts_with("bitaxe_up{") && l.ends_with(" 1"))
        .count();
    let polls_start = scrape_value(&body, "bitaxe_exporter_polls_total");
    let cpu_start = cpu_seconds(pid, ticks);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu_end = cpu_seconds(pid, ticks);
    let elapsed = started.elapsed().as_secs_f64();
    let body = scrape().await.expect("the exporter answers");
    let polls_end = scrape_value(&body, "bitaxe_exporter_polls_total");
    let errors: f64 = body
        .lines()
        .filter(|l| l.starts_with("bitaxe_poll_errors_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();

    // Scrape timing (outside the CPU window, so it does not count as poll CPU).
    let mut render_ms = Vec::new();
    let mut body_len = 0;
    for _ in 0..31 {
        let t = Instant::now();
        body_len = scrape().await.map(|b| b.len()).unwrap_or(0);
        render_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    render_ms.sort_by(f64::total_cmp);
    let median_ms = render_ms[render_ms.len() / 2];

    let polls = polls_end - polls_start;
    let cpu_us_per_poll = (cpu_end - cpu_start) / polls.max(1.0) * 1e6;
    let peak_rss_mib = status_kib(pid, "VmHWM:") as f64 / 1024.0;
    let verdict = |ok: bool| if ok { "target met" } else { "OVER TARGET" };
    println!("  devices up at start:           {up} / {miners}");
    println!(
        "  polls measured:                {polls:.0} in {elapsed:.1} s ({:.0}/s), poll errors in total: {errors:.0}",
        polls / elapsed
    );
    println!(
        "  exporter CPU per poll:         {cpu_us_per_poll:.1} µs   (target ≤ 100 µs: {})",
        verdict(cpu_us_per_poll <= 100.0)
    );
    println!(
        "  exporter peak RSS:             {peak_rss_mib:.1} MiB  (target ≤ 64 MiB: {})",
        verdict(peak_rss_mib <= 64.0)
    );
    println!(
        "  median GET /metrics:           {median_ms:.2} ms ({:.1} MiB body; target ≤ 20 ms: {})",
        body_len as f64 / 1_048_576.0,
        verdict(median_ms <= 20.0)
    );
    drop(exporter);
}
