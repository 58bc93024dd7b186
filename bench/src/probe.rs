//! Resource readings from `/proc`: the broker's CPU time and resident memory
//! (when its process id is given) and this process's own CPU time, so a
//! report can say what each message cost the broker and show that the load
//! generator was not the bottleneck.

use std::fs;

/// Clock ticks per second of `/proc/<pid>/stat` times.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// CPU seconds (user + system) used so far by process `pid`, or by this
/// process when `pid` is `None`.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces; fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_second())
}

/// Resident set size in bytes of process `pid` (this process when `None`).
pub fn rss_bytes(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU seconds of the broker and of this process, read together.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuMark {
    /// The broker's, when its pid is known and readable.
    pub broker: Option<f64>,
    /// This process's.
    pub bench: f64,
}

impl CpuMark {
    /// Reads both now.
    pub fn now(broker_pid: Option<u32>) -> CpuMark {
        CpuMark {
            broker: broker_pid.and_then(|p| cpu_seconds(Some(p))),
            bench: cpu_seconds(None).unwrap_or(0.0),
        }
    }

    /// CPU seconds used between `self` and `later`: (broker, bench).
    pub fn until(&self, later: &CpuMark) -> (Option<f64>, f64) {
        let broker = match (self.broker, later.broker) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        (broker, later.bench - self.bench)
    }
}

/// Raises this process's open-file limit to its hard limit (a run with many
/// connections needs one descriptor each). Returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for getrlimit/setrlimit to read and write.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_readings_are_plausible() {
        let cpu = cpu_seconds(None).expect("own stat");
        assert!(cpu >= 0.0);
        let rss = rss_bytes(None).expect("own status");
        assert!(rss > 100 * 1024, "rss {rss}");
        assert!(cpu_seconds(Some(u32::MAX)).is_none());
        assert!(raise_fd_limit() > 0);
    }
}
