//! The agent's threads keep their own descriptor table, apart from the host's.
//!
//! Why: Linux looks a descriptor up without touching its reference count only while one task
//! uses the descriptor table (`__fget_light`). Threads of ours that shared the host's table
//! would make each of the host loop's system calls on a descriptor (`epoll_wait`, `read`,
//! `write`, …) take and drop a reference under RCU: measured ≈ 60 ns per `loop_count`
//! iteration of a single-threaded libuv program (BENCHMARKS.md). A table of our own also keeps
//! the agent's sockets out of the host's reach (a daemon closing "every descriptor" cannot
//! close our control socket, its children never inherit it) and the host's out of ours.
//!
//! How: the first thing each thread the agent starts from a host thread does is
//! `unshare(CLONE_FILES)` — a private copy of the table — then it closes every copied
//! descriptor but stderr (its log), so the host's closes still take effect at once. Threads
//! that thread starts (the control server's, the watchdog's) share its table, not the host's.
#![allow(unsafe_code)]

use std::ffi::c_int;
use std::io;
use std::thread::{Builder, JoinHandle};

/// Starts a thread named `name` that runs `f` with a descriptor table of its own (see the
/// module doc). If the table cannot be unshared (a seccomp filter, an old kernel), `f` runs
/// anyway, sharing the host's.
pub fn spawn_apart<F, T>(name: &str, f: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new().name(name.into()).spawn(move || {
        let _ = leave_host_descriptors();
        f()
    })
}

/// Gives this thread a private copy of the descriptor table and closes the host's copies in
/// it, keeping stderr.
fn leave_host_descriptors() -> io::Result<()> {
    // SAFETY: unshare(CLONE_FILES) affects this thread only: its table becomes a copy.
    if unsafe { libc::unshare(libc::CLONE_FILES) } != 0 {
        return Err(io::Error::last_os_error());
    }
    close_copies()
}

/// Closes every descriptor of this thread's (private) table but stderr; stdin and stdout
/// become `/dev/null`, so that no socket of ours ever sits at 0 or 1.
fn close_copies() -> io::Result<()> {
    // SAFETY: closes and opens descriptors of this thread's own table only (unshared above);
    // open takes the lowest free numbers, 0 then 1.
    unsafe {
        libc::close(0);
        libc::close(1);
        libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
    }
    // close_range(2) by number: glibc's wrapper is newer than some hosts' glibc.
    // SAFETY: a plain system call on this thread's own table.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3 as c_int, c_int::MAX, 0 as c_int) };
    if rc == 0 {
        return Ok(());
    }
    // Kernels before 5.9: the numbers open now, from /proc (the directory's own descriptor is
    // closed before the others are).
    let open: Vec<c_int> = std::fs::read_dir("/proc/thread-self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in open {
        // SAFETY: as above; a number no longer open just fails with EBADF.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_thread_apart_does_not_hold_the_hosts_descriptors() {
        let file = std::fs::File::open("/proc/self/status").expect("open");
        let fd = file.as_raw_fd();
        let seen = spawn_apart("apart-test", move || {
            // SAFETY: fcntl F_GETFD only queries the descriptor number in this thread's table.
            let host_fd_here = (unsafe { libc::fcntl(fd, libc::F_GETFD) }) != -1;
            let stdin = std::fs::read_link("/proc/thread-self/fd/0").ok();
            (host_fd_here, stdin)
        })
        .expect("spawn")
        .join()
        .expect("join");
        assert!(
            !seen.0,
            "the host's descriptor {fd} is still open in the agent's thread"
        );
        assert_eq!(seen.1.as_deref(), Some(std::path::Path::new("/dev/null")));
        // The host's own descriptor is untouched.
        // SAFETY: as above, in this (host) thread's table.
        assert_ne!(unsafe { libc::fcntl(fd, libc::F_GETFD) }, -1);
        drop(file);
    }
}
