//! Faults for distributed tests, on a running lab: impairments, links down and up,
//! partitions, and stopping and starting nodes. Every change is kept in the lab's state (under
//! the lab's lock), so that a node started again gets it back.

use super::down::{kill_all, thaw, Found};
use super::exec::find_node;
use super::services;
use super::up::{self, Builder, Profiles};
use super::{ensure_root, Options};
use crate::plan::{Attach, InterfacePlan, NodePlan};
use crate::state::{all_states, Journal, LabDir, LabState, Lock, NodeProcesses};
use crate::topology::{IfName, Impairment, Name};
use crate::Error;
use futures::future::try_join_all;
use lab_net::{nat, netns, Netlink};
use lab_sandbox::cgroup::{self, Cgroups};
use lab_sandbox::SealedExe;
use std::collections::BTreeSet;
use std::fs::File;
use std::os::fd::AsFd;

/// The nftables table of a partitioned node, in the node's own network namespace.
pub const PARTITION_TABLE: &str = "lab-partition";

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
        let state = dir.read_state()?.ok_or_else(|| Error::NotFound(format!("lab {name} is not up")))?;
        Ok(Locked { name, dir, _lock: lock, state })
    }

    /// The lab holding `node` (lab `lab` if given), locked.
    fn of_node(lab: Option<&Name>, node: &str) -> Result<Locked, Error> {
        Locked::take(find_node(lab, node)?.0)
    }

    fn node(&self, node: &str) -> Result<&NodePlan, Error> {
        self.state.plan.node(node).ok_or_else(|| Error::NotFound(format!("lab {} has no node {node}", self.name)))
    }

    /// Node `node`, which must be running.
    fn running_node(&self, node: &str) -> Result<&NodePlan, Error> {
        let plan = self.node(node)?;
        if self.state.runtime.stopped.contains(node) {
            return Err(Error::Failed(format!(
                "node {node} of lab {} is stopped; `lab start {node}` first",
                self.name
            )));
        }
        if !running(&self.state, node) {
            return Err(Error::Failed(format!("node {node} of lab {} is not running", self.name)));
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
    node.interfaces.iter().find(|i| i.name.as_str() == ifname).ok_or_else(|| {
        let names: Vec<&str> = node.interfaces.iter().map(|i| i.name.as_str()).collect();
        Error::NotFound(format!(
            "node {} has no interface {ifname} (it has {})",
            node.name,
            if names.is_empty() { "none".to_string() } else { names.join(", ") }
        ))
    })
}

/// The node's network namespace, by its name under /run/netns.
fn netns_file(node: &NodePlan) -> Result<File, Error> {
    let path = netns::path(&node.netns);
    File::open(&path).map_err(|e| Error::node(node.name.as_str(), Error::Io(format!("opening {}", path.display()), e)))
}

async fn node_netlink(node: &NodePlan, netns: &File) -> Result<Netlink, Error> {
    Netlink::in_netns(netns, &format!("node {}", node.name)).await.map_err(|e| Error::node(node.name.as_str(), e))
}

/// Sets (or, with an empty impairment, clears) what interface `ifname` of `node` does to the
/// packets it sends. It replaces the topology file's impairment of that interface.
pub async fn impair(lab: Option<&Name>, node: &str, ifname: &str, impairment: Impairment) -> Result<(), Error> {
    ensure_root()?;
    let mut l = Locked::of_node(lab, node)?;
    let plan = l.running_node(node)?;
    let name = interface(plan, ifname)?.name.clone();
    let nl = node_netlink(plan, &netns_file(plan)?).await?;
    let index = nl.index(ifname).await.map_err(|e| Error::node(node, e))?;
    nl.impair(index, ifname, &impairment).await.map_err(|e| Error::node(node, e))?;
    let changes = &mut l.state.runtime;
    changes.impairments.retain(|(n, i, _)| !(n == node && i.as_str() == ifname));
    changes.impairments.push((node.to_string(), name, impairment));
    l.save()
}

/// Takes interface `ifname` of `node` down, or brings it back up with its addresses and the
/// routes through it (the kernel drops IPv4 routes of an interface that goes down).
pub async fn set_link(lab: Option<&Name>, node: &str, ifname: &str, up: bool) -> Result<(), Error> {
    ensure_root()?;
    let mut l = Locked::of_node(lab, node)?;
    let plan = l.running_node(node)?;
    let name = interface(plan, ifname)?.name.clone();
    let nl = node_netlink(plan, &netns_file(plan)?).await?;
    if up {
        restore_interface(&nl, plan, ifname).await?;
    } else {
        let index = nl.index(ifname).await.map_err(|e| Error::node(node, e))?;
        nl.set_down(index, ifname).await.map_err(|e| Error::node(node, e))?;
    }
    let key = (node.to_string(), name);
    if up {
        l.state.runtime.links_down.remove(&key);
    } else {
        l.state.runtime.links_down.insert(key);
    }
    l.save()
}

/// Brings interface `ifname` of `node` up with its addresses and the node's routes through it.
async fn restore_interface(nl: &Netlink, node: &NodePlan, ifname: &str) -> Result<(), Error> {
    let at = |e: lab_net::Error| Error::node(node.name.as_str(), e);
    let iface = interface(node, ifname)?;
    let index = nl.index(ifname).await.map_err(at)?;
    nl.set_up(index, ifname).await.map_err(at)?;
    for a in &iface.addresses {
        match nl.add_address(index, ifname, *a).await {
            Err(e) if e.errno() != Some(libc::EEXIST) => return Err(at(e)),
            _ => {}
        }
    }
    let routes = node.routes.iter().filter(|r| iface.addresses.iter().any(|a| a.contains(r.via)));
    try_join_all(routes.map(|r| nl.add_route(r.destination, r.via))).await.map_err(at)?;
    Ok(())
}

/// Drops all traffic between nodes `a` and nodes `b`, both ways, on every network and link:
/// each node filters the other side's addresses in its own namespace.
pub fn partition(lab: Option<&Name>, a: &[String], b: &[String]) -> Result<(), Error> {
    ensure_root()?;
    let first = a.first().ok_or_else(|| Error::Failed("name at least one node on each side".into()))?;
    if b.is_empty() {
        return Err(Error::Failed("name at least one node on each side (--from)".into()));
    }
    let mut l = Locked::of_node(lab, first)?;
    for n in a.iter().chain(b) {
        l.node(n)?;
    }
    if let Some(both) = a.iter().find(|n| b.contains(n)) {
        return Err(Error::Failed(format!("node {both} is on both sides of the partition")));
    }
    let sides = [a.iter().cloned().collect(), b.iter().cloned().collect()];
    l.state.runtime.partitions.push(sides);
    // Saved first: if a node cannot be filtered, `lab heal` still knows to clean it.
    l.save()?;
    let affected: BTreeSet<&String> = a.iter().chain(b).collect();
    for n in affected {
        if running(&l.state, n) {
            apply_partitions(&l.state, l.node(n)?, &netns_file(l.node(n)?)?)?;
        }
    }
    Ok(())
}

/// Ends every partition of the lab.
pub fn heal(lab: Option<&Name>) -> Result<(), Error> {
    ensure_root()?;
    let mut l = Locked::take(the_lab(lab)?)?;
    let partitioned: BTreeSet<String> = l.state.runtime.partitions.iter().flatten().flatten().cloned().collect();
    l.state.runtime.partitions.clear();
    for n in &partitioned {
        if running(&l.state, n) {
            let node = l.node(n)?;
            let f = netns_file(node)?;
            netns::run_in(f.as_fd(), &format!("node {n}"), || nat::delete_table(PARTITION_TABLE))
                .map_err(|e| Error::node(n, e))?;
        }
    }
    l.save()
}

/// Node `node`'s filter as the lab's partitions say: the other sides' addresses dropped, or
/// no table at all.
fn apply_partitions(state: &LabState, node: &NodePlan, netns: &File) -> Result<(), Error> {
    let drop = state.runtime.partitioned_from(&state.plan, node.name.as_str());
    let label = format!("node {}", node.name);
    let r = netns::run_in(netns.as_fd(), &label, || {
        if drop.is_empty() {
            nat::delete_table(PARTITION_TABLE)
        } else {
            nat::create_filter(PARTITION_TABLE, &drop)
        }
    });
    r.map_err(|e| Error::node(node.name.as_str(), e))
}

/// Lab `lab`, or the only lab that is up.
fn the_lab(lab: Option<&Name>) -> Result<Name, Error> {
    if let Some(l) = lab {
        return Ok(l.clone());
    }
    let names: Vec<Name> = all_states().into_iter().filter(|(_, s)| s.is_some()).map(|(n, _)| n).collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::NotFound("no lab is up".into())),
        _ => Err(Error::Failed(format!(
            "several labs are up ({}); say which",
            names.iter().map(Name::to_string).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Stops a node: its processes, its interfaces (the peers of its links see them go), its
/// namespace name and cgroup. Its addresses stay its own for `lab start`.
pub async fn stop(lab: Option<&Name>, node: &str) -> Result<(), Error> {
    ensure_root()?;
    let mut l = Locked::of_node(lab, node)?;
    if l.state.runtime.stopped.contains(node) {
        return Err(Error::Failed(format!("node {node} of lab {} is already stopped", l.name)));
    }
    let host = Netlink::host()?;
    let cgroups = cgroup::detect()?;
    take_down(&l.state, l.node(node)?, &host, cgroups.as_ref()).await?;
    l.state.runtime.stopped.insert(node.to_string());
    l.save()
}

/// Everything of one node, gone; "already gone" is success.
async fn take_down(state: &LabState, node: &NodePlan, host: &Netlink, cgroups: &dyn Cgroups) -> Result<(), Error> {
    let name = node.name.as_str();
    let mut errors: Vec<Error> = Vec::new();
    thaw(cgroups, &node.cgroup, &mut errors);
    kill_all(&Found::node(name, state.node(name), &node.cgroup), cgroups, &mut errors).await;
    // Its veths, explicitly: a namespace that goes away takes its interfaces with it, but
    // later, in the background; the peers and a `lab start` must not find them lingering.
    let in_node = match File::open(netns::path(&node.netns)) {
        Ok(f) => Some(node_netlink(node, &f).await?),
        Err(_) => None,
    };
    for iface in &node.interfaces {
        let deleted = match (&iface.attach, &in_node) {
            (Attach::Bridge { host_veth, .. }, _) => host.delete_link(host_veth).await,
            (Attach::Link { .. }, Some(nl)) => nl.delete_link(iface.name.as_str()).await,
            (Attach::Link { .. }, None) => Ok(()),
        };
        if let Err(e) = deleted {
            errors.push(e.into());
        }
    }
    drop(in_node);
    if let Err(e) = netns::remove(&node.netns) {
        errors.push(e.into());
    }
    if let Err(e) = cgroups.remove(&node.cgroup) {
        errors.push(e.into());
    }
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
        return Err(Error::Failed(format!("node {node} of lab {} is running", l.name)));
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
    up::load_profile(&mut profiles, node, &l.node(node)?.seccomp)?;
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
                return Err(Error::Failed(format!("{e}; cleaning up also failed: {cleanup}")));
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
    // Links come back only to peers that run; a stopped peer makes them when it starts.
    let mut peers: Vec<(usize, usize, IfName, File)> = Vec::new();
    for (k, link) in plan.links.iter().enumerate() {
        let [(a, ia), (z, iz)] = &link.endpoints;
        let (peer, peer_if) = match (*a == index, *z == index) {
            (true, _) => (*z, iz),
            (_, true) => (*a, ia),
            _ => continue,
        };
        if running(state, plan.nodes[peer].name.as_str()) {
            peers.push((k, peer, peer_if.clone(), netns_file(&plan.nodes[peer])?));
        }
    }
    let mut veths = up::bridge_veths(plan, node, started.netns.as_fd(), &bridges);
    for (k, _, _, peer_ns) in &peers {
        let link = &plan.links[*k];
        let (fa, fz) = if link.endpoints[0].0 == index {
            (started.netns.as_fd(), peer_ns.as_fd())
        } else {
            (peer_ns.as_fd(), started.netns.as_fd())
        };
        veths.push(up::link_veth(plan, link, fa, fz));
    }
    up::create_veths(b.host, veths).await?;
    let changes = &state.runtime;
    let impairments: Vec<(IfName, Impairment)> = node
        .interfaces
        .iter()
        .filter_map(|i| Some((i.name.clone(), changes.impairment(plan, name, i.name.as_str())?)))
        .collect();
    let down: BTreeSet<IfName> = changes.links_down.iter().filter(|(n, _)| n == name).map(|(_, i)| i.clone()).collect();
    up::settle(node, &started.netns, &impairments, &down).await?;
    for (_, peer, peer_if, peer_ns) in &peers {
        let peer_plan = &plan.nodes[*peer];
        let nl = node_netlink(peer_plan, peer_ns).await?;
        if !changes.links_down.contains(&(peer_plan.name.to_string(), peer_if.clone())) {
            restore_interface(&nl, peer_plan, peer_if.as_str()).await?;
        }
        if let Some(imp) = changes.impairment(plan, peer_plan.name.as_str(), peer_if.as_str()) {
            let index = nl.index(peer_if.as_str()).await.map_err(|e| Error::node(peer_plan.name.as_str(), e))?;
            nl.impair(index, peer_if.as_str(), &imp).await.map_err(|e| Error::node(peer_plan.name.as_str(), e))?;
        }
    }
    if !changes.partitioned_from(plan, name).is_empty() {
        apply_partitions(state, node, &started.netns)?;
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
        return Err(Error::Failed(format!("node {node} of lab {lab} is not running")));
    }
    if ifname != "lo" {
        interface(plan, ifname)?;
    }
    let f = netns_file(plan)?;
    let capture = lab_net::capture::Capture::open(f.as_fd(), &format!("node {node}"), ifname)
        .map_err(|e| Error::node(node, e))?;
    Ok(capture.run(out, count)?)
}
