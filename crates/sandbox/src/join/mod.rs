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
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
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

mod process;
pub use process::main;

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
    /// `uid[:gid]` or `name[:group]` to run as, from the node's /etc/passwd and /etc/group
    /// (`None`: the node's root).
    #[serde(default)]
    pub user: Option<String>,
}

/// How a command run by [`exec`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit code to pass on: the command's, 128 + N if signal N killed it, [`FAILED`] if
    /// the join process could not start it.
    pub code: i32,
    /// The signal that killed the command.
    pub signal: Option<i32>,
    /// Whether the command was started at all (if not, the join process said why on stderr).
    pub started: bool,
    /// Whether it ran past its timeout and was killed (with its process group).
    pub timed_out: bool,
}

/// Runs `req` in its node and says how it ended. With a `timeout`, the command and its
/// process group are killed (SIGKILL) once it has run that long.
///
/// The calling process must be single-threaded (it blocks signals for itself alone).
pub fn exec(req: &JoinRequest, timeout: Option<std::time::Duration>) -> Result<Exit> {
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
    for s in [Signal::SIGINT, Signal::SIGQUIT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGWINCH, Signal::SIGALRM] {
        mask.add(s);
    }
    mask.thread_block().ctx(|| "blocking signals".into())?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .ctx(|| "creating a signalfd".into())?;

    let mut cmd = Command::new(format!("/proc/self/fd/{}", exe.as_raw_fd()));
    cmd.arg0("lab-join").arg("__join");
    let mut moves = [(req_r.as_raw_fd(), REQUEST_FD), (pid_w.as_raw_fd(), PID_FD), (-1, -1)];
    let count = if let Some(m) = &master {
        moves[2] = (m.as_raw_fd(), PTY_FD);
        3
    } else {
        2
    };
    let before_exec = move || {
        // SAFETY: the child execs the join process next; nothing of it uses fds 3 to 5.
        unsafe { crate::fd::place(&mut moves[..count]) }?;
        // Out of our session: a ^C on our terminal is ours to pass on, not the join
        // process's to die of.
        nix::unistd::setsid()?;
        Ok(())
    };
    // SAFETY: only async-signal-safe calls (fcntl, dup2, setsid) between fork and exec.
    unsafe { cmd.pre_exec(before_exec) };
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
    let mut report = File::from(pid_r);
    let command = read_i32(&mut report).map(Pid::from_raw);
    let child_fd = PidFd::open(child.id() as i32)?;
    if let (Some(t), Some(_)) = (timeout, command) {
        crate::relay::alarm(t)?;
    }
    match (&master, streams) {
        (Some(m), _) => relay_pty(m, &signals, &child_fd, command, req.interactive)?,
        (None, Some(s)) => s.relay(&signals, &child_fd, command)?,
        (None, None) => unreachable!("a join without a pty has streams"),
    }
    let _ = SigSet::empty().thread_set_mask();
    let status = child.wait().ctx(|| "waiting for the command".into())?;
    let timed_out = crate::relay::timed_out();
    use std::os::unix::process::ExitStatusExt;
    // The join process writes how the command ended after its pid: a code, or minus the signal.
    let exit = match command.and_then(|_| read_i32(&mut report)) {
        Some(sig @ ..0) => Exit { code: 128 - sig, signal: Some(-sig), started: true, timed_out },
        Some(code) => Exit { code, signal: None, started: true, timed_out },
        None => Exit {
            code: status.code().or(status.signal().map(|s| 128 + s)).unwrap_or(FAILED),
            signal: None,
            started: command.is_some(),
            timed_out,
        },
    };
    Ok(exit)
}

/// The next number on the join process's report pipe, if it wrote one.
fn read_i32(r: &mut File) -> Option<i32> {
    let mut buf = [0u8; 4];
    r.read_exact(&mut buf).ok()?;
    Some(i32::from_ne_bytes(buf))
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
    // SAFETY: TIOCSPTLCK reads an int from where the pointer points; the fd is a ptmx.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(Error::os("unlocking the pty", std::io::Error::last_os_error()));
    }
    copy_window_size(&master);
    Ok(master)
}
