//! File descriptors handed between lab's processes by number: taken over, moved into place
//! before exec, and everything else closed. One place, because an fd that leaks into a node
//! is a way out of it (an open directory of the host, the host's end of a socket).

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};

/// Takes over fd `fd`, which this process's parent left open for it at that number.
///
/// # Safety
/// `fd` must be open, and nothing else in this process may own it (call this once per fd,
/// before anything else could have opened that number).
pub(crate) unsafe fn inherited(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller guarantees the fd is open and owned by nothing else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The same file on a new fd numbered `min` or above, closed on exec.
pub(crate) fn dup_above(fd: impl AsFd, min: RawFd) -> io::Result<OwnedFd> {
    let new = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(min))?;
    // SAFETY: F_DUPFD_CLOEXEC just made this fd, and nothing else knows of it.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Sets or clears close-on-exec.
pub(crate) fn set_cloexec(fd: impl AsFd, on: bool) -> io::Result<()> {
    let flags = if on { FdFlag::FD_CLOEXEC } else { FdFlag::empty() };
    fcntl(fd, FcntlArg::F_SETFD(flags)).map(drop).map_err(io::Error::from)
}

/// Makes reads and writes on `fd` return EAGAIN instead of blocking.
pub(crate) fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    let fd = fd.as_fd();
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(drop).map_err(io::Error::from)
}

/// Closes every fd numbered `first` or above: with close_range(2) where the kernel has it
/// (5.9), else one by one as /proc/self/fd lists them. An error means some may be open.
///
/// Call it only where nothing of this process owns such an fd any more (a process that just
/// started, or is about to exec).
pub(crate) fn close_from(first: RawFd) -> io::Result<()> {
    let first = u32::try_from(first).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: close_range with integer arguments; the caller owns nothing at first.. any more.
    if unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if !matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EINVAL)) {
        return Err(e);
    }
    close_each(first as RawFd)
}

/// close_from without close_range(2).
fn close_each(first: RawFd) -> io::Result<()> {
    // Listed first and closed after: the directory's own fd is gone by then.
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd: &RawFd| fd >= first)
        .collect();
    for fd in open {
        // SAFETY: close of a number the caller owns nothing at; EBADF (the listing's own fd)
        // is fine.
        if unsafe { libc::close(fd) } != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EBADF) {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Moves each `(fd, target)` onto its target number, without close-on-exec there: for a child
/// between fork and exec, which finds them by number. Every fd is first copied above every
/// target (so that no move overwrites an fd still to be moved), and those copies close on
/// exec. Only async-signal-safe calls, no allocation: `moves` holds the copies meanwhile.
///
/// # Safety
/// No fd numbered as a target may be owned by anything in this process that uses it after
/// this (true of a child about to exec).
pub(crate) unsafe fn place(moves: &mut [(RawFd, RawFd)]) -> io::Result<()> {
    let above = moves.iter().map(|&(_, target)| target).max().unwrap_or(0) + 1;
    for (fd, _) in moves.iter_mut() {
        // SAFETY: F_DUPFD_CLOEXEC on an fd the caller owns; the copy is ours to move.
        let high = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, above) };
        if high < 0 {
            return Err(io::Error::last_os_error());
        }
        *fd = high;
    }
    for &(high, target) in moves.iter() {
        // SAFETY: the caller owns nothing at `target` (see above); dup2 leaves it open on exec.
        if unsafe { libc::dup2(high, target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn flags_and_copies() {
        let (r, _w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let high = dup_above(&r, 50).expect("dup");
        assert!(high.as_raw_fd() >= 50);
        set_cloexec(&high, false).expect("clear cloexec");
        assert_eq!(fcntl(&high, FcntlArg::F_GETFD).expect("getfd"), 0);
        set_nonblocking(&high).expect("nonblocking");
        let flags = OFlag::from_bits_retain(fcntl(&high, FcntlArg::F_GETFL).expect("getfl"));
        assert!(flags.contains(OFlag::O_NONBLOCK));
    }

    /// Runs `child` in a forked child (it may only make async-signal-safe calls, the test
    /// process has threads) and returns whether it exited 0.
    fn in_child(child: impl FnOnce() -> bool) -> bool {
        use nix::sys::wait::{waitpid, WaitStatus};
        // SAFETY: the child makes only async-signal-safe calls and ends with _exit.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                let ok = child();
                // SAFETY: _exit ends the child without running the parent's destructors.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                matches!(waitpid(child, None), Ok(WaitStatus::Exited(_, 0)))
            }
        }
    }

    fn is_open(fd: RawFd) -> bool {
        // SAFETY: F_GETFD only asks about the number.
        unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
    }

    #[test]
    fn everything_from_a_number_up_is_closed() {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let (a, b) = (dup_above(&r, 300).expect("dup"), dup_above(&w, 400).expect("dup"));
        let (a, b) = (a.as_raw_fd(), b.as_raw_fd());
        assert!(in_child(|| close_from(300).is_ok() && !is_open(a) && !is_open(b) && is_open(r.as_raw_fd())));
        // The fallback allocates, which a forked child of a threaded process must not do
        // in general; the test's allocator (glibc's) copes.
        assert!(in_child(|| close_each(300).is_ok() && !is_open(a) && !is_open(b) && is_open(r.as_raw_fd())));
        assert!(is_open(a) && is_open(b), "only the children closed them");
    }

    #[test]
    fn fds_are_moved_onto_their_numbers_open_on_exec() {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let (r, w) = (r.as_raw_fd(), w.as_raw_fd());
        assert!(in_child(|| {
            let mut moves = [(r, 250), (w, r)];
            // SAFETY: the child owns nothing at 250 or at r after this.
            let placed = unsafe { place(&mut moves) }.is_ok();
            // SAFETY: F_GETFD only asks about the number.
            let flags = |fd| unsafe { libc::fcntl(fd, libc::F_GETFD) };
            placed && flags(250) == 0 && flags(r) == 0 && flags(moves[0].0) == libc::FD_CLOEXEC
        }));
    }
}
