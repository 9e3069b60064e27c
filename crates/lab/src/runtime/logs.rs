//! `lab logs`: nodes' output as their monitors wrote it (one line per line of stdout or stderr,
//! `TIMESTAMP STREAM TEXT`), from the lab's state directory: one node's, or a whole lab's
//! interleaved by time with each line's node in front (as `compose logs`). Lines of stdout go
//! to stdout, of stderr to stderr, lab's own (how a node ended) to stderr.

use super::exec::find_node;
use crate::state::{LabDir, LabState};
use crate::topology::Name;
use crate::Error;
use lab_sandbox::PidFd;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;

/// What to show of nodes' logs.
#[derive(Debug, Clone, Default)]
pub struct LogRequest {
    /// `None`: the one lab that has a node of that name (or, with no node, the only lab up).
    pub lab: Option<Name>,
    /// The node; `None`: every node of the lab.
    pub node: Option<String>,
    /// Only the last this many lines (of each node).
    pub tail: Option<usize>,
    /// Only lines written at or after this time (RFC 3339, as the log has it).
    pub since: Option<String>,
    /// Keep printing what the nodes write, until they end (or the lab goes down).
    pub follow: bool,
    /// Put each line's time in front of it.
    pub timestamps: bool,
}

/// One node's log being read.
struct Source {
    node: String,
    path: PathBuf,
    file: Option<File>,
    /// What was read after the last newline.
    partial: Vec<u8>,
    monitor: Option<PidFd>,
    watch: Option<WatchDescriptor>,
}

/// One line of a log: when, which stream, what.
struct Line<'a> {
    time: &'a str,
    stream: &'a str,
    text: &'a [u8],
}

fn parse(line: &[u8]) -> Option<Line<'_>> {
    let s = line.iter().position(|b| *b == b' ')?;
    let rest = &line[s + 1..];
    let t = rest.iter().position(|b| *b == b' ').unwrap_or(rest.len());
    Some(Line {
        time: std::str::from_utf8(&line[..s]).ok()?,
        stream: std::str::from_utf8(&rest[..t]).ok()?,
        text: rest.get(t + 1..).unwrap_or_default(),
    })
}

/// Writes the logs asked for to `out` and `err`; with `follow`, waits (on inotify and the
/// monitors' pidfds, no polling) for more until every node's monitor has exited.
pub fn logs(req: &LogRequest, out: &mut impl Write, err: &mut impl Write) -> Result<(), Error> {
    let (lab, state) = match &req.node {
        Some(node) => find_node(req.lab.as_ref(), node)?,
        None => {
            let name = super::locked::the_lab(req.lab.as_ref())?;
            let state = LabDir::new(&name).read_state()?.ok_or_else(|| Error::LabNotUp(name.clone()))?;
            (name, state)
        }
    };
    let dir = LabDir::new(&lab);
    let nodes: Vec<String> = match &req.node {
        Some(n) => vec![n.clone()],
        None => state.plan.nodes.iter().map(|n| n.name.to_string()).collect(),
    };
    let width = nodes.iter().map(String::len).max().unwrap_or(0);
    let prefix = |node: &str| if req.node.is_some() { String::new() } else { format!("{node:<width$} | ") };
    // Watch before reading, so nothing written in between is missed.
    let inotify = if req.follow {
        Some(
            Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
                .map_err(|e| Error::Io("starting inotify".into(), e.into()))?,
        )
    } else {
        None
    };
    let mut sources: Vec<Source> = nodes.iter().map(|n| source(&dir, &state, n, inotify.as_ref())).collect();
    // What is there now: per node its tail, then all of it in order of time.
    let mut backlog: Vec<(String, usize, Vec<u8>)> = Vec::new();
    for (i, s) in sources.iter_mut().enumerate() {
        let Some(file) = s.file.as_mut() else { continue };
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(|e| Error::Io(format!("reading {}", s.path.display()), e))?;
        let complete = text.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        s.partial = text.split_off(complete);
        let lines: Vec<&[u8]> = text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter(|l| req.since.as_deref().is_none_or(|since| parse(l).is_some_and(|p| p.time >= since)))
            .collect();
        let skip = req.tail.map_or(0, |n| lines.len().saturating_sub(n));
        for l in &lines[skip..] {
            let time = parse(l).map(|p| p.time.to_string()).unwrap_or_default();
            backlog.push((time, i, l.to_vec()));
        }
    }
    backlog.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    for (_, i, line) in &backlog {
        emit(out, err, &prefix(&sources[*i].node), line, req.timestamps)?;
    }
    let Some(inotify) = inotify else { return Ok(()) };
    loop {
        let live: Vec<usize> = (0..sources.len()).filter(|i| sources[*i].monitor.is_some()).collect();
        if live.is_empty() {
            return Ok(());
        }
        let mut fds = vec![PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        fds.extend(
            live.iter().filter_map(|i| sources[*i].monitor.as_ref()).map(|m| PollFd::new(m.as_fd(), PollFlags::POLLIN)),
        );
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::Io("waiting for the log".into(), e.into())),
            Ok(_) => {}
        }
        let ended: Vec<usize> = live
            .iter()
            .zip(&fds[1..])
            .filter(|(_, f)| f.revents().is_some_and(|r| !r.is_empty()))
            .map(|(i, _)| *i)
            .collect();
        let events = inotify.read_events().unwrap_or_default();
        for (i, s) in sources.iter_mut().enumerate() {
            let touched = events.iter().any(|e| Some(e.wd) == s.watch);
            let deleted =
                events.iter().any(|e| Some(e.wd) == s.watch && e.mask.contains(AddWatchFlags::IN_DELETE_SELF));
            if s.file.is_none() && (touched || s.path.exists()) {
                s.file = File::open(&s.path).ok();
            }
            if touched || ended.contains(&i) {
                for line in new_lines(s).map_err(|e| Error::Io(format!("reading {}", s.path.display()), e))? {
                    emit(out, err, &prefix(&s.node), &line, req.timestamps)?;
                }
            }
            if ended.contains(&i) || deleted {
                s.monitor = None;
            }
        }
    }
}

/// Node `node`'s log: its file if it exists yet, its monitor (to know when it ends), and a
/// watch on its file.
fn source(dir: &LabDir, state: &LabState, node: &str, inotify: Option<&Inotify>) -> Source {
    let path = dir.node_dir(node).join("log");
    // The node's directory, not the file: the monitor creates the log when the node starts,
    // and a directory's watch sees its files change.
    let watch = inotify.and_then(|i| {
        let flags = AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CREATE | AddWatchFlags::IN_DELETE_SELF;
        i.add_watch(&dir.node_dir(node), flags).ok()
    });
    Source {
        node: node.to_string(),
        file: File::open(&path).ok(),
        path,
        partial: Vec::new(),
        monitor: inotify.and(state.node(node)).and_then(|p| p.monitor.open().ok().flatten()),
        watch,
    }
}

/// The whole lines appended since the last read.
fn new_lines(s: &mut Source) -> io::Result<Vec<Vec<u8>>> {
    let Some(file) = s.file.as_mut() else { return Ok(Vec::new()) };
    let pos = file.stream_position()?;
    if file.metadata()?.len() < pos {
        file.seek(SeekFrom::Start(0))?;
    }
    file.read_to_end(&mut s.partial)?;
    let complete = s.partial.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
    let rest = s.partial.split_off(complete);
    let done = std::mem::replace(&mut s.partial, rest);
    Ok(done.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect())
}

/// Writes one log line where its stream belongs: `[PREFIX][TIME ]TEXT`; lab's own lines as
/// `lab: TEXT` on stderr.
fn emit(out: &mut impl Write, err: &mut impl Write, prefix: &str, line: &[u8], timestamps: bool) -> Result<(), Error> {
    let Some(l) = parse(line) else { return Ok(()) };
    let mut bytes = prefix.as_bytes().to_vec();
    if timestamps {
        bytes.extend_from_slice(l.time.as_bytes());
        bytes.push(b' ');
    }
    if l.stream == "lab" {
        bytes.extend_from_slice(b"lab: ");
    }
    bytes.extend_from_slice(l.text);
    bytes.push(b'\n');
    let written = match l.stream {
        "stdout" => out.write_all(&bytes).and_then(|()| out.flush()),
        _ => err.write_all(&bytes).and_then(|()| err.flush()),
    };
    match written {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(|e| Error::Io("writing the log".into(), e)),
    }
}

/// The last `n` lines of node `node`'s log, without their times (`stderr oops`), for an
/// error about it: nothing if it wrote nothing.
pub(super) fn last_lines(dir: &LabDir, node: &str, n: usize) -> Vec<String> {
    let text = std::fs::read(dir.node_dir(node).join("log")).unwrap_or_default();
    let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    let skip = lines.len().saturating_sub(n);
    lines[skip..]
        .iter()
        .map(|l| {
            let s = String::from_utf8_lossy(l);
            s.split_once(' ').map_or(s.to_string(), |(_, rest)| rest.to_string())
        })
        .collect()
}

/// Adds node `e`'s log's last lines to an error about a node, if it has any.
pub(super) fn with_log(dir: &LabDir, e: Error) -> Error {
    let Some(node) = e.node_name().map(str::to_string) else { return e };
    let log = last_lines(dir, &node, 10);
    if log.is_empty() {
        return e;
    }
    Error::WithLog { node, source: Box::new(e), log }
}

/// The RFC 3339 time `--since` means: a time as the log writes it (a prefix of one, like
/// `2026-11-23T10:45`, works too), or a duration back from now (`10m`, `1h30m`, `90s`).
pub fn since(arg: &str) -> Result<String, String> {
    if arg.len() >= 10 && arg.as_bytes()[4] == b'-' {
        return Ok(arg.to_string());
    }
    let back = crate::units::parse_time(arg)
        .map_err(|m| format!("--since {arg}: {m}; or write a time, 2026-11-23T10:45:00Z"))?;
    let at = std::time::SystemTime::now() - std::time::Duration::from_micros(back);
    Ok(lab_sandbox::monitor::timestamp(at))
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_go_to_their_stream_with_a_prefix_and_time() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        for l in [
            "2026-11-23T10:45:29.071Z stdout hello world",
            "2026-11-23T10:45:29.978Z stderr oops",
            "2026-11-23T10:45:29.980Z lab node exited: exit code 0",
        ] {
            super::emit(&mut out, &mut err, "a | ", l.as_bytes(), false).unwrap();
        }
        assert_eq!(String::from_utf8(out).unwrap(), "a | hello world\n");
        assert_eq!(String::from_utf8(err).unwrap(), "a | oops\na | lab: node exited: exit code 0\n");
        let mut out = Vec::new();
        super::emit(&mut out, &mut Vec::new(), "", b"2026-11-23T10:45:29.071Z stdout ", true).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "2026-11-23T10:45:29.071Z \n");
    }

    #[test]
    fn since_takes_a_time_or_a_duration_back() {
        assert_eq!(super::since("2026-11-23T10:45").unwrap(), "2026-11-23T10:45");
        let ten_minutes_ago = super::since("10m").unwrap();
        assert!(ten_minutes_ago.ends_with('Z') && ten_minutes_ago.len() == 24, "{ten_minutes_ago}");
        assert!(super::since("soon").is_err());
    }
}
