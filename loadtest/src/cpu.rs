//! The CPU time this process has used, so a run reports what the load generator itself cost
//! per request beside what the servers did.
//!
//! Read from `/proc/self/stat` (Linux): user plus system time in clock ticks of `USER_HZ`,
//! which the kernel fixes at 100 per second for user space on every architecture it runs on.
//! Ten milliseconds of resolution is fine over a run of seconds.

use std::time::Duration;

const TICKS_PER_SEC: u64 = 100;

/// User plus system CPU time of this process so far; zero where `/proc` cannot tell.
pub fn process_time() -> Duration {
    std::fs::read_to_string("/proc/self/stat")
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
    fn this_process_has_used_some_cpu_and_the_count_only_grows() {
        let before = process_time();
        let mut x = 0_u64;
        let spin_until = std::time::Instant::now() + Duration::from_millis(60);
        while std::time::Instant::now() < spin_until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(process_time() > before, "60 ms of spinning shows");
    }
}
