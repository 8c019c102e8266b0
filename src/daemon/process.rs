//! The exporter's own process, as every Prometheus exporter reports it (`process_*`):
//! CPU seconds, resident and virtual memory, open and maximum file descriptors, start
//! time. Read from `/proc/self` at scrape time; absent where there is no `/proc`.

/// Clock ticks per second of `/proc/<pid>/stat` times: the kernel's USER_HZ, 100 on every
/// architecture Linux ships for this kind of machine.
const TICKS_PER_SECOND: f64 = 100.0;

/// A snapshot of the process; every field `None` where it cannot be read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<f64>,
    pub virtual_bytes: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    pub fn now() -> ProcessStats {
        let fields = crate::process::stat_fields("self");
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        let cpu_seconds = match (field(14), field(15)) {
            (Some(user), Some(system)) => Some((user + system) / TICKS_PER_SECOND),
            _ => None,
        };
        let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        let start_time_seconds = match (boot_time, field(22)) {
            (Some(boot), Some(ticks)) => Some(boot + ticks / TICKS_PER_SECOND),
            _ => None,
        };
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .map(|k| k * 1024.0)
        };
        let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as f64);
        let max_fds = std::fs::read_to_string("/proc/self/limits").ok().and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<f64>().ok())
        });
        ProcessStats {
            cpu_seconds,
            resident_bytes: kib("VmRSS:"),
            virtual_bytes: kib("VmSize:"),
            open_fds,
            max_fds,
            start_time_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn reads_this_process() {
        let stats = ProcessStats::now();
        assert!(stats.resident_bytes.is_some_and(|b| b > 1e6), "{stats:?}");
        assert!(stats.open_fds.is_some_and(|n| n >= 3.0), "{stats:?}");
        assert!(stats.max_fds.is_some_and(|n| n >= 64.0), "{stats:?}");
        assert!(stats.cpu_seconds.is_some(), "{stats:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = stats.start_time_seconds.unwrap();
        assert!(started <= now + 1.0 && started > now - 3600.0, "{started} vs {now}");
    }
}
