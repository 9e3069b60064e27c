//! The node's PID 1. It waits for `lab up` to finish the node's network, builds the node's
//! root, starts the node's command, then reaps every zombie and forwards signals until the
//! command exits, whose status becomes its own. Without a command it waits for a signal.

use crate::error::{Context, Error, Result};
use crate::rootfs;
use crate::spec::{ExitStatus, NodeSpec, Restart};
use crate::sync::{self, Message, SYNC_FD};
use crate::syslog::DevLog;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::io::BufReader;
use std::os::fd::AsFd;
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

/// Runs the init; never returns. Its spec comes with `lab up`'s Go.
pub fn main() -> ! {
    // A session and process group of the node's own: nothing in the node can signal the
    // monitor's (or any host) process group, and no terminal is ever ours.
    // The init is pid 1 of a new pid namespace, so never a process group leader: setsid
    // cannot fail.
    let _ = nix::unistd::setsid();
    // SAFETY: the monitor hands the init the sync socket on SYNC_FD, and this is the only
    // place that takes it.
    let mut sync = UnixStream::from(unsafe { crate::fd::inherited(SYNC_FD) });
    // It must not reach the node's command: close it on exec.
    if crate::fd::set_cloexec(&sync, true).is_err() {
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
    if let Err(e) = crate::fd::close_from(SYNC_FD + 1 + rootfs::Sources::count(&spec)) {
        fail(&mut sync, Error::os("closing inherited fds", e));
    }
    let (signals, devlog) = match setup(&spec, sources) {
        Ok(s) => s,
        Err(e) => fail(&mut sync, e),
    };
    for cmd in &spec.setup {
        if let Err(e) = run_setup(cmd, &spec) {
            fail(&mut sync, e);
        }
    }
    let child = match &spec.command {
        Some(argv) => match spawn(argv, &spec) {
            Ok(pid) => Some(pid),
            Err(e) => fail(&mut sync, e),
        },
        None => None,
    };
    let _ = sync::send(&mut sync, &Message::Ready);
    drop(sync);
    let status = supervise(&signals, devlog.as_ref(), child, &spec);
    std::process::exit(status.code())
}

fn fail(sync: &mut UnixStream, e: Error) -> ! {
    let _ = sync::send(sync, &Message::Failed { error: e.to_string() });
    eprintln!("lab-init: {e}");
    std::process::exit(1)
}

/// Everything between Go and the command: cgroup namespace, root file system, host name,
/// /dev/log, signals, and last the node's capabilities (its seccomp filter is the
/// command's alone).
fn setup(spec: &NodeSpec, sources: rootfs::Sources) -> Result<(SignalFd, Option<DevLog>)> {
    // The monitor placed us in the node's cgroup; that becomes the root of our view.
    unshare(CloneFlags::CLONE_NEWCGROUP).ctx(|| "creating the node's cgroup namespace".into())?;
    rootfs::setup(spec, sources)?;
    nix::unistd::sethostname(&spec.hostname).ctx(|| format!("setting the host name to {}", spec.hostname))?;
    // Nothing in the node may read the init's memory or reopen its files through /proc/1.
    nix::sys::prctl::set_dumpable(false).ctx(|| "making the init non-dumpable".into())?;
    let devlog = DevLog::bind();
    let mut mask = SigSet::empty();
    for s in HANDLED.iter().copied().chain(stop_signal(spec)) {
        mask.add(s);
    }
    mask.thread_block().ctx(|| "blocking signals in the init".into())?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC).ctx(|| "creating the init's signalfd".into())?;
    spec.security.restrict()?;
    Ok((signals, devlog))
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

/// Runs setup command `cmd` (`setup`) as the node's root, as the command will run but for
/// its user, and waits for it: a failure is the start's.
fn run_setup(cmd: &str, spec: &NodeSpec) -> Result<()> {
    let argv = ["/bin/sh".to_string(), "-c".to_string(), cmd.to_string()];
    let pid = spawn_as(&argv, spec, None)?;
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
            Ok(WaitStatus::Exited(_, code)) => {
                return Err(Error::Other(format!("setup command `{cmd}` failed (exit {code})")));
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return Err(Error::Other(format!("setup command `{cmd}` was killed by {sig}")));
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Error::os(format!("waiting for setup command `{cmd}`"), std::io::Error::from(e))),
        }
    }
}

/// Starts the node's command with a clean environment; an exec failure (missing program,
/// not executable) is reported here, so `lab up` can name it.
fn spawn(argv: &[String], spec: &NodeSpec) -> Result<Pid> {
    let user = match &spec.user {
        Some(u) => Some(crate::user::resolve(u)?),
        None => None,
    };
    spawn_as(argv, spec, user)
}

/// Starts `argv` as the command starts, as `user` (`None`: the node's root).
fn spawn_as(argv: &[String], spec: &NodeSpec, user: Option<crate::user::User>) -> Result<Pid> {
    let env = crate::user::with_home(&spec.env, user.as_ref().map_or(0, |u| u.uid));
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).env_clear().envs(env).current_dir(spec.workdir.as_deref().unwrap_or("/")).stdin(Stdio::null());
    let security = spec.security.clone();
    let before_exec = move || {
        default_signals()?;
        // The user, with its supplementary groups (std's uid() would drop them).
        if let Some(u) = &user {
            u.become_it()?;
        }
        // A session of its own: nothing it does to its process group reaches the init.
        nix::unistd::setsid()?;
        security.load_seccomp().map_err(|e| match e.errno() {
            Some(errno) => std::io::Error::from_raw_os_error(errno),
            None => std::io::Error::other(e.to_string()),
        })
    };
    // SAFETY: the init is single-threaded, so the forked child may run any code; std runs
    // this after changing the user and directory, right before exec.
    unsafe { std::os::unix::process::CommandExt::pre_exec(&mut cmd, before_exec) };
    // std resets SIGPIPE in the child; `default_signals` the rest.
    let child = cmd.spawn().map_err(|e| Error::os(format!("starting the node's command `{}`", argv.join(" ")), e))?;
    Ok(Pid::from_raw(child.id() as i32))
}

/// Gives the command what a process started by a shell gets: every signal at its default
/// and none blocked. Without this it would inherit the init's mask (so the SIGTERM the init
/// forwards to stop it would wait forever) and the monitor's ignored SIGHUP and SIGINT.
/// Async-signal-safe: it runs between fork and exec.
fn default_signals() -> std::io::Result<()> {
    for s in [Signal::SIGHUP, Signal::SIGINT] {
        // SAFETY: SIG_DFL installs no handler code.
        unsafe { nix::sys::signal::signal(s, nix::sys::signal::SigHandler::SigDfl) }?;
    }
    SigSet::empty().thread_set_mask()?;
    Ok(())
}

/// The node's own stop signal, if it is one the init can catch (SIGKILL and SIGSTOP act on
/// the init itself).
fn stop_signal(spec: &NodeSpec) -> Option<Signal> {
    spec.stop_signal.and_then(|s| Signal::try_from(s).ok()).filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP))
}

/// Reaps children and forwards signals until the command exits (or, without a command, until
/// asked to stop), starting it again as its restart policy says. Returns the status the init
/// exits with.
fn supervise(signals: &SignalFd, devlog: Option<&DevLog>, mut child: Option<Pid>, spec: &NodeSpec) -> ExitStatus {
    let mut restarts = 0u32;
    let mut started = std::time::Instant::now();
    let mut stopping = false;
    let own_stop = stop_signal(spec);
    let stops = |s: Signal| {
        matches!(s, Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP | Signal::SIGQUIT) || Some(s) == own_stop
    };
    loop {
        // Syslog messages as they come, signals as they come.
        if let Some(log) = devlog {
            let mut fds =
                [PollFd::new(signals.as_fd(), PollFlags::POLLIN), PollFd::new(log.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    eprintln!("lab-init: waiting for signals: {e}");
                    return ExitStatus::Code(1);
                }
            }
            log.drain();
            if !fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLIN)) {
                continue;
            }
        }
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
                let Some(status) = reap(child) else { continue };
                let again = match spec.restart {
                    Restart::No => false,
                    Restart::OnFailure => status != ExitStatus::Code(0),
                    Restart::Always => true,
                };
                let Some(argv) = spec.command.as_ref().filter(|_| again && !stopping) else { return status };
                // Backoff, as Docker's: 100 ms doubling to 10 s, back to the start after a
                // run of 10 s or more.
                if started.elapsed() >= std::time::Duration::from_secs(10) {
                    restarts = 0;
                }
                let backoff =
                    std::time::Duration::from_millis(100u64 << restarts.min(7)).min(std::time::Duration::from_secs(10));
                restarts += 1;
                eprintln!("lab-init: the command ended ({status}); restarting it in {backoff:?} (restart {restarts})");
                std::thread::sleep(backoff);
                started = std::time::Instant::now();
                match spawn(argv, spec) {
                    Ok(pid) => child = Some(pid),
                    Err(e) => {
                        eprintln!("lab-init: restarting: {e}");
                        return status;
                    }
                }
            }
            s => match child {
                Some(pid) => {
                    if stops(s) {
                        stopping = true;
                    }
                    let _ = kill(pid, s);
                }
                None if stops(s) => {
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
