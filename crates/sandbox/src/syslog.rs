//! The node's /dev/log: the init receives what the node's daemons send to syslog (FRR, bird,
//! postgres, `logger`) and writes it to the node's log, where `lab logs` shows it.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;

/// Where programs send syslog messages.
const PATH: &str = "/dev/log";
/// The longest message kept whole (syslog's own limit is smaller); longer ones are cut.
const MAX: usize = 8192;

/// The bound socket.
pub(crate) struct DevLog(UnixDatagram);

impl DevLog {
    /// Binds /dev/log in the node (its /dev is the init's own tmpfs), writable by every user
    /// of the node, as a host's is. `None` if it cannot be made: the node runs without.
    pub(crate) fn bind() -> Option<DevLog> {
        let _ = std::fs::remove_file(PATH);
        let socket = UnixDatagram::bind(PATH).map_err(|e| eprintln!("lab-init: no {PATH}: {e}")).ok()?;
        let _ = std::fs::set_permissions(PATH, std::fs::Permissions::from_mode(0o666));
        socket.set_nonblocking(true).ok()?;
        Some(DevLog(socket))
    }

    /// Writes every message waiting to stderr (the node's log), one line each.
    pub(crate) fn drain(&self) {
        let mut buf = vec![0u8; MAX];
        let mut err = std::io::stderr().lock();
        while let Ok(n) = self.0.recv(&mut buf) {
            let _ = writeln!(err, "{}", line(&buf[..n]));
        }
    }
}

impl AsFd for DevLog {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A syslog message as a log line: `ident[pid]: text`, without its priority and time (the
/// log has its own), from the BSD format glibc's syslog() sends (RFC 3164) or RFC 5424's.
fn line(msg: &[u8]) -> String {
    let text = String::from_utf8_lossy(msg);
    let text = text.trim_end_matches(['\n', '\0']);
    // <PRI>
    let rest = match text.strip_prefix('<').and_then(|t| t.split_once('>')) {
        Some((pri, rest)) if pri.len() <= 3 && pri.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => text,
    };
    // RFC 5424: VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG
    if let Some(v5424) = rest.strip_prefix("1 ") {
        let mut parts = v5424.splitn(6, ' ');
        let (_time, _host) = (parts.next(), parts.next());
        let app = parts.next().filter(|a| *a != "-").unwrap_or("");
        let pid = parts.next().filter(|p| *p != "-");
        let _msgid = parts.next();
        let tail = parts.next().unwrap_or("");
        let msg = skip_structured_data(tail);
        let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg);
        return match pid {
            Some(pid) => format!("{app}[{pid}]: {msg}"),
            None if app.is_empty() => msg.to_string(),
            None => format!("{app}: {msg}"),
        };
    }
    // RFC 3164: "Mmm dd hh:mm:ss " then "ident[pid]: text" (glibc sends no host name).
    let bytes = rest.as_bytes();
    let stamped = bytes.len() > 16
        && bytes[3] == b' '
        && bytes[6] == b' '
        && bytes[9] == b':'
        && bytes[12] == b':'
        && bytes[15] == b' '
        && bytes[..3].iter().all(u8::is_ascii_alphabetic);
    if stamped {
        rest[16..].to_string()
    } else {
        rest.to_string()
    }
}

/// RFC 5424's STRUCTURED-DATA (`-` or `[id k="v"]...`) skipped; what follows it.
fn skip_structured_data(s: &str) -> &str {
    if let Some(rest) = s.strip_prefix("- ") {
        return rest;
    }
    if s == "-" {
        return "";
    }
    let mut depth = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => {
                depth -= 1;
                if depth == 0 && !s[i + 1..].starts_with('[') {
                    return s[i + 1..].strip_prefix(' ').unwrap_or(&s[i + 1..]);
                }
            }
            _ => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::line;

    #[test]
    fn bsd_and_rfc5424_messages_become_ident_pid_text() {
        assert_eq!(line(b"<27>Dec  2 06:11:09 ospfd[45]: OSPF: not ready"), "ospfd[45]: OSPF: not ready");
        assert_eq!(line(b"<13>Dec  2 06:11:09 root: hello\n"), "root: hello");
        assert_eq!(
            line(b"<13>1 2026-12-02T06:11:09.1+00:00 r1 app 77 - [timeQuality tzKnown=\"1\"] hi there"),
            "app[77]: hi there"
        );
        assert_eq!(line(b"<13>1 2026-12-02T06:11:09Z r1 app - - - hello"), "app: hello");
        assert_eq!(line(b"no header at all"), "no header at all");
        assert_eq!(line(b"<999999>x"), "<999999>x");
    }
}
