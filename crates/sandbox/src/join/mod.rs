//! Running a command inside a running node (`lab exec`).
//!
//! The caller starts a join process from the node's own sealed binary (the init's
//! /proc/PID/exe), so that no process in the node is ever backed by the host's `lab`
//! binary (CVE-2019-5736). The join process makes itself non-dumpable, joins the node's
//! cgroup, then all of its namespaces at once with setns on a pidfd (checked against the
//! init's start time, so a recycled pid is never joined), and forks the command into the
//! node's pid namespace, in a session of its own, with the node's capabilities, no_new_privs
//! and seccomp filter. The caller stays on the host: it relays a pty if asked, or pipes in
//! place of its own terminal ([`crate::relay`]), forwards signals, and returns the command's
//! exit status.

use crate::error::{Context, Error, Result};
use crate::process::{PidFd, ProcessRef};
use crate::relay::{copy_window_size, relay_pty, Streams};
use crate::spec::Security;
use nix::fcntl::{open, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::stat::{fstat, major, minor, Mode, SFlag};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

/// Namespaces `lab exec` joins (and the user and time namespaces, for nodes that have them).
const NAMESPACES: i32 = libc::CLONE_NEWNS
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWCGROUP;

/// The join process's fds: its request, where it reports the command's pid, the pty master.
const REQUEST_FD: i32 = 3;
const PID_FD: i32 = 4;
const PTY_FD: i32 = 5;

/// Exit code when lab itself cannot run the command.
pub const FAILED: i32 = 125;

/// What to run in which node, and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub init: ProcessRef,
    /// The node's cgroup.procs files.
    pub cgroup_procs: Vec<PathBuf>,
    pub userns: bool,
    pub security: Security,
    pub argv: Vec<String>,
    /// The command's whole environment (HOME is added, the node root's, if it has none).
    pub env: Vec<(String, String)>,
    pub cwd: String,
    /// Give the command a pseudo-terminal (`-t`).
    pub tty: bool,
    /// Pass our stdin to the command (`-i`); otherwise it reads /dev/null.
    pub interactive: bool,
}

/// Runs `req` in its node. Returns the exit code to pass on (128 + signal if the command was
/// killed, [`FAILED`] if the join process could not start it).
///
/// The calling process must be single-threaded (it blocks signals for itself alone).
pub fn exec(req: &JoinRequest) -> Result<i32> {
    let pidfd = req.init.open()?.ok_or(Error::NotRunning)?;
    let exe = File::open(format!("/proc/{}/exe", req.init.pid)).ctx(|| "opening the node's lab binary".into())?;
    // Above the fds the join process gets (3..=5), or moving those would replace it.
    let exe = crate::seal::above_low_fds(exe.into()).ctx(|| "duplicating the node's lab binary's fd".into())?;
    let master = if req.tty { Some(open_pty_master(req.init.pid)?) } else { None };
    if !pidfd.is_alive() {
        return Err(Error::NotRunning);
    }
    let json = serde_json::to_vec(req).map_err(|e| Error::Other(e.to_string()))?;
    let (req_r, req_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "creating a pipe".into())?;
    let (pid_r, pid_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "creating a pipe".into())?;

    // Signals we forward or act on arrive on a signalfd; the command unblocks them.
    let mut mask = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGQUIT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGWINCH] {
        mask.add(s);
    }
    mask.thread_block().ctx(|| "blocking signals".into())?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .ctx(|| "creating a signalfd".into())?;

    let fds = [Some(req_r.as_raw_fd()), Some(pid_w.as_raw_fd()), master.as_ref().map(|m| m.as_raw_fd())];
    let mut cmd = Command::new(format!("/proc/self/fd/{}", exe.as_raw_fd()));
    cmd.arg0("lab-join").arg("__join");
    // SAFETY: only async-signal-safe calls (fcntl, dup2, setsid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Out of the way first, so that no target fd is overwritten before it is moved.
            let mut high = [-1; 3];
            for (h, fd) in high.iter_mut().zip(fds) {
                if let Some(fd) = fd {
                    *h = libc::fcntl(fd, libc::F_DUPFD, 10);
                    if *h < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
            }
            for (h, target) in high.iter().zip([REQUEST_FD, PID_FD, PTY_FD]) {
                if *h >= 0 && libc::dup2(*h, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Out of our session: a ^C on our terminal is ours to pass on, not the join
            // process's to die of.
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // Without a pty, our terminal (if any) reaches it only as pipes.
    let mut streams = if req.tty { None } else { Some(Streams::new(req.interactive)?) };
    if let Some(s) = streams.as_mut() {
        let [stdin, stdout, stderr] = std::mem::take(&mut s.child);
        stdin.map(|fd| cmd.stdin(fd));
        stdout.map(|fd| cmd.stdout(fd));
        stderr.map(|fd| cmd.stderr(fd));
    }
    let mut child = cmd.spawn().ctx(|| "starting lab's join process".into())?;
    drop((req_r, pid_w, exe));
    File::from(req_w).write_all(&json).ctx(|| "sending the join request".into())?;
    let command = read_pid(pid_r);
    let child_fd = PidFd::open(child.id() as i32)?;
    match (&master, streams) {
        (Some(m), _) => relay_pty(m, &signals, &child_fd, command, req.interactive)?,
        (None, Some(s)) => s.relay(&signals, &child_fd, command)?,
        (None, None) => unreachable!("a join without a pty has streams"),
    }
    let _ = SigSet::empty().thread_set_mask();
    let status = child.wait().ctx(|| "waiting for the command".into())?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status.code().or(status.signal().map(|s| 128 + s)).unwrap_or(FAILED))
}

/// The join process (`lab-join __join`), started from the node's sealed binary. Never returns.
pub fn main() -> ! {
    // SAFETY: close_range on fds this process has not used.
    unsafe { libc::syscall(libc::SYS_close_range, (PTY_FD + 1) as u32, u32::MAX, 0u32) };
    // SAFETY: the caller hands us these fds; nothing else owns them.
    let (request, pid_report) = unsafe { (File::from_raw_fd(REQUEST_FD), File::from_raw_fd(PID_FD)) };
    let req: JoinRequest = match serde_json::from_reader(request) {
        Ok(r) => r,
        Err(e) => die(FAILED, &format!("reading the join request: {e}")),
    };
    // SAFETY: fd 5 is the pty master when a tty was asked for.
    let master = req.tty.then(|| unsafe { OwnedFd::from_raw_fd(PTY_FD) });
    // Nothing in the node may read this process's memory or reopen its files (CVE-2016-9962).
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
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
    // SAFETY: setns with a pidfd and CLONE_NEW* flags; we are single-threaded.
    if unsafe { libc::setns(pidfd.as_raw_fd(), namespaces) } != 0 {
        die(FAILED, &format!("joining the node's namespaces: {}", std::io::Error::last_os_error()));
    }
    if req.userns {
        if let Err(e) = crate::init::become_root() {
            die(FAILED, &e.to_string());
        }
    }
    // SAFETY: single-threaded, as above.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => command(&req, master.as_ref()),
        Ok(ForkResult::Parent { child }) => {
            let _ = (&pid_report).write_all(&child.as_raw().to_ne_bytes());
            drop((pid_report, master));
            let code = match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, code)) => code,
                Ok(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
                _ => 1,
            };
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
    // SAFETY: setsid takes no arguments; a freshly forked child is no group leader.
    if unsafe { libc::setsid() } < 0 {
        die(FAILED, &format!("creating a session: {}", std::io::Error::last_os_error()));
    }
    if let Some(master) = master {
        // SAFETY: plain syscalls on fds we own; TIOCGPTPEER opens the pty's other end
        // through the master, never through a path the node controls.
        unsafe {
            let slave = libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY);
            if slave < 0 || libc::ioctl(slave, libc::TIOCSCTTY, 0) < 0 {
                die(FAILED, &format!("opening the terminal: {}", std::io::Error::last_os_error()));
            }
            for fd in 0..3 {
                libc::dup2(slave, fd);
            }
            libc::close(slave);
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
    // The command runs as the node's root: its HOME, unless the request names one.
    let env = crate::user::with_home(&req.env, 0);
    let (Ok(argv), Ok(envp)) =
        (cstrings(req.argv.clone()), cstrings(env.iter().map(|(k, v)| format!("{k}={v}")).collect()))
    else {
        die(FAILED, "arguments and environment cannot contain NUL bytes")
    };
    let path = env.iter().find(|(k, _)| k == "PATH").map_or(crate::user::SEARCH_PATH, |(_, v)| v.as_str());
    let _ = SigSet::empty().thread_set_mask();
    // Nothing of ours (the request, the pty master) may reach the node's program.
    // SAFETY: close_range on fds 3 and up; none is used after this.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if let Err(e) = req.security.apply() {
        die(FAILED, &format!("applying the node's security settings: {e}"));
    }
    let err = exec_search(&argv, &envp, path);
    let prog = &req.argv[0];
    match err {
        nix::errno::Errno::ENOENT if !prog.contains('/') => die(127, &format!("{prog}: command not found")),
        nix::errno::Errno::ENOENT => die(127, &format!("{prog}: no such file or directory")),
        e => die(126, &format!("{prog}: {}", e.desc())),
    }
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

fn read_pid(r: OwnedFd) -> Option<Pid> {
    let mut buf = [0u8; 4];
    File::from(r).read_exact(&mut buf).ok()?;
    Some(Pid::from_raw(i32::from_ne_bytes(buf)))
}

/// Opens a new pty master in the node's own devpts instance (so the command sees its
/// terminal as /dev/pts/N), resolving the path inside the node's root.
fn open_pty_master(init: i32) -> Result<OwnedFd> {
    let root = open(
        format!("/proc/{init}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "opening the node's root".into())?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let master = openat2(&root, "dev/pts/ptmx", how).ctx(|| "opening the node's /dev/pts/ptmx".into())?;
    let st = fstat(&master).ctx(|| "checking the node's /dev/pts/ptmx".into())?;
    let is_ptmx = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR
        && major(st.st_rdev) == 5
        && minor(st.st_rdev) == 2;
    if !is_ptmx {
        return Err(Error::Other("the node's /dev/pts/ptmx is not a pty multiplexer".into()));
    }
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK with a pointer to an int, on a ptmx fd we just checked.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(Error::os("unlocking the pty", std::io::Error::last_os_error()));
    }
    copy_window_size(&master);
    Ok(master)
}
