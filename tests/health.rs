//! "Is it really mining?" against simulated miners with the faults people meet: each fault
//! mode produces its verdict (and only its verdict; a flatline shows its stopped shares
//! first) in `/metrics`, and healthy miners of several firmware eras produce none over the
//! same time.

use std::time::{Duration, Instant};

use bitaxe_exporter::sim::dialects::Dialect;
use bitaxe_exporter::sim::physics::Board;
use bitaxe_exporter::sim::{Fault, MinerSpec, SimFleet};

use crate::support::{Exposition, InProcess};

const REASONS: [&str; 11] = [
    "shares_stalled",
    "hashrate_frozen",
    "share_rate_low",
    "implausible_reading",
    "overheat",
    "power_fault",
    "paused",
    "no_work_from_pool",
    "chip_dead",
    "chip_weak",
    "hardware_fault",
];

fn problems(exposition: &Exposition, device: &str) -> Vec<String> {
    REASONS
        .iter()
        .filter(|r| exposition.value("bitaxe_mining_problem", &[("device", device), ("reason", r)]) == Some(1.0))
        .map(|r| r.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_fault_mode_gets_its_verdict_and_healthy_miners_none() {
    // A difficulty of 10: a Gamma finds ~23 shares a second, so share verdicts need
    // seconds, not hours. Shares arrive at random, as on a pool: the healthy miners' luck
    // must not read as a problem, nor the phantom's as health.
    let miner = |board, dialect, seed, fault| {
        let mut spec = MinerSpec::new(board, dialect, seed);
        spec.pool_difficulty = Some(10.0);
        spec.random_shares = true;
        spec.fault = fault;
        spec
    };
    let cases: [(&str, Board, Dialect, Fault, Option<&str>); 9] = [
        ("healthy-gamma", Board::Gamma, Dialect::V2_15, Fault::None, None),
        ("healthy-supra", Board::Supra, Dialect::V2_10, Fault::None, None),
        ("healthy-ultra", Board::Ultra, Dialect::V2_4, Fault::None, None),
        (
            "flatline",
            Board::Gamma,
            Dialect::V2_15,
            Fault::Flatline,
            Some("hashrate_frozen"),
        ),
        (
            "starvation",
            Board::Gamma,
            Dialect::V2_15,
            Fault::Starvation,
            Some("shares_stalled"),
        ),
        (
            "phantom",
            Board::Gamma,
            Dialect::V2_15,
            Fault::Phantom,
            Some("share_rate_low"),
        ),
        (
            "spike",
            Board::Supra,
            Dialect::V2_10,
            Fault::Spike,
            Some("implausible_reading"),
        ),
        (
            "power-fault",
            Board::Gamma,
            Dialect::V2_15,
            Fault::PowerFault,
            Some("power_fault"),
        ),
        ("paused", Board::Gamma, Dialect::V2_15, Fault::Paused, Some("paused")),
    ];
    let specs: Vec<MinerSpec> = cases
        .iter()
        .enumerate()
        .map(|(i, (_, board, dialect, fault, _))| miner(*board, *dialect, 200 + i as u64, *fault))
        .collect();
    let sims = SimFleet::start(&specs, None).await.unwrap();
    let devices: Vec<(String, std::net::SocketAddr)> = cases
        .iter()
        .map(|c| c.0.to_string())
        .zip(sims.addresses().iter().copied())
        .collect();
    let exporter = InProcess::start(&devices, 1.0).await;

    // Every fault shows its reason within 20 s (the frozen hashrate needs 10 polls).
    let started = Instant::now();
    let mut seen_at = std::collections::BTreeMap::new();
    let mut false_alarms = Vec::new();
    while started.elapsed() < Duration::from_secs(30) {
        let exposition = exporter.metrics().await;
        for (name, _, _, _, expected) in &cases {
            let found = problems(&exposition, name);
            match expected {
                None => {
                    if !found.is_empty() || exposition.value("bitaxe_mining_healthy", &[("device", name)]) == Some(0.0)
                    {
                        false_alarms.push(format!("{name}: {found:?} at {:?}", started.elapsed()));
                    }
                }
                Some(reason) => {
                    if found == vec![reason.to_string()] {
                        seen_at.entry(*name).or_insert(started.elapsed());
                        assert_eq!(
                            exposition.value("bitaxe_mining_healthy", &[("device", name)]),
                            Some(0.0)
                        );
                    } else {
                        // A flatline stops the shares at once; its frozen hashrate names the
                        // cause after ten readings.
                        let on_the_way = *name == "flatline" && found == vec!["shares_stalled".to_string()];
                        assert!(
                            found.is_empty() || on_the_way,
                            "{name} shows {found:?}, not only {reason}:\n{}",
                            exposition.text
                        );
                    }
                }
            }
        }
        if seen_at.len() == 6 && started.elapsed() > Duration::from_secs(20) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(false_alarms.is_empty(), "healthy miners flagged: {false_alarms:#?}");
    for (name, _, _, _, expected) in &cases {
        if expected.is_some() {
            let at = seen_at
                .get(name)
                .unwrap_or_else(|| panic!("{name}: no verdict within 30 s"));
            assert!(*at < Duration::from_secs(20), "{name}: verdict after {at:?}");
        }
    }
    eprintln!("verdicts after: {seen_at:?}");

    // What the verdicts are computed from is exported too.
    let exposition = exporter.metrics().await;
    let interval = exposition
        .value("bitaxe_expected_share_interval_seconds", &[("device", "healthy-gamma")])
        .unwrap();
    assert!(interval > 0.01 && interval < 0.1, "{interval}");
    let stalled_for = exposition
        .value("bitaxe_last_share_age_seconds", &[("device", "starvation")])
        .unwrap();
    assert!(stalled_for > 5.0, "{stalled_for}");
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_overheat_that_replaces_the_configuration_is_named_with_both_and_the_last_good_one_is_kept() {
    // v2.15 restarts 100 MHz / 100 mV lower once cool; v2.10 latches at 50 MHz / 1000 mV.
    let mut gamma = MinerSpec::new(Board::Gamma, Dialect::V2_15, 300);
    gamma.frequency_mhz = Some(600.0);
    gamma.core_voltage_mv = Some(1200);
    gamma.time_scale = 60.0;
    let mut supra = MinerSpec::new(Board::Supra, Dialect::V2_10, 301);
    supra.time_scale = 60.0;
    let sims = SimFleet::start(&[gamma, supra], None).await.unwrap();
    let devices = vec![
        ("gamma".to_string(), sims.addresses()[0]),
        ("supra".to_string(), sims.addresses()[1]),
    ];
    let exporter = InProcess::start_with(&devices, 1.0, "analysis:\n  warmup_minutes: 0.03\n").await;
    let good = |e: &Exposition, device: &str, f: &str, v: &str| {
        e.value(
            "bitaxe_last_good_config_info",
            &[("device", device), ("frequency_mhz", f), ("core_voltage_mv", v)],
        ) == Some(1.0)
    };
    exporter
        .wait_for(Duration::from_secs(15), "both configurations known good", |e| {
            good(e, "gamma", "600", "1200") && good(e, "supra", "490", "1166")
        })
        .await;

    // The last good configurations survive a restart of the exporter (from the ledger,
    // once it holds 7 steady samples of them).
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mut exporter = exporter;
    exporter.restart().await;
    let reborn = exporter.metrics().await;
    assert!(good(&reborn, "gamma", "600", "1200"), "{}", reborn.text);
    assert!(good(&reborn, "supra", "490", "1166"), "{}", reborn.text);
    // Both polled again before the room heats, so the change is seen happen.
    exporter
        .wait_for(Duration::from_secs(10), "both polled after the restart", |e| {
            e.value("bitaxe_last_poll_success", &[("device", "gamma")]) == Some(1.0)
                && e.value("bitaxe_last_poll_success", &[("device", "supra")]) == Some(1.0)
        })
        .await;

    // A hot room trips the protection; the room cools again.
    sims.set_ambient(0, 80.0);
    sims.set_ambient(1, 80.0);
    exporter
        .wait_for(Duration::from_secs(20), "the overheat verdicts", |e| {
            problems(e, "gamma").contains(&"overheat".to_string())
                && problems(e, "supra").contains(&"overheat".to_string())
        })
        .await;
    sims.set_ambient(0, 20.0);
    let changed = exporter
        .wait_for(Duration::from_secs(30), "the protection's configurations named", |e| {
            e.value(
                "bitaxe_protection_changed_config_info",
                &[("device", "gamma"), ("from", "600/1200"), ("to", "500/1100")],
            ) == Some(1.0)
                && e.value(
                    "bitaxe_protection_changed_config_info",
                    &[("device", "supra"), ("from", "490/1166"), ("to", "50/1000")],
                ) == Some(1.0)
        })
        .await;
    // The last good configuration is still the one the user set, not the fallback.
    assert!(good(&changed, "gamma", "600", "1200"), "{}", changed.text);
    assert!(good(&changed, "supra", "490", "1166"), "{}", changed.text);

    // The ledger has both configurations in one event per miner.
    let database = exporter.database_path();
    let mut stopper = exporter;
    stopper.stop().await;
    let conn = crate::support::sql(&database);
    let mut stmt = conn
        .prepare("SELECT d.name, e.detail FROM events e JOIN devices d ON d.id = e.device_id WHERE e.kind = 'overheat_protection' ORDER BY d.name")
        .unwrap();
    let events: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        events[0].1.contains("600 MHz / 1200 mV -> 500 MHz / 1100 mV"),
        "{events:?}"
    );
    assert!(
        events[1].1.contains("490 MHz / 1166 mV -> 50 MHz / 1000 mV"),
        "{events:?}"
    );
    // `analyze compare-configs` names them below its table.
    let compared = stopper.cli(&["analyze", "compare-configs"]);
    let table = String::from_utf8_lossy(&compared.stdout).to_string();
    assert!(table.contains("overheat protection set"), "{table}");
    assert!(table.contains("600 MHz / 1200 mV -> 500 MHz / 1100 mV"), "{table}");
    sims.shutdown().await;
}

/// A Gamma at 600 MHz / 1200 mV on `dialect` in a room at `ambient` °C (40 °C puts it at
/// 71 °C: above the 70 °C shutdown threshold, below the firmware's own 75 °C trip), its
/// time sped up 60 times so it heats and cools in seconds.
fn warm_gamma(dialect: Dialect, seed: u64, ambient: f64) -> MinerSpec {
    let mut spec = MinerSpec::new(Board::Gamma, dialect, seed);
    spec.frequency_mhz = Some(600.0);
    spec.core_voltage_mv = Some(1200);
    spec.time_scale = 60.0;
    spec.ambient_celsius = ambient;
    spec
}

/// Waits until 600/1200 is `device`'s last good configuration, heats simulated miner
/// `index` until the firmware's protection trips, then lets the room cool.
async fn overheat_after_a_good_run(exporter: &InProcess, sims: &SimFleet, index: usize, device: &str) {
    exporter
        .wait_for(Duration::from_secs(15), "600/1200 known good", |e| {
            e.value(
                "bitaxe_last_good_config_info",
                &[
                    ("device", device),
                    ("frequency_mhz", "600"),
                    ("core_voltage_mv", "1200"),
                ],
            ) == Some(1.0)
        })
        .await;
    sims.set_ambient(index, 80.0);
    exporter
        .wait_for(Duration::from_secs(20), "the overheat", |e| {
            problems(e, device).contains(&"overheat".to_string())
        })
        .await;
    assert_eq!(sims.writes(index), 0, "nothing is sent while it is hot");
    sims.set_ambient(index, 20.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn protective_actions_are_opt_in_read_back_logged_and_dry_runs_write_nothing() {
    // Four Gammas at 600 MHz / 1200 mV; the first three in a warm room (71 °C).
    let gamma = |seed, ambient| warm_gamma(Dialect::V2_15, seed, ambient);
    let sims = SimFleet::start(
        &[gamma(400, 40.0), gamma(401, 40.0), gamma(402, 40.0), gamma(403, 25.0)],
        None,
    )
    .await
    .unwrap();
    let one = |name: &str, i: usize| vec![(name.to_string(), sims.addresses()[i])];
    let none = InProcess::start(&one("none", 0), 1.0).await;
    let step = InProcess::start_with(&one("step", 1), 1.0, "safety:\n  protective_action: step_down\n").await;
    let dry = InProcess::start_with(
        &one("dry", 2),
        1.0,
        "safety:\n  protective_action: step_down\n  protective_action_dry_run: true\n",
    )
    .await;
    let restore = InProcess::start_with(
        &one("restore", 3),
        1.0,
        "safety:\n  protective_action: restore_last_good\nanalysis:\n  warmup_minutes: 0.03\n",
    )
    .await;
    let actions = |e: &Exposition, device: &str, result: &str| {
        e.find(
            "bitaxe_protective_actions_total",
            &[("device", device), ("result", result)],
        )
        .iter()
        .map(|s| s.value)
        .sum::<f64>()
    };

    // step_down: one option lower in frequency and voltage, read back.
    step.wait_for(Duration::from_secs(20), "a step down", |e| {
        actions(e, "step", "applied") == 1.0
    })
    .await;
    let (f, v, _) = sims.clock_and_temperature(1).unwrap();
    assert_eq!((f, v), (550.0, 1150.0));
    // The dry run only says what it would do.
    dry.wait_for(Duration::from_secs(20), "a dry run", |e| {
        actions(e, "dry", "dry_run") == 1.0
    })
    .await;
    assert_eq!(sims.writes(2), 0, "a dry run sends nothing");
    assert_eq!(sims.clock_and_temperature(2).unwrap().0, 600.0);
    // …and records what it would have done.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let intended = loop {
        let found: Option<String> = crate::support::sql(&dry.database_path())
            .query_row("SELECT detail FROM events WHERE kind = 'protective_action'", [], |r| {
                r.get(0)
            })
            .ok();
        if let Some(detail) = found {
            break detail;
        }
        assert!(std::time::Instant::now() < deadline, "the dry run left no event");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        intended.contains("would 600 MHz / 1200 mV -> 550 MHz / 1150 mV") && intended.contains("nothing sent"),
        "{intended}"
    );
    // `none` (the default) never writes, however hot.
    none.wait_for(Duration::from_secs(5), "the hot miner polled", |e| {
        e.value("bitaxe_asic_temperature_celsius", &[("device", "none")])
            .is_some_and(|t| t >= 70.0)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sims.writes(0), 0, "protective_action: none wrote to the miner");

    // restore_last_good: after the firmware's protection dropped the settings, and only
    // once the miner has cooled.
    overheat_after_a_good_run(&restore, &sims, 3, "restore").await;
    restore
        .wait_for(Duration::from_secs(30), "the restore", |e| {
            actions(e, "restore", "applied") == 1.0
        })
        .await;
    let (f, v, _) = sims.clock_and_temperature(3).unwrap();
    assert_eq!((f, v), (600.0, 1200.0), "back on the last good configuration");

    // Each action is in the ledger.
    let mut step = step;
    let database = step.database_path();
    step.stop().await;
    let detail: String = crate::support::sql(&database)
        .query_row("SELECT detail FROM events WHERE kind = 'protective_action'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(detail.contains("600 MHz / 1200 mV -> 550 MHz / 1150 mV"), "{detail}");
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_where_the_firmware_can_and_a_restore_clears_the_old_firmwares_latch() {
    let hot = warm_gamma;
    // A v2.15 and a v2.10 Gamma in a warm room (above the 70 °C shutdown threshold, below the
    // firmware's 75 °C trip), and a v2.10 Gamma in a cool one.
    let sims = SimFleet::start(
        &[
            hot(Dialect::V2_15, 410, 40.0),
            hot(Dialect::V2_10, 411, 40.0),
            hot(Dialect::V2_10, 412, 25.0),
        ],
        None,
    )
    .await
    .unwrap();
    let one = |name: &str, i: usize| vec![(name.to_string(), sims.addresses()[i])];
    let pause = "safety:\n  protective_action: pause\n";
    let new_firmware = InProcess::start_with(&one("paused", 0), 1.0, pause).await;
    let old_firmware = InProcess::start_with(&one("stepped", 1), 1.0, pause).await;
    let restore = InProcess::start_with(
        &one("latched", 2),
        1.0,
        "safety:\n  protective_action: restore_last_good\nanalysis:\n  warmup_minutes: 0.03\n",
    )
    .await;
    let applied = |e: &Exposition, device: &str| {
        e.find(
            "bitaxe_protective_actions_total",
            &[("device", device), ("action", "pause"), ("result", "applied")],
        )
        .iter()
        .map(|s| s.value)
        .sum::<f64>()
    };
    // v2.14+: POST /api/system/pause, read back as paused; the verdict says so.
    new_firmware
        .wait_for(Duration::from_secs(20), "the pause", |e| {
            applied(e, "paused") == 1.0 && problems(e, "paused").contains(&"paused".to_string())
        })
        .await;
    assert_eq!(
        sims.clock_and_temperature(0).unwrap().0,
        600.0,
        "a pause leaves the settings alone"
    );
    // Older firmware has no pause: one option step down instead.
    old_firmware
        .wait_for(Duration::from_secs(20), "the step down", |e| {
            applied(e, "stepped") == 1.0
        })
        .await;
    let (f, v, _) = sims.clock_and_temperature(1).unwrap();
    assert!(f < 600.0 && v < 1200.0, "{f} MHz / {v} mV");

    // v2.10's protection latches at 50 MHz / 1000 mV with mining halted; the restore must
    // clear the latch, or the miner stays stopped on the right settings.
    overheat_after_a_good_run(&restore, &sims, 2, "latched").await;
    let mining_again = restore
        .wait_for(Duration::from_secs(40), "mining again after the restore", |e| {
            !problems(e, "latched").contains(&"overheat".to_string())
                && e.value("bitaxe_hashrate_hashes_per_second", &[("device", "latched")])
                    .is_some_and(|h| h > 1e11)
        })
        .await;
    let (f, v, _) = sims.clock_and_temperature(2).unwrap();
    assert_eq!((f, v), (600.0, 1200.0), "back on the last good configuration");
    assert_eq!(
        mining_again
            .find(
                "bitaxe_protective_actions_total",
                &[
                    ("device", "latched"),
                    ("action", "restore_last_good"),
                    ("result", "applied")
                ]
            )
            .len(),
        1
    );
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_protective_step_down_on_firmware_before_2_2_restarts_the_miner_to_apply_it() {
    // A v2.0 Max in a warm room: 72 °C, above the 70 °C shutdown threshold and below the
    // firmware's own 75 °C trip. Firmware before v2.2 stores new clock settings and runs
    // them only after a restart.
    let mut max = MinerSpec::new(Board::Max, Dialect::V2_0, 420);
    max.ambient_celsius = 47.0;
    max.time_scale = 60.0;
    let sims = SimFleet::start(&[max], None).await.unwrap();
    let exporter = InProcess::start_with(
        &[("old-max".to_string(), sims.addresses()[0])],
        1.0,
        "safety:\n  protective_action: step_down\n",
    )
    .await;
    exporter
        .wait_for(Duration::from_secs(40), "the step down", |e| {
            e.find(
                "bitaxe_protective_actions_total",
                &[("device", "old-max"), ("action", "step_down"), ("result", "applied")],
            )
            .iter()
            .any(|s| s.value == 1.0)
        })
        .await;
    assert_eq!(sims.restarts(0), 1, "the settings were stored but never run");
    let (f, v, _) = sims.clock_and_temperature(0).unwrap();
    assert!(f < 425.0 && v < 1400.0, "{f} MHz / {v} mV");
    let mut exporter = exporter;
    let database = exporter.database_path();
    exporter.stop().await;
    let detail: String = crate::support::sql(&database)
        .query_row("SELECT detail FROM events WHERE kind = 'protective_action'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(detail.contains("restarted to apply"), "{detail}");
    sims.shutdown().await;
}
