//! Active health checks, the part without I/O: the check's settings, the
//! request a check sends, how an answer is judged, and the rise/fall
//! counting that turns results into a backend's health state (shared with
//! every worker through [`BackendStats::health`]).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::stats::{BackendStats, HEALTH_FAILING, HEALTH_PASSING};

/// Longest answer head a check reads before judging it.
pub const MAX_PROBE_HEAD: usize = 4096;

/// How static backends are checked (`--health-check` and friends).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// Path requested with `GET` (absolute, starting with `/`).
    pub path: String,
    /// Time between two checks of one backend.
    pub interval: Duration,
    /// Time a check may take, connect to status line.
    pub timeout: Duration,
    /// Consecutive passing checks that bring a failing backend back.
    pub rise: u32,
    /// Consecutive failed checks that take a backend out.
    pub fall: u32,
}

impl HealthCheck {
    /// Checks the settings; the messages name the flags.
    pub fn validate(&self) -> Result<(), String> {
        check_path(&self.path)?;
        if self.interval < Duration::from_millis(10) {
            return Err("--health-check-interval must be at least 10ms".into());
        }
        if self.timeout.is_zero() {
            return Err("--health-check-timeout must be more than 0".into());
        }
        if !(1..=100).contains(&self.rise) {
            return Err("--health-check-rise must be between 1 and 100".into());
        }
        if !(1..=100).contains(&self.fall) {
            return Err("--health-check-fall must be between 1 and 100".into());
        }
        Ok(())
    }
}

/// A check path is written into a request line: it must start with `/`,
/// fit in 1 KiB and hold only visible ASCII (no space, no control byte).
pub fn check_path(path: &str) -> Result<(), String> {
    let ok =
        path.starts_with('/') && path.len() <= 1024 && path.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--health-check {path:?}: must start with / and hold only visible ASCII (at most 1024 bytes)"
        ))
    }
}

/// The request a check sends: one `GET`, closed after the answer.
pub fn probe_request(path: &str, host: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: wslb-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// What one check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// A 2xx or 3xx answer.
    Passed(u16),
    /// Any other status.
    BadStatus(u16),
    /// No usable answer: refused, timed out, closed, not HTTP.
    Failed(String),
}

impl ProbeResult {
    /// Whether the check counts as passed.
    pub fn passed(&self) -> bool {
        matches!(self, ProbeResult::Passed(_))
    }
}

/// Judges the bytes read so far: `None` while the status line is not whole
/// (and the head is under [`MAX_PROBE_HEAD`]).
pub fn judge(head: &[u8]) -> Option<ProbeResult> {
    let Some(end) = head.windows(2).position(|w| w == b"\r\n") else {
        return (head.len() >= MAX_PROBE_HEAD)
            .then(|| ProbeResult::Failed("status line too long".into()));
    };
    let line = &head[..end];
    let mut parts = line.splitn(3, |&b| b == b' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with(b"HTTP/1.") || code.len() != 3 {
        return Some(ProbeResult::Failed("not an HTTP/1.x status line".into()));
    }
    let status = std::str::from_utf8(code)
        .ok()
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (100..=599).contains(c));
    Some(match status {
        Some(s) if (200..400).contains(&s) => ProbeResult::Passed(s),
        Some(s) => ProbeResult::BadStatus(s),
        None => ProbeResult::Failed("not an HTTP/1.x status line".into()),
    })
}

/// A backend's health as the checks see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Not checked (checks off, a registered backend, or no result yet).
    Unchecked,
    /// Passing: in the pool.
    Passing,
    /// Failing: out of the pool until it rises again.
    Failing,
}

impl Health {
    /// The state stored in a backend's counters.
    pub fn of(stats: &BackendStats) -> Health {
        match stats.health.load(Ordering::Relaxed) {
            HEALTH_PASSING => Health::Passing,
            HEALTH_FAILING => Health::Failing,
            _ => Health::Unchecked,
        }
    }
}

/// A change of health a result caused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// The backend failed `fall` checks in a row and is out.
    Fell,
    /// The backend passed `rise` checks in a row and is back.
    Rose,
}

/// Consecutive results of one backend, kept by the checker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeStreak {
    passed: u32,
    failed: u32,
}

impl ProbeStreak {
    /// Counts one result and moves `stats.health` when a streak reaches
    /// `rise` or `fall`. A backend starts passing on its first good check
    /// (it was in the pool already); once failing it needs `rise`.
    pub fn record(
        &mut self,
        passed: bool,
        check: &HealthCheck,
        stats: &BackendStats,
    ) -> Option<Transition> {
        let now = stats.health.load(Ordering::Relaxed);
        if passed {
            self.failed = 0;
            self.passed = self.passed.saturating_add(1);
            let rise = if now == HEALTH_FAILING { check.rise } else { 1 };
            if now != HEALTH_PASSING && self.passed >= rise {
                stats.set_health(HEALTH_PASSING);
                return (now == HEALTH_FAILING).then_some(Transition::Rose);
            }
        } else {
            self.passed = 0;
            self.failed = self.failed.saturating_add(1);
            if now != HEALTH_FAILING && self.failed >= check.fall {
                stats.set_health(HEALTH_FAILING);
                return Some(Transition::Fell);
            }
        }
        None
    }
}

/// Forgets a backend's verdict (checks turned off by a reload).
pub fn forget(stats: &BackendStats) {
    stats.set_health(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(rise: u32, fall: u32) -> HealthCheck {
        HealthCheck {
            path: "/health".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise,
            fall,
        }
    }

    #[test]
    fn judges_status_lines() {
        assert_eq!(
            judge(b"HTTP/1.1 200 OK\r\n"),
            Some(ProbeResult::Passed(200))
        );
        assert_eq!(
            judge(b"HTTP/1.0 301 Moved\r\n"),
            Some(ProbeResult::Passed(301))
        );
        assert_eq!(
            judge(b"HTTP/1.1 503 Busy\r\n"),
            Some(ProbeResult::BadStatus(503))
        );
        assert_eq!(judge(b"HTTP/1.1 204\r\n"), Some(ProbeResult::Passed(204)));
        assert_eq!(judge(b"HTTP/1.1 20"), None);
        assert!(matches!(
            judge(b"SSH-2.0-x\r\n"),
            Some(ProbeResult::Failed(_))
        ));
        assert!(matches!(
            judge(b"HTTP/1.1 2x0 OK\r\n"),
            Some(ProbeResult::Failed(_))
        ));
        assert!(matches!(
            judge(b"HTTP/1.1 999 OK\r\n"),
            Some(ProbeResult::Failed(_))
        ));
        let long = vec![b'a'; MAX_PROBE_HEAD];
        assert!(matches!(judge(&long), Some(ProbeResult::Failed(_))));
    }

    #[test]
    fn paths_are_checked() {
        assert!(check_path("/health?full=1").is_ok());
        assert!(check_path("health").is_err());
        assert!(check_path("/a b").is_err());
        assert!(check_path("/a\r\nX: y").is_err());
        assert!(check_path(&format!("/{}", "a".repeat(1024))).is_err());
    }

    #[test]
    fn falls_after_fall_failures_and_rises_after_rise_passes() {
        let stats = BackendStats::default();
        let c = check(2, 3);
        let mut s = ProbeStreak::default();
        assert_eq!(Health::of(&stats), Health::Unchecked);
        assert_eq!(s.record(true, &c, &stats), None);
        assert_eq!(Health::of(&stats), Health::Passing);
        assert_eq!(s.record(false, &c, &stats), None);
        assert_eq!(s.record(false, &c, &stats), None);
        assert_eq!(s.record(false, &c, &stats), Some(Transition::Fell));
        assert_eq!(Health::of(&stats), Health::Failing);
        assert_eq!(s.record(false, &c, &stats), None);
        assert_eq!(s.record(true, &c, &stats), None);
        assert_eq!(Health::of(&stats), Health::Failing);
        assert_eq!(s.record(false, &c, &stats), None);
        assert_eq!(s.record(true, &c, &stats), None);
        assert_eq!(s.record(true, &c, &stats), Some(Transition::Rose));
        assert_eq!(Health::of(&stats), Health::Passing);
        forget(&stats);
        assert_eq!(Health::of(&stats), Health::Unchecked);
    }

    #[test]
    fn settings_are_bounded() {
        assert!(check(2, 3).validate().is_ok());
        assert!(check(0, 3).validate().is_err());
        assert!(check(2, 0).validate().is_err());
        let mut c = check(1, 1);
        c.interval = Duration::from_millis(1);
        assert!(c.validate().is_err());
        let mut c = check(1, 1);
        c.timeout = Duration::ZERO;
        assert!(c.validate().is_err());
    }
}
