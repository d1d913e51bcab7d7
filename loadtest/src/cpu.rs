//! CPU time per process while the attempts run: the load generator's own, and that of the
//! servers it is told to watch (`--cpu-of gateway=<pid>`), so a run reports what each process
//! spent per request, from the first attempt to the last answer (not the set-up before, such
//! as minting the buyers' tokens).
//!
//! Read from `/proc/<pid>/stat` (Linux): user plus system time in clock ticks of `USER_HZ`,
//! which the kernel fixes at 100 per second for user space on every architecture it runs on.
//! Ten milliseconds of resolution is fine over a run of seconds.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

const TICKS_PER_SEC: u64 = 100;

/// The name this process's own CPU time is reported under.
pub const LOADTEST: &str = "loadtest";

/// A process whose CPU time a run reports per request, given as `name=pid`.
#[derive(Clone, Debug)]
pub struct Watched {
    pub name: String,
    pub pid: u32,
}

impl FromStr for Watched {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (name, pid) = text
            .split_once('=')
            .ok_or_else(|| format!("expected name=pid, not {text:?}"))?;
        let pid = pid
            .parse()
            .map_err(|_| format!("{pid:?} is not a process id"))?;
        Ok(Self {
            name: name.to_owned(),
            pid,
        })
    }
}

/// CPU times taken when the attempts start; [`Meter::stop`] gives what each process spent.
pub struct Meter {
    processes: Vec<(String, String)>,
    before: Vec<Duration>,
}

impl Meter {
    pub fn start(watched: &[Watched]) -> Self {
        let processes: Vec<(String, String)> = std::iter::once((LOADTEST.into(), "self".into()))
            .chain(watched.iter().map(|w| (w.name.clone(), w.pid.to_string())))
            .collect();
        let before = processes.iter().map(|(_, pid)| time_of(pid)).collect();
        Self { processes, before }
    }

    /// CPU time spent since [`Meter::start`], by process name.
    pub fn stop(self) -> BTreeMap<String, Duration> {
        self.processes
            .into_iter()
            .zip(self.before)
            .map(|((name, pid), before)| (name, time_of(&pid).saturating_sub(before)))
            .collect()
    }
}

/// User plus system CPU time of the process so far; zero where `/proc` cannot tell.
fn time_of(pid: &str) -> Duration {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| ticks(&stat))
        .map_or(Duration::ZERO, |ticks| {
            Duration::from_millis(ticks * 1000 / TICKS_PER_SEC)
        })
}

/// utime + stime from a `stat` line: fields 14 and 15, counted after the command name, which
/// is in parentheses and may itself hold spaces.
fn ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_system_ticks_are_read_after_a_name_with_spaces() {
        let stat = "4242 (load (test) x) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(ticks(stat), Some(300));
    }

    #[test]
    fn the_meter_sees_this_process_spin_under_both_names() {
        let me: Watched = format!("me={}", std::process::id())
            .parse()
            .expect("name=pid");
        let meter = Meter::start(&[me]);
        let mut x = 0_u64;
        let spin_until = std::time::Instant::now() + Duration::from_millis(60);
        while std::time::Instant::now() < spin_until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let spent = meter.stop();
        assert!(spent[LOADTEST] > Duration::ZERO, "60 ms of spinning shows");
        assert!(spent["me"] > Duration::ZERO, "{spent:?}");
        assert!("gateway".parse::<Watched>().is_err());
        assert!("gateway=x".parse::<Watched>().is_err());
    }
}
