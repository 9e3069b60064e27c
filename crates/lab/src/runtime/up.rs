//! Carrying out a plan. Every resource is journaled before it is made; nodes are brought up
//! together, phase by phase: start (namespaces, cgroup), wire (veths, addresses, routes), go
//! (root file system, command).

use crate::plan::{Attach, NodePlan, Plan};
use crate::state::{Journal, LabDir, NodeProcesses, Resource};
use crate::topology::Rootfs;
use crate::topology::SeccompChoice;
use crate::Error;
use futures::future::try_join_all;
use ipnetwork::IpNetwork;
use lab_net::{nat, netns, Netlink, VethEnd};
use lab_sandbox::caps::Cap;
use lab_sandbox::cgroup::devices;
use lab_sandbox::cgroup::Cgroups;
use lab_sandbox::seccomp::{self, Bpf, Profile};
use lab_sandbox::{NodeFile, NodeSpec, SealedExe, Security, StartingNode};
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;

pub(super) struct Builder<'a> {
    pub plan: &'a Plan,
    pub dir: &'a LabDir,
    pub journal: &'a Journal,
    pub host: &'a Netlink,
    pub cgroups: &'a dyn Cgroups,
    pub exe: &'a SealedExe,
    pub profiles: &'a Profiles,
}

/// Seccomp profiles from files, by path, read before anything is made.
pub(super) type Profiles = HashMap<PathBuf, Profile>;

/// A node whose init exists and waits for `go`.
struct Started {
    index: usize,
    node: StartingNode,
    /// The node's network namespace (/proc/PID/ns/net of its init).
    netns: File,
}

impl Builder<'_> {
    pub async fn run(&self) -> Result<Vec<NodeProcesses>, Error> {
        let t = std::time::Instant::now();
        self.nat()?;
        let bridges = self.bridges().await?;
        tracing::debug!(elapsed = ?t.elapsed(), "made NAT rules and bridges");
        let specs = self.prepare_nodes()?;
        tracing::debug!(elapsed = ?t.elapsed(), "prepared node directories and cgroups");
        let mut nodes = try_join_all(specs.iter().enumerate().map(|(i, s)| self.start(i, s))).await?;
        tracing::debug!(elapsed = ?t.elapsed(), "started every node's init");
        self.wire(&nodes, &bridges).await?;
        tracing::debug!(elapsed = ?t.elapsed(), "wired veths, addresses and routes");
        try_join_all(nodes.iter_mut().map(|n| {
            let name = self.plan.nodes[n.index].name.to_string();
            async move { n.node.go().await.map_err(|e| Error::node(&name, e)) }
        }))
        .await?;
        tracing::debug!(elapsed = ?t.elapsed(), "every node is ready");
        Ok(nodes
            .iter()
            .map(|n| NodeProcesses {
                name: self.plan.nodes[n.index].name.to_string(),
                init: n.node.init,
                monitor: n.node.monitor,
            })
            .collect())
    }

    fn nat(&self) -> Result<(), Error> {
        let rules: Vec<nat::Masquerade> = self
            .plan
            .networks
            .iter()
            .filter(|n| n.nat)
            .map(|n| nat::Masquerade { subnet: n.subnet, bridge: n.bridge.clone() })
            .collect();
        if rules.is_empty() {
            return Ok(());
        }
        self.journal.record(&[Resource::NftTable { name: self.plan.nft_table.clone() }])?;
        Ok(nat::create_table(&self.plan.nft_table, &rules)?)
    }

    /// Creates every network's bridge; returns their interface indexes.
    async fn bridges(&self) -> Result<Vec<u32>, Error> {
        let records: Vec<Resource> =
            self.plan.networks.iter().map(|n| Resource::Bridge { name: n.bridge.clone() }).collect();
        self.journal.record(&records)?;
        try_join_all(self.plan.networks.iter().map(|n| async move {
            let index = self.host.create_bridge(&n.bridge, &n.alias, n.mac, self.plan.group).await?;
            if let Some(gw) = n.gateway {
                let address = IpNetwork::new(gw, n.subnet.prefix()).expect("prefix of a valid subnet");
                self.host.add_address(index, &n.bridge, address).await?;
            }
            Ok::<_, Error>(index)
        }))
        .await
    }

    /// Each node's directory, files and cgroup.
    fn prepare_nodes(&self) -> Result<Vec<NodeSpec>, Error> {
        let resolv = resolv_conf();
        let mut filters = Filters::default();
        let mut specs = Vec::with_capacity(self.plan.nodes.len());
        for node in &self.plan.nodes {
            let mut spec = || -> Result<NodeSpec, lab_sandbox::Error> {
                let files = vec![
                    NodeFile::new("/etc/hosts", node.hosts.clone(), 0o644)?,
                    NodeFile::new("/etc/hostname", format!("{}\n", node.hostname), 0o644)?,
                    NodeFile::new("/etc/resolv.conf", resolv.clone(), 0o644)?,
                ];
                let seccomp = filters.get(node, self.profiles)?;
                let spec = node_spec(node, self.dir.node_dir(node.name.as_str()), files, seccomp);
                spec.prepare()?;
                Ok(spec)
            };
            specs.push(spec().map_err(|e| Error::node(node.name.as_str(), e))?);
        }
        let records: Vec<Resource> =
            self.plan.nodes.iter().map(|n| Resource::Cgroup { path: n.cgroup.clone() }).collect();
        self.journal.record(&records)?;
        for node in &self.plan.nodes {
            let rules = if node.privileged { devices::ALLOW_ALL } else { devices::DEFAULT_RULES };
            let made = self.cgroups.create(&node.cgroup).and_then(|()| {
                self.cgroups.set_limits(&node.cgroup, &node.limits)?;
                self.cgroups.set_devices(&node.cgroup, rules)
            });
            made.map_err(|e| Error::node(node.name.as_str(), e))?;
        }
        Ok(specs)
    }

    /// Starts node `index`'s monitor and init, and names its network namespace.
    async fn start(&self, index: usize, spec: &NodeSpec) -> Result<Started, Error> {
        let plan = &self.plan.nodes[index];
        let at = |e: Error| Error::node(plan.name.as_str(), e);
        let node = lab_sandbox::start(self.exe, spec).await.map_err(|e| at(e.into()))?;
        self.journal
            .record(&[Resource::Node { name: plan.name.to_string(), init: node.init, monitor: node.monitor }])
            .map_err(at)?;
        let ns_path = PathBuf::from(format!("/proc/{}/ns/net", node.init.pid));
        let netns = File::open(&ns_path).map_err(|e| at(Error::Io(format!("opening {}", ns_path.display()), e)))?;
        if !node.init.is_alive() {
            return Err(at(Error::Failed("its init exited while being created".into())));
        }
        self.journal.record(&[Resource::Netns { name: plan.netns.clone() }]).map_err(at)?;
        netns::persist(&ns_path, &plan.netns).map_err(|e| at(e.into()))?;
        Ok(Started { index, node, netns })
    }

    /// Veths to bridges and between nodes, then each node's addresses and routes.
    async fn wire(&self, nodes: &[Started], bridges: &[u32]) -> Result<(), Error> {
        let by_index = |i: usize| nodes.iter().find(|n| n.index == i).expect("every node started");
        let records: Vec<Resource> = self
            .plan
            .nodes
            .iter()
            .flat_map(|n| &n.interfaces)
            .filter_map(|i| match &i.attach {
                Attach::Bridge { host_veth, .. } => Some(Resource::Veth { name: host_veth.clone() }),
                Attach::Link { .. } => None,
            })
            .collect();
        self.journal.record(&records)?;

        let mut veths = Vec::new();
        for started in nodes {
            let node = &self.plan.nodes[started.index];
            for iface in &node.interfaces {
                if let Attach::Bridge { network, host_veth, alias } = &iface.attach {
                    let host_end = VethEnd {
                        alias: Some(alias),
                        bridge: Some(bridges[*network]),
                        group: Some(self.plan.group),
                        ..VethEnd::new(host_veth)
                    };
                    let node_end = VethEnd { netns: Some(started.netns.as_fd()), ..VethEnd::new(iface.name.as_str()) };
                    veths.push((node.name.as_str(), host_end, node_end));
                }
            }
        }
        for link in &self.plan.links {
            let [(a, ia), (b, ib)] = &link.endpoints;
            let end_a = VethEnd { netns: Some(by_index(*a).netns.as_fd()), ..VethEnd::new(ia.as_str()) };
            let end_b = VethEnd { netns: Some(by_index(*b).netns.as_fd()), ..VethEnd::new(ib.as_str()) };
            veths.push((self.plan.nodes[*a].name.as_str(), end_a, end_b));
        }
        try_join_all(
            veths
                .into_iter()
                .map(|(node, a, b)| async move { self.host.create_veth(a, b).await.map_err(|e| Error::node(node, e)) }),
        )
        .await?;
        try_join_all(nodes.iter().map(|n| configure(&self.plan.nodes[n.index], &n.netns))).await?;
        Ok(())
    }
}

/// Inside a node's network namespace: every interface up, addresses, routes.
async fn configure(node: &NodePlan, netns: &File) -> Result<(), Error> {
    let at = |e: lab_net::Error| Error::node(node.name.as_str(), e);
    let nl = Netlink::in_netns(netns, &format!("node {}", node.name)).await.map_err(at)?;
    let links = nl.links().await.map_err(at)?;
    let up = links.iter().map(|l| nl.set_up(l.index, &l.name));
    let addresses = node.interfaces.iter().filter_map(|i| {
        let link = links.iter().find(|l| l.name == i.name.as_str())?;
        Some(nl.add_address(link.index, &link.name, i.address?))
    });
    try_join_all(up).await.map_err(at)?;
    try_join_all(addresses).await.map_err(at)?;
    try_join_all(node.routes.iter().map(|r| nl.add_route(r.destination, r.via))).await.map_err(at)?;
    Ok(())
}

/// Compiled seccomp filters, one per profile and capability set: most labs compile one.
#[derive(Default)]
struct Filters(HashMap<(SeccompChoice, BTreeSet<Cap>), Bpf>);

impl Filters {
    fn get(&mut self, node: &NodePlan, profiles: &Profiles) -> Result<Option<Bpf>, lab_sandbox::Error> {
        let profile = match &node.seccomp {
            // Privileged means unconfined unless a profile is named, as with Docker.
            SeccompChoice::Default if node.privileged => return Ok(None),
            SeccompChoice::Unconfined => return Ok(None),
            SeccompChoice::Default => seccomp::docker_default(),
            SeccompChoice::Profile(path) => profiles.get(path).cloned().expect("preflight loaded every profile"),
        };
        let key = (node.seccomp.clone(), node.caps.clone());
        if let Some(bpf) = self.0.get(&key) {
            return Ok(Some(bpf.clone()));
        }
        let bpf = profile.to_bpf(&node.caps)?;
        self.0.insert(key, bpf.clone());
        Ok(Some(bpf))
    }
}

fn node_spec(node: &NodePlan, dir: PathBuf, files: Vec<NodeFile>, seccomp: Option<Bpf>) -> NodeSpec {
    NodeSpec {
        name: node.name.to_string(),
        hostname: node.hostname.to_string(),
        rootfs: match &node.rootfs {
            Rootfs::Host => PathBuf::from("/"),
            Rootfs::Dir(d) => d.clone(),
        },
        dir,
        command: node.command.clone(),
        env: node.env.clone(),
        cgroup: node.cgroup.clone(),
        files,
        security: Security { caps: node.caps.clone(), seccomp, privileged: node.privileged },
        userns: node.userns,
        mounts: node.mounts.clone(),
        sysctls: node.sysctls.clone(),
    }
}

/// The host's resolvers, minus loopback ones (unreachable from a node's own namespace); like
/// Docker, the real upstream list of systemd-resolved when the host uses its local stub.
fn resolv_conf() -> String {
    let keep = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| {
                let mut w = l.split_whitespace();
                match (w.next(), w.next()) {
                    (Some("nameserver"), Some(addr)) => !(addr.starts_with("127.") || addr == "::1"),
                    _ => true,
                }
            })
            .map(str::to_string)
            .collect()
    };
    let has_server = |lines: &[String]| lines.iter().any(|l| l.trim_start().starts_with("nameserver"));
    let host = keep(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
    if has_server(&host) {
        return host.join("\n") + "\n";
    }
    let upstream = keep(&std::fs::read_to_string("/run/systemd/resolve/resolv.conf").unwrap_or_default());
    if has_server(&upstream) {
        return upstream.join("\n") + "\n";
    }
    "# lab: the host has no resolver a node can reach\n".to_string()
}
