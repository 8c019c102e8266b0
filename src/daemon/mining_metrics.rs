//! The metric families of "is it really mining?": the verdicts and what they are computed
//! from, the firmware's own rolling averages, the overheat aftermath (last good and
//! protection-set configurations), rejects by reason and protective actions.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::daemon::families::{device_gauges, Fmt};
use crate::daemon::fleet::DeviceView;
use crate::daemon::health::{Problem, Verdict};

/// "Is it really mining?": the verdict and what it is computed from, for up devices.
pub(super) fn encode(encoder: &mut DescriptorEncoder, views: &[DeviceView]) -> Fmt {
    let judged: Vec<(&str, &Verdict)> = views
        .iter()
        .filter_map(|v| Some((v.name.as_str(), v.verdict.as_ref()?)))
        .collect();
    encode_verdicts(encoder, &judged)?;
    encode_hashrate_averages(encoder, views)?;
    encode_overheat_aftermath(encoder, views)?;
    encode_rejects_by_reason(encoder, views)?;
    encode_protective_actions(encoder, views)?;
    encode_share_timing(encoder, &judged)
}

/// Whether each judged miner is healthy, and the problems that hold.
fn encode_verdicts(encoder: &mut DescriptorEncoder, judged: &[(&str, &Verdict)]) -> Fmt {
    device_gauges(
        encoder,
        "bitaxe_mining_healthy",
        "1 while the miner is really mining: none of the problems in bitaxe_mining_problem",
        None,
        judged.iter().map(|(d, v)| (*d, i64::from(v.healthy()))),
    )?;
    {
        let mut family = encoder.encode_descriptor(
            "bitaxe_mining_problem",
            "1 while this reason says the miner is not really mining, present only while it holds: shares_stalled, hashrate_frozen, share_rate_low, implausible_reading, overheat, power_fault, paused, no_work_from_pool, chip_dead, chip_weak, hardware_fault",
            None,
            MetricType::Gauge,
        )?;
        // Only the reasons that hold: eleven zeros per device would be most of /metrics for
        // a large fleet, and `== 1` alerts and panels read the same either way.
        for (device, verdict) in judged {
            for problem in Problem::ALL.iter().filter(|p| verdict.problems.contains(p)) {
                let labels = [("device", *device), ("reason", problem.as_label())];
                ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
            }
        }
    }
    Ok(())
}

/// The firmware's own rolling hashrate averages.
fn encode_hashrate_averages(encoder: &mut DescriptorEncoder, views: &[DeviceView]) -> Fmt {
    {
        let hashes_per_second = Unit::Other("hashes_per_second".into());
        let mut family = encoder.encode_descriptor(
            "bitaxe_hashrate_average",
            "The firmware's rolling averages of its hashrate (v2.12+), by window: 1m, 10m, 1h",
            Some(&hashes_per_second),
            MetricType::Gauge,
        )?;
        for view in views {
            let Some(sample) = view.sample.as_deref() else {
                continue;
            };
            for (window, value) in [
                ("1m", sample.hashrate_1m_ghs),
                ("10m", sample.hashrate_10m_ghs),
                ("1h", sample.hashrate_1h_ghs),
            ] {
                if let Some(ghs) = value {
                    let labels = [("device", view.name.as_str()), ("window", window)];
                    ConstGauge::new(ghs * 1e9).encode(family.encode_family(&labels)?)?;
                }
            }
        }
    }
    Ok(())
}

/// After an overheat: the last configuration that ran healthy, and the one the firmware's
/// protection left behind.
fn encode_overheat_aftermath(encoder: &mut DescriptorEncoder, views: &[DeviceView]) -> Fmt {
    {
        let mut family = encoder.encode_descriptor(
            "bitaxe_last_good_config_info",
            "The last clock configuration that ran healthy and below the temperature warning for at least the warm-up (always 1)",
            None,
            MetricType::Gauge,
        )?;
        for view in views {
            if let Some(good) = &view.last_good {
                let labels = [
                    ("device", view.name.as_str()),
                    ("frequency_mhz", good.frequency_mhz.as_str()),
                    ("core_voltage_mv", good.core_voltage_mv.as_str()),
                ];
                ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
            }
        }
    }
    {
        let mut family = encoder.encode_descriptor(
            "bitaxe_protection_changed_config_info",
            "Present (1) while the miner runs the configuration its overheat protection left behind: from and to as MHz/mV",
            None,
            MetricType::Gauge,
        )?;
        for view in views.iter().filter(|v| v.up) {
            if let Some((from, to)) = &view.protection_drop {
                let from = format!("{}/{}", from.frequency_mhz, from.core_voltage_mv);
                let to = format!("{}/{}", to.frequency_mhz, to.core_voltage_mv);
                let labels = [
                    ("device", view.name.as_str()),
                    ("from", from.as_str()),
                    ("to", to.as_str()),
                ];
                ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
            }
        }
    }
    Ok(())
}

fn encode_rejects_by_reason(encoder: &mut DescriptorEncoder, views: &[DeviceView]) -> Fmt {
    {
        let mut family = encoder.encode_descriptor(
            "bitaxe_shares_rejected_by_reason",
            "Rejected shares by the pool's reason (sharesRejectedReasons, v2.6+): stale, duplicate, low_difficulty, other",
            None,
            MetricType::Counter,
        )?;
        for view in views {
            let Some(sample) = view.sample.as_deref() else {
                continue;
            };
            for (reason, count) in &sample.rejected_by_reason {
                let labels = [("device", view.name.as_str()), ("reason", reason)];
                ConstCounter::new(*count).encode(family.encode_family(&labels)?)?;
            }
        }
    }
    Ok(())
}

fn encode_protective_actions(encoder: &mut DescriptorEncoder, views: &[DeviceView]) -> Fmt {
    {
        let mut family = encoder.encode_descriptor(
            "bitaxe_protective_actions",
            "What safety.protective_action did to the miner, by action (step_down, pause, restore_last_good) and result (applied, dry_run, failed)",
            None,
            MetricType::Counter,
        )?;
        for view in views {
            for ((action, result), count) in &view.protective {
                let labels = [("device", view.name.as_str()), ("action", action), ("result", result)];
                ConstCounter::new(*count).encode(family.encode_family(&labels)?)?;
            }
        }
    }
    Ok(())
}

/// How long since the last share, against the interval one is expected in.
fn encode_share_timing(encoder: &mut DescriptorEncoder, judged: &[(&str, &Verdict)]) -> Fmt {
    let seconds = Unit::Seconds;
    device_gauges(
        encoder,
        "bitaxe_last_share_age",
        "Time since the accepted-share counter last rose, as the exporter saw it (since it was first seen, before that)",
        Some(&seconds),
        judged
            .iter()
            .filter_map(|(d, v)| Some((*d, v.last_share_age?.as_secs_f64()))),
    )?;
    device_gauges(
        encoder,
        "bitaxe_expected_share_interval",
        "Mean time between shares at the reported hashrate and the pool's difficulty (difficulty × 2^32 / hashrate); no share for 6.9 of these is a stall",
        Some(&seconds),
        judged
            .iter()
            .filter_map(|(d, v)| Some((*d, v.expected_share_interval?.as_secs_f64()))),
    )
}
