//! What machine the figures come from, and what a process costs it, read
//! from Linux's /proc (elsewhere the readings are simply missing).

use std::fmt;
use std::sync::OnceLock;

/// The machine line every report starts with.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub load: String,
    pub memory_mib: Option<u64>,
}

impl Machine {
    pub fn describe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| std::env::consts::OS.into());
        let load = std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".into());
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| kib_field(&s, "MemTotal:"))
            .map(|kib| kib / 1024);
        Machine {
            cpu,
            cores,
            kernel,
            load,
            memory_mib,
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "machine: {}, {} cores, Linux {}, load average {} at start",
            self.cpu, self.cores, self.kernel, self.load
        )?;
        if let Some(mib) = self.memory_mib {
            write!(f, ", {:.1} GiB memory", mib as f64 / 1024.0)?;
        }
        Ok(())
    }
}

/// A "Name:   1234 kB" line's number.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kib_field(&status, "VmRSS:")
}

/// Open file descriptors of a process (sockets, the database, logs).
pub fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// CPU time a process has used (user + system), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The CPU time of several processes together (instances of one run); a
/// process that cannot be read makes the sum unknown.
pub fn cpu_ticks_sum(pids: &[u32]) -> Option<u64> {
    pids.iter().map(|&pid| cpu_ticks(pid)).sum()
}

/// The same for this process, the load generator.
pub fn own_cpu_ticks() -> Option<u64> {
    stat_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// Clock ticks the whole machine has spent idle (idle + iowait, summed
/// over its cores), from /proc/stat.
pub fn idle_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = cpu
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    Some(fields.get(3)? + fields.get(4).copied().unwrap_or(0))
}

/// The share of the machine's cores left idle between two readings of
/// [`idle_ticks`] over `elapsed`.
pub fn idle_share(
    before: Option<u64>,
    after: Option<u64>,
    elapsed: std::time::Duration,
) -> Option<f64> {
    let (before, after) = (before?, after?);
    let cores = std::thread::available_parallelism().ok()?.get() as f64;
    let possible = elapsed.as_secs_f64() * cores * 1_000_000.0;
    (possible > 0.0).then(|| (ticks_to_us(after.saturating_sub(before)) / possible).min(1.0))
}

/// utime + stime from a /proc/PID/stat line. The command name (field 2)
/// is in parentheses and may hold spaces or parentheses itself, so fields
/// are counted from the last ')': state is field 3, utime 14, stime 15.
fn stat_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (USER_HZ), asked of `getconf` once: without
/// unsafe code there is no sysconf call, and 100 is what Linux uses on
/// every common architecture.
fn ticks_per_second() -> u64 {
    static HZ: OnceLock<u64> = OnceLock::new();
    *HZ.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&hz| hz > 0)
            .unwrap_or(100)
    })
}

pub fn ticks_to_us(ticks: u64) -> f64 {
    ticks as f64 * 1_000_000.0 / ticks_per_second() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "4242 (linkd (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    150 25 0 0 20 0 9 0 123456 1000000 2000 18446744073709551615";
        assert_eq!(stat_ticks(line), Some(175));
        assert_eq!(stat_ticks("garbage"), None);
    }

    #[test]
    fn kib_fields_are_read_by_name() {
        let status = "Name:\tlinkd\nVmPeak:\t  9000 kB\nVmRSS:\t   51234 kB\n";
        assert_eq!(kib_field(status, "VmRSS:"), Some(51234));
        assert_eq!(kib_field(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        assert!(own_cpu_ticks().is_some());
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
        assert!(open_fds(std::process::id()).is_some_and(|n| n >= 3));
    }
}
