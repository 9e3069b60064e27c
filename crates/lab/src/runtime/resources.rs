//! Everything a lab makes that must be undone, one kind at a time: how each kind is recorded
//! in the journal ([`Resource`], written before the thing is made), found on the host by the
//! name it carries when the journal is lost or torn, and removed ("already gone" is
//! success). `lab up` makes the kinds in [`Kind::MADE`] order; teardown goes the other way.
//! `lab down` removes all of a lab's, `lab stop` one node's.

use crate::identity;
use crate::plan::{NodePlan, Plan};
use crate::state::{all_states, LabDir, NodeProcesses, Resource};
use crate::topology::{IfName, Name};
use crate::Error;
use futures::future::join_all;
use lab_net::{firewall, nat, netns, Netlink};
use lab_sandbox::cgroup::Cgroups;
use lab_sandbox::{PidFd, ProcessRef};
use std::collections::BTreeSet;
use std::time::Duration;

/// How long a node's monitor may take to record its node's end after the node is gone.
const MONITOR_GRACE: Duration = Duration::from_secs(10);

/// How long killed processes may take to exit before `down` says which did not.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The kinds of things a lab makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// The lab's nftables tables (inet: NAT and isolation; bridge: partitions).
    NftTables,
    Bridges,
    Cgroups,
    /// Nodes' volumes (made with their cgroups, before their processes).
    Volumes,
    /// Nodes' inits and monitors, and whatever else runs in their cgroups.
    Processes,
    /// Names of nodes' network namespaces under /run/netns.
    Netns,
    /// Host-side veth ends (deleting one takes its peer too) and IFB devices.
    HostLinks,
}

impl Kind {
    /// The order `lab up` makes them in.
    pub const MADE: [Kind; 7] =
        [Kind::NftTables, Kind::Bridges, Kind::Cgroups, Kind::Volumes, Kind::Processes, Kind::Netns, Kind::HostLinks];
}

/// What `lab down` found and removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DownReport {
    /// Nodes whose processes, names or cgroups were found.
    pub nodes: BTreeSet<String>,
    /// Processes killed.
    pub processes: usize,
    /// Host interfaces deleted (bridges, veths, IFBs).
    pub interfaces: usize,
    /// nftables tables deleted.
    pub nft_tables: usize,
    /// A `lab up` of the lab was still bringing it up: it was stopped and rolled back.
    pub stopped_up: bool,
}

impl DownReport {
    /// Whether anything of the lab was there.
    pub fn found_anything(&self) -> bool {
        !self.nodes.is_empty() || self.processes > 0 || self.interfaces > 0 || self.nft_tables > 0 || self.stopped_up
    }
}

/// What of a lab (or of one of its nodes) is to be removed, by kind.
#[derive(Debug, Default)]
pub(super) struct Found {
    /// The lab, when all of it goes (its own cgroup too).
    lab: Option<Name>,
    nft_tables: BTreeSet<String>,
    bridges: BTreeSet<IfName>,
    host_links: BTreeSet<IfName>,
    /// Link groups holding only this lab's host interfaces: one request deletes each.
    groups: BTreeSet<u32>,
    netns: BTreeSet<String>,
    /// Node cgroups, below `lab/<lab>`.
    cgroups: BTreeSet<String>,
    inits: Vec<ProcessRef>,
    monitors: Vec<ProcessRef>,
    nodes: BTreeSet<String>,
    /// Volumes `lab up` made (a rollback removes those, and keeps volumes kept from before).
    volumes: BTreeSet<std::path::PathBuf>,
    /// Every volume of the lab, for `lab down` (unless `--keep-volumes`).
    all_volumes: Option<std::path::PathBuf>,
    /// How each node's init is asked to stop before it is killed.
    stops: Vec<Stop>,
    /// The grace period for every node instead of its own (`--timeout`).
    timeout: Option<Duration>,
}

/// A node's stop signal and grace period, for its init.
#[derive(Debug)]
struct Stop {
    init: ProcessRef,
    signal: i32,
    timeout: Duration,
}

impl Found {
    /// What one journal entry records.
    fn record(&mut self, r: Resource) {
        match r {
            Resource::NftTable { name } => _ = self.nft_tables.insert(name),
            Resource::Bridge { name } => _ = self.bridges.insert(name),
            Resource::Veth { name } => _ = self.host_links.insert(name),
            Resource::Netns { name } => _ = self.netns.insert(name),
            Resource::Cgroup { path } => _ = self.cgroups.insert(path),
            Resource::Volume { path } => _ = self.volumes.insert(path),
            Resource::Node { name, init, monitor } => {
                self.nodes.insert(name);
                self.inits.push(init);
                self.monitors.push(monitor);
            }
        }
    }

    /// Everything of one node, for `lab stop`: its host ends and IFB devices, its namespace's
    /// name, its processes and cgroup.
    pub fn node(node: &NodePlan, processes: Option<&NodeProcesses>) -> Found {
        let mut f = Found::default();
        for iface in &node.interfaces {
            f.record(Resource::Veth { name: iface.host_veth().clone() });
            if let Some(ifb) = iface.ifb() {
                f.record(Resource::Veth { name: ifb });
            }
        }
        f.record(Resource::Netns { name: node.netns.clone() });
        f.record(Resource::Cgroup { path: node.cgroup.clone() });
        if let Some(p) = processes {
            f.record(Resource::Node { name: p.name.clone(), init: p.init, monitor: p.monitor });
            f.stops.push(Stop::of(node, p));
        }
        f.nodes.insert(node.name.to_string());
        f
    }

    /// Gives every node `timeout` to stop after its stop signal instead of its own
    /// `stop_timeout` (zero: killed at once).
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Found {
        self.timeout = timeout;
        self
    }

    /// Which of the lab's volumes go: every one (`lab down`), none (`--keep-volumes`), or
    /// (`None`, a rollback) those the journal says this `up` made.
    pub fn with_volumes(mut self, name: &Name, all: Option<bool>) -> Found {
        match all {
            Some(true) => {
                self.all_volumes = Some(std::path::Path::new(crate::state::VOLUME_ROOT).join(name.as_str()));
            }
            Some(false) => self.volumes.clear(),
            None => {}
        }
        self
    }

    /// Everything of lab `name`: from its journal and state, and by scanning the host.
    pub async fn collect(name: &Name, dir: &LabDir, host: &Netlink, cgroups: &dyn Cgroups) -> Result<Found, Error> {
        let mut f = Found { lab: Some(name.clone()), ..Found::default() };
        for r in dir.read_journal() {
            f.record(r);
        }
        if let Ok(Some(state)) = dir.read_state() {
            f.record_state(&state.plan, &state.nodes);
        }
        f.scan_links(name, host).await?;
        f.scan_tables(name)?;
        f.scan_cgroups(name, cgroups);
        f.scan_netns(name);
        Ok(f)
    }

    /// What the lab's state knows: its link group, nodes and their processes.
    fn record_state(&mut self, plan: &Plan, processes: &[NodeProcesses]) {
        self.groups.insert(plan.group);
        self.nodes.extend(plan.nodes.iter().map(|n| n.name.to_string()));
        if let Some(g) = &plan.gateway {
            self.netns.insert(g.netns.clone());
        }
        for p in processes {
            self.record(Resource::Node { name: p.name.clone(), init: p.init, monitor: p.monitor });
            if let Some(node) = plan.node(&p.name) {
                self.stops.push(Stop::of(node, p));
            }
        }
    }

    /// Bridges and host links by their aliases, and the link groups only they are in.
    async fn scan_links(&mut self, name: &Name, host: &Netlink) -> Result<(), Error> {
        let links = host.links().await?;
        let ours = |alias: Option<&str>| alias.and_then(identity::parse_alias).filter(|(lab, _)| lab == name);
        for link in &links {
            let Some((_, bridge)) = ours(link.alias.as_deref()) else { continue };
            let Ok(ifname) = IfName::parse(&link.name) else { continue };
            self.groups.insert(link.group);
            if bridge {
                self.bridges.insert(ifname);
            } else {
                self.host_links.insert(ifname);
            }
        }
        // Deleting a group is only safe if nothing else is in it.
        let foreign = |g: &u32| links.iter().any(|l| l.group == *g && ours(l.alias.as_deref()).is_none());
        self.groups = std::mem::take(&mut self.groups).into_iter().filter(|g| *g != 0 && !foreign(g)).collect();
        Ok(())
    }

    fn scan_tables(&mut self, name: &Name) -> Result<(), Error> {
        let table = identity::nft_table(name);
        if nat::tables()?.contains(&table) {
            self.nft_tables.insert(table);
        }
        Ok(())
    }

    fn scan_cgroups(&mut self, name: &Name, cgroups: &dyn Cgroups) {
        let lab_cgroup = identity::lab_cgroup(name);
        for node in cgroups.children(&lab_cgroup) {
            self.cgroups.insert(format!("{lab_cgroup}/{node}"));
            self.nodes.insert(node);
        }
    }

    /// Network namespace names (`<lab>.<node>`) of the nodes known so far, never one another
    /// lab's state claims.
    fn scan_netns(&mut self, name: &Name) {
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
    }

    /// Removes everything found, kind by kind in the reverse of the order they were made,
    /// going on past errors. Returns what was there, and the errors.
    pub async fn remove(self, host: &Netlink, cgroups: &dyn Cgroups) -> (DownReport, Vec<Error>) {
        let mut errors = Vec::new();
        let mut processes = 0;
        let t = std::time::Instant::now();
        for kind in Kind::MADE.iter().rev() {
            match kind {
                Kind::HostLinks => self.remove_host_links(host, &mut errors).await,
                Kind::Netns => self.remove_netns(&mut errors),
                Kind::Processes => processes = self.kill_processes(cgroups, &mut errors).await,
                Kind::Cgroups => self.remove_cgroups(cgroups, &mut errors),
                Kind::Volumes => self.remove_volumes(&mut errors),
                Kind::Bridges => self.remove_bridges(host, &mut errors).await,
                Kind::NftTables => self.remove_tables(&mut errors),
            }
            tracing::debug!(?kind, elapsed = ?t.elapsed(), "removed");
        }
        let report = DownReport {
            nodes: self.nodes,
            processes,
            interfaces: self.host_links.len() + self.bridges.len(),
            nft_tables: self.nft_tables.len(),
            stopped_up: false,
        };
        (report, errors)
    }

    /// Host links: one request per link group takes all of the lab's host interfaces at once
    /// (bridges too); then whatever is left by name (each veth delete takes both ends).
    async fn remove_host_links(&self, host: &Netlink, errors: &mut Vec<Error>) {
        for group in &self.groups {
            if let Err(e) = host.delete_group(*group).await {
                errors.push(e.into());
            }
        }
        let left = remaining(host, self.host_links.iter(), errors).await;
        let deleted =
            join_all(self.host_links.iter().filter(|n| left.contains(n.as_str())).map(|n| host.delete_link(n)));
        errors.extend(deleted.await.into_iter().filter_map(|r| r.err().map(Error::from)));
    }

    async fn remove_bridges(&self, host: &Netlink, errors: &mut Vec<Error>) {
        let left = remaining(host, self.bridges.iter(), errors).await;
        let deleted = join_all(self.bridges.iter().filter(|n| left.contains(n.as_str())).map(|n| host.delete_link(n)));
        errors.extend(deleted.await.into_iter().filter_map(|r| r.err().map(Error::from)));
    }

    /// Volumes hold what nodes wrote: removed without following any symlink in them.
    fn remove_volumes(&self, errors: &mut Vec<Error>) {
        for path in self.volumes.iter().chain(&self.all_volumes) {
            match std::fs::remove_dir_all(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    errors.push(Error::Io(format!("removing {}", path.display()), e));
                }
                _ => {}
            }
        }
        if self.all_volumes.is_some() {
            // Shared by every lab: goes when the last one's do.
            let _ = std::fs::remove_dir(crate::state::VOLUME_ROOT);
        }
    }

    fn remove_netns(&self, errors: &mut Vec<Error>) {
        for ns in &self.netns {
            if let Err(e) = netns::remove(ns) {
                errors.push(e.into());
            }
        }
    }

    fn remove_cgroups(&self, cgroups: &dyn Cgroups, errors: &mut Vec<Error>) {
        let lab_cgroup = self.lab.as_ref().map(identity::lab_cgroup);
        for path in self.cgroups.iter().chain(&lab_cgroup) {
            if let Err(e) = cgroups.remove(path) {
                errors.push(e.into());
            }
        }
        if self.lab.is_some() {
            // Shared by every lab: goes when the last one does.
            let _ = cgroups.remove(identity::CGROUP_ROOT);
        }
    }

    /// The lab's inet table (NAT, isolation) and bridge table (partitions) share its name.
    fn remove_tables(&self, errors: &mut Vec<Error>) {
        for table in &self.nft_tables {
            for family in [nat::Family::Inet, nat::Family::Bridge] {
                if let Err(e) = firewall::delete_table(family, table) {
                    errors.push(e.into());
                }
            }
        }
    }

    /// Asks every node's command to stop (its stop signal, through its init) and gives them
    /// their grace periods, all at once; then SIGKILLs every process and waits, on pidfds,
    /// until each has exited: the inits (which takes every process in their pid namespaces
    /// with them), then whatever else is in the cgroups (commands of `lab exec`); then the
    /// monitors record the end. Frozen cgroups are thawed first: a frozen process handles no
    /// signal, and on cgroup v1 does not even die of SIGKILL until then.
    async fn kill_processes(&self, cgroups: &dyn Cgroups, errors: &mut Vec<Error>) -> usize {
        for path in &self.cgroups {
            thaw(cgroups, path, errors);
        }
        let mut stopping = Vec::new();
        let mut signalled = BTreeSet::new();
        for s in &self.stops {
            let timeout = self.timeout.unwrap_or(s.timeout);
            if timeout.is_zero() {
                continue;
            }
            if let Ok(Some(fd)) = s.init.open() {
                if fd.signal(s.signal).is_ok() {
                    signalled.insert(s.init.pid);
                    stopping.push((fd, timeout));
                }
            }
        }
        join_all(stopping.iter().map(|(fd, t)| tokio::time::timeout(*t, fd.exited()))).await;
        let mut killed = BTreeSet::new();
        let mut fds: Vec<PidFd> = Vec::new();
        for init in &self.inits {
            if let Ok(Some(fd)) = init.open() {
                if killed.insert(init.pid) {
                    push_killed(fd, &mut fds, errors);
                }
            }
        }
        // A process may fork while we look; each round waits for the previous one's deaths.
        for _round in 0..10 {
            for path in &self.cgroups {
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
                    errors.push(Error::Unkillable(left, EXIT_TIMEOUT.as_secs()));
                    break;
                }
            }
            fds.clear();
        }
        let monitors: Vec<PidFd> = self.monitors.iter().filter_map(|m| m.open().ok().flatten()).collect();
        for m in &monitors {
            if tokio::time::timeout(MONITOR_GRACE, m.exited()).await.is_err() {
                let _ = m.signal(libc::SIGKILL);
            }
        }
        killed.union(&signalled).count()
    }
}

/// The names among `names` that are still interfaces of the host (all of them if the host
/// cannot say).
async fn remaining<'a>(
    host: &Netlink,
    names: impl Iterator<Item = &'a IfName>,
    errors: &mut Vec<Error>,
) -> BTreeSet<String> {
    match host.links().await {
        Ok(links) => links.into_iter().map(|l| l.name).collect(),
        Err(e) => {
            errors.push(e.into());
            names.map(|n| n.to_string()).collect()
        }
    }
}

/// Thaws a node's cgroup, if it is (still, or only partly) there: `up` killed half way may
/// have made it in some hierarchies only.
fn thaw(cgroups: &dyn Cgroups, path: &str, errors: &mut Vec<Error>) {
    if cgroups.exists(path) {
        match cgroups.freeze(path, false) {
            Err(e) if e.errno() == Some(libc::ENOENT) => {}
            Err(e) => errors.push(e.into()),
            Ok(()) => {}
        }
    }
}

impl Stop {
    fn of(node: &NodePlan, p: &NodeProcesses) -> Stop {
        Stop {
            init: p.init,
            signal: node.service.stop_signal,
            timeout: Duration::from_millis(node.service.stop_timeout_ms),
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
