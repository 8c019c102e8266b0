//! Fleet benchmark: one exporter polling 1,000 simulated miners every 5 s, against a bare
//! client measured in the same run on the same simulated fleet.
//!
//! Run with `cargo bench --bench fleet` (optional environment: BENCH_MINERS, BENCH_SECONDS,
//! BENCH_POLL_INTERVAL). The simulator runs in its own process so only the exporter's CPU is
//! counted. First the bare client (this benchmark re-run as a child: one keep-alive GET and
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

/// Runs the bare client as a child process against `addresses` and measures its CPU per
/// poll over `seconds` after a warm-up of two intervals.
fn measure_bare_client(addresses: &[String], poll_interval: f64, seconds: u64, ticks: f64) -> (f64, f64) {
    use std::io::BufRead as _;
    let mut child = Killed(
        Command::new(std::env::current_exe().unwrap())
            .env("BENCH_BARE_CLIENT", addresses.join(","))
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
    drop(child);
    ((cpu_end - cpu_start) / polls.max(1.0) * 1e6, polls)
}

fn main() {
    if let Ok(addresses) = std::env::var("BENCH_BARE_CLIENT") {
        let interval: f64 = env_or("BENCH_POLL_INTERVAL", 5.0);
        bare_client(
            addresses.split(',').map(str::to_string).collect(),
            Duration::from_secs_f64(interval),
        );
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(exporter_benchmark());
}

async fn exporter_benchmark() {
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

    let ticks = clock_ticks_per_second();
    let addresses: Vec<String> = (0..miners).map(|i| format!("127.0.0.1:{}", base + i)).collect();
    let (bare_us_per_poll, bare_polls) =
        tokio::task::block_in_place(|| measure_bare_client(&addresses, poll_interval, seconds, ticks));
    println!(
        "  bare client CPU per poll:      {bare_us_per_poll:.1} µs ({bare_polls:.0} polls: keep-alive GET + JSON parse, nothing else)"
    );

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
