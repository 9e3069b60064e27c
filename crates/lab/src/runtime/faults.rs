//! Faults for distributed tests, on a running lab: impairments, links down and up,
//! partitions, and stopping and starting nodes. Each is carried out on the host side of the
//! nodes' interfaces ([`super::hostside`]), where no node can undo it, and kept in the lab's
//! state (under the lab's lock), so that a node started again gets it back.

use super::exec::find_node;
use super::hostside::HostSide;
use super::resources::Found;
use super::services;
use super::up::{self, Builder, Profiles};
use super::{ensure_root, Options};
use crate::plan::{InterfacePlan, NodePlan};
use crate::state::{all_states, Journal, LabDir, LabState, Lock, NodeProcesses};
use crate::topology::{Impairment, Name};
use crate::Error;
use crate::NodeRef;
use futures::future::try_join_all;
use lab_net::{netns, Netlink};
use lab_sandbox::cgroup::{self, Cgroups};
use lab_sandbox::SealedExe;
use std::collections::BTreeSet;
use std::fs::File;
use std::os::fd::AsFd;

/// A lab locked for a change, with its state as read under the lock.
struct Locked {
    name: Name,
    dir: LabDir,
    _lock: Lock,
    state: LabState,
}

impl Locked {
    fn take(name: Name) -> Result<Locked, Error> {
        let dir = LabDir::new(&name);
        let lock = dir.lock()?;
        let state = dir.read_state()?.ok_or_else(|| Error::LabNotUp(name.clone()))?;
        Ok(Locked { name, dir, _lock: lock, state })
    }

    /// The lab holding `node` (lab `lab` if given), locked.
    fn of_node(lab: Option<&Name>, node: &str) -> Result<Locked, Error> {
        Locked::take(find_node(lab, node)?.0)
    }

    fn node(&self, node: &str) -> Result<&NodePlan, Error> {
        self.state
            .plan
            .node(node)
            .ok_or_else(|| Error::NoSuchNode { lab: Some(self.name.clone()), node: node.to_string() })
    }

    /// Node `node`, which must be running.
    fn running_node(&self, node: &str) -> Result<&NodePlan, Error> {
        let plan = self.node(node)?;
        if self.state.runtime.stopped.contains(node) {
            return Err(Error::Stopped(NodeRef::new(&self.name, node)));
        }
        if !running(&self.state, node) {
            return Err(Error::NotRunning(NodeRef::new(&self.name, node)));
        }
        Ok(plan)
    }

    fn save(&self) -> Result<(), Error> {
        self.dir.write_state(&self.state)
    }
}

fn running(state: &LabState, node: &str) -> bool {
    !state.runtime.stopped.contains(node) && state.node(node).is_some_and(|p| p.init.is_alive())
}

/// Interface `ifname` of a node, or an error listing the ones it has.
fn interface<'a>(node: &'a NodePlan, ifname: &str) -> Result<&'a InterfacePlan, Error> {
    node.interfaces.iter().find(|i| i.name.as_str() == ifname).ok_or_else(|| Error::NoSuchInterface {
        node: node.name.to_string(),
        ifname: ifname.to_string(),
        has: node.interfaces.iter().map(|i| i.name.to_string()).collect(),
    })
}

/// The node's network namespace, by its name under /run/netns.
fn netns_file(node: &NodePlan) -> Result<File, Error> {
    let path = netns::path(&node.netns);
    File::open(&path).map_err(|e| Error::node(node.name.as_str(), Error::Io(format!("opening {}", path.display()), e)))
}

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

/// The lab's partitions, carried out on the host as its state says.
async fn apply_partitions(state: &LabState) -> Result<(), Error> {
    let host = Netlink::host()?;
    let running: BTreeSet<String> =
        state.plan.nodes.iter().map(|n| n.name.to_string()).filter(|n| running(state, n)).collect();
    HostSide { plan: &state.plan, host: &host }.partitions(&state.runtime, &running).await
}

/// Lab `lab`, or the only lab that is up.
fn the_lab(lab: Option<&Name>) -> Result<Name, Error> {
    if let Some(l) = lab {
        return Ok(l.clone());
    }
    let names: Vec<Name> = all_states().into_iter().filter(|(_, s)| s.is_some()).map(|(n, _)| n).collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::NoLabUp),
        _ => Err(Error::AmbiguousLab(names)),
    }
}

/// Stops a node: its processes, its interfaces (the peers of its links see them go), its
/// namespace name and cgroup. Its addresses stay its own for `lab start`.
pub async fn stop(lab: Option<&Name>, node: &str) -> Result<(), Error> {
    ensure_root()?;
    let mut l = Locked::of_node(lab, node)?;
    if l.state.runtime.stopped.contains(node) {
        return Err(Error::AlreadyStopped(NodeRef::new(&l.name, node)));
    }
    let host = Netlink::host()?;
    let cgroups = cgroup::detect()?;
    take_down(&l.state, l.node(node)?, &host, cgroups.as_ref()).await?;
    l.state.runtime.stopped.insert(node.to_string());
    l.save()
}

/// Everything of one node, gone; "already gone" is success. The other ends of its links lose
/// their carrier first, as when a machine is switched off.
async fn take_down(state: &LabState, node: &NodePlan, host: &Netlink, cgroups: &dyn Cgroups) -> Result<(), Error> {
    let name = node.name.as_str();
    let mut errors: Vec<Error> = Vec::new();
    let index = super::hostside::index_of(&state.plan, node);
    for (_, peer) in node.interfaces.iter().filter_map(|i| state.plan.link_peer(index, i)) {
        let cut = match host.link(peer.host_veth()).await {
            Ok(Some(l)) => match host.clear_ingress(l.index, peer.host_veth()).await {
                Ok(()) => host.set_down(l.index, peer.host_veth()).await,
                e => e,
            },
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = cut {
            errors.push(e.into());
        }
    }
    let (_, removed) = Found::node(node, state.node(name)).remove(host, cgroups).await;
    errors.extend(removed);
    match errors.len() {
        0 => Ok(()),
        _ => Err(Error::node(name, Error::Several(errors))),
    }
}

/// Starts a stopped (or exited) node again, as the plan has it: same addresses, interfaces,
/// routes; the impairments, links down and partitions set since `up`; links to running
/// peers made again. Its writable layer starts fresh, as a container's would.
pub async fn start(lab: Option<&Name>, node: &str, options: &Options) -> Result<(), Error> {
    ensure_root()?;
    let mut l = Locked::of_node(lab, node)?;
    let index = l.state.plan.nodes.iter().position(|n| n.name.as_str() == node).expect("of_node found the node");
    if running(&l.state, node) {
        return Err(Error::Running(NodeRef::new(&l.name, node)));
    }
    let host = Netlink::host()?;
    let cgroups = cgroup::detect()?;
    if !l.state.runtime.stopped.contains(node) {
        // It ended by itself: clear what is left of it first.
        take_down(&l.state, l.node(node)?, &host, cgroups.as_ref()).await?;
        l.state.runtime.stopped.insert(node.to_string());
        l.save()?;
    }
    let mut profiles = Profiles::new();
    up::load_profile(&mut profiles, node, &l.node(node)?.policy.seccomp)?;
    let filters = up::Filters::compile([l.node(node)?], &profiles)?;
    let exe = SealedExe::of(&options.lab_binary)?;
    let journal = Journal::open(&l.dir)?;
    let builder = Builder {
        plan: &l.state.plan,
        dir: &l.dir,
        journal: &journal,
        host: &host,
        cgroups: cgroups.as_ref(),
        exe: &exe,
        filters: &filters,
        lab_binary: &options.lab_binary,
        wait: false,
        warnings: Default::default(),
    };
    match bring_back(&builder, &l.state, index).await {
        Ok(processes) => {
            l.state.nodes.retain(|p| p.name != node);
            l.state.nodes.push(processes);
            l.state.runtime.stopped.remove(node);
            for w in builder.warnings() {
                tracing::warn!("{w}");
                if !l.state.warnings.contains(&w) {
                    l.state.warnings.push(w);
                }
            }
            l.save()?;
            // Hooks run in the node as `lab exec` does, so after the state says it runs.
            services::hooks(&options.lab_binary, &l.state.plan, l.node(node)?).await
        }
        Err(e) => {
            if let Err(cleanup) = take_down(&l.state, l.node(node)?, &host, cgroups.as_ref()).await {
                return Err(Error::UndoFailed { cause: Box::new(e), what: "cleaning up", undo: Box::new(cleanup) });
            }
            Err(e)
        }
    }
}

async fn bring_back(b: &Builder<'_>, state: &LabState, index: usize) -> Result<NodeProcesses, Error> {
    let plan = &state.plan;
    let node = &plan.nodes[index];
    let name = node.name.as_str();
    let mut started = b.restart(index).await?;
    let bridges: Vec<u32> = try_join_all(plan.networks.iter().map(|n| b.host.index(&n.bridge))).await?;
    up::create_veths(b.host, up::node_veths(plan, node, started.netns.as_fd(), &bridges)).await?;
    up::settle(node, &started.netns).await?;
    let changes = &state.runtime;
    let mut running: BTreeSet<String> =
        plan.nodes.iter().map(|n| n.name.to_string()).filter(|n| super::faults::running(state, n)).collect();
    running.insert(name.to_string());
    let side = HostSide { plan, host: b.host };
    // Its links come back to the peers that run (a stopped peer wires them when it starts),
    // unless a partition cuts them; then what `lab link` and `lab impair` set, both ways.
    side.node_links(index, changes, &running).await?;
    let down = |n: &str, i: &InterfacePlan| changes.links_down.contains(&(n.to_string(), i.name.clone()));
    for iface in &node.interfaces {
        let peer = plan.link_peer(index, iface).filter(|(p, _)| running.contains(plan.nodes[*p].name.as_str()));
        let cut = down(name, iface) || peer.is_some_and(|(p, pi)| down(plan.nodes[p].name.as_str(), pi));
        if cut || peer.is_some() {
            side.set_carrier(index, iface, !cut).await?;
        }
        let linked = matches!(iface.attach, crate::plan::Attach::Link { .. });
        match changes.impairment(plan, name, iface.name.as_str()) {
            // A link's impairment is on its peer's host end: there only if the peer runs.
            Some(imp) if !linked || peer.is_some() => side.impair(index, iface, &imp, b.journal).await?,
            _ => {}
        }
        if let Some((p, pi)) = peer {
            if let Some(imp) = changes.impairment(plan, plan.nodes[p].name.as_str(), pi.name.as_str()) {
                side.impair(p, pi, &imp, b.journal).await?;
            }
        }
    }
    started.node.go().await.map_err(|e| Error::node(name, e))?;
    Ok(NodeProcesses { name: name.to_string(), init: started.node.init, monitor: started.node.monitor })
}

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
