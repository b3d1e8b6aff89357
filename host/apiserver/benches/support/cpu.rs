//! What a benchmark reads of its own CPU time: user and system time of every thread of the
//! process, so work a call leaves to other threads (a worker, a runtime's other cores) counts.

use std::time::Duration;

/// CPU time the process has used so far, every thread.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage writes the struct it is given; a zeroed rusage is a valid one.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &raw mut usage);
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time another process has used so far (user and system, every thread), from
/// `/proc/<pid>/stat`, to the clock tick (10 ms on Linux); `None` when it cannot be read.
pub fn process_cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command, whose name is in parentheses and may hold anything.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    // utime and stime are the 14th and 15th fields; the state, the 3rd, comes first here.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf reads a configuration value.
    let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok()?;
    Some(Duration::from_nanos(
        ticks * 1_000_000_000 / per_second.max(1),
    ))
}
