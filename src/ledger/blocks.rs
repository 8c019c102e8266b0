//! The compact form of raw samples on disk: a device's consecutive samples of one segment
//! packed into a block (a row of `sample_blocks`), each reading a scaled integer stored as
//! the difference from the same reading one sample before (zig-zag varints), times as the
//! change of the polling step. Readings change little from poll to poll, so a sample takes
//! about a fifth of a row of REAL columns. Pure: encoding and decoding only.

use crate::axeos::sample::Sample;

/// Where a stored sample came from (a flag of each sample in its block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleSource {
    /// The exporter polled it.
    Poll = 0,
    /// The miner's own statistics ring, filling a hole in the polls.
    MinerHistory = 1,
}

impl SampleSource {
    /// Its name in exports and on pages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::MinerHistory => "miner_history",
        }
    }
}

/// A block is closed after this many samples (or bytes), so a rewrite of the open block on
/// each commit stays small and a block fits a page.
pub(crate) const MAX_BLOCK_SAMPLES: usize = 96;
pub(crate) const MAX_BLOCK_BYTES: usize = 2048;
/// A block spans at most this long (seconds), so a query for a time range finds its blocks
/// by their first time alone.
pub(crate) const MAX_BLOCK_SPAN_SECONDS: f64 = 3600.0;
/// The size an open block is padded to: room for the last sample before it is full.
const OPEN_BLOCK_BYTES: usize = MAX_BLOCK_BYTES + 256;

/// The readings a raw sample keeps, in block order: (name, scale). A reading is stored as
/// `round(value × scale)`; the scales keep what the firmware's sensors resolve (0.01 GH/s,
/// mW, 0.01 °C, mV, mA, 0.01 %, …), not the float noise of its rounding.
pub(crate) const FIELDS: [(&str, f64); 16] = [
    ("hashrate_ghs", 100.0),
    ("expected_ghs", 100.0),
    ("power_w", 1000.0),
    ("asic_temp_c", 100.0),
    ("vr_temp_c", 100.0),
    ("frequency_mhz", 100.0),
    ("core_voltage_mv", 10.0),
    ("core_voltage_measured_mv", 10.0),
    ("input_voltage_v", 1000.0),
    ("input_current_a", 1000.0),
    ("fan_percent", 100.0),
    ("fan_rpm", 1.0),
    ("shares_accepted", 1.0),
    ("shares_rejected", 1.0),
    ("error_percent", 1000.0),
    ("uptime_s", 1.0),
];
/// Index of the best difficulty, stored apart (as the bits of its float: it spans 30 orders
/// of magnitude and changes seldom).
const BEST: usize = FIELDS.len();
const SLOTS: usize = FIELDS.len() + 1;

/// The largest magnitude a scaled reading may have (beyond it the reading is left out:
/// plausibility windows keep real ones far below).
const MAX_SCALED: f64 = 4.0e15;

/// One raw sample as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSample {
    /// Unix seconds (millisecond precision).
    pub t: f64,
    /// Seconds this sample stands for (0 at a segment's start).
    pub dt: f64,
    pub source: SampleSource,
    /// The readings of [`FIELDS`], in order, then the best difficulty.
    pub values: [Option<f64>; SLOTS],
}

impl StoredSample {
    /// What a sample becomes on disk (rounded to the field scales).
    pub(crate) fn of(t: f64, dt: f64, s: &Sample, source: SampleSource) -> Self {
        let count = |v: Option<u64>| v.map(|v| v as f64);
        let values = [
            s.hashrate_ghs,
            s.expected_hashrate_ghs,
            s.power_watts,
            s.asic_temp_celsius,
            s.vr_temp_celsius,
            s.frequency_mhz,
            s.core_voltage_mv,
            s.core_voltage_measured_mv,
            s.input_voltage_volts,
            s.input_current_amperes,
            s.fan_duty_percent,
            s.fan_rpm,
            count(s.shares_accepted),
            count(s.shares_rejected),
            s.error_percent,
            count(s.uptime_seconds),
            s.best_difficulty,
        ];
        let mut stored = Self {
            t: (t * 1000.0).round() / 1000.0,
            dt: (dt * 1000.0).round() / 1000.0,
            source,
            values,
        };
        for (i, value) in stored.values.iter_mut().enumerate().take(FIELDS.len()) {
            *value = value
                .and_then(|v| scaled(v, FIELDS[i].1))
                .map(|n| n as f64 / FIELDS[i].1);
        }
        stored.values[BEST] = stored.values[BEST].filter(|v| v.is_finite());
        stored
    }

    /// The reading named `name` (a [`FIELDS`] name, or `best_difficulty`).
    pub fn value(&self, name: &str) -> Option<f64> {
        if name == "best_difficulty" {
            return self.values[BEST];
        }
        let index = FIELDS.iter().position(|(field, _)| *field == name)?;
        self.values[index]
    }
}

fn scaled(value: f64, scale: f64) -> Option<i64> {
    let n = (value * scale).round();
    (n.is_finite() && n.abs() <= MAX_SCALED).then_some(n as i64)
}

/// The state a block's encoding carries from one sample to the next.
#[derive(Debug, Clone, Default, PartialEq)]
struct Previous {
    t_ms: i64,
    step_ms: i64,
    values: [i64; SLOTS],
    present: u32,
}

/// A block being written: its bytes and what the next sample is encoded against.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BlockBuilder {
    /// Unix seconds of the first sample (the block's key); times are stored from it.
    pub t_first: f64,
    pub t_last: f64,
    pub samples: usize,
    pub data: Vec<u8>,
    /// How many samples came from the miner's own history.
    pub backfilled: usize,
    previous: Previous,
}

impl BlockBuilder {
    pub(crate) fn new(t_first: f64) -> Self {
        Self {
            t_first: (t_first * 1000.0).round() / 1000.0,
            t_last: t_first,
            samples: 0,
            data: Vec::with_capacity(512),
            backfilled: 0,
            previous: Previous::default(),
        }
    }

    /// A block read back (its first `samples` samples; padding after them is dropped),
    /// ready to take more; `None` when its bytes do not decode.
    pub(crate) fn resume(t_first: f64, samples: usize, mut data: Vec<u8>) -> Option<Self> {
        let mut builder = Self::new(t_first);
        let mut reader = Reader { data: &data, at: 0 };
        for _ in 0..samples {
            let sample = decode_one(&mut reader, builder.t_first, &mut builder.previous)?;
            builder.note(&sample);
        }
        data.truncate(reader.at);
        builder.data = data;
        Some(builder)
    }

    /// The bytes to store while the block stays open: padded to a fixed size, so that each
    /// commit rewrites the row in place instead of moving its neighbours (a growing row
    /// rebalances its page and the pages beside it: several page writes a commit).
    pub(crate) fn padded(&self) -> Vec<u8> {
        let mut data = self.data.clone();
        if data.len() < OPEN_BLOCK_BYTES {
            data.resize(OPEN_BLOCK_BYTES, 0);
        }
        data
    }

    /// Whether the block is full.
    pub(crate) fn is_full(&self) -> bool {
        self.samples >= MAX_BLOCK_SAMPLES || self.data.len() >= MAX_BLOCK_BYTES
    }

    /// Whether a sample at `t` may go into this block (it is not full, and the block would
    /// span at most [`MAX_BLOCK_SPAN_SECONDS`]).
    pub(crate) fn takes(&self, t: f64) -> bool {
        !self.is_full() && t >= self.t_first && t - self.t_first <= MAX_BLOCK_SPAN_SECONDS
    }

    fn note(&mut self, sample: &StoredSample) {
        self.samples += 1;
        self.t_last = sample.t;
        if sample.source == SampleSource::MinerHistory {
            self.backfilled += 1;
        }
    }

    /// Appends a sample (times must not go before the block's first).
    pub(crate) fn push(&mut self, sample: &StoredSample) {
        let previous = &mut self.previous;
        let t_ms = ((sample.t - self.t_first) * 1000.0).round() as i64;
        let step_ms = t_ms - previous.t_ms;
        let dt_ms = (sample.dt * 1000.0).round() as i64;
        let mut present = 0u32;
        let mut numbers = [0i64; SLOTS];
        for (i, value) in sample.values.iter().enumerate() {
            let number = if i == BEST {
                value.map(|v| v.to_bits() as i64)
            } else {
                value.and_then(|v| scaled(v, FIELDS[i].1))
            };
            if let Some(n) = number {
                present |= 1 << i;
                numbers[i] = n;
            }
        }
        // Flags: bit 0 from the miner's history, bit 1 the set of readings changed.
        let changed = present != previous.present;
        let flags = u64::from(sample.source == SampleSource::MinerHistory) | (u64::from(changed) << 1);
        write_varint(&mut self.data, flags);
        if changed {
            write_varint(&mut self.data, u64::from(present));
        }
        write_signed(&mut self.data, step_ms - previous.step_ms);
        write_signed(&mut self.data, dt_ms - step_ms);
        for (i, number) in numbers.iter().enumerate() {
            if present & (1 << i) != 0 {
                let delta = if i == BEST {
                    // Bits, not a difference: equal is 0, anything else the new bits + 1.
                    if *number == previous.values[i] {
                        0
                    } else {
                        number.wrapping_add(1)
                    }
                } else {
                    number.wrapping_sub(previous.values[i])
                };
                write_signed(&mut self.data, delta);
                previous.values[i] = *number;
            }
        }
        previous.t_ms = t_ms;
        previous.step_ms = step_ms;
        previous.present = present;
        self.note(sample);
    }
}

/// The `samples` samples of a block, oldest first (an open block's padding after them is
/// not read); `None` when its bytes are damaged.
pub fn decode(t_first: f64, samples: usize, data: &[u8]) -> Option<Vec<StoredSample>> {
    let mut previous = Previous::default();
    let mut reader = Reader { data, at: 0 };
    let mut out = Vec::with_capacity(samples.min(MAX_BLOCK_SAMPLES));
    for _ in 0..samples {
        out.push(decode_one(&mut reader, t_first, &mut previous)?);
    }
    Some(out)
}

fn decode_one(reader: &mut Reader<'_>, t_first: f64, previous: &mut Previous) -> Option<StoredSample> {
    let flags = reader.varint()?;
    let source = if flags & 1 != 0 {
        SampleSource::MinerHistory
    } else {
        SampleSource::Poll
    };
    let present = if flags & 2 != 0 {
        u32::try_from(reader.varint()?).ok()?
    } else {
        previous.present
    };
    let step_ms = previous.step_ms.checked_add(reader.signed()?)?;
    let t_ms = previous.t_ms.checked_add(step_ms)?;
    let dt_ms = step_ms.checked_add(reader.signed()?)?;
    let mut values = [None; SLOTS];
    for (i, value) in values.iter_mut().enumerate() {
        if present & (1 << i) == 0 {
            continue;
        }
        let delta = reader.signed()?;
        let number = if i == BEST {
            if delta == 0 {
                previous.values[i]
            } else {
                delta.wrapping_sub(1)
            }
        } else {
            previous.values[i].wrapping_add(delta)
        };
        previous.values[i] = number;
        *value = Some(if i == BEST {
            f64::from_bits(number as u64)
        } else {
            number as f64 / FIELDS[i].1
        });
    }
    previous.t_ms = t_ms;
    previous.step_ms = step_ms;
    previous.present = present;
    Some(StoredSample {
        t: ((t_first * 1000.0).round() + t_ms as f64) / 1000.0,
        dt: dt_ms as f64 / 1000.0,
        source,
        values,
    })
}

fn write_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn write_signed(out: &mut Vec<u8>, n: i64) {
    write_varint(out, ((n << 1) ^ (n >> 63)) as u64);
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn varint(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.data.get(self.at)?;
            self.at += 1;
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    fn signed(&mut self) -> Option<i64> {
        let n = self.varint()?;
        Some(((n >> 1) as i64) ^ -((n & 1) as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: usize) -> Sample {
        Sample {
            hashrate_ghs: Some(1000.0 + (i % 7) as f64 * 3.21),
            expected_hashrate_ghs: Some(1071.0),
            power_watts: Some(18.452 + (i % 3) as f64 * 0.01),
            asic_temp_celsius: Some(59.875),
            vr_temp_celsius: None,
            frequency_mhz: Some(562.5),
            core_voltage_mv: Some(1150.0),
            core_voltage_measured_mv: Some(1145.0),
            input_voltage_volts: Some(4.955),
            input_current_amperes: Some(11.583),
            fan_duty_percent: Some(72.02),
            fan_rpm: Some(5041.0),
            shares_accepted: Some(898 + i as u64),
            shares_rejected: Some(1),
            error_percent: Some(0.167),
            uptime_seconds: Some(3603 + 30 * i as u64),
            best_difficulty: Some(match i {
                0..=49 => 3_628_158_045.0,
                50..=59 => 0.0,
                _ => 1.2e13,
            }),
            ..Sample::default()
        }
    }

    #[test]
    fn samples_come_back_as_stored_and_cost_a_fraction_of_a_row() {
        let t0 = 1_795_650_763.737;
        let mut block = BlockBuilder::new(t0);
        let mut expected = Vec::new();
        for i in 0..MAX_BLOCK_SAMPLES {
            let t = t0 + i as f64 * 30.0 + (i % 5) as f64 * 0.1;
            let source = if i % 10 == 9 {
                SampleSource::MinerHistory
            } else {
                SampleSource::Poll
            };
            let mut s = sample(i);
            if i == 20 {
                s.vr_temp_celsius = Some(48.5);
            }
            let stored = StoredSample::of(t, if i == 0 { 0.0 } else { 30.0 }, &s, source);
            block.push(&stored);
            expected.push(stored);
        }
        let decoded = decode(t0, block.samples, &block.padded()).expect("decodes, padding ignored");
        assert_eq!(decoded, expected);
        assert_eq!(decoded[20].value("vr_temp_c"), Some(48.5));
        assert_eq!(decoded[0].value("frequency_mhz"), Some(562.5));
        assert_eq!(decoded[60].value("best_difficulty"), Some(1.2e13));
        let per_sample = block.data.len() as f64 / MAX_BLOCK_SAMPLES as f64;
        assert!(per_sample < 24.0, "{per_sample} bytes a sample");
        // A block read back goes on where it stopped.
        let mut resumed = BlockBuilder::resume(t0, block.samples, block.padded()).expect("resumes");
        assert_eq!(resumed, block);
        let next = StoredSample::of(t0 + 10_000.0, 30.0, &sample(1), SampleSource::Poll);
        resumed.push(&next);
        assert_eq!(
            decode(t0, resumed.samples, &resumed.data).expect("decodes").last(),
            Some(&next)
        );
    }

    #[test]
    fn damaged_bytes_are_refused_not_misread() {
        let mut block = BlockBuilder::new(100.0);
        block.push(&StoredSample::of(100.0, 0.0, &sample(0), SampleSource::Poll));
        let cut = &block.data[..block.data.len() - 1];
        assert_eq!(decode(100.0, 1, cut), None);
        assert_eq!(decode(100.0, 1, &[0xff; 12]), None);
        assert_eq!(decode(100.0, 2, &block.data), None, "fewer samples than the row says");
        assert_eq!(decode(100.0, 0, &[]), Some(Vec::new()));
    }

    #[test]
    fn readings_beyond_any_scale_are_left_out() {
        let s = Sample {
            hashrate_ghs: Some(1e300),
            best_difficulty: Some(f64::INFINITY),
            ..sample(0)
        };
        let stored = StoredSample::of(1.0, 0.0, &s, SampleSource::Poll);
        assert_eq!(
            (stored.value("hashrate_ghs"), stored.value("best_difficulty")),
            (None, None)
        );
    }
}
