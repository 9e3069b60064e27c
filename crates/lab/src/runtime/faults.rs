//! Faults for distributed tests, on a running lab: impairments, links down and up, and
//! partitions. Each is carried out on the host side of the nodes' interfaces
//! ([`super::hostside`]), where no node can undo it, and kept in the lab's state (under the
//! lab's lock), so that a node started again gets it back ([`super::lifecycle`]).

use super::ensure_root;
use super::hostside::HostSide;
use super::locked::{interface, running, the_lab, Locked};
use crate::state::{Journal, LabState};
use crate::topology::{Impairment, Name};
use crate::Error;
use lab_net::Netlink;
use std::collections::BTreeSet;

/// Sets (or, with an empty impairment, clears) what interface `ifname` of `node` does to the
/// packets it sends. It replaces the topology file's impairment of that interface.
pub async fn impair(lab: Option<&Name>, node: &str, ifname: &str, impairment: Impairment) -> Result<(), Error> {
    ensure_root()?;
    let mut l = Locked::of_node(lab, node)?;
    let plan = l.running_node(node)?;
    let iface = interface(plan, ifname)?;
    let index = super::hostside::index_of(&l.state.plan, plan);
    // A link whose other node is stopped is not there to shape: that node's `lab start`
    // applies it.
    let peer_down = l.state.plan.link_peer(index, iface).is_some_and(|(p, _)| {
        let peer = l.state.plan.nodes[p].name.as_str();
        !running(&l.state, peer)
    });
    if !peer_down {
        let host = Netlink::host()?;
        let journal = Journal::open(&l.dir)?;
        HostSide { plan: &l.state.plan, host: &host }.impair(index, iface, &impairment, &journal).await?;
    }
    let name = iface.name.clone();
    let changes = &mut l.state.runtime;
    changes.impairments.retain(|(n, i, _)| !(n == node && i.as_str() == ifname));
    changes.impairments.push((node.to_string(), name, impairment));
    l.save()
}

/// Takes the carrier of interface `ifname` of `node` away (a cable pulled: the node's
/// interface, and a link's other end, lose it), or gives it back.
pub async fn set_link(lab: Option<&Name>, node: &str, ifname: &str, up: bool) -> Result<(), Error> {
    ensure_root()?;
    let mut l = Locked::of_node(lab, node)?;
    let plan = l.running_node(node)?;
    let iface = interface(plan, ifname)?;
    let index = super::hostside::index_of(&l.state.plan, plan);
    let host = Netlink::host()?;
    HostSide { plan: &l.state.plan, host: &host }.set_carrier(index, iface, up).await?;
    let key = (node.to_string(), iface.name.clone());
    if up {
        l.state.runtime.links_down.remove(&key);
    } else {
        l.state.runtime.links_down.insert(key);
    }
    l.save()
}

/// Drops all traffic between nodes `a` and nodes `b`, both ways, on every network and link
/// they share: frames between their bridge ports, and their links' wires, on the host side.
pub async fn partition(lab: Option<&Name>, a: &[String], b: &[String]) -> Result<(), Error> {
    ensure_root()?;
    let first = a.first().ok_or_else(|| Error::Usage("name at least one node on each side".into()))?;
    if b.is_empty() {
        return Err(Error::Usage("name at least one node on each side (--from)".into()));
    }
    let mut l = Locked::of_node(lab, first)?;
    for n in a.iter().chain(b) {
        l.node(n)?;
    }
    if let Some(both) = a.iter().find(|n| b.contains(n)) {
        return Err(Error::Usage(format!("node {both} is on both sides of the partition")));
    }
    let sides = [a.iter().cloned().collect(), b.iter().cloned().collect()];
    l.state.runtime.partitions.push(sides);
    // Saved first: if it cannot be carried out, `lab heal` still knows to undo it.
    l.save()?;
    apply_partitions(&l.state).await
}

/// Ends every partition of the lab.
pub async fn heal(lab: Option<&Name>) -> Result<(), Error> {
    ensure_root()?;
    let mut l = Locked::take(the_lab(lab)?)?;
    l.state.runtime.partitions.clear();
    apply_partitions(&l.state).await?;
    l.save()
}

/// Ends the one partition between nodes `a` and nodes `b` (as [`partition`] made it, either
/// side first); the others stay.
pub async fn heal_partition(lab: Option<&Name>, a: &[String], b: &[String]) -> Result<(), Error> {
    ensure_root()?;
    let first = a.first().ok_or_else(|| Error::Usage("name at least one node on each side".into()))?;
    let mut l = Locked::of_node(lab, first)?;
    let side = |v: &[String]| v.iter().cloned().collect::<BTreeSet<String>>();
    let (a, b) = (side(a), side(b));
    let before = l.state.runtime.partitions.len();
    l.state.runtime.partitions.retain(|[x, y]| !((x == &a && y == &b) || (x == &b && y == &a)));
    if l.state.runtime.partitions.len() == before {
        let names = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
        return Err(Error::Usage(format!("no partition between {} and {}", names(&a), names(&b))));
    }
    apply_partitions(&l.state).await?;
    l.save()
}

/// The lab's partitions, carried out on the host as its state says.
pub(super) async fn apply_partitions(state: &LabState) -> Result<(), Error> {
    let host = Netlink::host()?;
    let running: BTreeSet<String> =
        state.plan.nodes.iter().map(|n| n.name.to_string()).filter(|n| running(state, n)).collect();
    HostSide { plan: &state.plan, host: &host }.partitions(&state.runtime, &running).await
}
