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

/// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces),
/// counted from `state` (field 3); empty where there is no such process or no `/proc`.
fn stat_fields(pid: &str) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().map(String::from).collect())
        })
        .unwrap_or_default()
}

/// When a process started, in clock ticks since boot (field 22): with the pid, it names
/// one process even where pids are reused (PID 1 in every container).
pub fn start_ticks(pid: u32) -> Option<u64> {
    stat_fields(&pid.to_string()).get(22 - 3)?.parse().ok()
}

/// Whether the process that registered as `pid` (started at `start` clock ticks, where
/// known) is still running: a sweep's owner, as the ledger names it.
pub fn still_running(pid: u32, start: Option<u64>) -> bool {
    match start {
        Some(start) => start_ticks(pid) == Some(start),
        None => std::fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.contains("bitaxe-exporter")),
    }
}

impl ProcessStats {
    pub fn now() -> ProcessStats {
        let fields = stat_fields("self");
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
