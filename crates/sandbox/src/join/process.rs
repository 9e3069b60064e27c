//! The join process (`lab-join __join`): started by [`super::exec`] from the node's sealed
//! binary, it makes itself non-dumpable, joins the node's cgroup and namespaces, and forks
//! the command into it.

use super::{JoinRequest, FAILED, NAMESPACES, PID_FD, PTY_FD, REQUEST_FD};
use nix::fcntl::{open, OFlag};
use nix::sched::CloneFlags;
use nix::sys::signal::SigSet;
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The join process (`lab-join __join`), started from the node's sealed binary. Never returns.
pub fn main() -> ! {
    // Whatever the caller of `lab exec` let us inherit must not reach the node.
    if let Err(e) = crate::fd::close_from(PTY_FD + 1) {
        die(FAILED, &format!("closing inherited fds: {e}"));
    }
    // SAFETY: `lab exec` hands the join process its request on REQUEST_FD, and this is the
    // only place that takes it.
    let request = File::from(unsafe { crate::fd::inherited(REQUEST_FD) });
    // SAFETY: as above, for the pid report on PID_FD.
    let pid_report = File::from(unsafe { crate::fd::inherited(PID_FD) });
    let req: JoinRequest = match serde_json::from_reader(request) {
        Ok(r) => r,
        Err(e) => die(FAILED, &format!("reading the join request: {e}")),
    };
    // SAFETY: with a tty, `lab exec` hands over the pty master on PTY_FD; this is the only
    // place that takes it.
    let master = req.tty.then(|| unsafe { crate::fd::inherited(PTY_FD) });
    // Nothing in the node may read this process's memory or reopen its files (CVE-2016-9962).
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        die(FAILED, &format!("making the join process non-dumpable: {e}"));
    }
    let pidfd = match req.init.open() {
        Ok(Some(fd)) => fd,
        _ => die(FAILED, "the node is not running"),
    };
    for f in &req.cgroup_procs {
        if let Err(e) = std::fs::write(f, "0") {
            die(FAILED, &format!("joining the node's cgroup {}: {e}", f.display()));
        }
    }
    let mut namespaces = NAMESPACES | if req.userns { libc::CLONE_NEWUSER } else { 0 };
    if crate::monitor::has_time_namespaces() {
        namespaces |= crate::monitor::CLONE_NEWTIME;
    }
    // All at once, through the pidfd: the namespaces of that very process.
    if let Err(e) = nix::sched::setns(&pidfd, CloneFlags::from_bits_retain(namespaces)) {
        die(FAILED, &format!("joining the node's namespaces: {e}"));
    }
    if req.userns {
        if let Err(e) = crate::init::become_root() {
            die(FAILED, &e.to_string());
        }
    }
    // SAFETY: the join process is single-threaded: the child may run any code.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => command(&req, master.as_ref()),
        Ok(ForkResult::Parent { child }) => {
            let _ = (&pid_report).write_all(&child.as_raw().to_ne_bytes());
            drop(master);
            // How the command ended, on the same pipe: its exit code, or minus the signal
            // that killed it (our own exit code cannot tell 128 + N from a signal).
            let (code, report) = match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, code)) => (code, code),
                Ok(WaitStatus::Signaled(_, sig, _)) => (128 + sig as i32, -(sig as i32)),
                _ => (1, 1),
            };
            let _ = (&pid_report).write_all(&report.to_ne_bytes());
            drop(pid_report);
            std::process::exit(code)
        }
        Err(e) => die(FAILED, &format!("forking into the node: {e}")),
    }
}

/// In the forked child, inside the node: session, stdio, cwd, signals, the node's security,
/// exec.
fn command(req: &JoinRequest, master: Option<&OwnedFd>) -> ! {
    // Every process that enters a node gets a session of its own: nothing it does to its
    // process group or session reaches a host process.
    if let Err(e) = nix::unistd::setsid() {
        die(FAILED, &format!("creating a session: {e}"));
    }
    if let Some(master) = master {
        if let Err(e) = terminal(master) {
            die(FAILED, &format!("opening the terminal: {e}"));
        }
    } else if !req.interactive {
        match open("/dev/null", OFlag::O_RDONLY, Mode::empty()) {
            Ok(null) => {
                let _ = nix::unistd::dup2_stdin(&null);
            }
            Err(e) => die(FAILED, &format!("opening /dev/null in the node: {e}")),
        }
    }
    if let Err(e) = nix::unistd::chdir(req.cwd.as_str()) {
        die(126, &format!("cannot change to directory {}: {}", req.cwd, e.desc()));
    }
    let cstrings = |items: Vec<String>| items.into_iter().map(CString::new).collect::<std::result::Result<Vec<_>, _>>();
    // Who it runs as, from the node's own files (we are in its mount namespace).
    let user = match req.user.as_deref().map(crate::user::resolve) {
        None => None,
        Some(Ok(u)) => Some(u),
        Some(Err(e)) => die(126, &format!("{e}")),
    };
    // Its HOME, unless the request names one.
    let env = crate::user::with_home(&req.env, user.as_ref().map_or(0, |u| u.uid));
    let (Ok(argv), Ok(envp)) =
        (cstrings(req.argv.clone()), cstrings(env.iter().map(|(k, v)| format!("{k}={v}")).collect()))
    else {
        die(FAILED, "arguments and environment cannot contain NUL bytes")
    };
    let path = env.iter().find(|(k, _)| k == "PATH").map_or(crate::user::SEARCH_PATH, |(_, v)| v.as_str());
    let _ = SigSet::empty().thread_set_mask();
    // Nothing of ours (the request, the pty master) may reach the node's program.
    if let Err(e) = crate::fd::close_from(3) {
        die(FAILED, &format!("closing lab's fds: {e}"));
    }
    // Capabilities and no_new_privs as root; then the user (a non-root one keeps no
    // capabilities); the seccomp filter last.
    if let Err(e) = req.security.restrict() {
        die(FAILED, &format!("applying the node's security settings: {e}"));
    }
    if let Some(u) = &user {
        if let Err(e) = u.become_it() {
            die(126, &format!("becoming user {}: {e}", req.user.as_deref().unwrap_or_default()));
        }
    }
    if let Err(e) = req.security.load_seccomp() {
        die(FAILED, &format!("loading the node's seccomp filter: {e}"));
    }
    let err = exec_search(&argv, &envp, path);
    let prog = &req.argv[0];
    match err {
        nix::errno::Errno::ENOENT if !prog.contains('/') => die(127, &format!("{prog}: command not found")),
        nix::errno::Errno::ENOENT => die(127, &format!("{prog}: no such file or directory")),
        e => die(126, &format!("{prog}: {}", e.desc())),
    }
}

/// Makes the pty of `master` our controlling terminal and standard streams. TIOCGPTPEER
/// opens its other end through the master, never through a path the node controls.
fn terminal(master: &OwnedFd) -> std::io::Result<()> {
    // SAFETY: TIOCGPTPEER takes open flags and returns a new fd.
    let slave = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY) };
    if slave < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: TIOCGPTPEER just made this fd, and nothing else knows of it.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    // SAFETY: TIOCSCTTY takes an int (0: do not steal the terminal from another session).
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    nix::unistd::dup2_stdin(&slave)?;
    nix::unistd::dup2_stdout(&slave)?;
    nix::unistd::dup2_stderr(&slave)?;
    Ok(())
}

/// execvp with the command's own PATH (glibc's execvpe would search ours).
fn exec_search(argv: &[CString], envp: &[CString], path: &str) -> nix::errno::Errno {
    let prog = argv[0].to_bytes();
    if prog.contains(&b'/') {
        return nix::unistd::execve(&argv[0], argv, envp).unwrap_err();
    }
    let mut result = nix::errno::Errno::ENOENT;
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let Ok(candidate) = CString::new([dir.as_bytes(), b"/", prog].concat()) else { continue };
        match nix::unistd::execve(&candidate, argv, envp).unwrap_err() {
            nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR => {}
            nix::errno::Errno::EACCES => result = nix::errno::Errno::EACCES,
            e => return e,
        }
    }
    result
}

fn die(code: i32, message: &str) -> ! {
    eprintln!("lab exec: {message}");
    std::process::exit(code)
}
