//! `lab logs`: a node command's output, as its monitor wrote it (one timestamped line per line
//! of stdout or stderr), from the lab's state directory.

use super::exec::find_node;
use crate::state::LabDir;
use crate::topology::Name;
use crate::Error;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;

/// What to show of a node's log.
#[derive(Debug, Clone, Default)]
pub struct LogRequest {
    /// `None`: the one lab that has a node of that name.
    pub lab: Option<Name>,
    /// The node.
    pub node: String,
    /// Only the last this many lines.
    pub tail: Option<usize>,
    /// Keep printing what the node writes, until it ends (or the lab goes down).
    pub follow: bool,
}

/// Writes the node's log to `out`; with `follow`, waits (on inotify and the monitor's pidfd,
/// no polling) for more until the node's monitor exits.
pub fn logs(req: &LogRequest, out: &mut impl Write) -> Result<(), Error> {
    let (lab, state) = find_node(req.lab.as_ref(), &req.node)?;
    let path = LabDir::new(&lab).node_dir(&req.node).join("log");
    let what = || format!("reading {}", path.display());
    let mut file = match File::open(&path) {
        Ok(f) => f,
        // No output yet: the monitor creates the log when the node starts.
        Err(e) if e.kind() == io::ErrorKind::NotFound && !req.follow => return Ok(()),
        Err(e) => return Err(Error::Io(what(), e)),
    };
    // Watch before reading, so nothing written in between is missed.
    let watch = if req.follow {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .map_err(|e| Error::Io("starting inotify".into(), e.into()))?;
        inotify
            .add_watch(&path, AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_DELETE_SELF)
            .map_err(|e| Error::Io(format!("watching {}", path.display()), e.into()))?;
        let monitor = state.node(&req.node).and_then(|p| p.monitor.open().ok().flatten());
        Some((inotify, monitor))
    } else {
        None
    };
    let mut text = Vec::new();
    file.read_to_end(&mut text).map_err(|e| Error::Io(what(), e))?;
    let start = match req.tail {
        Some(n) => tail_start(&text, n),
        None => 0,
    };
    emit(out, &text[start..])?;
    let Some((inotify, monitor)) = watch else { return Ok(()) };
    let Some(monitor) = monitor else { return Ok(()) };
    loop {
        let mut fds =
            [PollFd::new(inotify.as_fd(), PollFlags::POLLIN), PollFd::new(monitor.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::Io("waiting for the log".into(), e.into())),
            Ok(_) => {}
        }
        let ended = fds[1].revents().is_some_and(|r| !r.is_empty());
        let events = inotify.read_events().unwrap_or_default();
        let deleted = events.iter().any(|e| e.mask.contains(AddWatchFlags::IN_DELETE_SELF));
        copy_new(&mut file, out).map_err(|e| Error::Io(what(), e))?;
        if ended || deleted {
            return Ok(());
        }
    }
}

fn emit(out: &mut impl Write, bytes: &[u8]) -> Result<(), Error> {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(|e| Error::Io("writing the log".into(), e)),
    }
}

/// Copies what was appended since the last read.
fn copy_new(file: &mut File, out: &mut impl Write) -> io::Result<()> {
    let pos = file.stream_position()?;
    if file.metadata()?.len() < pos {
        file.seek(SeekFrom::Start(0))?;
    }
    let mut more = Vec::new();
    file.read_to_end(&mut more)?;
    out.write_all(&more)?;
    out.flush()
}

/// Where the last `n` lines of `text` start.
fn tail_start(text: &[u8], n: usize) -> usize {
    if n == 0 {
        return text.len();
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    body.iter().enumerate().rev().filter(|(_, b)| **b == b'\n').nth(n - 1).map_or(0, |(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tail() {
        let t = b"a\nb\nc\n";
        assert_eq!(&t[super::tail_start(t, 2)..], b"b\nc\n");
        assert_eq!(&t[super::tail_start(t, 5)..], b"a\nb\nc\n");
        assert_eq!(&t[super::tail_start(t, 0)..], b"");
        let partial = b"x\ny";
        assert_eq!(&partial[super::tail_start(partial, 1)..], b"y");
    }
}
