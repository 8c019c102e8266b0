//! The `/metrics` contract: every metric family, its unit, labels and help, encoded at
//! scrape time from the fleet snapshot by a prometheus-client [`Collector`]. Nothing is
//! kept in a registry between scrapes, so a retuned device shows only its new clock
//! configuration and a down device shows only `bitaxe_up 0` and the poll self-metrics.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::axeos::sample::Sample;
use crate::axeos::PollErrorKind;
use crate::config::Thresholds;
use crate::daemon::families::{device_counters, device_gauges, Fmt};
use crate::daemon::fleet::{DeviceView, Fleet};
use crate::daemon::self_metrics::HttpStats;
use crate::ledger::writer::LedgerStats;

/// Which labels a device gauge carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Labels {
    /// `device` only.
    Device,
    /// `device`, `frequency_mhz`, `core_voltage_mv`: the gauges configurations are compared by.
    DeviceAndClock,
}

/// A gauge read from a device's latest sample.
struct SampleGauge {
    name: &'static str,
    unit: Option<&'static str>,
    help: &'static str,
    labels: Labels,
    value: fn(&Sample) -> Option<f64>,
}

const fn gauge(
    name: &'static str,
    unit: Option<&'static str>,
    labels: Labels,
    help: &'static str,
    value: fn(&Sample) -> Option<f64>,
) -> SampleGauge {
    SampleGauge {
        name,
        unit,
        help,
        labels,
        value,
    }
}

fn flag(v: Option<bool>) -> Option<f64> {
    v.map(|b| if b { 1.0 } else { 0.0 })
}

use Labels::{Device, DeviceAndClock};

/// Device gauges, in exposition order. Values come from the most recent successful poll.
const SAMPLE_GAUGES: &[SampleGauge] = &[
    gauge(
        "bitaxe_hashrate",
        Some("hashes_per_second"),
        DeviceAndClock,
        "Hashrate reported by the miner (from the latest poll)",
        |s| s.hashrate_ghs.map(|g| g * 1e9),
    ),
    gauge(
        "bitaxe_expected_hashrate",
        Some("hashes_per_second"),
        DeviceAndClock,
        "Theoretical hashrate: frequency x small cores x chips",
        |s| s.expected_hashrate_ghs.map(|g| g * 1e9),
    ),
    gauge(
        "bitaxe_power",
        Some("watts"),
        DeviceAndClock,
        "Power as reported by the miner (measured input power on INA260 boards, regulator estimate on TPS546 boards)",
        |s| s.power_watts,
    ),
    gauge(
        "bitaxe_efficiency",
        Some("joules_per_terahash"),
        DeviceAndClock,
        "Energy per unit of work, power / hashrate; absent while the hashrate is 0",
        Sample::efficiency_joules_per_terahash,
    ),
    gauge(
        "bitaxe_efficiency",
        Some("gigahashes_per_watt"),
        DeviceAndClock,
        "Work per unit of energy, hashrate / power; absent while the hashrate is 0",
        Sample::efficiency_gigahashes_per_watt,
    ),
    gauge(
        "bitaxe_asic_temperature",
        Some("celsius"),
        DeviceAndClock,
        "ASIC temperature, the hottest chip where the miner reports several; absent when the sensor has no reading",
        |s| s.asic_temp_celsius,
    ),
    gauge(
        "bitaxe_vr_temperature",
        Some("celsius"),
        DeviceAndClock,
        "Voltage regulator temperature; absent on boards without a regulator sensor",
        |s| s.vr_temp_celsius,
    ),
    gauge(
        "bitaxe_asic_secondary_temperature",
        Some("celsius"),
        Device,
        "Second ASIC temperature sensor, on boards that have one",
        |s| s.asic_temp2_celsius,
    ),
    gauge(
        "bitaxe_frequency_requested",
        Some("hertz"),
        Device,
        "ASIC frequency requested in the miner's settings",
        |s| s.frequency_mhz.map(|m| m * 1e6),
    ),
    gauge(
        "bitaxe_frequency_actual",
        Some("hertz"),
        Device,
        "ASIC frequency the PLL is set to (firmware v2.14+)",
        |s| s.actual_frequency_mhz.map(|m| m * 1e6),
    ),
    gauge(
        "bitaxe_core_voltage_requested",
        Some("volts"),
        Device,
        "ASIC core voltage requested in the miner's settings",
        |s| s.core_voltage_mv.map(|m| m / 1000.0),
    ),
    gauge(
        "bitaxe_core_voltage_measured",
        Some("volts"),
        Device,
        "ASIC core voltage measured by the board",
        |s| s.core_voltage_measured_mv.map(|m| m / 1000.0),
    ),
    gauge(
        "bitaxe_input_voltage",
        Some("volts"),
        Device,
        "Board input voltage",
        |s| s.input_voltage_volts,
    ),
    gauge(
        "bitaxe_input_current",
        Some("amperes"),
        Device,
        "Current reported by the board (input current on INA260 boards, core-rail current on TPS546 boards)",
        |s| s.input_current_amperes,
    ),
    gauge(
        "bitaxe_fan_speed",
        Some("ratio"),
        Device,
        "Fan duty applied, 0 to 1 (firmware v2.1.9+)",
        |s| s.fan_duty_percent.map(|p| p / 100.0),
    ),
    gauge(
        "bitaxe_fan_speed",
        Some("rpm"),
        Device,
        "Fan speed from the tachometer",
        |s| s.fan_rpm,
    ),
    gauge(
        "bitaxe_fan2_speed",
        Some("rpm"),
        Device,
        "Second fan speed, on boards that have one",
        |s| s.fan2_rpm,
    ),
    gauge(
        "bitaxe_uptime",
        Some("seconds"),
        Device,
        "Seconds since the miner booted",
        |s| s.uptime_seconds.map(|u| u as f64),
    ),
    gauge(
        "bitaxe_total_uptime",
        Some("seconds"),
        Device,
        "Lifetime uptime the firmware keeps across reboots (v2.15+)",
        |s| s.total_uptime_seconds.map(|u| u as f64),
    ),
    gauge(
        "bitaxe_block_found",
        None,
        Device,
        "Blocks found since boot (v2.13+; a 0/1 flag in v2.11 and v2.12)",
        |s| s.blocks_found.map(|n| n as f64),
    ),
    gauge(
        "bitaxe_network_difficulty",
        None,
        Device,
        "The network difficulty of the miner's current job (v2.11+)",
        |s| s.network_difficulty,
    ),
    gauge(
        "bitaxe_best_difficulty",
        None,
        Device,
        "All-time best share difficulty",
        |s| s.best_difficulty,
    ),
    gauge(
        "bitaxe_session_best_difficulty",
        None,
        Device,
        "Best share difficulty since boot",
        |s| s.session_best_difficulty,
    ),
    gauge(
        "bitaxe_pool_difficulty",
        None,
        Device,
        "Share difficulty set by the pool",
        |s| s.pool_difficulty,
    ),
    gauge(
        "bitaxe_pool_response_time",
        Some("seconds"),
        Device,
        "Latency between submitting a share and the pool's answer",
        |s| s.pool_response_time_ms.map(|m| m / 1000.0),
    ),
    gauge(
        "bitaxe_asic_error",
        Some("ratio"),
        Device,
        "ASIC hardware error rate, 0 to 1 (firmware v2.11+)",
        |s| s.error_percent.map(|p| p / 100.0),
    ),
    gauge("bitaxe_wifi_rssi", Some("dbm"), Device, "Wi-Fi signal strength", |s| {
        s.wifi_rssi_dbm
    }),
    gauge(
        "bitaxe_free_heap",
        Some("bytes"),
        Device,
        "Free heap as reported (includes PSRAM on firmware v2.6+)",
        |s| s.free_heap_bytes.map(|b| b as f64),
    ),
    gauge(
        "bitaxe_free_heap_internal",
        Some("bytes"),
        Device,
        "Free internal RAM heap, the one that leaks matter for (firmware v2.11+)",
        |s| s.free_heap_internal_bytes.map(|b| b as f64),
    ),
    gauge(
        "bitaxe_overheat_mode",
        None,
        Device,
        "1 when the firmware's overheat protection has tripped",
        |s| flag(s.overheat),
    ),
    gauge(
        "bitaxe_fallback_pool_active",
        None,
        Device,
        "1 while the miner is mining on its fallback pool",
        |s| flag(s.using_fallback_pool),
    ),
    gauge(
        "bitaxe_mining_paused",
        None,
        Device,
        "1 while mining is paused from the API (firmware v2.14+)",
        |s| flag(s.mining_paused),
    ),
    gauge(
        "bitaxe_asic_chips",
        None,
        Device,
        "Number of ASIC chips on the board",
        |s| s.asic_count.map(f64::from),
    ),
];

/// Encodes the fleet on every scrape.
#[derive(Debug)]
pub(crate) struct FleetCollector {
    fleet: Arc<Fleet>,
    ledger: Option<Arc<LedgerStats>>,
    http: Option<Arc<HttpStats>>,
}

impl FleetCollector {
    pub fn new(fleet: Arc<Fleet>, ledger: Option<Arc<LedgerStats>>, http: Option<Arc<HttpStats>>) -> Self {
        Self { fleet, ledger, http }
    }
}

/// The registry `/metrics` encodes: the fleet collector only.
pub fn registry(fleet: Arc<Fleet>, ledger: Option<Arc<LedgerStats>>, http: Option<Arc<HttpStats>>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(FleetCollector::new(fleet, ledger, http)));
    registry
}

/// A device that is up, with its sample and clock-configuration label values.
struct UpDevice<'a> {
    name: &'a str,
    sample: &'a Sample,
    frequency_mhz: String,
    core_voltage_mv: String,
}

impl UpDevice<'_> {
    fn clock_labels(&self) -> [(&str, &str); 3] {
        [
            ("device", self.name),
            ("frequency_mhz", self.frequency_mhz.as_str()),
            ("core_voltage_mv", self.core_voltage_mv.as_str()),
        ]
    }
}

impl Collector for FleetCollector {
    /// Every family, in the order `/metrics` has always shown them (the golden files).
    fn encode(&self, mut encoder: DescriptorEncoder) -> Fmt {
        let views = self.fleet.views();
        let up = up_devices(&views);
        encode_availability(&mut encoder, &views)?;
        encode_sample_gauges(&mut encoder, &up)?;
        encode_identity(&mut encoder, &up)?;
        encode_shares(&mut encoder, &up)?;
        encode_thresholds(&mut encoder, &up, self.fleet.thresholds())?;
        encode_miner_details(&mut encoder, &up)?;
        super::mining_metrics::encode(&mut encoder, &views)?;
        encode_poll_metrics(&mut encoder, &views)?;
        self.encode_exporter_metrics(&mut encoder)
    }
}

/// The devices that are up, with their clock-configuration labels.
fn up_devices(views: &[DeviceView]) -> Vec<UpDevice<'_>> {
    views
        .iter()
        .filter_map(|v| {
            let sample = v.sample.as_deref()?;
            let clock = sample.clock_config();
            Some(UpDevice {
                name: v.name.as_str(),
                sample,
                frequency_mhz: clock.frequency_mhz,
                core_voltage_mv: clock.core_voltage_mv,
            })
        })
        .collect()
}

/// Whether each device is up and whether its last poll succeeded.
fn encode_availability(encoder: &mut DescriptorEncoder, views: &[DeviceView]) -> Fmt {
    device_gauges(
        encoder,
        "bitaxe_up",
        "1 while the device's latest successful poll is younger than logging.stale_after_polls poll intervals (default 3), else 0",
        None,
        views.iter().map(|v| (v.name.as_str(), i64::from(v.up))),
    )?;
    device_gauges(
        encoder,
        "bitaxe_last_poll_success",
        "1 when the device's latest poll succeeded, 0 when it failed (the last good reading stays exposed until it is stale)",
        None,
        views.iter().map(|v| (v.name.as_str(), i64::from(v.last_poll_ok))),
    )?;
    Ok(())
}

/// The sample's readings ([`SAMPLE_GAUGES`]), labelled by device or by device and clock.
fn encode_sample_gauges(encoder: &mut DescriptorEncoder, up: &[UpDevice]) -> Fmt {
    for def in SAMPLE_GAUGES {
        let unit = def.unit.map(|u| Unit::Other(u.to_string()));
        if def.labels == Device {
            let rows = up.iter().filter_map(|d| Some((d.name, (def.value)(d.sample)?)));
            device_gauges(encoder, def.name, def.help, unit.as_ref(), rows)?;
            continue;
        }
        let mut family = encoder.encode_descriptor(def.name, def.help, unit.as_ref(), MetricType::Gauge)?;
        for device in up {
            if let Some(value) = (def.value)(device.sample) {
                family.encode_family(&device.clock_labels())?.encode_gauge(&value)?;
            }
        }
    }
    Ok(())
}

/// What each device runs and what it is: `bitaxe_config_info` and `bitaxe_info`.
fn encode_identity(encoder: &mut DescriptorEncoder, up: &[UpDevice]) -> Fmt {
    {
        // Info-style gauges (always 1), as node_exporter's `*_info`: the OpenMetrics
        // `info` type would not parse as the Prometheus text format.
        let mut family = encoder.encode_descriptor(
            "bitaxe_config_info",
            "The clock configuration a device runs at, for joins (always 1)",
            None,
            MetricType::Gauge,
        )?;
        for device in up {
            ConstGauge::new(1i64).encode(family.encode_family(&device.clock_labels())?)?;
        }
    }

    {
        let mut family = encoder.encode_descriptor(
            "bitaxe_info",
            "What a device is: hostname, ASIC model, board version, board (a human name, empty when not known), firmware and its family (esp-miner, nerdqaxe, lucky, unknown) (always 1)",
            None,
            MetricType::Gauge,
        )?;
        for device in up {
            let id = &device.sample.identity;
            let labels = [
                ("device", device.name),
                ("hostname", id.hostname.as_deref().unwrap_or("")),
                ("asic_model", id.asic_model.as_deref().unwrap_or("")),
                ("board_version", id.board_version.as_deref().unwrap_or("")),
                ("board", id.board.as_deref().unwrap_or("")),
                ("firmware", id.firmware.as_deref().unwrap_or("")),
                ("firmware_family", id.family.as_label()),
            ];
            ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

fn encode_shares(encoder: &mut DescriptorEncoder, up: &[UpDevice]) -> Fmt {
    device_counters(
        encoder,
        "bitaxe_shares_accepted",
        "Shares the pool accepted since the miner booted",
        up.iter().filter_map(|d| Some((d.name, d.sample.shares_accepted?))),
    )?;
    device_counters(
        encoder,
        "bitaxe_shares_rejected",
        "Shares the pool rejected since the miner booted",
        up.iter().filter_map(|d| Some((d.name, d.sample.shares_rejected?))),
    )?;
    Ok(())
}

/// The configured temperature thresholds, per up device (for alerts and panels).
fn encode_thresholds(encoder: &mut DescriptorEncoder, up: &[UpDevice], thresholds: Thresholds) -> Fmt {
    let celsius = Unit::Celsius;
    device_gauges(
        encoder,
        "bitaxe_temperature_warning_threshold",
        "ASIC temperature warning threshold from config.yaml (safety.max_temp_warning)",
        Some(&celsius),
        up.iter().map(|d| (d.name, thresholds.warning_celsius)),
    )?;
    device_gauges(
        encoder,
        "bitaxe_temperature_shutdown_threshold",
        "ASIC temperature shutdown threshold from config.yaml (safety.max_temp_shutdown)",
        Some(&celsius),
        up.iter().map(|d| (d.name, thresholds.shutdown_celsius)),
    )?;
    Ok(())
}

/// What firmware v2.11+ (and the forks) tell beyond the gauges: per chip, why it last
/// booted, lifetime work, the pool's work and the active pool. Each family is absent for a
/// device whose firmware does not send it.
fn encode_miner_details(encoder: &mut DescriptorEncoder, up: &[UpDevice]) -> Fmt {
    encode_chips(encoder, up)?;
    {
        let mut family = encoder.encode_descriptor(
            "bitaxe_last_reset_info",
            "Why the miner last booted (resetReason, v2.12+; lastResetReason on the NerdQAxe family): power_on, software, brownout, watchdog, panic, deep_sleep, external or other (always 1)",
            None,
            MetricType::Gauge,
        )?;
        for device in up {
            if let Some(text) = &device.sample.reset_reason {
                let labels = [
                    ("device", device.name),
                    ("reason", crate::axeos::sample::reset_reason_label(text)),
                ];
                ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
            }
        }
    }
    device_counters(
        encoder,
        "bitaxe_lifetime_hashes",
        "Hashes the miner has done over its life (totalHashes, firmware v2.15+)",
        up.iter().filter_map(|d| {
            let total = d.sample.total_hashes.filter(|h| *h < 1.8e19)?;
            Some((d.name, total as u64))
        }),
    )?;
    device_counters(
        encoder,
        "bitaxe_pool_work_received",
        "Jobs the pool has sent since the miner connected (workReceived, firmware v2.15+): flat while shares stop means the pool stopped sending work",
        up.iter().filter_map(|d| Some((d.name, d.sample.work_received?))),
    )?;
    device_gauges(
        encoder,
        "bitaxe_shares_pending",
        "Shares submitted over Stratum V2 and not yet answered (firmware v2.15+; 0 on SV1)",
        None,
        up.iter()
            .filter_map(|d| Some((d.name, d.sample.shares_pending? as f64))),
    )?;
    encode_pool_info(encoder, up)
}

/// Per chip, where the firmware reports it: hashrate, error count and temperature.
fn encode_chips(encoder: &mut DescriptorEncoder, up: &[UpDevice]) -> Fmt {
    let chip_labels = |device: &str, chip: usize| [("device", device.to_string()), ("chip", chip.to_string())];
    {
        let unit = Unit::Other("hashes_per_second".into());
        let mut family = encoder.encode_descriptor(
            "bitaxe_asic_chip_hashrate",
            "Hashrate of one ASIC chip (hashrateMonitor, firmware v2.11+); chip is its index from 0",
            Some(&unit),
            MetricType::Gauge,
        )?;
        for device in up {
            for (chip, reading) in device.sample.chips.iter().enumerate() {
                if let Some(ghs) = reading.hashrate_ghs {
                    family
                        .encode_family(&chip_labels(device.name, chip))?
                        .encode_gauge(&(ghs * 1e9))?;
                }
            }
        }
    }
    {
        let mut family = encoder.encode_descriptor(
            "bitaxe_asic_chip_errors",
            "Hardware errors one ASIC chip has counted (upstream restarts the count at every new block, and on pause or overheat)",
            None,
            MetricType::Counter,
        )?;
        for device in up {
            for (chip, reading) in device.sample.chips.iter().enumerate() {
                if let Some(errors) = reading.errors {
                    ConstCounter::new(errors).encode(family.encode_family(&chip_labels(device.name, chip))?)?;
                }
            }
        }
    }
    {
        let mut family = encoder.encode_descriptor(
            "bitaxe_asic_chip_temperature",
            "Temperature of one ASIC chip, where the firmware reports each (NerdQAxe family)",
            Some(&Unit::Celsius),
            MetricType::Gauge,
        )?;
        for device in up {
            for (chip, reading) in device.sample.chips.iter().enumerate() {
                if let Some(celsius) = reading.temp_celsius {
                    family
                        .encode_family(&chip_labels(device.name, chip))?
                        .encode_gauge(&celsius)?;
                }
            }
        }
    }
    Ok(())
}

/// The pool each device mines on, and whether it is the fallback.
fn encode_pool_info(encoder: &mut DescriptorEncoder, up: &[UpDevice]) -> Fmt {
    let mut family = encoder.encode_descriptor(
        "bitaxe_pool_info",
        "The pool a device mines on: host:port (never the user or password), protocol (SV1, SV2 or empty when not reported), tls (true, false or empty), role (primary or fallback) (always 1)",
        None,
        MetricType::Gauge,
    )?;
    for device in up {
        let s = device.sample;
        let Some(pool) = s.pool.as_deref() else { continue };
        let labels = [
            ("device", device.name),
            ("pool", pool),
            ("protocol", s.pool_protocol.unwrap_or("")),
            ("tls", s.pool_tls.map_or("", |t| if t { "true" } else { "false" })),
            (
                "role",
                if s.using_fallback_pool == Some(true) {
                    "fallback"
                } else {
                    "primary"
                },
            ),
        ];
        ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The exporter's own view of its polling: present for every device, up or down.
fn encode_poll_metrics(encoder: &mut DescriptorEncoder, views: &[DeviceView]) -> Fmt {
    let seconds = Unit::Seconds;
    device_gauges(
        encoder,
        "bitaxe_poll_duration",
        "How long the device's most recent poll took, success or failure",
        Some(&seconds),
        views
            .iter()
            .filter_map(|v| Some((v.name.as_str(), v.last_duration?.as_secs_f64()))),
    )?;
    device_gauges(
        encoder,
        "bitaxe_config_age",
        "Time since the device's current clock configuration began (retune, reboot or firmware change, or since the exporter started): PromQL can leave out the warm-up",
        Some(&seconds),
        views
            .iter()
            .filter_map(|v| Some((v.name.as_str(), v.config_age?.as_secs_f64()))),
    )?;
    device_gauges(
        encoder,
        "bitaxe_last_success_timestamp",
        "Unix time of the device's most recent successful poll",
        Some(&seconds),
        views
            .iter()
            .filter_map(|v| Some((v.name.as_str(), v.last_success_unix?))),
    )?;
    {
        let mut family = encoder.encode_descriptor(
            "bitaxe_poll_errors",
            "Failed polls by kind: timeout, connect, protocol, http_status, decode, auth",
            None,
            MetricType::Counter,
        )?;
        for view in views {
            for kind in PollErrorKind::ALL {
                let labels = [("device", view.name.as_str()), ("kind", kind.as_label())];
                ConstCounter::new(view.errors_by_kind.get(kind)).encode(family.encode_family(&labels)?)?;
            }
        }
    }
    {
        let mut family = encoder.encode_descriptor(
            "bitaxe_implausible_readings",
            "Readings outside their plausibility window, exported and stored as absent, by field",
            None,
            MetricType::Counter,
        )?;
        for view in views {
            for (field, count) in &view.implausible {
                let labels = [("device", view.name.as_str()), ("field", field)];
                ConstCounter::new(*count).encode(family.encode_family(&labels)?)?;
            }
        }
    }
    device_gauges(
        encoder,
        "bitaxe_tune_interrupted",
        "1 while a tune sweep that stopped without restoring the miner has left it on a step's settings (tune restore, or tune.restore_interrupted, puts it back)",
        None,
        views
            .iter()
            .filter(|v| v.tune_interrupted.is_some())
            .map(|v| (v.name.as_str(), 1i64)),
    )?;
    Ok(())
}

impl FleetCollector {
    /// The exporter itself: polls made, the warm-up, the ledger writer, the HTTP server,
    /// the process and the build.
    fn encode_exporter_metrics(&self, encoder: &mut DescriptorEncoder) -> Fmt {
        {
            let family = encoder.encode_descriptor(
                "bitaxe_exporter_polls",
                "Polls made to all devices since the exporter started",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(self.fleet.polls_total()).encode(family)?;
        }
        {
            let family = encoder.encode_descriptor(
                "bitaxe_exporter_warmup",
                "The analysis warm-up (analysis.warmup_minutes): samples younger than this in their configuration are left out of steady statistics, by the ledger and by the recording rules",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            ConstGauge::new(self.fleet.warmup().as_secs_f64()).encode(family)?;
        }
        if let Some(ledger) = &self.ledger {
            super::self_metrics::encode_ledger_metrics(encoder, ledger)?;
        }
        if let Some(http) = &self.http {
            super::self_metrics::encode_http_metrics(encoder, http)?;
        }
        super::self_metrics::encode_process_metrics(encoder, &crate::daemon::process::ProcessStats::now())?;
        let mut family = encoder.encode_descriptor(
            "bitaxe_exporter_build_info",
            "The exporter's version, the git commit it was built from and the rustc that built it (always 1)",
            None,
            MetricType::Gauge,
        )?;
        let labels = [
            ("version", env!("CARGO_PKG_VERSION")),
            ("commit", env!("BITAXE_GIT_COMMIT")),
            ("rustc_version", env!("BITAXE_RUSTC_VERSION")),
        ];
        ConstGauge::new(1i64).encode(family.encode_family(&labels)?)
    }
}
