//! The shape most `/metrics` families take: one gauge or one counter per miner, labelled by
//! `device` alone. Shared by the sample families (`metrics`) and the mining-health ones
//! (`mining_metrics`).

use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

pub(super) type Fmt = Result<(), std::fmt::Error>;

/// Encodes a gauge family labelled by `device` alone.
pub(super) fn device_gauges<'a, V: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: impl IntoIterator<Item = (&'a str, V)>,
) -> Fmt {
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (device, value) in rows {
        family.encode_family(&[("device", device)])?.encode_gauge(&value)?;
    }
    Ok(())
}

/// Encodes a counter family labelled by `device` alone.
pub(super) fn device_counters<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (&'a str, u64)>,
) -> Fmt {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (device, value) in rows {
        ConstCounter::new(value).encode(family.encode_family(&[("device", device)])?)?;
    }
    Ok(())
}
