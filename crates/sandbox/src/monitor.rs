//! A node's monitor: a small process outside the node that creates it (clone3 into new
//! namespaces), places it in its cgroup, writes its output to a log with timestamps, and
//! records how it ended. It is what lets `lab ps` say "exited, killed by signal 9" after the
//! fact, without a daemon and without handing the node any host file descriptor.

use crate::cgroup;
use crate::clone::{clone_into, Forked};
use crate::error::{Context, Error, Result};
use crate::layers;
use crate::rootfs;
use crate::spec::{ExitStatus, IdMap, NodeSpec};
use crate::sync::{self, Message, SYNC_FD};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::SystemTime;

/// Namespaces every node gets from the start; the cgroup namespace follows once the init is
/// in its cgroup. A user namespace and a time namespace are added where wanted and there.
const NAMESPACES: i32 =
    libc::CLONE_NEWPID | libc::CLONE_NEWNET | libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;

/// CLONE_NEWTIME (clone3 only; libc does not export it for every target).
pub(crate) const CLONE_NEWTIME: i32 = 0x80;

/// Whether this kernel has time namespaces.
pub(crate) fn has_time_namespaces() -> bool {
    Path::new("/proc/self/ns/time").exists()
}

/// Longest line kept whole in the log; longer output is split.
const MAX_LINE: usize = 16 * 1024;

/// Runs the monitor; never returns.
pub fn main(spec_path: &Path) -> ! {
    let closed = sync::close_inherited_fds();
    // SAFETY: `lab up` hands the monitor the sync socket on SYNC_FD, and this is the only
    // place that takes it.
    let mut sync = UnixStream::from(unsafe { crate::fd::inherited(SYNC_FD) });
    if let Err(e) = closed {
        let _ = sync::send(&mut sync, &Message::Failed { error: format!("closing inherited fds: {e}") });
        std::process::exit(1)
    }
    // The monitor lives in its own session; a terminal's hangup or ^C is not for it.
    for s in [Signal::SIGHUP, Signal::SIGINT] {
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe { signal(s, SigHandler::SigIgn) };
    }
    let spec = match NodeSpec::load(spec_path) {
        Ok(s) => s,
        Err(e) => {
            let _ = sync::send(&mut sync, &Message::Failed { error: e.to_string() });
            std::process::exit(1)
        }
    };
    match run(&spec, sync) {
        Ok(status) => {
            let _ = record(&spec, status);
            std::process::exit(0)
        }
        Err(e) => {
            let _ = append_log(&spec, &format!("lab-monitor: {e}"));
            std::process::exit(1)
        }
    }
}

fn run(spec: &NodeSpec, mut sync: UnixStream) -> Result<ExitStatus> {
    let cgroups = cgroup::detect()?;
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(spec.log())
        .ctx(|| format!("opening {}", spec.log().display()))?;
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "creating a pipe".into())?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "creating a pipe".into())?;
    let devnull = File::open("/dev/null").ctx(|| "opening /dev/null".into())?;
    let exe = CString::new("/proc/self/exe").expect("no NUL in a literal");
    let argv = [CString::new("lab-init").expect("literal"), CString::new("__init").expect("literal")];
    let mut namespaces = NAMESPACES | if spec.userns.is_some() { libc::CLONE_NEWUSER } else { 0 };
    if has_time_namespaces() {
        namespaces |= CLONE_NEWTIME;
    }
    // The child waits on this for its root, which a helper makes once the user namespace's
    // id maps are written.
    let (root_tx, root_rx) = UnixStream::pair().ctx(|| "creating a socket pair".into())?;

    // SAFETY: the monitor is single-threaded, so the child may run any code before exec.
    let forked = match unsafe { clone_into(namespaces) } {
        // A kernel whose clone3 does not take CLONE_NEWTIME: without.
        Err(e) if e.errno() == Some(libc::EINVAL) && namespaces & CLONE_NEWTIME != 0 => {
            // SAFETY: as above.
            unsafe { clone_into(namespaces & !CLONE_NEWTIME) }?
        }
        r => r?,
    };
    let (pid, pidfd) = match forked {
        Forked::Child => {
            // stdin /dev/null, stdout/stderr into our pipes; the sync socket stays on SYNC_FD
            // (it is not close-on-exec).
            let _ = nix::unistd::dup2_stdin(&devnull);
            let _ = nix::unistd::dup2_stdout(&out_w);
            let _ = nix::unistd::dup2_stderr(&err_w);
            drop(root_tx);
            let err = exec_init(spec, root_rx, &exe, &argv);
            eprintln!("lab-monitor: starting the node's init: {err}");
            // SAFETY: leave without running the parent's atexit handlers or destructors.
            unsafe { libc::_exit(125) }
        }
        Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop((out_w, err_w, devnull, root_rx));
    let placed = cgroups.add_process(&spec.cgroup, pid).and_then(|()| {
        if let Some(map) = spec.userns {
            write_id_maps(pid, map)?;
        }
        make_root(spec, pid, &root_tx)
    });
    let warnings = match placed {
        Ok(w) => w,
        Err(e) => {
            let _ = pidfd.signal(libc::SIGKILL);
            let _ = sync::send(&mut sync, &Message::Failed { error: e.to_string() });
            return Err(e);
        }
    };
    drop(root_tx);
    let _ = sync::send(&mut sync, &Message::Started { pid, warnings });
    // From here on the conversation is between `lab up` and the init.
    drop(sync);
    relay([out_r, err_r], &mut log)?;
    match waitid(Id::PIDFd(pidfd.as_fd()), WaitPidFlag::WEXITED) {
        Ok(WaitStatus::Exited(_, code)) => Ok(ExitStatus::Code(code)),
        Ok(WaitStatus::Signaled(_, sig, _)) => Ok(ExitStatus::Signal(sig as i32)),
        Ok(other) => Err(Error::Other(format!("unexpected wait status of the init: {other:?}"))),
        Err(e) => Err(Error::os("waiting for the node's init", e)),
    }
}

/// Makes the root of node `spec` (whose init-to-be is `pid`) in a helper process, as the
/// host's root in a mount namespace of its own, which hands it to the init over `to_init`.
/// Returns what the node does without (an idmapping the kernel could not make).
fn make_root(spec: &NodeSpec, pid: i32, to_init: &UnixStream) -> Result<Vec<String>> {
    let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "creating a pipe".into())?;
    // SAFETY: the monitor is single-threaded; the helper exits without returning.
    match unsafe { nix::unistd::fork() }.ctx(|| "forking the helper that makes the node's root".into())? {
        nix::unistd::ForkResult::Child => {
            drop(report_r);
            let mut report = File::from(report_w);
            // Whatever happens here ends here: the helper must never return into the
            // monitor's code, not even by unwinding.
            let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| helper(spec, pid, to_init)))
                .unwrap_or_else(|_| Err(Error::Other("the helper panicked".into())));
            let code = match made {
                Ok(warnings) => {
                    for w in warnings {
                        let _ = writeln!(report, "warning {w}");
                    }
                    0
                }
                Err(e) => {
                    let _ = writeln!(report, "error building the node's root: {e}");
                    1
                }
            };
            // SAFETY: leave without running the monitor's atexit handlers or destructors.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(report_w);
            let said = std::io::read_to_string(File::from(report_r)).unwrap_or_default();
            let status = nix::sys::wait::waitpid(child, None);
            if let Some(e) = said.lines().find_map(|l| l.strip_prefix("error ")) {
                return Err(Error::Other(e.to_string()));
            }
            if !matches!(status, Ok(WaitStatus::Exited(_, 0))) {
                return Err(Error::Other(format!("the helper making the node's root ended: {status:?}")));
            }
            Ok(said.lines().filter_map(|l| l.strip_prefix("warning ")).map(str::to_string).collect())
        }
    }
}

/// The helper's work: in a mount namespace of its own, the node's root and bind mounts,
/// handed to the init-to-be `pid` over `to_init`. Returns the warnings.
fn helper(spec: &NodeSpec, pid: i32, to_init: &UnixStream) -> Result<Vec<String>> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).ctx(|| "creating the helper's mount namespace".into())?;
    let userns = match spec.userns {
        Some(_) => Some(File::open(format!("/proc/{pid}/ns/user")).ctx(|| "opening the node's user namespace".into())?),
        None => None,
    };
    let root = layers::build(spec, userns.as_ref().map(|f| f.as_fd()))?;
    for fd in std::iter::once(&root.mount).chain(&root.binds) {
        send_fd(to_init, fd)?;
    }
    Ok(root.warnings)
}

/// Sends `fd` (and one byte) over a unix socket.
fn send_fd(sock: &UnixStream, fd: &OwnedFd) -> Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [fd.as_raw_fd()];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[std::io::IoSlice::new(b"r")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .ctx(|| "handing the node's root to its init".into())?;
    Ok(())
}

/// Receives an fd sent with [`send_fd`]; `None` if the other end closed without one.
fn recv_fd(sock: &UnixStream) -> Result<Option<OwnedFd>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([i32; 1]);
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .ctx(|| "waiting for the node's root".into())?;
    for c in msg.cmsgs().ctx(|| "reading the node's root".into())? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: SCM_RIGHTS gave us these fds; nothing else owns them.
            return Ok(fds.first().map(|fd| unsafe { OwnedFd::from_raw_fd(*fd) }));
        }
    }
    Ok(None)
}

/// In the monitor's child, in the node's new namespaces: wait for the node's root and bind
/// mounts, become root of the user namespace (mapped by then), then exec the init with them
/// as fds SOURCES_FD and up. Exec'ing as root of the namespace is what keeps its capabilities.
fn exec_init(spec: &NodeSpec, root_rx: UnixStream, exe: &CString, argv: &[CString]) -> Error {
    let mut sources = Vec::with_capacity(1 + spec.mounts.len());
    for _ in 0..1 + spec.mounts.len() {
        match recv_fd(&root_rx) {
            Ok(Some(fd)) => sources.push(fd),
            Ok(None) => return Error::Other("the monitor did not hand over the node's root".into()),
            Err(e) => return e,
        }
    }
    drop(root_rx);
    let mut moves: Vec<(i32, i32)> =
        sources.iter().enumerate().map(|(i, fd)| (fd.as_raw_fd(), rootfs::SOURCES_FD + i as i32)).collect();
    // SAFETY: this child execs the init next; nothing of it uses SOURCES_FD.. (the sources
    // it owns are only read through `moves`, and dropped unused if exec fails).
    if let Err(e) = unsafe { crate::fd::place(&mut moves) } {
        return Error::os("placing the node's source fds", e);
    }
    if spec.userns.is_some() {
        if let Err(e) = crate::init::become_root() {
            return e;
        }
    }
    match nix::unistd::execv(exe, argv) {
        Err(e) => Error::os("exec", e),
        Ok(never) => match never {},
    }
}

/// Maps uid and gid 0..size in the init's new user namespace to the node's host range.
fn write_id_maps(pid: i32, map: IdMap) -> Result<()> {
    let line = format!("0 {} {}\n", map.host, map.size);
    for file in ["uid_map", "gid_map"] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, &line).ctx(|| format!("writing {path}"))?;
    }
    Ok(())
}

/// Copies the node's stdout and stderr into the log, a timestamped line at a time, until
/// every writer of the pipes is gone: the init and everything in its pid namespace, which
/// the kernel kills when the init exits.
fn relay(pipes: [OwnedFd; 2], log: &mut File) -> Result<()> {
    const NAMES: [&str; 2] = ["stdout", "stderr"];
    let mut open = [true, true];
    let mut partial: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut files = pipes.map(File::from);
    let mut buf = vec![0u8; 64 * 1024];
    while open.iter().any(|o| *o) {
        let order: Vec<usize> = (0..2).filter(|i| open[*i]).collect();
        let mut fds: Vec<PollFd> = order.iter().map(|i| PollFd::new(files[*i].as_fd(), PollFlags::POLLIN)).collect();
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::os("waiting for the node's output", e)),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        for (slot, i) in order.iter().enumerate() {
            if !ready[slot] {
                continue;
            }
            match files[*i].read(&mut buf) {
                Ok(0) => {
                    open[*i] = false;
                    flush_line(log, NAMES[*i], &mut partial[*i])?;
                }
                Ok(n) => write_lines(log, NAMES[*i], &mut partial[*i], &buf[..n])?,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::os("reading the node's output", e)),
            }
        }
    }
    Ok(())
}

fn write_lines(log: &mut File, stream: &str, partial: &mut Vec<u8>, data: &[u8]) -> Result<()> {
    partial.extend_from_slice(data);
    while let Some(nl) = partial.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = partial.drain(..=nl).collect();
        write_line(log, stream, &line[..line.len() - 1])?;
    }
    if partial.len() >= MAX_LINE {
        flush_line(log, stream, partial)?;
    }
    Ok(())
}

fn flush_line(log: &mut File, stream: &str, partial: &mut Vec<u8>) -> Result<()> {
    if !partial.is_empty() {
        let line = std::mem::take(partial);
        write_line(log, stream, &line)?;
    }
    Ok(())
}

fn write_line(log: &mut File, stream: &str, line: &[u8]) -> Result<()> {
    let mut out = format!("{} {stream} ", timestamp(SystemTime::now())).into_bytes();
    out.extend_from_slice(line);
    out.push(b'\n');
    log.write_all(&out).ctx(|| "writing the node's log".into())
}

fn append_log(spec: &NodeSpec, message: &str) -> Result<()> {
    let mut log = OpenOptions::new().create(true).append(true).open(spec.log()).ctx(|| "opening the log".into())?;
    write_line(&mut log, "lab", message.as_bytes())
}

/// Writes how the init ended, atomically.
fn record(spec: &NodeSpec, status: ExitStatus) -> Result<()> {
    let tmp = spec.status_file().with_extension("tmp");
    let json = serde_json::to_vec(&status).map_err(|e| Error::Other(e.to_string()))?;
    std::fs::write(&tmp, json).ctx(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, spec.status_file()).ctx(|| format!("writing {}", spec.status_file().display()))?;
    let _ = append_log(spec, &format!("node exited: {status}"));
    Ok(())
}

/// RFC 3339 UTC with milliseconds, e.g. 2026-11-23T07:12:01.123Z.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, d.subsec_millis())
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_418_521_123);
        assert_eq!(timestamp(t), "2026-11-23T07:22:01.123Z");
        assert_eq!(timestamp(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
