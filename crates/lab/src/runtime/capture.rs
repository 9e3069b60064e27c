//! `lab capture`: an interface's packets as pcap, from inside the node's network namespace.

use super::ensure_root;
use super::exec::find_node;
use super::locked::{interface, netns_file, running};
use crate::topology::Name;
use crate::{Error, NodeRef};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::os::fd::AsFd;

/// What `lab capture` captures.
#[derive(Debug, Clone, Default)]
pub struct CaptureRequest {
    /// `None`: the one lab that has a node of that name.
    pub lab: Option<Name>,
    /// The node.
    pub node: String,
    /// Its interface (`lo` too).
    pub ifname: String,
    /// Stop after this many packets.
    pub count: Option<u64>,
    /// Only packets this tcpdump expression accepts (`icmp or arp`).
    pub filter: Option<String>,
}

/// Captures what an interface of a node sends and receives, as pcap, into what `open` makes
/// once the capture is ready (so that a capture that cannot start leaves no file). Runs until
/// `count` packets, until SIGINT or SIGTERM (Ctrl-C), or until the reader goes away. Returns
/// how many packets were written. Must run on a single-threaded process's only thread (it
/// holds those signals for itself).
pub fn capture<W: std::io::Write>(req: &CaptureRequest, open: impl FnOnce() -> Result<W, Error>) -> Result<u64, Error> {
    ensure_root()?;
    let node = req.node.as_str();
    let (lab, state) = find_node(req.lab.as_ref(), node)?;
    let plan = state.plan.node(node).ok_or_else(|| Error::NotRunning(NodeRef::new(&lab, node)))?;
    if !running(&state, node) {
        return Err(Error::NotRunning(NodeRef::new(&lab, node)));
    }
    if req.ifname != "lo" {
        interface(plan, &req.ifname)?;
    }
    let filter = req
        .filter
        .as_deref()
        .map(lab_net::capture::Filter::compile)
        .transpose()
        .map_err(|e| Error::Usage(e.to_string()))?;
    let f = netns_file(plan)?;
    let capture = lab_net::capture::Capture::open(f.as_fd(), &format!("node {node}"), &req.ifname, filter.as_ref())
        .map_err(|e| Error::node(node, e))?;
    // Ctrl-C ends the capture, not the process: the count is still told.
    let mut stops = SigSet::empty();
    stops.add(Signal::SIGINT);
    stops.add(Signal::SIGTERM);
    stops.thread_block().map_err(|e| Error::Io("holding SIGINT and SIGTERM".into(), e.into()))?;
    let stop = SignalFd::with_flags(&stops, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Error::Io("catching SIGINT and SIGTERM".into(), e.into()))?;
    let mut out = open()?;
    Ok(capture.run(&mut out, req.count, Some(stop.as_fd()))?)
}
