//! CPU time and resident memory of the processes under test, read from
//! `/proc/PID/stat` (utime + stime) and `/proc/PID/status` (VmRSS), summed
//! over every pid given with `--watch-pid` (all of a proxy's processes).

/// The processes to watch; empty means nothing is measured.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    pids: Vec<u32>,
    ticks_per_sec: f64,
}

impl Watch {
    /// Watch `pids`.
    pub fn new(pids: Vec<u32>) -> Watch {
        // SAFETY: sysconf only reads a system constant.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Watch {
            pids,
            ticks_per_sec: if hz > 0 { hz as f64 } else { 100.0 },
        }
    }

    /// utime + stime of every watched process, in clock ticks; `None` if
    /// there are none or one cannot be read (it exited: the sum would lie).
    pub fn cpu_ticks(&self) -> Option<u64> {
        if self.pids.is_empty() {
            return None;
        }
        self.pids.iter().try_fold(0u64, |acc, pid| {
            let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some(acc + stat_cpu_ticks(&text)?)
        })
    }

    /// Microseconds of CPU per operation between two `cpu_ticks` samples.
    pub fn us_per_op(&self, before: Option<u64>, after: Option<u64>, ops: u64) -> Option<f64> {
        let (b, a) = (before?, after?);
        if ops == 0 || a < b {
            return None;
        }
        let us = (a - b) as f64 / self.ticks_per_sec * 1e6 / ops as f64;
        Some((us * 100.0).round() / 100.0)
    }

    /// Cores kept busy between two `cpu_ticks` samples `secs` apart (1.0 is
    /// one core all the time).
    pub fn busy(&self, before: Option<u64>, after: Option<u64>, secs: f64) -> Option<f64> {
        let (b, a) = (before?, after?);
        if secs <= 0.0 || a < b {
            return None;
        }
        Some(((a - b) as f64 / self.ticks_per_sec / secs * 100.0).round() / 100.0)
    }

    /// VmRSS of every watched process, in KiB; `None` as for `cpu_ticks`.
    pub fn rss_kib(&self) -> Option<u64> {
        if self.pids.is_empty() {
            return None;
        }
        self.pids.iter().try_fold(0u64, |acc, pid| {
            let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            Some(acc + status_rss_kib(&text)?)
        })
    }
}

/// utime + stime from one `/proc/PID/stat` line. The command name may hold
/// spaces and parentheses, so fields are counted after its last `)`.
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // Fields after the name: state(3) ... utime(14) stime(15), 1-based in proc(5).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The `VmRSS:` figure of a `/proc/PID/status` text, in KiB.
pub fn status_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}
