//! Carrying out a plan. Every resource is journaled before it is made; nodes are brought up
//! together, phase by phase: start (namespaces, cgroup), wire (veths, addresses, routes), go
//! (root file system, command).

use super::hostside::HostSide;
use super::services;
use crate::plan::{Attach, NodePlan, Plan};
use crate::state::{Journal, LabDir, NodeProcesses, Resource};
use crate::topology::SeccompChoice;
use crate::topology::{Rootfs, Scratch};
use crate::Error;
use futures::future::try_join_all;
use lab_net::{nat, netns, sysctl, Netlink, VethEnd};
use lab_sandbox::caps::Cap;
use lab_sandbox::cgroup::Cgroups;
use lab_sandbox::seccomp::{self, Bpf, Profile};
use lab_sandbox::{FileKind, NodeFile, NodeSpec, SealedExe, Security, StartingNode};
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;

pub(super) struct Builder<'a> {
    pub plan: &'a Plan,
    pub dir: &'a LabDir,
    pub journal: &'a Journal,
    pub host: &'a Netlink,
    pub cgroups: &'a dyn Cgroups,
    pub exe: &'a SealedExe,
    pub filters: &'a Filters,
    /// The `lab` binary, run as `lab exec` for health checks and hooks.
    pub lab_binary: &'a std::path::Path,
    /// Wait for every node's health check, not only those others depend on.
    pub wait: bool,
    /// Told what bring-up waits for.
    pub progress: Option<&'a services::ProgressFn>,
    /// What nodes do without, as their monitors say when they start.
    pub warnings: std::sync::Mutex<Vec<String>>,
}

/// Seccomp profiles from files, by path, read before anything is made.
pub(super) type Profiles = HashMap<PathBuf, Profile>;

/// Reads the seccomp profile node `node` names, once per path.
pub(super) fn load_profile(profiles: &mut Profiles, node: &str, seccomp: &SeccompChoice) -> Result<(), Error> {
    if let SeccompChoice::Profile(path) = seccomp {
        if !profiles.contains_key(path) {
            profiles.insert(path.clone(), Profile::load(path).map_err(|e| Error::node(node, e))?);
        }
    }
    Ok(())
}

/// A node whose init exists and waits for `go`.
pub(super) struct Started {
    index: usize,
    pub node: StartingNode,
    /// The node's network namespace (/proc/PID/ns/net of its init).
    pub netns: File,
}

impl Builder<'_> {
    /// The warnings of the nodes started so far.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub async fn run(&self) -> Result<Vec<NodeProcesses>, Error> {
        let t = std::time::Instant::now();
        self.nat()?;
        let bridges = self.bridges().await?;
        super::gateway::make(self.plan, self.host, self.journal, &bridges).await?;
        tracing::debug!(elapsed = ?t.elapsed(), "made NAT rules, bridges and gateway");
        let specs = self.prepare_nodes()?;
        tracing::debug!(elapsed = ?t.elapsed(), "prepared node directories and cgroups");
        let mut nodes = try_join_all(specs.iter().enumerate().map(|(i, s)| self.start(i, s))).await?;
        tracing::debug!(elapsed = ?t.elapsed(), "started every node's init");
        self.wire(&nodes, &bridges).await?;
        tracing::debug!(elapsed = ?t.elapsed(), "wired veths, addresses and routes");
        let processes: Vec<NodeProcesses> = nodes
            .iter()
            .map(|n| NodeProcesses {
                name: self.plan.nodes[n.index].name.to_string(),
                init: n.node.init,
                monitor: n.node.monitor,
            })
            .collect();
        // `lab exec` (health checks, hooks, the user) can reach the nodes from here on.
        self.save_processes(&processes)?;
        // Commands start in dependency order: a node's waits for those it depends on to run
        // and pass their health checks.
        let waves = services::waves(self.plan);
        for (k, wave) in waves.iter().enumerate() {
            if let (Some(p), Some(next)) = (self.progress, waves.get(k + 1)) {
                let names = |w: &[usize]| w.iter().map(|&i| self.plan.nodes[i].name.to_string()).collect();
                p(&services::Progress::Waiting { nodes: names(next), on: names(wave) });
            }
            try_join_all(nodes.iter_mut().filter(|n| wave.contains(&n.index)).map(|n| {
                let name = self.plan.nodes[n.index].name.to_string();
                async move { n.node.go().await.map_err(|e| Error::node(&name, e)) }
            }))
            .await?;
            try_join_all(wave.iter().map(|&i| self.serve(&self.plan.nodes[i]))).await?;
        }
        tracing::debug!(elapsed = ?t.elapsed(), "every node is ready");
        Ok(processes)
    }

    fn save_processes(&self, processes: &[NodeProcesses]) -> Result<(), Error> {
        let Some(mut state) = self.dir.read_state()? else { return Ok(()) };
        state.nodes = processes.to_vec();
        self.dir.write_state(&state)
    }

    /// Once a node's command runs: its hooks, then its health check if anything waits for it.
    /// Then it is ready (`lab ps` shows it running rather than starting).
    async fn serve(&self, node: &NodePlan) -> Result<(), Error> {
        services::hooks(self.lab_binary, self.plan, node).await?;
        if let Some(hc) = &node.service.healthcheck {
            if self.wait || services::depended_on(self.plan, node) {
                services::wait_healthy(self.lab_binary, self.plan, self.dir, self.progress, node, hc).await?;
            }
        }
        let ready = self.dir.node_dir(node.name.as_str()).join("ready");
        std::fs::write(&ready, b"").map_err(|e| Error::Io(format!("writing {}", ready.display()), e))
    }

    /// The lab's nftables table on the host (`gateway::host_rules`).
    fn nat(&self) -> Result<(), Error> {
        let rules = super::gateway::host_rules(self.plan);
        if rules.is_empty() {
            return Ok(());
        }
        self.journal.record(&[Resource::NftTable { name: self.plan.nft_table.clone() }])?;
        Ok(nat::create_table(&self.plan.nft_table, &rules.masquerades, &rules.forwards, &rules.isolation)?)
    }

    /// Creates every network's bridge, with its gateway addresses where the host routes it;
    /// returns their indexes.
    async fn bridges(&self) -> Result<Vec<u32>, Error> {
        let records: Vec<Resource> =
            self.plan.networks.iter().map(|n| Resource::Bridge { name: n.bridge.clone() }).collect();
        self.journal.record(&records)?;
        let hosts = self.plan.gateway.is_none();
        try_join_all(self.plan.networks.iter().map(|n| async move {
            // A network the host does not route (without NAT, or behind the lab's gateway
            // namespace) is a segment the host is not on: no address of its own there, of
            // either version, and no ARP answered.
            let mute = !(n.nat && hosts);
            let options = lab_net::BridgeOptions { mtu: n.mtu, mute, vlan_filtering: n.vlan_filtering, stp: n.stp };
            let index = self.host.create_bridge(&n.bridge, &n.alias, n.mac, self.plan.group, options).await?;
            if mute {
                return Ok(index);
            }
            for address in n.gateway_addresses() {
                self.host.add_address(index, &n.bridge, address).await?;
            }
            if self.plan.ports.iter().any(|p| p.bridge == n.bridge) {
                // Forwarded ports answer on the host's loopback too: such packets may leave
                // through this bridge (masqueraded) instead of being dropped as martians.
                sysctl::write(&format!("/proc/sys/net/ipv4/conf/{}/route_localnet", n.bridge), "1")?;
            }
            Ok::<_, Error>(index)
        }))
        .await
    }

    /// Each node's directory, files and cgroup.
    fn prepare_nodes(&self) -> Result<Vec<NodeSpec>, Error> {
        let resolv = resolv_conf();
        let mut specs = Vec::with_capacity(self.plan.nodes.len());
        for node in &self.plan.nodes {
            specs.push(self.node_spec(node, &resolv)?);
        }
        let records: Vec<Resource> =
            self.plan.nodes.iter().map(|n| Resource::Cgroup { path: n.cgroup.clone() }).collect();
        self.journal.record(&records)?;
        for node in &self.plan.nodes {
            self.make_cgroup(node)?;
            self.make_volumes(node)?;
        }
        Ok(specs)
    }

    /// The node's volumes that are not there yet (kept ones are used as they are): each a
    /// directory with the mode and owner its path has in the node's rootfs, if it has it
    /// there (as Docker gives a new volume the image's), else root's 0755.
    fn make_volumes(&self, node: &NodePlan) -> Result<(), Error> {
        let lab = &self.plan.lab;
        for v in &node.volumes {
            let path = crate::state::volume_dir(lab, node.name.as_str(), &v.name);
            if path.is_dir() {
                continue;
            }
            self.journal.record(&[Resource::Volume { path: path.clone() }])?;
            let made = || -> std::io::Result<()> {
                use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path.parent().unwrap_or(&path))?;
                std::fs::DirBuilder::new().mode(0o755).create(&path)?;
                let rel = v.target.trim_start_matches('/');
                // Read without following a symlink at its end (the rootfs is trusted up to
                // there: the host's, or a directory the topology names); on an image, the
                // top layer that has the path, unless it deleted it.
                let image = match &node.rootfs {
                    Rootfs::Host => std::fs::symlink_metadata(std::path::Path::new("/").join(rel)).ok(),
                    Rootfs::Dir(d) => std::fs::symlink_metadata(d.join(rel)).ok(),
                    Rootfs::Image(_) => node
                        .layers
                        .iter()
                        .rev()
                        .find_map(|l| std::fs::symlink_metadata(l.join(rel)).ok())
                        .filter(|m| !std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type())),
                };
                if let Some(m) = image.filter(|m| m.is_dir()) {
                    std::os::unix::fs::chown(&path, Some(m.uid()), Some(m.gid()))?;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
                }
                Ok(())
            };
            made().map_err(|e| {
                Error::node(node.name.as_str(), Error::Io(format!("making volume {} at {}", v.name, path.display()), e))
            })?;
        }
        Ok(())
    }

    /// A node's spec, written to its directory.
    fn node_spec(&self, node: &NodePlan, resolv: &str) -> Result<NodeSpec, Error> {
        let spec = || -> Result<NodeSpec, lab_sandbox::Error> {
            let mut files = node.view_files.clone();
            files.extend([
                NodeFile::new("/etc/hosts", node.hosts.clone(), 0o644)?,
                NodeFile::new("/etc/hostname", format!("{}\n", node.hostname), 0o644)?,
                NodeFile::new("/etc/resolv.conf", resolv, 0o644)?,
            ]);
            // The topology's own files for the node, over all of that.
            if let Some(dir) = &node.files_from {
                tree(dir, "", &mut files)?;
            }
            if !node.startups.is_empty() {
                files.push(NodeFile {
                    path: "/etc/lab".into(),
                    contents: String::new(),
                    mode: 0o755,
                    kind: FileKind::Dir,
                });
            }
            for (k, script) in node.startups.iter().enumerate() {
                files.push(NodeFile {
                    path: crate::topology::startup_path(k),
                    contents: script.to_string_lossy().into_owned(),
                    mode: 0o755,
                    kind: FileKind::Copy,
                });
            }
            let seccomp = self.filters.get(node);
            let spec = node_spec(&self.plan.lab, node, self.dir.node_dir(node.name.as_str()), files, seccomp);
            spec.prepare()?;
            Ok(spec)
        };
        spec().map_err(|e| Error::node(node.name.as_str(), e))
    }

    /// A node's cgroup, with its limits and device rules.
    fn make_cgroup(&self, node: &NodePlan) -> Result<(), Error> {
        let made = self.cgroups.create(&node.cgroup).and_then(|()| {
            self.cgroups.set_limits(&node.cgroup, &node.limits)?;
            self.cgroups.set_devices(&node.cgroup, &node.policy.devices)
        });
        made.map_err(|e| Error::node(node.name.as_str(), e))
    }

    /// One node again, after `lab stop`: spec, cgroup, init, and its namespace's name.
    pub(super) async fn restart(&self, index: usize) -> Result<Started, Error> {
        let node = &self.plan.nodes[index];
        let spec = self.node_spec(node, &resolv_conf())?;
        // The previous run's end is not this one's.
        let _ = std::fs::remove_file(spec.status_file());
        self.journal.record(&[Resource::Cgroup { path: node.cgroup.clone() }])?;
        self.make_cgroup(node)?;
        self.make_volumes(node)?;
        self.start(index, &spec).await
    }

    /// Starts node `index`'s monitor and init, and names its network namespace.
    async fn start(&self, index: usize, spec: &NodeSpec) -> Result<Started, Error> {
        let plan = &self.plan.nodes[index];
        let at = |e: Error| Error::node(plan.name.as_str(), e);
        let node = lab_sandbox::start(self.exe, spec).await.map_err(|e| at(e.into()))?;
        if !node.warnings.is_empty() {
            let mut warnings = self.warnings.lock().unwrap_or_else(|p| p.into_inner());
            warnings.extend(node.warnings.iter().map(|w| format!("node {}: {w}", plan.name)));
        }
        self.journal
            .record(&[Resource::Node { name: plan.name.to_string(), init: node.init, monitor: node.monitor }])
            .map_err(at)?;
        let ns_path = PathBuf::from(format!("/proc/{}/ns/net", node.init.pid));
        let netns = File::open(&ns_path).map_err(|e| at(Error::Io(format!("opening {}", ns_path.display()), e)))?;
        if !node.init.is_alive() {
            return Err(at(Error::Died("its init exited while being created".into())));
        }
        self.journal.record(&[Resource::Netns { name: plan.netns.clone() }]).map_err(at)?;
        netns::persist(&ns_path, &plan.netns).map_err(|e| at(e.into()))?;
        Ok(Started { index, node, netns })
    }

    /// Veths to bridges and between nodes, then each node's addresses and routes.
    async fn wire(&self, nodes: &[Started], bridges: &[u32]) -> Result<(), Error> {
        let records: Vec<Resource> = self
            .plan
            .nodes
            .iter()
            .flat_map(|n| &n.interfaces)
            .map(|i| Resource::Veth { name: i.host_veth().clone() })
            .collect();
        self.journal.record(&records)?;
        let mut veths = Vec::new();
        for started in nodes {
            let node = &self.plan.nodes[started.index];
            veths.extend(node_veths(self.plan, node, started.netns.as_fd(), bridges));
        }
        create_veths(self.host, veths).await?;
        try_join_all(nodes.iter().map(|s| port_vlans(self.host, &self.plan.nodes[s.index]))).await?;
        let side = HostSide { plan: self.plan, host: self.host };
        try_join_all((0..self.plan.links.len()).map(|k| side.wire(k))).await?;
        try_join_all(nodes.iter().map(|n| settle(&self.plan.nodes[n.index], &n.netns))).await?;
        let impairments = self.plan.nodes.iter().enumerate().flat_map(|(i, node)| {
            node.impairments.iter().filter(|(_, imp)| !imp.is_empty()).filter_map(move |(name, imp)| {
                let iface = node.interfaces.iter().find(|f| f.name == *name)?;
                Some((i, iface, imp))
            })
        });
        try_join_all(impairments.map(|(i, iface, imp)| side.impair(i, iface, imp, self.journal))).await?;
        Ok(())
    }
}

/// A veth to create: the node it is for (for errors) and its two ends.
pub(super) type VethPair<'a> = (&'a str, VethEnd<'a>, VethEnd<'a>);

/// The veths of `node` (whose namespace is `netns`): one per interface, its host end a port
/// of its network's bridge (whose indexes are `bridges`) or, for a link, to be wired to the
/// link's other host end (and answering nothing of the host's).
pub(super) fn node_veths<'a>(
    plan: &'a Plan,
    node: &'a NodePlan,
    netns: BorrowedFd<'a>,
    bridges: &[u32],
) -> Vec<VethPair<'a>> {
    let mut out = Vec::new();
    for iface in &node.interfaces {
        let bridge = match &iface.attach {
            Attach::Bridge { network, .. } => Some(bridges[*network]),
            Attach::Link { .. } => None,
        };
        let host_end = VethEnd {
            alias: Some(iface.alias()),
            bridge,
            group: Some(plan.group),
            mtu: iface.mtu,
            // A bridge port hands what it gets to the bridge, never to the host: only a
            // link's end, which takes traffic while its wire is cut, must be muted.
            mute: bridge.is_none(),
            ..VethEnd::new(iface.host_veth())
        };
        let node_end =
            VethEnd { netns: Some(netns), mtu: iface.mtu, mac: iface.mac, ..VethEnd::new(iface.name.as_str()) };
        out.push((node.name.as_str(), host_end, node_end));
    }
    out
}

/// The VLANs of `node`'s ports on VLAN-filtering bridges (once its veths exist).
pub(super) async fn port_vlans(host: &Netlink, node: &NodePlan) -> Result<(), Error> {
    use crate::topology::PortVlans;
    let ports = node.interfaces.iter().filter_map(|i| match &i.attach {
        Attach::Bridge { host_veth, vlans: PortVlans::Access(vid), .. } => {
            Some((host_veth, vec![lab_net::PortVlan { vid: *vid, access: true }]))
        }
        Attach::Bridge { host_veth, vlans: PortVlans::Trunk(vids), .. } => {
            Some((host_veth, vids.iter().map(|v| lab_net::PortVlan { vid: *v, access: false }).collect()))
        }
        _ => None,
    });
    try_join_all(ports.map(|(port, vlans)| async move {
        let index = host.index(port.as_str()).await?;
        host.set_port_vlans(index, port.as_str(), &vlans)
            .await
            .map_err(|e| Error::node(node.name.as_str(), Error::from(e)))
    }))
    .await?;
    Ok(())
}

pub(super) async fn create_veths(host: &Netlink, veths: Vec<VethPair<'_>>) -> Result<(), Error> {
    try_join_all(
        veths
            .into_iter()
            .map(|(node, a, b)| async move { host.create_veth(a, b).await.map_err(|e| Error::node(node, e)) }),
    )
    .await?;
    Ok(())
}

/// Inside a node's network namespace, once its interfaces exist: sysctls, every interface
/// up, addresses, routes. (What lab does to its traffic is done on the host side.)
pub(super) async fn settle(node: &NodePlan, netns: &File) -> Result<(), Error> {
    let at = |e: lab_net::Error| Error::node(node.name.as_str(), e);
    let label = format!("node {}", node.name);
    // Sysctls on the thread that opens the node's netlink socket: one setns for both.
    let (settings, thread_label) = (node.sysctls.clone(), label.clone());
    let setup = move || sysctl::write_here(&thread_label, &settings);
    let nl = Netlink::in_netns_with(netns, &label, setup).await.map_err(at)?;
    let links = nl.links().await.map_err(at)?;
    // Loopback and the node's own interfaces; not the fallback devices (gre0, tunl0, sit0...)
    // the kernel puts in every namespace once a tunnel module is loaded.
    let ours = |l: &&lab_net::LinkInfo| l.name == "lo" || node.interfaces.iter().any(|i| i.name.as_str() == l.name);
    let up = links.iter().filter(ours).map(|l| nl.set_up(l.index, &l.name));
    let addresses = node.interfaces.iter().flat_map(|i| {
        let link = links.iter().find(|l| l.name == i.name.as_str());
        link.into_iter().flat_map(|link| i.addresses.iter().map(|a| nl.add_address(link.index, &link.name, *a)))
    });
    try_join_all(up).await.map_err(at)?;
    try_join_all(addresses).await.map_err(at)?;
    if let Some(lo) = links.iter().find(|l| l.name == "lo") {
        try_join_all(node.loopback.iter().map(|a| nl.add_address(lo.index, "lo", *a))).await.map_err(at)?;
    }
    try_join_all(node.routes.iter().map(|r| nl.add_route(r.destination, r.via))).await.map_err(at)?;
    Ok(())
}

/// Compiled seccomp filters, one per profile and capability set (most labs compile one),
/// made before anything of the lab is.
#[derive(Default)]
pub(super) struct Filters(HashMap<(SeccompChoice, BTreeSet<Cap>), Bpf>);

impl Filters {
    /// Compiles the filter of each of `nodes`. A profile under which no program could start
    /// (it denies execve) is an error here, rather than a node that never runs.
    pub fn compile<'a>(nodes: impl IntoIterator<Item = &'a NodePlan>, profiles: &Profiles) -> Result<Filters, Error> {
        let mut filters = Filters::default();
        for node in nodes {
            let policy = &node.policy;
            let profile = match &policy.seccomp {
                SeccompChoice::Unconfined => continue,
                SeccompChoice::Default => seccomp::docker_default(),
                SeccompChoice::Profile(path) => profiles.get(path).cloned().expect("preflight loaded every profile"),
            };
            let key = (policy.seccomp.clone(), policy.caps.clone());
            if filters.0.contains_key(&key) {
                continue;
            }
            let at = |e: Error| Error::node(node.name.as_str(), e);
            let bpf = profile.to_bpf(&policy.caps).map_err(|e| at(e.into()))?;
            if bpf.verdict(libc::SYS_execve) == Some(seccomp::Verdict::Deny) {
                let which = match &policy.seccomp {
                    SeccompChoice::Profile(path) => format!("seccomp profile {}", path.display()),
                    _ => "the seccomp profile".to_string(),
                };
                return Err(at(Error::UnusableProfile(format!(
                    "{which} denies execve (with the node's capabilities): no program could start under it"
                ))));
            }
            filters.0.insert(key, bpf);
        }
        Ok(filters)
    }

    /// The filter of `node`; `None`: unconfined.
    fn get(&self, node: &NodePlan) -> Option<Bpf> {
        self.0.get(&(node.policy.seccomp.clone(), node.policy.caps.clone())).cloned()
    }
}

fn node_spec(
    lab: &crate::topology::Name,
    node: &NodePlan,
    dir: PathBuf,
    files: Vec<NodeFile>,
    seccomp: Option<Bpf>,
) -> NodeSpec {
    NodeSpec {
        name: node.name.to_string(),
        hostname: node.hostname.to_string(),
        rootfs: match &node.rootfs {
            Rootfs::Host | Rootfs::Image(_) => PathBuf::from("/"),
            Rootfs::Dir(d) => d.clone(),
        },
        layers: node.layers.clone(),
        dir,
        command: node.command.clone(),
        env: node.env.clone(),
        cgroup: node.cgroup.clone(),
        files,
        covers: node.covers.clone(),
        security: Security { caps: node.policy.caps.clone(), seccomp, no_new_privs: node.policy.no_new_privs },
        masked_paths: node.policy.masked_paths.clone(),
        read_only_paths: node.policy.read_only_paths.clone(),
        writable_sys: node.policy.writable_sys,
        userns: node.userns,
        mounts: node.mounts.clone(),
        workdir: node.service.workdir.clone(),
        user: node.service.user.clone(),
        restart: node.service.restart,
        setup: node.service.setup.clone(),
        layer_size: match node.scratch {
            Scratch::Tmpfs { size } => size.or(node.limits.memory),
            Scratch::Disk => None,
        },
        scratch_dir: scratch_dir(lab, node),
        stop_signal: Some(node.service.stop_signal),
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

/// The entries of host directory `dir` as files of the node, below node path `at`: parents
/// before children, symlinks as symlinks, modes kept (set-id bits too: the topology's author
/// put them there).
fn tree(dir: &std::path::Path, at: &str, out: &mut Vec<NodeFile>) -> Result<(), lab_sandbox::Error> {
    let io = |e: std::io::Error| lab_sandbox::Error::os(format!("reading {}", dir.display()), e);
    let mut entries: Vec<std::fs::DirEntry> =
        std::fs::read_dir(dir).map_err(io)?.collect::<Result<_, _>>().map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = format!("{at}/{name}");
        let meta = std::fs::symlink_metadata(e.path()).map_err(io)?;
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(e.path()).map_err(io)?.to_string_lossy().into_owned();
            out.push(NodeFile { path, contents: target, mode, kind: FileKind::Symlink });
        } else if meta.is_dir() {
            out.push(NodeFile { path: path.clone(), contents: String::new(), mode, kind: FileKind::Dir });
            tree(&e.path(), &path, out)?;
        } else if meta.is_file() {
            out.push(NodeFile { path, contents: e.path().to_string_lossy().into_owned(), mode, kind: FileKind::Copy });
        }
    }
    Ok(())
}

/// Where node `node`'s writable layer is on disk, if it is (`scratch = "disk"`).
pub(super) fn scratch_dir(lab: &crate::topology::Name, node: &NodePlan) -> Option<PathBuf> {
    matches!(node.scratch, Scratch::Disk).then(|| crate::state::scratch_dir(lab, node.name.as_str()))
}
