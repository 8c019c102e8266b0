//! The last hour of each device's hashrate in one-minute buckets, kept in memory for the
//! fleet page's sparklines and `top`: the fleet page never waits for the ledger.

use std::collections::VecDeque;

/// Buckets kept: one hour of minutes.
pub(crate) const MINUTES: usize = 60;

#[derive(Debug, Clone, Copy)]
struct Minute {
    /// Unix minute (seconds / 60).
    minute: i64,
    samples: u32,
    sum: f64,
    sum_of_squares: f64,
}

/// One device's last hour of hashrate.
#[derive(Debug, Clone, Default)]
pub struct Sparkline {
    minutes: VecDeque<Minute>,
}

/// What the API serves of it.
#[derive(Debug, Clone, PartialEq)]
pub struct HourOfHashrate {
    /// Per-minute means, oldest first, ending with the current minute; `None` where no
    /// reading came.
    pub per_minute_ghs: Vec<Option<f64>>,
    /// Coefficient of variation over every reading of the hour, %; `None` with fewer than
    /// two readings or a zero mean.
    pub cv_percent: Option<f64>,
}

impl Sparkline {
    /// Adds a reading taken at `unix_seconds`.
    pub fn record(&mut self, unix_seconds: f64, hashrate_ghs: f64) {
        if !unix_seconds.is_finite() || !hashrate_ghs.is_finite() {
            return;
        }
        let minute = (unix_seconds / 60.0).floor() as i64;
        match self.minutes.back_mut() {
            Some(last) if last.minute == minute => {
                last.samples += 1;
                last.sum += hashrate_ghs;
                last.sum_of_squares += hashrate_ghs * hashrate_ghs;
            }
            // A clock that stepped back: start again rather than keep a jumbled hour.
            Some(last) if last.minute > minute => {
                self.minutes.clear();
                self.push(minute, hashrate_ghs);
            }
            _ => self.push(minute, hashrate_ghs),
        }
        while self
            .minutes
            .front()
            .is_some_and(|m| m.minute <= minute - MINUTES as i64)
        {
            self.minutes.pop_front();
        }
    }

    fn push(&mut self, minute: i64, hashrate_ghs: f64) {
        self.minutes.push_back(Minute {
            minute,
            samples: 1,
            sum: hashrate_ghs,
            sum_of_squares: hashrate_ghs * hashrate_ghs,
        });
    }

    /// The hour ending at `now_unix`.
    pub fn hour(&self, now_unix: f64) -> HourOfHashrate {
        let now = (now_unix / 60.0).floor() as i64;
        let first = now - MINUTES as i64 + 1;
        let mut per_minute_ghs = vec![None; MINUTES];
        let (mut n, mut sum, mut squares) = (0.0, 0.0, 0.0);
        for m in self.minutes.iter().filter(|m| m.minute >= first && m.minute <= now) {
            per_minute_ghs[(m.minute - first) as usize] = Some(m.sum / f64::from(m.samples));
            n += f64::from(m.samples);
            sum += m.sum;
            squares += m.sum_of_squares;
        }
        let cv_percent = if n >= 2.0 && sum > 0.0 {
            let mean = sum / n;
            let variance = ((squares - n * mean * mean) / (n - 1.0)).max(0.0);
            Some(variance.sqrt() / mean * 100.0)
        } else {
            None
        };
        HourOfHashrate {
            per_minute_ghs,
            cv_percent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_of_minutes_with_gaps_and_the_variation_of_every_reading() {
        let mut line = Sparkline::default();
        let t0 = 1_800_000_000.0; // a whole minute
                                  // Two readings a minute for 90 minutes: 1000 and 1100, but none in minute 80.
        for minute in 0..90 {
            if minute == 80 {
                continue;
            }
            line.record(t0 + minute as f64 * 60.0, 1000.0);
            line.record(t0 + minute as f64 * 60.0 + 30.0, 1100.0);
        }
        let hour = line.hour(t0 + 89.0 * 60.0 + 45.0);
        assert_eq!(hour.per_minute_ghs.len(), MINUTES);
        assert_eq!(hour.per_minute_ghs[MINUTES - 1], Some(1050.0));
        assert_eq!(hour.per_minute_ghs[MINUTES - 10], None, "minute 80 had no reading");
        assert_eq!(hour.per_minute_ghs[0], Some(1050.0));
        // 118 readings, half 1000 and half 1100: sample standard deviation ≈ 50.2.
        let cv = hour.cv_percent.unwrap();
        assert!(
            (cv - 50.0 * (118.0f64 / 117.0).sqrt() / 1050.0 * 100.0).abs() < 1e-6,
            "{cv}"
        );
        // An hour later with nothing new: empty.
        let later = line.hour(t0 + 200.0 * 60.0);
        assert!(later.per_minute_ghs.iter().all(Option::is_none) && later.cv_percent.is_none());
    }
}
