//! `lab stop` and `lab start` of one node: everything of it taken down, and brought back as
//! the plan has it, with the faults set since `lab up`.

use super::hostside::HostSide;
use super::locked::{running, Locked};
use super::resources::Found;
use super::services;
use super::up::{self, Builder, Profiles};
use super::{ensure_root, Options};
use crate::plan::{InterfacePlan, NodePlan};
use crate::state::{Journal, LabState, NodeProcesses};
use crate::topology::Name;
use crate::{Error, NodeRef};
use futures::future::try_join_all;
use lab_net::Netlink;
use lab_sandbox::cgroup::{self, Cgroups};
use lab_sandbox::SealedExe;
use std::collections::BTreeSet;
use std::os::fd::AsFd;
use std::time::Duration;

/// Stops a node: its command gets its stop signal and `timeout` (else its `stop_timeout`) to
/// end, then its processes, its interfaces (the peers of its links see them go), its
/// namespace name and cgroup go. Its addresses stay its own for `lab start`.
pub async fn stop(lab: Option<&Name>, node: &str, timeout: Option<Duration>) -> Result<(), Error> {
    ensure_root()?;
    let mut l = Locked::of_node(lab, node)?;
    if l.state.runtime.stopped.contains(node) {
        return Err(Error::AlreadyStopped(NodeRef::new(&l.name, node)));
    }
    let host = Netlink::host()?;
    let cgroups = cgroup::detect()?;
    take_down(&l.state, l.node(node)?, &host, cgroups.as_ref(), timeout).await?;
    l.state.runtime.stopped.insert(node.to_string());
    l.save()
}

/// Everything of one node, gone; "already gone" is success. The other ends of its links lose
/// their carrier first, as when a machine is switched off.
async fn take_down(
    state: &LabState,
    node: &NodePlan,
    host: &Netlink,
    cgroups: &dyn Cgroups,
    timeout: Option<Duration>,
) -> Result<(), Error> {
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
    let (_, removed) = Found::node(node, state.node(name)).with_timeout(timeout).remove(host, cgroups).await;
    errors.extend(removed);
    match errors.len() {
        0 => Ok(()),
        _ => Err(Error::node(name, Error::Several(errors))),
    }
}

/// How long `lab start` watches a node's init after its command started (and its health
/// check passed): a command that dies at once is reported, not called running.
const START_GRACE: Duration = Duration::from_millis(300);

/// Starts a stopped (or exited) node again, as the plan has it: same addresses, interfaces,
/// routes; the impairments, links down and partitions set since `up`; links to running
/// peers made again. Its writable layer is the one it had, as `docker start` keeps a
/// container's, unless `fresh`: then a new one, as at `lab up`.
pub async fn start(lab: Option<&Name>, node: &str, fresh: bool, options: &Options) -> Result<(), Error> {
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
        take_down(&l.state, l.node(node)?, &host, cgroups.as_ref(), Some(Duration::ZERO)).await?;
        l.state.runtime.stopped.insert(node.to_string());
        l.save()?;
    }
    if fresh {
        let disk = super::up::scratch_dir(&l.state.plan.lab, l.node(node)?);
        lab_sandbox::discard_layer(&l.dir.node_dir(node), disk.as_deref())
            .map_err(|e| Error::node(node, Error::from(e)))?;
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
        progress: None,
        warnings: Default::default(),
    };
    match bring_back(&builder, &l.state, index).await {
        Ok(processes) => {
            let init = processes.init;
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
            // Hooks run in the node as `lab exec` does, so after the state says it runs; then
            // its health check, if it has one: `start` returns once it is healthy.
            let plan = l.node(node)?;
            let served = async {
                services::hooks(&options.lab_binary, &l.state.plan, plan).await?;
                if let Some(hc) = &plan.service.healthcheck {
                    services::wait_healthy(&options.lab_binary, &l.state.plan, &l.dir, None, plan, hc).await?;
                }
                // A command that ends as soon as it starts (a missing file, a typo) takes its
                // init with it: a start that said "running" then would be wrong. Its exit is
                // an event; a moment is given for it.
                let ended = match init.open() {
                    Ok(Some(fd)) => tokio::time::timeout(START_GRACE, fd.exited()).await.is_ok(),
                    // Gone already (its monitor reaped it).
                    Ok(None) => true,
                    Err(_) => false,
                };
                if ended {
                    return Err(Error::node(node, Error::Died("its command ended as it started".into())));
                }
                Ok(())
            };
            served.await.map_err(|e| super::logs::with_log(&l.dir, e))
        }
        Err(e) => {
            if let Err(cleanup) =
                take_down(&l.state, l.node(node)?, &host, cgroups.as_ref(), Some(Duration::ZERO)).await
            {
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
    up::port_vlans(b.host, node).await?;
    up::settle(node, &started.netns).await?;
    let changes = &state.runtime;
    let mut running: BTreeSet<String> =
        plan.nodes.iter().map(|n| n.name.to_string()).filter(|n| running(state, n)).collect();
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
