//! The only module with `unsafe`: waiting for a child, reaping it with its resource
//! usage (`wait4`), and killing a child that overran its time limit.
//!
//! `wait4` gives the user and system CPU time and the peak RSS of exactly that child
//! (with microsecond resolution; `/proc/self/stat`'s `cutime`/`cstime` would be safe
//! but count in 10 ms ticks, too coarse for sub-second runs).
#![allow(unsafe_code)]

use std::io;
use std::os::unix::process::ExitStatusExt as _;
use std::process::ExitStatus;
use std::time::Duration;

/// What the kernel accounted to one finished child.
#[derive(Clone, Copy, Debug)]
pub struct ChildUsage {
    /// How it ended.
    pub status: ExitStatus,
    /// CPU time in user mode (all its threads).
    pub user: Duration,
    /// CPU time in the kernel (all its threads).
    pub sys: Duration,
    /// Peak resident set size, KiB.
    pub max_rss_kib: u64,
}

/// Waits for child `pid` to end and reaps it. The caller must not wait for it again
/// (do not call `std::process::Child::wait` on it afterwards).
pub fn wait4(pid: u32) -> io::Result<ChildUsage> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain old data (integers and timevals), for which all-zero
    // bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live, writable locals of the right types for the
        // whole call; wait4 writes only through them and keeps neither.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Ok(ChildUsage {
        status: ExitStatus::from_raw(status),
        user: timeval(usage.ru_utime),
        sys: timeval(usage.ru_stime),
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
    })
}

/// Blocks until child `pid` has ended, without reaping it (`waitid` with `WNOWAIT`):
/// the pid stays reserved, so it is still safe to [`kill`], until [`wait4`] reaps it.
pub fn wait_exit(pid: u32) -> io::Result<()> {
    let id = libc::id_t::from(pid);
    loop {
        // SAFETY: as for `rusage`, all-zero bytes are a valid `siginfo_t`.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a live, writable local for the whole call; waitid keeps no
        // pointer to it. WNOWAIT leaves the child waitable.
        let r = unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Sends SIGKILL to `pid` (a child that has not been reaped yet).
pub fn kill(pid: u32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends SIGTERM to `pid` (a child that has not been reaped yet): ask it to finish.
pub fn terminate(pid: u32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    if unsafe { libc::kill(pid, libc::SIGTERM) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Clock ticks per second of `/proc/PID/stat`'s CPU times (`sysconf(_SC_CLK_TCK)`, 100 on
/// Linux).
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf takes an integer and touches no memory of ours.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// Raises this process's soft limit on open files to at least `want` (capped at the hard
/// limit; children started afterwards inherit it). Returns the soft limit now in force.
pub fn raise_nofile_limit(want: u64) -> io::Result<u64> {
    // SAFETY: as for `rusage`, all-zero bytes are a valid `rlimit`.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is a live, writable local for the whole call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let want = libc::rlim_t::try_from(want).unwrap_or(libc::rlim_t::MAX);
    if lim.rlim_cur >= want {
        return Ok(lim.rlim_cur);
    }
    lim.rlim_cur = want.min(lim.rlim_max);
    // SAFETY: `lim` is a live, initialized local; setrlimit only reads it.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim.rlim_cur)
}

fn timeval(tv: libc::timeval) -> Duration {
    let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
    let micros = u32::try_from(tv.tv_usec).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(u64::from(micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait4_reports_cpu_of_a_busy_child() {
        let pid = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .spawn()
            .unwrap()
            .id();
        let usage = wait4(pid).unwrap();
        assert!(usage.status.success());
        assert!(
            usage.user + usage.sys > Duration::from_millis(5),
            "{usage:?}"
        );
        assert!(usage.max_rss_kib > 0);
    }

    #[test]
    fn kill_ends_a_child() {
        let pid = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap()
            .id();
        kill(pid).unwrap();
        wait_exit(pid).unwrap();
        kill(pid).unwrap(); // a zombie can still be signalled
        let usage = wait4(pid).unwrap();
        assert_eq!(usage.status.signal(), Some(libc::SIGKILL));
    }
}
