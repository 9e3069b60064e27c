//! The conversation between `lab up`, a node's monitor and its init, one JSON message per
//! line over a socketpair: the monitor says `Started` (with the init's pid), `lab up` sets up
//! the network and says `Go`, the init sets up its root and command and says `Ready` or
//! `Failed`. If `lab up` goes away, the init reads end-of-file and exits: a node never starts
//! half made.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};

/// The fd the monitor and init find the socket on.
pub const SYNC_FD: i32 = 3;

/// Closes every fd above SYNC_FD: whatever the caller of `lab up` let its children inherit
/// must not reach a node. The monitor calls this before anything else.
pub fn close_inherited_fds() -> std::io::Result<()> {
    crate::fd::close_from(SYNC_FD + 1)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    Started {
        pid: i32,
        /// What the node does without (an idmapping this kernel cannot make, say).
        #[serde(default)]
        warnings: Vec<String>,
    },
    /// Carries the spec: the init reads no file of the host's (in a user namespace it could
    /// not).
    Go {
        spec: Box<crate::NodeSpec>,
    },
    Ready,
    Failed {
        error: String,
    },
}

impl Message {
    pub fn line(&self) -> String {
        let mut s = serde_json::to_string(self).expect("messages serialize");
        s.push('\n');
        s
    }

    pub fn parse(line: &str) -> Option<Message> {
        serde_json::from_str(line.trim_end()).ok()
    }
}

/// Blocking send, for the monitor and init.
pub fn send(w: &mut impl Write, m: &Message) -> std::io::Result<()> {
    w.write_all(m.line().as_bytes())
}

/// Blocking receive; `None` at end-of-file or on garbage.
pub fn recv(r: &mut impl BufRead) -> Option<Message> {
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Message::parse(&line),
    }
}
