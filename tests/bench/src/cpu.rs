//! Where a run's CPU time went: the machine's busy time from `/proc/stat`
//! and each process's user + system time from `/proc/<pid>/stat`, grouped
//! by command name, between two snapshots. Processes that started and
//! exited between the snapshots (runc, CNI plugins) are not seen one by
//! one: what the machine was busy beyond the processes seen is reported as
//! "exited in between".

use std::collections::{BTreeMap, HashMap};

/// Clock ticks per second of `/proc` times (`USER_HZ`; 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// A moment's CPU counters.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Busy ticks of all CPUs (everything but idle and iowait).
    busy: u64,
    /// pid → (start time, command, user + system ticks).
    processes: HashMap<u32, (u64, String, u64)>,
}

/// CPU seconds spent between two snapshots.
#[derive(Debug, Default)]
pub struct Usage {
    /// All CPUs' busy seconds.
    pub busy: f64,
    /// Command → seconds, for processes alive at the second snapshot.
    pub by_command: BTreeMap<String, f64>,
    /// Busy seconds not accounted to a process alive at the end.
    pub exited: f64,
}

impl Snapshot {
    /// The counters now.
    pub fn take() -> Self {
        let busy = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| s.lines().next().map(busy_ticks))
            .unwrap_or(0);
        let mut processes = HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                if let Some(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| parse_stat(&s))
                {
                    processes.insert(pid, stat);
                }
            }
        }
        Snapshot { busy, processes }
    }

    /// What was spent from `before` to `self`.
    pub fn since(&self, before: &Snapshot) -> Usage {
        let mut by_command: BTreeMap<String, f64> = BTreeMap::new();
        for (pid, (start, command, ticks)) in &self.processes {
            let earlier = match before.processes.get(pid) {
                // The same process (a reused pid has another start time).
                Some((s, _, t)) if s == start => *t,
                _ => 0,
            };
            let spent = ticks.saturating_sub(earlier) as f64 / TICKS_PER_SECOND;
            if spent > 0.0 {
                *by_command.entry(command.clone()).or_default() += spent;
            }
        }
        let busy = self.busy.saturating_sub(before.busy) as f64 / TICKS_PER_SECOND;
        let seen: f64 = by_command.values().sum();
        Usage {
            busy,
            exited: (busy - seen).max(0.0),
            by_command,
        }
    }
}

/// Busy ticks from the `cpu` line of `/proc/stat`.
fn busy_ticks(line: &str) -> u64 {
    // cpu user nice system idle iowait irq softirq steal ...
    line.split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse::<u64>().ok())
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum()
}

/// (start time, command, utime + stime) from a `/proc/<pid>/stat` line.
fn parse_stat(stat: &str) -> Option<(u64, String, u64)> {
    // The command is in parentheses and may itself hold spaces or parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let command = stat.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    // Fields after the command, from 0: state(0) ... utime(11) stime(12) ... starttime(19).
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    let start: u64 = rest.get(19)?.parse().ok()?;
    Some((start, command, utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_spaces_in_the_command() {
        let line = "4242 (containerd-shim r) S 1 4242 4242 0 -1 4194560 900 0 0 0 37 13 0 0 20 0 12 0 98765 1 2 3";
        assert_eq!(parse_stat(line), Some((98765, "containerd-shim r".to_string(), 50)));
    }

    #[test]
    fn busy_leaves_out_idle_and_iowait() {
        assert_eq!(busy_ticks("cpu  100 5 50 9000 40 3 2 0 0 0"), 160);
    }

    #[test]
    fn new_processes_count_whole_and_the_rest_is_exited() {
        let before = Snapshot {
            busy: 1000,
            processes: [(1, (10, "noded".to_string(), 300))].into(),
        };
        let after = Snapshot {
            busy: 1400,
            processes: [
                (1, (10, "noded".to_string(), 350)),
                (2, (500, "containerd-shim".to_string(), 100)),
            ]
            .into(),
        };
        let usage = after.since(&before);
        assert_eq!(usage.busy, 4.0);
        assert_eq!(usage.by_command["noded"], 0.5);
        assert_eq!(usage.by_command["containerd-shim"], 1.0);
        assert!((usage.exited - 2.5).abs() < 1e-9);
    }
}
