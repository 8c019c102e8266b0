//! Processes on this machine as `/proc` shows them: when one started and whether it still
//! runs, so that a tuning run's owner is told apart from a later process with its pid.

/// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces),
/// counted from `state` (field 3); empty where there is no such process or no `/proc`.
pub(crate) fn stat_fields(pid: &str) -> Vec<String> {
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
pub(crate) fn start_ticks(pid: u32) -> Option<u64> {
    stat_fields(&pid.to_string()).get(22 - 3)?.parse().ok()
}

/// Whether the process that registered as `pid` (started at `start` clock ticks, where
/// known) is still running: a sweep's owner, as the ledger names it.
pub(crate) fn still_running(pid: u32, start: Option<u64>) -> bool {
    match start {
        Some(start) => start_ticks(pid) == Some(start),
        None => std::fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.contains("bitaxe-exporter")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn this_process_runs_and_a_different_start_time_is_another_process() {
        let pid = std::process::id();
        let start = start_ticks(pid);
        assert!(start.is_some());
        assert!(still_running(pid, start));
        assert!(!still_running(pid, start.map(|s| s + 1)));
    }
}
