//! `lab capture`: an interface's packets as pcap, from inside the node's network namespace.

use super::ensure_root;
use super::exec::find_node;
use super::locked::{interface, netns_file, running};
use crate::topology::Name;
use crate::{Error, NodeRef};
use std::os::fd::AsFd;

/// Captures what interface `ifname` of `node` sends and receives, as pcap, into `out`.
pub fn capture(
    lab: Option<&Name>,
    node: &str,
    ifname: &str,
    out: &mut impl std::io::Write,
    count: Option<u64>,
) -> Result<u64, Error> {
    ensure_root()?;
    let (lab, state) = find_node(lab, node)?;
    let plan = state.plan.node(node).expect("find_node checked the node");
    if !running(&state, node) {
        return Err(Error::NotRunning(NodeRef::new(&lab, node)));
    }
    if ifname != "lo" {
        interface(plan, ifname)?;
    }
    let f = netns_file(plan)?;
    let capture = lab_net::capture::Capture::open(f.as_fd(), &format!("node {node}"), ifname)
        .map_err(|e| Error::node(node, e))?;
    Ok(capture.run(out, count)?)
}
