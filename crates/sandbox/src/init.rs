//! The node's PID 1. It waits for `lab up` to finish the node's network, builds the node's
//! root, starts the node's command, then reaps every zombie and forwards signals until the
//! command exits, whose status becomes its own. Without a command it waits for a signal.

use crate::error::{Context, Error, Result};
use crate::rootfs;
use crate::spec::{ExitStatus, NodeSpec};
use crate::sync::{self, Message, SYNC_FD};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::io::BufReader;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

/// Signals the init handles itself; the rest keep their default, which for PID 1 of a pid
/// namespace means they are ignored.
const HANDLED: &[Signal] = &[
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs the init; never returns. Its spec comes with `lab up`'s Go.
pub fn main() -> ! {
    // SAFETY: the monitor hands the init the sync socket on SYNC_FD and nothing else uses it.
    let mut sync = unsafe { UnixStream::from_raw_fd(SYNC_FD) };
    // It must not reach the node's command: close it on exec.
    // SAFETY: F_SETFD on an fd we own.
    if unsafe { libc::fcntl(SYNC_FD, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        std::process::exit(1);
    }
    let mut reader = match sync.try_clone() {
        Ok(s) => BufReader::new(s),
        Err(_) => std::process::exit(1),
    };
    // `lab up` says Go once the node's network is ready; end-of-file means it gave up.
    let spec = match sync::recv(&mut reader) {
        Some(Message::Go { spec }) => spec,
        _ => std::process::exit(1),
    };
    drop(reader);
    let sources = rootfs::Sources::inherited(&spec);
    // Whatever else there is above the sources came from somewhere it should not have.
    // SAFETY: close_range on fds above those we use.
    unsafe {
        let first = (SYNC_FD + 1 + rootfs::Sources::count(&spec)) as u32;
        libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32);
    }
    let signals = match setup(&spec, sources) {
        Ok(s) => s,
        Err(e) => fail(&mut sync, e),
    };
    let child = match &spec.command {
        Some(argv) => match spawn(argv, &spec) {
            Ok(pid) => Some(pid),
            Err(e) => fail(&mut sync, e),
        },
        None => None,
    };
    let _ = sync::send(&mut sync, &Message::Ready);
    drop(sync);
    let status = supervise(&signals, child);
    std::process::exit(status.code())
}

fn fail(sync: &mut UnixStream, e: Error) -> ! {
    let _ = sync::send(sync, &Message::Failed { error: e.to_string() });
    eprintln!("lab-init: {e}");
    std::process::exit(1)
}

/// Everything between Go and the command: cgroup namespace, root file system, host name,
/// signals, and last the node's capabilities and seccomp filter.
fn setup(spec: &NodeSpec, sources: rootfs::Sources) -> Result<SignalFd> {
    // The monitor placed us in the node's cgroup; that becomes the root of our view.
    unshare(CloneFlags::CLONE_NEWCGROUP).ctx(|| "creating the node's cgroup namespace".into())?;
    rootfs::setup(spec, sources)?;
    nix::unistd::sethostname(&spec.hostname).ctx(|| format!("setting the host name to {}", spec.hostname))?;
    // Nothing in the node may read the init's memory or reopen its files through /proc/1.
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(Error::os("making the init non-dumpable", std::io::Error::last_os_error()));
    }
    let mut mask = SigSet::empty();
    for s in HANDLED {
        mask.add(*s);
    }
    mask.thread_block().ctx(|| "blocking signals in the init".into())?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC).ctx(|| "creating the init's signalfd".into())?;
    spec.security.apply()?;
    Ok(signals)
}

/// In a fresh user namespace the process is nobody until it takes uid and gid 0, which the
/// monitor's uid_map and gid_map now give to the node's host range.
pub fn become_root() -> Result<()> {
    let root = nix::unistd::Gid::from_raw(0);
    nix::unistd::setresgid(root, root, root).ctx(|| "becoming gid 0 in the node's user namespace".into())?;
    nix::unistd::setgroups(&[]).ctx(|| "dropping supplementary groups".into())?;
    let root = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresuid(root, root, root).ctx(|| "becoming uid 0 in the node's user namespace".into())
}

/// Starts the node's command with a clean environment; an exec failure (missing program,
/// not executable) is reported here, so `lab up` can name it.
fn spawn(argv: &[String], spec: &NodeSpec) -> Result<Pid> {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .env("HOSTNAME", &spec.hostname)
        .env("HOME", "/root")
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(Stdio::null());
    // std resets the signal mask and SIGPIPE in the child before exec.
    let child = cmd.spawn().map_err(|e| Error::os(format!("starting the node's command `{}`", argv.join(" ")), e))?;
    Ok(Pid::from_raw(child.id() as i32))
}

/// Reaps children and forwards signals until the command exits (or, without a command, until
/// asked to stop). Returns the status the init exits with.
fn supervise(signals: &SignalFd, child: Option<Pid>) -> ExitStatus {
    loop {
        let info = match signals.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) | Err(nix::errno::Errno::EINTR) => continue,
            // Without its signals the init cannot reap or stop: better end the node than spin.
            Err(e) => {
                eprintln!("lab-init: reading signals: {e}");
                return ExitStatus::Code(1);
            }
        };
        let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else { continue };
        match signal {
            Signal::SIGCHLD => {
                if let Some(status) = reap(child) {
                    return status;
                }
            }
            s => match child {
                Some(pid) => {
                    let _ = kill(pid, s);
                }
                None if matches!(s, Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP | Signal::SIGQUIT) => {
                    return ExitStatus::Code(0);
                }
                None => {}
            },
        }
    }
}

/// Reaps every exited child; the command's status if it was among them.
fn reap(command: Option<Pid>) -> Option<ExitStatus> {
    let mut result = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if Some(pid) == command => result = Some(ExitStatus::Code(code)),
            Ok(WaitStatus::Signaled(pid, sig, _)) if Some(pid) == command => {
                result = Some(ExitStatus::Signal(sig as i32))
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return result,
            Ok(_) => {}
        }
    }
}
