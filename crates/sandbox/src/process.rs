//! Referring to processes without ever mistaking a recycled pid for the one we meant: a pid is
//! always paired with its start time, and acted on through a pidfd.

use crate::error::{Context, Error, Result};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// A process as it was when we saw it: pid (in the host's pid namespace) and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRef {
    pub pid: i32,
    /// Clock ticks after boot (field 22 of /proc/PID/stat).
    pub start_time: u64,
}

impl ProcessRef {
    /// The process `pid` as it is now.
    pub fn of(pid: i32) -> Result<ProcessRef> {
        let start_time = start_time(pid)?.ok_or_else(|| {
            Error::os(format!("reading /proc/{pid}/stat"), std::io::Error::from_raw_os_error(libc::ESRCH))
        })?;
        Ok(ProcessRef { pid, start_time })
    }

    /// A pidfd for this very process, or `None` if it has exited (or its pid was reused).
    pub fn open(&self) -> Result<Option<PidFd>> {
        let fd = match PidFd::open(self.pid) {
            Ok(fd) => fd,
            Err(e) if e.errno() == Some(libc::ESRCH) => return Ok(None),
            Err(e) => return Err(e),
        };
        // The pidfd pins whichever process has the pid now; it is ours if it started when
        // ours did and is still alive after we looked. A zombie has exited: it only waits
        // for its parent (or, orphaned, the host's init) to reap it.
        match stat(self.pid)? {
            Some((state, start)) if start == self.start_time && !matches!(state, 'Z' | 'X') && fd.is_alive() => {
                Ok(Some(fd))
            }
            _ => Ok(None),
        }
    }

    /// Whether this process is still running.
    pub fn is_alive(&self) -> bool {
        matches!(self.open(), Ok(Some(_)))
    }
}

/// Start time of `pid`, or `None` if there is no such process.
pub fn start_time(pid: i32) -> Result<Option<u64>> {
    Ok(stat(pid)?.map(|(_, start)| start))
}

/// State letter (field 3 of /proc/PID/stat: R, S, Z, ...) and start time of `pid`, or `None`
/// if there is no such process.
fn stat(pid: i32) -> Result<Option<(char, u64)>> {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
        Err(e) => return Err(Error::os(format!("reading /proc/{pid}/stat"), e)),
    };
    // The command name (field 2) may contain spaces and parentheses: count after the last ')'.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let mut fields = after.split_whitespace();
    let state = fields.next().and_then(|f| f.chars().next());
    let start = fields.nth(18).and_then(|f| f.parse().ok());
    match (state, start) {
        (Some(state), Some(start)) => Ok(Some((state, start))),
        _ => Err(Error::Other(format!("cannot parse /proc/{pid}/stat: {stat:?}"))),
    }
}

/// A pidfd: a handle on one process that a reused pid can never redirect.
#[derive(Debug)]
pub struct PidFd(OwnedFd);

impl PidFd {
    pub fn open(pid: i32) -> Result<PidFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(Error::os(format!("opening a pidfd for process {pid}"), std::io::Error::last_os_error()));
        }
        // SAFETY: the kernel just gave us this fd, and nothing else owns it.
        Ok(PidFd(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Sends `signal`; a process that has already exited is not an error.
    pub fn signal(&self, signal: i32) -> Result<()> {
        // SAFETY: pidfd_send_signal with a valid pidfd, no siginfo, no flags.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(Error::os(format!("sending signal {signal}"), e));
            }
        }
        Ok(())
    }

    pub fn is_alive(&self) -> bool {
        // SAFETY: signal 0 only checks that the process exists.
        unsafe {
            libc::syscall(libc::SYS_pidfd_send_signal, self.0.as_raw_fd(), 0, std::ptr::null::<libc::siginfo_t>(), 0)
                == 0
        }
    }

    /// Waits until the process exits (the pidfd becomes readable); no polling loop.
    pub async fn exited(&self) -> Result<()> {
        // SAFETY: the fd is ours and stays open, unchanged, for as long as `afd` exists.
        let afd =
            unsafe { tokio::io::unix::AsyncFd::register_with_interest(self.0.as_fd(), tokio::io::Interest::READABLE) }
                .ctx(|| "watching a pidfd".into())?;
        let _ready = afd.readable().await.ctx(|| "waiting for a process to exit".into())?;
        Ok(())
    }
}

impl From<OwnedFd> for PidFd {
    fn from(fd: OwnedFd) -> PidFd {
        PidFd(fd)
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> i32 {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_found_and_a_wrong_start_time_is_not() {
        let me = ProcessRef::of(std::process::id() as i32).unwrap();
        assert!(me.is_alive());
        let recycled = ProcessRef { start_time: me.start_time + 1, ..me };
        assert!(!recycled.is_alive());
    }

    #[test]
    fn exited_processes_are_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let r = ProcessRef::of(child.id() as i32).unwrap();
        child.wait().unwrap();
        assert!(!r.is_alive());
    }
}
