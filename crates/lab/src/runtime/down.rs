//! Taking a lab down: whatever its journal says was made, plus whatever carries its name on
//! the host (so that a lost or torn journal still leaves nothing behind). Processes first,
//! then NAT, links, namespace names, cgroups, state. "Already gone" is success everywhere.

use crate::identity;
use crate::state::{all_states, LabDir, NodeProcesses, Resource};
use crate::topology::{IfName, Name};
use crate::Error;
use futures::future::join_all;
use lab_net::{nat, netns, Netlink};
use lab_sandbox::cgroup::Cgroups;
use lab_sandbox::{PidFd, ProcessRef};
use std::collections::BTreeSet;
use std::time::Duration;

/// How long a node's monitor may take to record its node's end after the node is gone.
const MONITOR_GRACE: Duration = Duration::from_secs(10);

/// How long killed processes may take to exit before `down` says which did not.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// What `lab down` found and removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DownReport {
    /// Nodes whose processes, names or cgroups were found.
    pub nodes: BTreeSet<String>,
    pub processes: usize,
    pub interfaces: usize,
    pub nft_tables: usize,
}

impl DownReport {
    /// Whether anything of the lab was there.
    pub fn found_anything(&self) -> bool {
        !self.nodes.is_empty() || self.processes > 0 || self.interfaces > 0 || self.nft_tables > 0
    }
}

#[derive(Debug, Default)]
pub(super) struct Found {
    nft_tables: BTreeSet<String>,
    bridges: BTreeSet<IfName>,
    veths: BTreeSet<IfName>,
    /// Link groups holding only this lab's host interfaces.
    groups: BTreeSet<u32>,
    netns: BTreeSet<String>,
    /// Node cgroups, below `lab/<lab>`.
    cgroups: BTreeSet<String>,
    inits: Vec<ProcessRef>,
    monitors: Vec<ProcessRef>,
    nodes: BTreeSet<String>,
}

impl Found {
    /// One node's processes and cgroup, for `lab stop`.
    pub fn node(name: &str, processes: Option<&NodeProcesses>, cgroup: &str) -> Found {
        Found {
            inits: processes.map(|p| p.init).into_iter().collect(),
            monitors: processes.map(|p| p.monitor).into_iter().collect(),
            cgroups: BTreeSet::from([cgroup.to_string()]),
            nodes: BTreeSet::from([name.to_string()]),
            ..Found::default()
        }
    }

    /// Everything of lab `name`: from its journal and state, and by scanning the host.
    pub async fn collect(name: &Name, dir: &LabDir, host: &Netlink, cgroups: &dyn Cgroups) -> Result<Found, Error> {
        let mut f = Found::default();
        for r in dir.read_journal() {
            match r {
                Resource::NftTable { name } => _ = f.nft_tables.insert(name),
                Resource::Bridge { name } => _ = f.bridges.insert(name),
                Resource::Veth { name } => _ = f.veths.insert(name),
                Resource::Netns { name } => _ = f.netns.insert(name),
                Resource::Cgroup { path } => _ = f.cgroups.insert(path),
                Resource::Node { name, init, monitor } => {
                    f.nodes.insert(name);
                    f.inits.push(init);
                    f.monitors.push(monitor);
                }
            }
        }
        let mut groups = BTreeSet::new();
        if let Ok(Some(state)) = dir.read_state() {
            groups.insert(state.plan.group);
            f.nodes.extend(state.plan.nodes.iter().map(|n| n.name.to_string()));
            f.inits.extend(state.nodes.iter().map(|n| n.init));
            f.monitors.extend(state.nodes.iter().map(|n| n.monitor));
        }
        f.scan(name, host, cgroups, groups).await?;
        Ok(f)
    }

    /// What carries the lab's name: interfaces by alias, its nft table, its cgroups, and the
    /// network namespace names of nodes known from those.
    async fn scan(
        &mut self,
        name: &Name,
        host: &Netlink,
        cgroups: &dyn Cgroups,
        mut groups: BTreeSet<u32>,
    ) -> Result<(), Error> {
        let links = host.links().await?;
        let ours = |alias: Option<&str>| alias.and_then(identity::parse_alias).filter(|(lab, _)| lab == name);
        for link in &links {
            let Some((_, bridge)) = ours(link.alias.as_deref()) else { continue };
            let Ok(ifname) = IfName::parse(&link.name) else { continue };
            groups.insert(link.group);
            if bridge {
                self.bridges.insert(ifname);
            } else {
                self.veths.insert(ifname);
            }
        }
        // Deleting a group is only safe if nothing else is in it.
        let foreign = |g: &u32| links.iter().any(|l| l.group == *g && ours(l.alias.as_deref()).is_none());
        self.groups = groups.into_iter().filter(|g| *g != 0 && !foreign(g)).collect();
        let table = identity::nft_table(name);
        if nat::tables()?.contains(&table) {
            self.nft_tables.insert(table);
        }
        let lab_cgroup = identity::lab_cgroup(name);
        for node in cgroups.children(&lab_cgroup) {
            self.cgroups.insert(format!("{lab_cgroup}/{node}"));
            self.nodes.insert(node);
        }
        // A name `<lab>-<node>` may also belong to lab `<lab>-<x>`'s node: only take those
        // of nodes known to be ours, and never one another lab's state claims.
        let claimed: BTreeSet<String> = all_states()
            .into_iter()
            .filter(|(n, _)| n != name)
            .filter_map(|(_, s)| s)
            .flat_map(|s| s.plan.nodes.into_iter().map(|n| n.netns))
            .collect();
        for ns in netns::list() {
            let ours = identity::netns_node(name, &ns).is_some_and(|node| self.nodes.contains(node));
            if ours && !claimed.contains(&ns) {
                self.netns.insert(ns);
            }
        }
        Ok(())
    }
}

/// Removes everything in `found`; keeps going past errors and reports them all.
pub(super) async fn teardown(
    name: &Name,
    dir: &LabDir,
    found: Found,
    host: &Netlink,
    cgroups: &dyn Cgroups,
) -> Result<DownReport, Error> {
    let mut errors = Vec::new();
    let t = std::time::Instant::now();
    // A frozen (or freezing) process does not die of SIGKILL on cgroup v1 until thawed.
    for path in &found.cgroups {
        thaw(cgroups, path, &mut errors);
    }
    let processes = kill_all(&found, cgroups, &mut errors).await;
    tracing::debug!(processes, elapsed = ?t.elapsed(), "killed the lab's processes");
    // The lab's inet table (NAT, isolation) and bridge table (partitions) share its name.
    for table in &found.nft_tables {
        for family in [nat::Family::Inet, nat::Family::Bridge] {
            if let Err(e) = lab_net::firewall::delete_table(family, table) {
                errors.push(e.into());
            }
        }
    }
    // One request per link group takes all of the lab's host interfaces as one batch; then
    // whatever is left by name: veths first (each delete takes both ends), bridges last.
    for group in &found.groups {
        if let Err(e) = host.delete_group(*group).await {
            errors.push(e.into());
        }
    }
    let left: BTreeSet<String> = match host.links().await {
        Ok(links) => links.into_iter().map(|l| l.name).collect(),
        Err(e) => {
            errors.push(e.into());
            found.veths.iter().chain(&found.bridges).map(|n| n.to_string()).collect()
        }
    };
    let there = |n: &&IfName| left.contains(n.as_str());
    let deleted = join_all(found.veths.iter().filter(there).map(|v| host.delete_link(v))).await;
    let bridges = join_all(found.bridges.iter().filter(there).map(|b| host.delete_link(b))).await;
    errors.extend(deleted.into_iter().chain(bridges).filter_map(|r| r.err().map(Error::from)));
    tracing::debug!(elapsed = ?t.elapsed(), "removed nft tables and interfaces");
    for ns in &found.netns {
        if let Err(e) = netns::remove(ns) {
            errors.push(e.into());
        }
    }
    let lab_cgroup = identity::lab_cgroup(name);
    for path in found.cgroups.iter().map(String::as_str).chain([lab_cgroup.as_str()]) {
        if let Err(e) = cgroups.remove(path) {
            errors.push(e.into());
        }
    }
    // Shared by every lab: goes when the last one does.
    let _ = cgroups.remove(identity::CGROUP_ROOT);
    tracing::debug!(elapsed = ?t.elapsed(), "removed namespace names and cgroups");
    if !errors.is_empty() {
        return Err(Error::Several(errors));
    }
    dir.remove()?;
    Ok(DownReport {
        nodes: found.nodes,
        processes,
        interfaces: found.veths.len() + found.bridges.len(),
        nft_tables: found.nft_tables.len(),
    })
}

/// SIGKILL every process of the lab and wait, on pidfds, until each has exited: the inits
/// (which takes every process in their pid namespaces with them), then whatever else is in
/// the lab's cgroups (commands of `lab exec`). Then wait for the monitors to record the end.
pub(super) async fn kill_all(found: &Found, cgroups: &dyn Cgroups, errors: &mut Vec<Error>) -> usize {
    let mut killed = BTreeSet::new();
    let mut fds: Vec<PidFd> = Vec::new();
    for init in &found.inits {
        if let Ok(Some(fd)) = init.open() {
            if killed.insert(init.pid) {
                push_killed(fd, &mut fds, errors);
            }
        }
    }
    // A process may fork while we look; each round waits for the previous one's deaths.
    for _round in 0..10 {
        for path in &found.cgroups {
            match cgroups.processes(path) {
                Ok(pids) => {
                    for pid in pids {
                        if killed.contains(&pid) {
                            continue;
                        }
                        if let Some(fd) = open_in_cgroup(pid, path) {
                            killed.insert(pid);
                            push_killed(fd, &mut fds, errors);
                        }
                    }
                }
                Err(e) => errors.push(e.into()),
            }
        }
        if fds.is_empty() {
            break;
        }
        match tokio::time::timeout(EXIT_TIMEOUT, join_all(fds.iter().map(|f| f.exited()))).await {
            Ok(results) => errors.extend(results.into_iter().filter_map(|r| r.err().map(Error::from))),
            Err(_) => {
                let left = fds.iter().filter(|f| f.is_alive()).count();
                errors.push(Error::Failed(format!(
                    "{left} processes of the lab did not exit within {}s of SIGKILL; run lab down again",
                    EXIT_TIMEOUT.as_secs()
                )));
                break;
            }
        }
        fds.clear();
    }
    tracing::debug!(processes = killed.len(), "every process of the lab has exited");
    let monitors: Vec<PidFd> = found.monitors.iter().filter_map(|m| m.open().ok().flatten()).collect();
    for m in &monitors {
        if tokio::time::timeout(MONITOR_GRACE, m.exited()).await.is_err() {
            let _ = m.signal(libc::SIGKILL);
        }
    }
    killed.len()
}

/// Thaws a node's cgroup, if it is (still, or only partly) there: `up` killed half way may
/// have made it in some hierarchies only.
pub(super) fn thaw(cgroups: &dyn Cgroups, path: &str, errors: &mut Vec<Error>) {
    if cgroups.exists(path) {
        match cgroups.freeze(path, false) {
            Err(e) if e.errno() == Some(libc::ENOENT) => {}
            Err(e) => errors.push(e.into()),
            Ok(()) => {}
        }
    }
}

fn push_killed(fd: PidFd, fds: &mut Vec<PidFd>, errors: &mut Vec<Error>) {
    match fd.signal(libc::SIGKILL) {
        Ok(()) => fds.push(fd),
        Err(e) => errors.push(e.into()),
    }
}

/// A pidfd for `pid` if, once pinned, it is still in cgroup `path` (not a recycled pid).
fn open_in_cgroup(pid: i32, path: &str) -> Option<PidFd> {
    let fd = PidFd::open(pid).ok()?;
    let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let needle = format!(":/{path}");
    membership.lines().any(|l| l.ends_with(&needle)).then_some(fd)
}
