//! Fleet benchmark: one exporter polling 1,000 and then 10,000 simulated miners every 5 s,
//! each against a bare client measured in the same run on the same simulated fleet.
//!
//! Run with `cargo bench --bench fleet` (optional environment: BENCH_MINERS, a comma-separated
//! list of fleet sizes, default `1000,10000`; BENCH_SECONDS; BENCH_POLL_INTERVAL). The
//! simulator runs in processes of its own (at most 4,000 miners each: a miner costs it two
//! descriptors) so only the exporter's CPU is counted. First the bare client (this benchmark re-run as a child: one keep-alive GET and
//! a JSON parse per miner and interval, nothing else) polls the fleet; then the exporter
//! does, with its ledger. Prints: CPU time per poll of both and their ratio (the figure to
//! keep: absolute microseconds change from machine to machine), the exporter's peak RSS,
//! and the median time to serve `/metrics` (render plus loopback transfer).
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

/// `count` consecutive free ports outside the blocks already `taken`.
fn free_port_block(count: u16, taken: &[(u16, u16)]) -> u16 {
    'search: for base in (20_000..60_000u16).step_by(1000) {
        if base.checked_add(count).is_none_or(|end| end > 60_000) {
            break;
        }
        if taken.iter().any(|&(b, c)| base < b + c && b < base + count) {
            continue;
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

/// The bare client: the least any poller must do per poll. Prints its cumulative poll
/// count once a second.
fn bare_client(addresses: Vec<String>, interval: Duration) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .pool_idle_timeout(interval * 2)
            .build()
            .unwrap();
        let polls = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        for (i, address) in addresses.into_iter().enumerate() {
            let client = client.clone();
            let polls = polls.clone();
            let url = reqwest::Url::parse(&format!("http://{address}/api/system/info")).unwrap();
            let phase = interval.mul_f64((i as f64 * 0.618_034) % 1.0);
            tokio::spawn(async move {
                let mut next = tokio::time::Instant::now() + phase;
                loop {
                    tokio::time::sleep_until(next).await;
                    next += interval;
                    if let Ok(response) = client.get(url.clone()).send().await {
                        if let Ok(body) = response.bytes().await {
                            // Parsed to the end and checked, nothing kept: the least
                            // any decoder does.
                            if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok() {
                                polls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                    }
                }
            });
        }
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            println!("{}", polls.load(std::sync::atomic::Ordering::Relaxed));
        }
    });
}

/// Runs the bare client as a child process against the miners on these (first port,
/// count) ranges and measures its CPU per poll over `seconds` after a warm-up of two
/// intervals.
/// Returns (CPU µs per poll, polls, peak RSS MiB).
fn measure_bare_client(ranges: &[(u16, u16)], poll_interval: f64, seconds: u64, ticks: f64) -> (f64, f64, f64) {
    use std::io::BufRead as _;
    // Port ranges, not addresses: 10,000 addresses overflow an environment variable.
    let ranges: Vec<String> = ranges.iter().map(|(base, count)| format!("{base}+{count}")).collect();
    let mut child = Killed(
        Command::new(std::env::current_exe().unwrap())
            .env("BENCH_BARE_CLIENT", ranges.join(","))
            .env("BENCH_POLL_INTERVAL", poll_interval.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    let latest = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader_latest = latest.clone();
    let stdout = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(n) = line.trim().parse::<u64>() {
                reader_latest.store(n, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    std::thread::sleep(Duration::from_secs_f64(poll_interval * 2.0 + 2.0));
    let (polls_start, cpu_start) = (
        latest.load(std::sync::atomic::Ordering::Relaxed),
        cpu_seconds(pid, ticks),
    );
    std::thread::sleep(Duration::from_secs(seconds));
    let (polls_end, cpu_end) = (
        latest.load(std::sync::atomic::Ordering::Relaxed),
        cpu_seconds(pid, ticks),
    );
    let polls = (polls_end - polls_start) as f64;
    let peak_rss_mib = status_kib(pid, "VmHWM:") as f64 / 1024.0;
    drop(child);
    ((cpu_end - cpu_start) / polls.max(1.0) * 1e6, polls, peak_rss_mib)
}

fn main() {
    if let Ok(ranges) = std::env::var("BENCH_BARE_CLIENT") {
        let interval: f64 = env_or("BENCH_POLL_INTERVAL", 5.0);
        let addresses = ranges
            .split(',')
            .filter_map(|range| range.split_once('+'))
            .flat_map(|(base, count)| {
                let (base, count): (u16, u16) = (base.parse().unwrap(), count.parse().unwrap());
                (base..base + count).map(|port| format!("127.0.0.1:{port}"))
            })
            .collect();
        bare_client(addresses, Duration::from_secs_f64(interval));
        return;
    }
    // Each simulated miner and each poller connection is a descriptor.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let sizes: Vec<u16> = std::env::var("BENCH_MINERS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let results: Vec<Figures> = sizes
        .iter()
        .map(|&miners| runtime.block_on(exporter_benchmark(miners)))
        .collect();
    println!();
    println!(
        "| miners | exporter CPU/poll | bare client CPU/poll | ratio (target ≤ 1.3×) | exporter peak RSS | bare client peak RSS | median GET /metrics |"
    );
    println!("|---|---|---|---|---|---|---|");
    for f in &results {
        println!(
            "| {} | {:.1} µs | {:.1} µs | {:.2}× | {:.1} MiB | {:.1} MiB | {:.1} ms ({:.1} MiB) |",
            f.miners,
            f.exporter_us,
            f.bare_us,
            f.exporter_us / f.bare_us.max(0.001),
            f.peak_rss_mib,
            f.bare_rss_mib,
            f.median_ms,
            f.body_mib
        );
    }
}

/// What one fleet size measured.
struct Figures {
    miners: u16,
    bare_us: f64,
    bare_rss_mib: f64,
    exporter_us: f64,
    peak_rss_mib: f64,
    median_ms: f64,
    body_mib: f64,
}

/// The most miners one simulator process serves (a listener and a connection each).
const MINERS_PER_SIMULATOR: u16 = 4000;

/// Simulator processes serving `miners` miners on consecutive port blocks, and a config
/// that polls all of them; the processes are killed on drop.
fn start_simulators(miners: u16, poll_interval: f64, dir: &std::path::Path) -> (Vec<Killed>, Vec<(u16, u16)>) {
    let mut processes = Vec::new();
    let mut ranges = Vec::new();
    let mut yaml = String::from("devices:\n");
    let mut remaining = miners;
    while remaining > 0 {
        let count = remaining.min(MINERS_PER_SIMULATOR);
        let base = free_port_block(count, &ranges);
        let shard = ranges.len();
        processes.push(Killed(
            Command::new(BIN)
                .args([
                    "simulate",
                    "--miners",
                    &count.to_string(),
                    "--base-port",
                    &base.to_string(),
                ])
                // Seeds (and so MACs) apart: the simulator numbers a process's miners seed, seed + 1, …
                .args(["--seed", &(shard * 100_000 + 1).to_string()])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        ));
        for i in 0..count {
            yaml.push_str(&format!(
                "  - name: \"sim-{shard}-{i:04}\"\n    ip: \"127.0.0.1:{}\"\n",
                base + i
            ));
        }
        ranges.push((base, count));
        remaining -= count;
    }
    yaml.push_str(&format!(
        "logging:\n  poll_interval: {poll_interval}\n  database_path: \"{}\"\n",
        dir.join("ledger.db").display()
    ));
    std::fs::write(dir.join("config.yaml"), yaml).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    for (base, count) in &ranges {
        while std::net::TcpStream::connect(("127.0.0.1", base + count - 1)).is_err() {
            assert!(Instant::now() < deadline, "the simulator did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    (processes, ranges)
}

async fn exporter_benchmark(miners: u16) -> Figures {
    let seconds: u64 = env_or("BENCH_SECONDS", 60);
    let poll_interval: f64 = env_or("BENCH_POLL_INTERVAL", 5.0);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");

    println!("fleet benchmark: {miners} simulated miners, poll every {poll_interval} s, measured over {seconds} s");
    let (_simulators, ranges) = start_simulators(miners, poll_interval, dir.path());

    let ticks = clock_ticks_per_second();
    let (bare_us_per_poll, bare_polls, bare_rss_mib) =
        tokio::task::block_in_place(|| measure_bare_client(&ranges, poll_interval, seconds, ticks));
    println!(
        "  bare client CPU per poll:      {bare_us_per_poll:.1} µs ({bare_polls:.0} polls: keep-alive GET + JSON parse, nothing else)"
    );
    println!("  bare client peak RSS:          {bare_rss_mib:.1} MiB (its connections and buffers)");

    let listen_port = free_port_block(1, &ranges);
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
    // As Prometheus scrapes: OpenMetrics.
    let scrape = || async {
        client
            .get(&url)
            .header(
                "accept",
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            )
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    };

    // Warm up: every miner polled at least once.
    let warmup_until = Instant::now() + Duration::from_secs_f64(poll_interval * 2.0 + 2.0);
    while Instant::now() < warmup_until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
    // Absolute microseconds depend on the machine; the ratio to the bare client is the
    // figure with a target.
    println!("  exporter CPU per poll:         {cpu_us_per_poll:.1} µs (ledger writes included)");
    let ratio = cpu_us_per_poll / bare_us_per_poll.max(0.001);
    println!(
        "  exporter ÷ bare client:        {ratio:.2}×   (target ≤ 1.3×: {})",
        verdict(ratio <= 1.3)
    );
    if miners <= 1000 {
        println!(
            "  exporter peak RSS:             {peak_rss_mib:.1} MiB  (target ≤ 64 MiB at 1,000 miners: {})",
            verdict(peak_rss_mib <= 64.0)
        );
    } else {
        println!("  exporter peak RSS:             {peak_rss_mib:.1} MiB");
    }
    println!(
        "  median GET /metrics:           {median_ms:.2} ms ({:.1} MiB body; target ≤ 20 ms: {})",
        body_len as f64 / 1_048_576.0,
        verdict(median_ms <= 20.0)
    );
    drop(exporter);
    Figures {
        miners,
        bare_us: bare_us_per_poll,
        bare_rss_mib,
        exporter_us: cpu_us_per_poll,
        peak_rss_mib,
        median_ms,
        body_mib: body_len as f64 / 1_048_576.0,
    }
}
