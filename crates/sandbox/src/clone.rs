//! clone3 into new namespaces, returning a pidfd for the child.

use crate::error::{Error, Result};
use crate::process::PidFd;
use std::os::fd::{FromRawFd, OwnedFd};

/// struct clone_args of <linux/sched.h> (the version-0 size, 64 bytes, is enough).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
}

pub enum Forked {
    Child,
    Parent { pid: i32, pidfd: PidFd },
}

/// Forks into new namespaces (`flags`: CLONE_NEW*), like fork(2) otherwise.
///
/// # Safety
/// As with fork: the caller must be single-threaded, or the child must only call
/// async-signal-safe functions until it execs.
pub unsafe fn clone_into(flags: i32) -> Result<Forked> {
    let mut pidfd: i32 = -1;
    let args = CloneArgs {
        flags: (flags | libc::CLONE_PIDFD) as u64,
        pidfd: &mut pidfd as *mut i32 as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    // SAFETY: no CLONE_VM and no stack: the child gets a copy of our memory and continues
    // here, exactly as after fork; the caller upholds fork's rules.
    let r = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    match r {
        -1 => Err(Error::os("creating the node's namespaces (clone3)", std::io::Error::last_os_error())),
        0 => Ok(Forked::Child),
        pid => {
            // SAFETY: CLONE_PIDFD stored a new fd that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(pidfd) };
            Ok(Forked::Parent { pid: pid as i32, pidfd: PidFd::from(fd) })
        }
    }
}
