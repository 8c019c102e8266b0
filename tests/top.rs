//! `top`: the screens of a known snapshot rendered with ratatui's test backend (golden
//! text, `UPDATE_GOLDEN=1` rewrites them; colours checked cell by cell), and the real
//! binary in a pseudo-terminal against a running exporter on the simulator: every device
//! shown, `q`, SIGTERM and a resize, the terminal put back each time.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitaxe_exporter::sim::dialects::Dialect;
use bitaxe_exporter::sim::physics::Board;
use bitaxe_exporter::sim::{MinerSpec, SimFleet};
use bitaxe_exporter::tui::app::{App, Screen, SortKey};
use bitaxe_exporter::tui::model::{DeviceDetail, Fleet, History};
use bitaxe_exporter::tui::view::{draw, Theme};
use portable_pty::{CommandBuilder, PtySize};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;
use ratatui::Terminal;

use crate::support::{assert_golden, InProcess, BIN};

/// 2026-11-24T18:00:00Z.
const NOW: f64 = 1_795_543_200.0;

/// A fleet of five: healthy, over the warning, down, a name longer than any column with an
/// escape sequence in it, and one that is up but not mining.
fn snapshot() -> Fleet {
    let hour: Vec<Option<f64>> = (0..60).map(|i| Some(1000.0 + (i % 7) as f64 * 10.0)).collect();
    let json = serde_json::json!({
        "generated_at": NOW, "poll_interval_seconds": 5.0,
        "max_temp_warning_c": 65.0, "max_temp_shutdown_c": 70.0,
        "totals": {"devices": 5, "up": 4, "hashrate_ghs": 6200.0, "power_w": 131.5,
                   "joules_per_terahash": 21.2, "hottest_device": "turbo-oc", "hottest_asic_c": 67.3},
        "devices": [
            {"name": "gamma", "state": "up", "mining_healthy": true, "problems": [], "model": "BM1370",
             "activity": "tuning: sweep #3, step 2",
             "board": "Gamma", "firmware_family": "esp-miner", "reset_reason": "Power on reset",
             "firmware": "v2.15.0", "hashrate_ghs": 1204.5, "percent_of_expected": 98.3, "power_w": 21.4,
             "joules_per_terahash": 17.77, "asic_temp_c": 60.2, "vr_temp_c": 55.0, "frequency_mhz": 600.0,
             "core_voltage_mv": 1200.0, "uptime_s": 93784, "hashrate_1h_ghs": hour, "hashrate_cv_1h_percent": 2.1},
            {"name": "turbo-oc", "state": "up", "mining_healthy": true, "problems": [], "model": "BM1370",
             "firmware": "v2.9.0", "hashrate_ghs": 2870.1, "percent_of_expected": 101.0, "power_w": 50.9,
             "joules_per_terahash": 17.73, "asic_temp_c": 67.3, "vr_temp_c": 71.0, "frequency_mhz": 700.0,
             "core_voltage_mv": 1250.0, "uptime_s": 3600, "hashrate_1h_ghs": hour, "hashrate_cv_1h_percent": 3.4},
            {"name": "max", "state": "down", "last_error": "connect: connection refused", "problems": [],
             "hashrate_1h_ghs": []},
            {"name": "a-device-name-longer-than-any-column\u{1b}[31m-here", "state": "up", "mining_healthy": true,
             "problems": [], "hashrate_ghs": 655.0, "percent_of_expected": 99.0, "power_w": 12.5,
             "joules_per_terahash": 19.08, "asic_temp_c": 59.9, "frequency_mhz": 512.5, "core_voltage_mv": 1166.0,
             "uptime_s": 600, "hashrate_1h_ghs": hour},
            {"name": "flat", "state": "up", "mining_healthy": false, "problems": ["hashrate_frozen"],
             "hashrate_ghs": 1470.0, "percent_of_expected": 100.0, "power_w": 46.7, "joules_per_terahash": 31.77,
             "asic_temp_c": 61.0, "vr_temp_c": 50.0, "frequency_mhz": 485.0, "core_voltage_mv": 1200.0,
             "uptime_s": 7200, "hashrate_1h_ghs": hour, "hashrate_cv_1h_percent": 0.0}
        ]
    });
    serde_json::from_value(json).unwrap()
}

fn app(compact: bool) -> App {
    let mut app = App::new(SortKey::Name, compact);
    app.set_fleet(snapshot(), NOW);
    app
}

fn render(app: &App, width: u16, height: u16, theme: Theme) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| draw(frame, app, theme)).unwrap();
    terminal.backend().buffer().clone()
}

/// The screen as text, trailing spaces cut.
fn text(buffer: &Buffer) -> String {
    let mut out = String::new();
    for y in 0..buffer.area.height {
        let mut line = String::new();
        for x in 0..buffer.area.width {
            line.push_str(buffer[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The cell where `needle` starts on the screen.
fn find(buffer: &Buffer, needle: &str) -> (u16, u16) {
    for (y, line) in text(buffer).lines().enumerate() {
        if let Some(byte) = line.find(needle) {
            return (line[..byte].chars().count() as u16, y as u16);
        }
    }
    panic!("{needle:?} not on the screen:\n{}", text(buffer));
}

const COLOR: Theme = Theme { color: true };

#[test]
fn the_fleet_view_at_80_by_24_compact_and_160_by_48() {
    let compact = render(&app(true), 80, 24, COLOR);
    assert_golden("top-fleet-80x24-compact.txt", &text(&compact));
    let wide = render(&app(false), 160, 48, COLOR);
    assert_golden("top-fleet-160x48.txt", &text(&wide));
    for buffer in [&compact, &wide] {
        let screen = text(buffer);
        assert!(!screen.contains('\u{1b}'), "an escape sequence reached the terminal");
        // Every device is on the screen, the long name cut with an ellipsis.
        for name in ["gamma", "turbo-oc", "max", "flat", "a-device-name"] {
            assert!(screen.contains(name), "{name} missing:\n{screen}");
        }
        // The device over the warning, the down one and the one not mining stand out.
        let (_, row) = find(buffer, "turbo-oc   ");
        let colours: Vec<Color> = (0..buffer.area.width).map(|x| buffer[(x, row)].fg).collect();
        assert!(
            colours.contains(&Color::Yellow),
            "the ASIC over the warning is not yellow"
        );
        let (x, y) = find(buffer, "DOWN");
        assert_eq!(buffer[(x, y)].fg, Color::Red);
        let (x, y) = find(buffer, "up: hashr");
        assert_eq!(buffer[(x, y)].fg, Color::Yellow);
    }
    // At 80 columns the long name is cut with an ellipsis, never the verdict; at 160 both
    // are whole (the state column takes what its verdict needs before the name).
    assert!(text(&compact).contains("a-device-name-lon…"), "{}", text(&compact));
    for buffer in [&compact, &wide] {
        assert!(text(buffer).contains("up: hashrate frozen"), "{}", text(buffer));
    }
    assert!(
        text(&wide).contains(r"a-device-name-longer-than-any-column\u{1b}[31m-here"),
        "{}",
        text(&wide)
    );
    // The wide view has the last hour and its variation, and the VR over the shutdown line.
    assert!(text(&wide).contains('█') && text(&wide).contains("CV%"));
    let (_, row) = find(&wide, "turbo-oc   ");
    assert!((0..160).any(|x| wide[(x, row)].fg == Color::Red));
    // Nothing cut at 80 columns in the compact view.
    assert!(
        text(&compact).contains("hottest turbo-oc 67.3 °C"),
        "{}",
        text(&compact)
    );
    assert!(text(&compact).contains("c compact"), "{}", text(&compact));
}

#[test]
fn no_color_means_no_colour() {
    let buffer = render(&app(false), 160, 48, Theme { color: false });
    for cell in buffer.content() {
        assert!(
            matches!(cell.fg, Color::Reset) && matches!(cell.bg, Color::Reset),
            "a coloured cell under NO_COLOR: {cell:?}"
        );
    }
}

#[test]
fn the_device_view_and_the_help() {
    let mut app = app(false);
    app.screen = Screen::Device("gamma".into());
    let points: Vec<serde_json::Value> = (0..60)
        .map(|i| {
            let t = NOW - 3600.0 + i as f64 * 60.0;
            serde_json::json!({"t": t, "hashrate_ghs": {"min": 1190.0, "mean": 1200.0 + (i % 5) as f64, "max": 1210.0},
                "expected_ghs": {"min": 1225.0, "mean": 1225.0, "max": 1225.0},
                "power_w": {"min": 21.0, "mean": 21.4, "max": 21.8},
                "asic_temp_c": {"min": 59.0, "mean": 60.0 + (i % 3) as f64 * 0.5, "max": 61.5},
                "vr_temp_c": {"min": 54.0, "mean": 55.0, "max": 56.0}})
        })
        .collect();
    let history: History = serde_json::from_value(serde_json::json!({
        "since": NOW - 3600.0, "until": NOW, "points": points,
        "markers": [{"t": NOW - 1800.0, "kind": "config_changed", "detail": "configuration changed: 550 MHz / 1200 mV -> 600 MHz / 1200 mV"}],
        "sessions": [{"id": 7, "started_at": NOW - 1790.0, "ended_at": null, "notes": "600 MHz soak"}]
    }))
    .unwrap();
    let configs = serde_json::from_value(serde_json::json!([
        {"frequency_mhz": 600.0, "core_voltage_mv": 1200.0, "steady_samples": 340, "steady_seconds": 1700.0,
         "mean_hashrate_ghs": 1201.9, "hashrate_ci95_ghs": 1.4, "percent_of_expected": 98.1,
         "joules_per_terahash": 17.8, "asic_temp_p95_c": 61.2, "error_percent": 0.31}
    ]))
    .unwrap();
    app.detail = Some(DeviceDetail {
        name: "gamma".into(),
        seconds: 3600,
        history,
        configs,
        error: None,
    });
    let buffer = render(&app, 160, 48, COLOR);
    let screen = text(&buffer);
    assert_golden("top-device-160x48.txt", &screen);
    assert!(screen.contains("1201.9 ± 1.4 GH/s"), "{screen}");
    assert!(screen.contains("config changed"), "{screen}");
    assert!(screen.contains("session #7 began 600 MHz soak"), "{screen}");
    assert!(screen.contains("17:00") && screen.contains("18:00"), "{screen}");
    assert!(screen.contains("Gamma · BM1370 · v2.15.0 (esp-miner)"), "{screen}");
    assert!(screen.contains("last reset: Power on reset"), "{screen}");
    // A sick board names the chip and the fault in the device view's header.
    let gamma = app.fleet.devices.iter_mut().find(|d| d.name == "gamma").unwrap();
    gamma.problems = vec!["chip_dead".into()];
    gamma.mining_healthy = Some(false);
    gamma.problem_details = [(
        "chip_dead".to_string(),
        "chip 1 of 4 (dead) hashes 0 % of the median chip".to_string(),
    )]
    .into();
    let sick = text(&render(&app, 160, 48, COLOR));
    assert!(
        sick.contains("chip dead: chip 1 of 4 (dead) hashes 0 % of the median chip"),
        "{sick}"
    );
    app.help = true;
    let help = text(&render(&app, 80, 24, COLOR));
    assert!(help.contains("filter by name") && help.contains("quit"), "{help}");
}

/// `top` in a pseudo-terminal of `rows` × `cols`, its screen kept by a terminal emulator.
struct InTerminal {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    master: Box<dyn portable_pty::MasterPty + Send>,
    writer: Box<dyn Write + Send>,
    screen: Arc<Mutex<vt100::Parser>>,
    raw: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Drop for InTerminal {
    /// A failed test leaves no `top` behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

impl InTerminal {
    fn start(args: &[&str], rows: u16, cols: u16) -> InTerminal {
        let pair = portable_pty::native_pty_system()
            .openpty(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut command = CommandBuilder::new(BIN);
        command.args(args);
        command.env("TERM", "xterm-256color");
        command.env_remove("NO_COLOR");
        let child = pair.slave.spawn_command(command).unwrap();
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().unwrap();
        let writer = pair.master.take_writer().unwrap();
        let screen = Arc::new(Mutex::new(vt100::Parser::new(rows, cols, 0)));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let (screen_in, raw_in) = (screen.clone(), raw.clone());
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                screen_in.lock().unwrap().process(&buf[..n]);
                raw_in.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        InTerminal {
            child,
            master: pair.master,
            writer,
            screen,
            raw,
            reader: Some(reader),
        }
    }

    fn contents(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready(&self.contents()) {
            assert!(
                Instant::now() < deadline,
                "{what}: not on the screen after 20 s:\n{}",
                self.contents()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the exit; its status and whether the terminal was put back (the
    /// alternate screen left, the cursor shown).
    fn wait_exit(&mut self) -> (portable_pty::ExitStatus, bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader ends at the end of the output.
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                let raw = String::from_utf8_lossy(&self.raw.lock().unwrap()).to_string();
                // Restored: the alternate screen left after it was last entered, and the
                // cursor shown after it was last hidden.
                let restored = raw.rfind("\u{1b}[?1049l") > raw.rfind("\u{1b}[?1049h")
                    && raw.rfind("\u{1b}[?25h") > raw.rfind("\u{1b}[?25l");
                return (status, restored);
            }
            if Instant::now() >= deadline {
                // What the process is doing, for the failure message.
                let pid = self.child.process_id().unwrap_or(0);
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
                eprintln!(
                    "top (pid {pid}) still running: {} with {threads} thread(s)",
                    status.lines().find(|l| l.starts_with("State")).unwrap_or("")
                );
            }
            assert!(
                Instant::now() < deadline,
                "top did not exit within 10 s; the screen:\n{}\nlast output: {:?}",
                self.contents(),
                String::from_utf8_lossy(&self.raw.lock().unwrap())
                    .chars()
                    .rev()
                    .take(300)
                    .collect::<String>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn top_in_a_terminal_shows_every_device_and_leaves_the_terminal_as_it_found_it() {
    let specs: Vec<MinerSpec> = [Board::Gamma, Board::Supra, Board::Ultra]
        .into_iter()
        .enumerate()
        .map(|(i, board)| MinerSpec::new(board, Dialect::V2_15, 800 + i as u64))
        .collect();
    let sims = SimFleet::start(&specs, None).await.unwrap();
    let names = ["rig-gamma", "rig-supra", "rig-ultra"];
    let devices: Vec<_> = names
        .iter()
        .zip(sims.addresses())
        .map(|(n, a)| (n.to_string(), *a))
        .collect();
    let exporter = InProcess::start(&devices, 1.0).await;
    exporter
        .wait_for(Duration::from_secs(10), "all up", |e| {
            names.iter().all(|n| e.up(n) == Some(1.0))
        })
        .await;
    let url = exporter.url("");
    let url = url.trim_end_matches('/').to_string();

    // `q` quits with 0.
    let mut top = InTerminal::start(&["top", "--url", &url], 30, 120);
    top.wait_for("every device", |screen| names.iter().all(|n| screen.contains(n)));
    // The device view, then back.
    top.writer.write_all(b"\r").unwrap();
    top.wait_for("the device view", |screen| screen.contains("hashrate GH/s"));
    top.writer.write_all(b"\x1b").unwrap();
    top.wait_for("the fleet again", |screen| names.iter().all(|n| screen.contains(n)));
    // A resize redraws at the new size.
    top.master
        .resize(PtySize {
            rows: 24,
            cols: 80,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    top.screen.lock().unwrap().screen_mut().set_size(24, 80);
    // Only a redraw at the new size has both the title on the first row and the key line
    // on the last of the 24 (the emulator keeps one part of the old 30-row screen).
    top.wait_for("the fleet redrawn at 80 × 24", |screen| {
        let lines: Vec<&str> = screen.lines().collect();
        // At 80 columns the table turns compact by itself, names whole.
        names.iter().all(|n| screen.contains(n))
            && lines
                .first()
                .is_some_and(|l| l.starts_with("top ") && l.contains(" up ·"))
            && lines.len() == 24
            && lines[23].starts_with("q quit")
    });
    top.writer.write_all(b"q").unwrap();
    let (status, restored) = top.wait_exit();
    assert!(status.success(), "{status:?}");
    assert!(restored, "the terminal was not put back");

    // SIGTERM: the terminal is put back too.
    let mut top = InTerminal::start(&["top", "--url", &url, "--compact"], 24, 80);
    top.wait_for("every device", |screen| names.iter().all(|n| screen.contains(n)));
    let pid = top.child.process_id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let (status, restored) = top.wait_exit();
    assert!(restored, "SIGTERM left the terminal in raw mode / the alternate screen");
    assert!(status.success(), "SIGTERM: {status:?}");

    // SIGHUP (the SSH session went away): it exits at once, without waiting on a terminal.
    let mut top = InTerminal::start(&["top", "--url", &url], 30, 120);
    top.wait_for("every device", |screen| names.iter().all(|n| screen.contains(n)));
    let pid = top.child.process_id().unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    let (status, _) = top.wait_exit();
    assert_eq!(status.exit_code(), 129, "SIGHUP: {status:?}");
    sims.shutdown().await;
}

#[test]
fn without_an_exporter_top_says_how_to_start_one_and_exits_2() {
    let port = crate::support::free_port();
    let output = std::process::Command::new(BIN)
        .args(["top", "--url", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no exporter answers") && stderr.contains("bitaxe-exporter serve"),
        "{stderr}"
    );
}

#[test]
fn top_url_takes_host_and_port_without_a_scheme_and_refuses_https() {
    let port = crate::support::free_port();
    // HOST:PORT is tried as http://HOST:PORT: refused for the missing exporter, not the URL.
    let output = std::process::Command::new(BIN)
        .args(["top", "--url", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("no exporter answers at http://127.0.0.1:{port}")),
        "{stderr}"
    );
    let output = std::process::Command::new(BIN)
        .args(["top", "--url", &format!("https://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("expected HOST:PORT or http://HOST:PORT"), "{stderr}");
}

#[test]
fn a_miner_an_interrupted_sweep_left_is_named_in_the_header_with_the_command() {
    let mut fleet = snapshot();
    fleet.devices[1].tune_interrupted = Some(bitaxe_exporter::tui::model::TuneInterrupted {
        run: 7,
        original_frequency_mhz: Some(600.0),
        original_core_voltage_mv: Some(1200.0),
    });
    let mut app = App::new(SortKey::Name, false);
    app.set_fleet(fleet, NOW);
    let buffer = render(&app, 160, 48, COLOR);
    let (x, y) = find(
        &buffer,
        "sweep #7 left turbo-oc unrestored: tune restore --device turbo-oc",
    );
    assert_eq!(y, 1, "on the header's second line:\n{}", text(&buffer));
    assert_eq!(buffer[(x, y)].fg, Color::Red, "in the warning colour");
    // Without one, nothing is said.
    assert!(!text(&render(&self::app(false), 160, 48, COLOR)).contains("unrestored"));
}

/// The verdicts and facts of firmware v2.12+ — a dead chip, a hardware fault, a pool that
/// sends no work, a reboot with its reason — reach every place a person looks: `/metrics`,
/// the ledger's events, the device page and `top` (drawn from the running exporter's API,
/// as `top` reads it).
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_chip_a_hardware_fault_a_pool_without_work_and_a_reset_reason_reach_every_view() {
    use bitaxe_exporter::sim::dialects::ResetReason;
    use bitaxe_exporter::sim::Fault;
    let miner = |board, seed, fault| {
        let mut spec = MinerSpec::new(board, Dialect::V2_15, seed);
        // A share every few hundredths of a second: share verdicts in seconds.
        spec.pool_difficulty = Some(10.0);
        spec.fault = fault;
        spec
    };
    let sims = SimFleet::start(
        &[
            miner(Board::Hex, 41, Fault::DeadChip),
            miner(Board::Gamma, 42, Fault::HardwareFault),
            // Ten times simulated time: the pool's job every 2 s, so its usual cadence is
            // seen in seconds before it stops sending work.
            MinerSpec {
                time_scale: 10.0,
                ..miner(Board::Gamma, 43, Fault::None)
            },
            miner(Board::Gamma, 44, Fault::None),
        ],
        None,
    )
    .await
    .unwrap();
    let names = ["hex", "fan", "starved", "rebooter"];
    let devices: Vec<(String, std::net::SocketAddr)> = names
        .iter()
        .map(|n| n.to_string())
        .zip(sims.addresses().iter().copied())
        .collect();
    let exporter = InProcess::start(&devices, 1.0).await;
    let problem = |e: &crate::support::Exposition, device: &str, reason: &str| {
        e.value("bitaxe_mining_problem", &[("device", device), ("reason", reason)]) == Some(1.0)
    };
    exporter
        .wait_for(Duration::from_secs(20), "up", |e| e.up("rebooter") == Some(1.0))
        .await;
    sims.reboot_because(3, Duration::from_secs(2), ResetReason::Brownout);
    // Jobs arrive, shares arrive; then the pool goes quiet.
    exporter
        .wait_for(Duration::from_secs(20), "jobs from the pool", |e| {
            e.value("bitaxe_pool_work_received_total", &[("device", "starved")])
                .is_some_and(|jobs| jobs >= 3.0)
        })
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    sims.set_fault(2, Fault::NoWork);
    let metrics = exporter
        .wait_for(Duration::from_secs(30), "every verdict and the reset reason", |e| {
            problem(e, "hex", "chip_dead")
                && problem(e, "fan", "hardware_fault")
                && problem(e, "starved", "no_work_from_pool")
                && e.value(
                    "bitaxe_last_reset_info",
                    &[("device", "rebooter"), ("reason", "brownout")],
                ) == Some(1.0)
        })
        .await;
    // The dead chip is the one the simulator killed; its chips are each a series.
    let dead: Vec<String> = (0..6)
        .filter(|chip| {
            metrics.value(
                "bitaxe_asic_chip_hashrate_hashes_per_second",
                &[("device", "hex"), ("chip", &chip.to_string())],
            ) == Some(0.0)
        })
        .map(|chip| chip.to_string())
        .collect();
    assert_eq!(dead.len(), 1, "{}", metrics.text);
    assert!(
        !problem(&metrics, "starved", "shares_stalled"),
        "the pool's side, not the miner's"
    );

    // The ledger: each as an event with the words a person needs.
    let ledger_has = |kind: &'static str, needle: String| {
        let path = exporter.database_path();
        move || {
            let db = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
            let mut query = db.prepare("SELECT detail FROM events WHERE kind = ?1").ok()?;
            let details: Vec<String> = query
                .query_map([kind], |row| row.get(0))
                .ok()?
                .filter_map(Result::ok)
                .collect();
            details.into_iter().find(|d| d.contains(&needle))
        }
    };
    let wanted = [
        ledger_has("mining_problem", format!("chip {} of 6 (dead)", dead[0])),
        ledger_has("mining_problem", "hardware_fault".into()),
        ledger_has("mining_problem", "Fan Control Failed (Auto)".into()),
        ledger_has("mining_problem", "no_work_from_pool".into()),
        ledger_has("rebooted", "reset reason: Brownout reset (software or hardware)".into()),
    ];
    let deadline = Instant::now() + Duration::from_secs(15);
    for check in &wanted {
        while check().is_none() {
            assert!(Instant::now() < deadline, "an event never reached the ledger");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // The device pages say it in words.
    let page = |name: &'static str| {
        let exporter = &exporter;
        async move { exporter.get(&format!("/device/{name}")).await.text().await.unwrap() }
    };
    let hex_page = page("hex").await;
    assert!(
        hex_page.contains(&format!("chip {} of 6 (dead)", dead[0])),
        "{hex_page}"
    );
    assert!(hex_page.contains("Hex"), "the board's name");
    assert!(page("fan").await.contains("Fan Control Failed (Auto)"));
    assert!(page("starved").await.contains("no work from pool"));
    assert!(page("rebooter")
        .await
        .contains("last reset: Brownout reset (software or hardware)"));

    // top, from the same API it reads.
    let fleet: Fleet = serde_json::from_slice(&exporter.get("/api/v1/fleet").await.bytes().await.unwrap()).unwrap();
    let mut app = App::new(SortKey::Name, false);
    app.set_fleet(fleet, bitaxe_exporter::time::now_unix());
    let screen = |app: &mut App, name: &str| {
        app.screen = Screen::Device(name.into());
        text(&render(app, 200, 40, COLOR))
    };
    let hex_top = screen(&mut app, "hex");
    assert!(
        hex_top.contains(&format!("chip dead: chip {} of 6 (dead)", dead[0])),
        "{hex_top}"
    );
    assert!(hex_top.contains("Hex · BM1366 · v2.15.0 (esp-miner)"), "{hex_top}");
    assert!(screen(&mut app, "fan").contains("hardware fault: Fan Control Failed (Auto)"));
    let rebooter_top = screen(&mut app, "rebooter");
    assert!(rebooter_top.contains("last reset: Brownout reset"), "{rebooter_top}");
    app.screen = Screen::Fleet;
    let fleet_top = text(&render(&app, 200, 40, COLOR));
    // The fleet table's state column is narrow: the reason starts there, the device view
    // (above) has it whole.
    let starved_row = fleet_top.lines().find(|l| l.starts_with("starved")).unwrap_or("");
    assert!(starved_row.contains("up: no work f"), "{fleet_top}");
    sims.shutdown().await;
}
