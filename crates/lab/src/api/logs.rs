//! A node's log as structured lines, and waiting on what a node does: a log line, a port.

use crate::state::LabDir;
use crate::topology::Name;
use crate::Error;
use std::time::{Duration, Instant};

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The command's standard output.
    Stdout,
    /// The command's standard error.
    Stderr,
    /// lab's own word (the command started, ended, was restarted).
    Lab,
}

/// One line of a node's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When it was written: RFC 3339 UTC with nanoseconds.
    pub time: String,
    /// The stream it came from.
    pub stream: Stream,
    /// The line, without its newline (invalid UTF-8 replaced).
    pub text: String,
}

impl std::fmt::Display for LogLine {
    /// As `lab logs -t` prints it: time, then the line (lab's own lines marked `lab:`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.stream {
            Stream::Lab => write!(f, "{} lab: {}", self.time, self.text),
            _ => write!(f, "{} {}", self.time, self.text),
        }
    }
}

/// One line as the monitor writes it: `TIME STREAM TEXT`.
fn parse(line: &[u8]) -> Option<LogLine> {
    let text = String::from_utf8_lossy(line);
    let (time, rest) = text.split_once(' ')?;
    let (stream, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let stream = match stream {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        "lab" => Stream::Lab,
        _ => return None,
    };
    Some(LogLine { time: time.to_string(), stream, text: text.to_string() })
}

/// The log of `node` of `lab`, as written so far (whole lines only).
pub(super) fn read(lab: &Name, node: &str) -> Result<Vec<LogLine>, Error> {
    let (lab, _) = crate::runtime::find_node(Some(lab), node)?;
    let path = LabDir::new(&lab).node_dir(node).join("log");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::Io(format!("reading {}", path.display()), e)),
    };
    Ok(whole_lines(&bytes).filter_map(parse).collect())
}

fn whole_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    bytes[..end].split(|b| *b == b'\n').filter(|l| !l.is_empty())
}

/// Waits until a line of the command's (stdout or stderr) matches `regex`.
pub(super) async fn wait_for(
    lab: Name,
    node: String,
    regex: regex::Regex,
    timeout: Duration,
) -> Result<LogLine, Error> {
    let (lab, _) = crate::runtime::find_node(Some(&lab), &node)?;
    let dir = LabDir::new(&lab).node_dir(&node);
    let path = dir.join("log");
    // Watched before the first read: a line written in between is seen.
    let watch = lab_sandbox::watch::DirWatch::new(&dir)?;
    let looking = async {
        let mut seen = 0;
        loop {
            let bytes = std::fs::read(&path).unwrap_or_default();
            let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            if let Some(line) = whole_lines(&bytes[seen.min(end)..end])
                .filter_map(parse)
                .find(|l| l.stream != Stream::Lab && regex.is_match(&l.text))
            {
                return Ok(line);
            }
            seen = end;
            watch.changed().await?;
        }
    };
    let what = || {
        Error::node(
            &node,
            Error::TimedOut { what: format!("waiting for a log line matching /{regex}/"), after: timeout },
        )
    };
    tokio::time::timeout(timeout, looking).await.map_err(|_| what())?
}

/// Waits until a socket in the node's network namespace listens on TCP `port`.
pub(super) async fn wait_for_port(lab: Name, node: String, port: u16, timeout: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        let (l, n) = (lab.clone(), node.clone());
        let pid = super::worker::blocking(move || {
            let (lab, state) = crate::runtime::runnable(Some(&l), &n)?;
            state.node(&n).map(|p| p.init.pid).ok_or_else(|| Error::NotRunning(crate::NodeRef::new(&lab, &n)))
        })
        .await?;
        if listens(pid, port) {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            let what = format!("waiting for a listener on TCP port {port}");
            return Err(Error::node(&node, Error::TimedOut { what, after: timeout }));
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Whether the network namespace of process `pid` has a TCP socket listening on `port`.
fn listens(pid: i32, port: u16) -> bool {
    ["tcp", "tcp6"].iter().any(|f| {
        let table = std::fs::read_to_string(format!("/proc/{pid}/net/{f}")).unwrap_or_default();
        table.lines().skip(1).any(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1).unwrap_or_default();
            let state = fields.nth(1).unwrap_or_default();
            // State 0A is LISTEN; the local address ends in :PORT in hex.
            state == "0A" && local.rsplit_once(':').is_some_and(|(_, p)| u16::from_str_radix(p, 16) == Ok(port))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::{parse, whole_lines, Stream};

    #[test]
    fn log_lines_parse_with_their_streams() {
        let log = b"2026-01-01T00:00:00.000000001Z stdout hello world\n2026-01-01T00:00:01Z lab node exited\n2026-01-01T00:00:02Z stderr partial";
        let lines: Vec<_> = whole_lines(log).filter_map(parse).collect();
        assert_eq!(lines.len(), 2, "the line without its newline is not whole yet");
        assert_eq!((lines[0].stream, lines[0].text.as_str()), (Stream::Stdout, "hello world"));
        assert_eq!(lines[1].to_string(), "2026-01-01T00:00:01Z lab: node exited");
    }
}
