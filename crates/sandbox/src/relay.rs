//! The caller's side of `lab exec`: how its standard streams reach the command in the node.
//!
//! A host terminal is never handed to a node process: through it, the process could push
//! keystrokes into the host's shell (TIOCSTI) or read what the user types (/dev/tty). With
//! `-t` the command gets a pty of the node's own and we copy between it and our terminal;
//! without `-t`, each of our streams that is a terminal is replaced by a pipe we copy through
//! (as `docker exec` without `-t` gives pipes). Files and pipes pass straight through. Signals
//! sent to us are passed on to the command, which lives in a session of its own.

use crate::error::{Context, Error, Result};
use crate::process::PidFd;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use nix::unistd::Pid;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Signals we pass on to the command (a pty's own ^C reaches it through the pty instead).
const FORWARDED: &[Signal] = &[Signal::SIGINT, Signal::SIGQUIT, Signal::SIGTERM, Signal::SIGHUP];

/// Our standard streams as the join process gets them, and the ends we copy through.
pub(crate) struct Streams {
    /// What the join process gets as fds 0, 1, 2; `None`: ours, passed straight through.
    pub child: [Option<OwnedFd>; 3],
    /// Our stdin (a terminal) copied into this pipe.
    stdin: Option<OwnedFd>,
    /// The command's stdout and stderr pipes, copied to our fd 1 and 2 (terminals).
    outputs: Vec<(OwnedFd, i32)>,
}

/// Whether our standard stream `fd` (0, 1 or 2) is a terminal.
fn is_tty(fd: i32) -> bool {
    use std::io::IsTerminal;
    match fd {
        0 => std::io::stdin().is_terminal(),
        1 => std::io::stdout().is_terminal(),
        _ => std::io::stderr().is_terminal(),
    }
}

impl Streams {
    /// Pipes in place of each of our standard streams that is a terminal. Without
    /// `interactive` the command reads nothing: the join process gets /dev/null.
    pub fn new(interactive: bool) -> Result<Streams> {
        let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "creating a pipe".into());
        let mut streams = Streams { child: [None, None, None], stdin: None, outputs: Vec::new() };
        if !interactive {
            let null = std::fs::File::open("/dev/null").ctx(|| "opening /dev/null".into())?;
            streams.child[0] = Some(null.into());
        } else if is_tty(0) {
            let (r, w) = pipe()?;
            streams.child[0] = Some(r);
            streams.stdin = Some(w);
        }
        for fd in [1, 2] {
            if is_tty(fd) {
                let (r, w) = pipe()?;
                streams.child[fd as usize] = Some(w);
                streams.outputs.push((r, fd));
            }
        }
        Ok(streams)
    }

    /// Copies between our terminal and the pipes, passing signals on to `command`, until the
    /// join process `child` exits; then whatever the command wrote last.
    pub fn relay(mut self, signals: &SignalFd, child: &PidFd, command: Option<Pid>) -> Result<()> {
        // Our ends only: the join process's ends must close when it (and the command) do.
        self.child = [None, None, None];
        let mut buf = vec![0u8; 32 * 1024];
        // Input read from the terminal but not yet taken by the command.
        let mut pending: Vec<u8> = Vec::new();
        let mut stdin_open = self.stdin.is_some();
        let stdin_handle = std::io::stdin();
        let stdin = stdin_handle.as_fd();
        let mut open: Vec<bool> = vec![true; self.outputs.len()];
        if let Some(w) = &self.stdin {
            set_nonblocking(w)?;
        }
        loop {
            let mut fds =
                vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN), PollFd::new(child.as_fd(), PollFlags::POLLIN)];
            for ((r, _), o) in self.outputs.iter().zip(&open) {
                fds.push(PollFd::new(r.as_fd(), if *o { PollFlags::POLLIN } else { PollFlags::empty() }));
            }
            let input_at = fds.len();
            if let (true, Some(w)) = (stdin_open, &self.stdin) {
                if pending.is_empty() {
                    fds.push(PollFd::new(stdin, PollFlags::POLLIN));
                } else {
                    fds.push(PollFd::new(w.as_fd(), PollFlags::POLLOUT));
                }
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(Error::os("relaying the command's input and output", e)),
            }
            let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
            if ready[0] {
                forward_signals(signals, command, |_| {});
            }
            for (i, (r, target)) in self.outputs.iter().enumerate() {
                if open[i] && ready[2 + i] {
                    match nix::unistd::read(r, &mut buf) {
                        Ok(0) | Err(nix::errno::Errno::EIO) => open[i] = false,
                        Ok(n) => write_all(*target, &buf[..n]),
                        Err(_) => {}
                    }
                }
            }
            if stdin_open && ready.get(input_at).copied().unwrap_or(false) {
                let w = self.stdin.as_ref().expect("stdin_open implies a pipe");
                if pending.is_empty() {
                    match nix::unistd::read(stdin, &mut buf) {
                        Ok(0) | Err(_) => stdin_open = false,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                    }
                }
                match nix::unistd::write(w, &pending) {
                    Ok(n) => _ = pending.drain(..n),
                    Err(nix::errno::Errno::EAGAIN) => {}
                    // The command stopped reading: its input is gone.
                    Err(_) => stdin_open = false,
                }
                if !stdin_open {
                    // End of input (^D), or no reader: the command sees end-of-file.
                    self.stdin = None;
                }
            }
            if ready[1] {
                for (r, target) in &self.outputs {
                    drain(r, *target, &mut buf);
                }
                return Ok(());
            }
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> Result<()> {
    crate::fd::set_nonblocking(fd).ctx(|| "making a pipe non-blocking".into())
}

fn write_all(fd: i32, data: &[u8]) {
    let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
    let target = if fd == 1 { stdout.as_fd() } else { stderr.as_fd() };
    let mut rest = data;
    while !rest.is_empty() {
        match nix::unistd::write(target, rest) {
            Ok(n) => rest = &rest[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// Whatever is left in `r` now, without waiting for writers that outlive the command.
fn drain(r: &OwnedFd, target: i32, buf: &mut [u8]) {
    if set_nonblocking(r).is_err() {
        return;
    }
    while let Ok(n @ 1..) = nix::unistd::read(r, buf) {
        write_all(target, &buf[..n]);
    }
}

/// Reads every pending signal; passes those in FORWARDED to `command`, hands the others to
/// `other`.
fn forward_signals(signals: &SignalFd, command: Option<Pid>, mut other: impl FnMut(Signal)) {
    while let Ok(Some(info)) = signals.read_signal() {
        let Ok(s) = Signal::try_from(info.ssi_signo as i32) else { continue };
        if let (Signal::SIGALRM, Some(pid)) = (s, command) {
            // Its timeout: the command and whatever it started in its session go.
            TIMED_OUT.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = nix::sys::signal::killpg(pid, Signal::SIGKILL);
            let _ = kill(pid, Signal::SIGKILL);
            continue;
        }
        match (FORWARDED.contains(&s), command) {
            (true, Some(pid)) => _ = kill(pid, s),
            (true, None) => {}
            (false, _) => other(s),
        }
    }
}

/// Set when the command's timeout (SIGALRM) killed it.
static TIMED_OUT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Has SIGALRM arrive (on the relay's signalfd) once `after` has passed.
pub(crate) fn alarm(after: std::time::Duration) -> Result<()> {
    let at = libc::timeval {
        tv_sec: after.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        // Below a million: fits any suseconds_t.
        tv_usec: after.subsec_micros() as libc::suseconds_t,
    };
    // A zero timer would be no timer: the shortest one instead.
    let at = if at.tv_sec == 0 && at.tv_usec == 0 { libc::timeval { tv_sec: 0, tv_usec: 1 } } else { at };
    let timer = libc::itimerval { it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 }, it_value: at };
    // SAFETY: setitimer reads the itimerval we pass and writes nothing (old value null).
    if unsafe { libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()) } < 0 {
        return Err(Error::os("setting the command's timeout", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Whether the command's timeout killed it.
pub(crate) fn timed_out() -> bool {
    TIMED_OUT.load(std::sync::atomic::Ordering::Relaxed)
}

/// Puts our terminal in raw mode for the life of the value.
struct RawMode(Option<Termios>);

impl RawMode {
    fn new() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(&stdin) else { return RawMode(None) };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &raw);
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, saved);
        }
    }
}

/// Copies our window size onto the pty.
pub(crate) fn copy_window_size(master: &OwnedFd) {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    for fd in [libc::STDIN_FILENO, libc::STDOUT_FILENO] {
        // SAFETY: TIOCGWINSZ writes a winsize where the pointer points.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 {
            // SAFETY: TIOCSWINSZ reads a winsize from where the pointer points.
            unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
            return;
        }
    }
}

/// With a pty: copy stdin to it and it to stdout, keep its size in step with ours.
pub(crate) fn relay_pty(
    master: &OwnedFd,
    signals: &SignalFd,
    child: &PidFd,
    command: Option<Pid>,
    interactive: bool,
) -> Result<()> {
    let _raw = if interactive { Some(RawMode::new()) } else { None };
    let stdin_handle = std::io::stdin();
    let stdin = stdin_handle.as_fd();
    let mut stdin_open = interactive;
    let mut master_open = true;
    let mut buf = vec![0u8; 32 * 1024];
    let mut out = std::io::stdout();
    loop {
        let mut fds = vec![
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(child.as_fd(), PollFlags::POLLIN),
            PollFd::new(master.as_fd(), if master_open { PollFlags::POLLIN } else { PollFlags::empty() }),
        ];
        if stdin_open {
            fds.push(PollFd::new(stdin, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Error::os("relaying the terminal", e)),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        if ready[0] {
            forward_signals(signals, command, |s| {
                if s == Signal::SIGWINCH {
                    copy_window_size(master);
                }
            });
        }
        if ready[2] {
            match nix::unistd::read(master, &mut buf) {
                Ok(0) | Err(nix::errno::Errno::EIO) => master_open = false,
                Ok(n) => {
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                }
                Err(_) => {}
            }
        }
        if stdin_open && ready[3] {
            match nix::unistd::read(stdin, &mut buf) {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    // End of input: the terminal's end-of-file character.
                    let _ = nix::unistd::write(master, &[4u8]);
                }
                Ok(n) => {
                    let _ = nix::unistd::write(master, &buf[..n]);
                }
            }
        }
        if ready[1] {
            drain(master, libc::STDOUT_FILENO, &mut buf);
            return Ok(());
        }
    }
}
