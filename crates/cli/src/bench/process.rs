//! What the benchmarks read of a process from `/proc` (Linux): its CPU time.

use std::time::Duration;

/// CPU time (user + system, all threads) of the process whose `stat` file is at `stat` (e.g.
/// `/proc/self/stat`, `/proc/<pid>/stat`), in clock ticks of 1/100 s (Linux's `USER_HZ`);
/// zero when unreadable.
pub fn cpu_time(stat: &str) -> Duration {
    let ticks = std::fs::read_to_string(stat)
        .ok()
        .and_then(|stat| {
            // Fields after the command name (in parentheses, which may hold spaces): utime
            // and stime are the 12th and 13th of them.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// [`cpu_time`] of process `pid`.
pub fn cpu_of(pid: u32) -> Duration {
    cpu_time(&format!("/proc/{pid}/stat"))
}

/// CPU time of the calling thread so far, in nanoseconds (`/proc/thread-self/schedstat`: the
/// scheduler's own account, not clock ticks), with the thread it was read on; `None` when
/// unreadable (not Linux).
pub fn thread_cpu() -> Option<(std::thread::ThreadId, Duration)> {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
    Some((std::thread::current().id(), Duration::from_nanos(nanos)))
}

/// A span of one thread's CPU time: started by [`ThreadCpu::start`], read by
/// [`ThreadCpu::elapsed`], which is `None` if the work moved to another thread meanwhile (a
/// task resumed elsewhere), so the two readings are not of one thread.
pub struct ThreadCpu(Option<(std::thread::ThreadId, Duration)>);

impl ThreadCpu {
    pub fn start() -> Self {
        Self(thread_cpu())
    }

    pub fn elapsed(&self) -> Option<Duration> {
        let (thread, start) = self.0?;
        let (now_thread, now) = thread_cpu()?;
        (thread == now_thread).then(|| now.saturating_sub(start))
    }
}
