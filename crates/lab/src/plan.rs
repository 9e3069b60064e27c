//! The plan: every name, address, interface and route of a lab decided up front, by a pure
//! function of the topology and a few facts about the machine. No side effects, so it is
//! unit-tested without root, and the runtime only has to carry it out.

use crate::identity::{self, HostIf};
use crate::topology::{
    gateway, overlaps, Hostname, IfName, Impairment, InterfaceKind, Name, Protocol, Rootfs, Service, Topology,
};
use crate::TopologyError;
use ipnetwork::IpNetwork;
use lab_sandbox::cgroup::Limits;
use lab_sandbox::{BindMount, Cover, IdMap, NodeFile};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;

/// Subnets handed out to networks that do not name one: /24s from this block.
pub const SUBNET_POOL: &str = "10.42.0.0/16";
const POOL_PREFIX: u8 = 24;
/// IPv6 subnets handed out to dual-stack networks that do not name one: /64s of this ULA block.
pub const SUBNET6_POOL: &str = "fd42:4242::/48";
const POOL6_PREFIX: u8 = 64;
pub use crate::identity::{GROUP_BASE, ID_LEN};

/// What the plan needs to know about the machine; gathered by the runtime.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Subnets already in use (host routes, other labs' networks), each with who uses it.
    pub used_subnets: Vec<(IpNetwork, String)>,
    /// Ids of other labs, and of leftover interfaces, that a new lab must not reuse.
    pub taken_ids: BTreeSet<String>,
    /// Link groups in use on the host.
    pub taken_groups: BTreeSet<u32>,
    /// Host uid/gid ranges (their first id) other labs' user namespaces use.
    pub taken_userns: BTreeSet<u32>,
    /// Host ports other labs forward, each with who forwards it.
    pub used_ports: Vec<((u16, Protocol), String)>,
    /// Network namespace names in use under /run/netns, each with who uses it.
    pub taken_netns: Vec<(String, String)>,
    /// The machine has no IPv6 (no /proc/sys/net/ipv6): no IPv6 sysctls for nodes.
    pub no_ipv6: bool,
}

/// Everything about a lab, decided before anything is made: what `lab up` carries out and
/// what the lab's state file keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The lab's name.
    pub lab: Name,
    /// Short id carried by host-side interface names (`lb-<id>-0`), unique among live labs.
    pub id: String,
    /// Link group of the lab's host interfaces, unique on the host: `lab down` deletes them
    /// all with one request.
    pub group: u32,
    /// The lab's nftables table (family inet); all its NAT rules live there.
    pub nft_table: String,
    /// Its networks (bridges), in file order.
    pub networks: Vec<NetworkPlan>,
    /// Its nodes, in file order; other parts of the plan refer to them by index.
    pub nodes: Vec<NodePlan>,
    /// Its point-to-point links, in file order.
    pub links: Vec<LinkPlan>,
    /// Host ports forwarded to nodes.
    #[serde(default)]
    pub ports: Vec<PortPlan>,
}

/// A network: a bridge on the host that the nodes' host ends are ports of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPlan {
    /// The network's name in the topology.
    pub name: Name,
    /// The bridge's name on the host.
    pub bridge: IfName,
    /// Interface alias (`ip link` shows it) that ties the bridge to its lab.
    pub alias: String,
    /// The bridge's MAC address, fixed so that it survives `lab down` and `lab up`.
    pub mac: [u8; 6],
    /// The IPv4 subnet of the network.
    pub subnet: IpNetwork,
    /// The bridge's own address, for NAT networks: nodes' default route.
    pub gateway: Option<IpAddr>,
    /// The IPv6 subnet of a dual-stack network, and the bridge's address in it (NAT).
    #[serde(default)]
    pub subnet6: Option<IpNetwork>,
    /// The bridge's IPv6 address, for NAT networks.
    #[serde(default)]
    pub gateway6: Option<IpAddr>,
    /// MTU of the bridge and its ports (the kernel's default when `None`).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Whether nodes reach beyond the host through the bridge, masqueraded.
    pub nat: bool,
}

impl NetworkPlan {
    /// The bridge's addresses: its gateways, with their prefixes.
    pub fn gateway_addresses(&self) -> Vec<IpNetwork> {
        let v4 = self.gateway.map(|g| (g, self.subnet.prefix()));
        let v6 = self.gateway6.zip(self.subnet6.map(|s| s.prefix()));
        v4.into_iter().chain(v6).filter_map(|(ip, prefix)| IpNetwork::new(ip, prefix).ok()).collect()
    }
}

/// A node: its process, identity, interfaces, files, policy and limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePlan {
    /// The node's name in the topology.
    pub name: Name,
    /// Its hostname (UTS namespace).
    pub hostname: Hostname,
    /// Name under /run/netns, so that `ip netns exec <lab>-<node>` works.
    pub netns: String,
    /// cgroup path below each hierarchy's root.
    pub cgroup: String,
    /// The root filesystem it runs on.
    pub rootfs: Rootfs,
    /// The command its init runs; `None` keeps it idle (`lab exec` runs the work).
    pub command: Option<Vec<String>>,
    /// The whole environment its processes start with (PATH, HOSTNAME and the topology's;
    /// HOME comes from whoever a process runs as).
    pub env: Vec<(String, String)>,
    /// Its interfaces, in order (`eth0` first).
    pub interfaces: Vec<InterfacePlan>,
    /// Static routes, added after its interfaces are up.
    pub routes: Vec<RoutePlan>,
    /// The node's /etc/hosts.
    pub hosts: String,
    /// What its processes may do.
    pub policy: Policy,
    /// Root inside mapped to this host range, when the node has a user namespace.
    pub userns: Option<IdMap>,
    /// CPU, memory, pid and I/O limits of its cgroup.
    pub limits: Limits,
    /// Bind mounts from the host.
    pub mounts: Vec<BindMount>,
    /// How the node's view of its rootfs differs from it (host secrets hidden), and the
    /// files that come with that (a fresh /var's directories).
    #[serde(default)]
    pub covers: Vec<Cover>,
    /// Files of the node's view that are not in its rootfs.
    #[serde(default)]
    pub view_files: Vec<NodeFile>,
    /// Sysctls of the node's network namespace, in order, set before its interfaces come up.
    /// Keys are dotted (`net.ipv4.ip_forward`) or, where an interface name may hold a dot,
    /// separated by `/`.
    pub sysctls: Vec<(String, String)>,
    /// Impairments of its interfaces when the lab comes up.
    #[serde(default)]
    pub impairments: Vec<(IfName, Impairment)>,
    /// Working directory, user, restart policy, dependencies, health check, hooks.
    #[serde(default)]
    pub service: Service,
}

/// One interface of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfacePlan {
    /// Name inside the node.
    pub name: IfName,
    /// At most one per IP version, IPv4 first.
    pub addresses: Vec<IpNetwork>,
    /// Where its veth's other end is.
    pub attach: Attach,
    /// MTU (the network's or link's).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Fixed, so that a node started again keeps it and its neighbours' ARP caches stay right.
    #[serde(default)]
    pub mac: Option<[u8; 6]>,
}

/// How a node's interface reaches the rest of its lab: always as a veth whose other end,
/// `host_veth`, is on the host (with the alias `ip link` shows), where lab applies the faults
/// that the node must not be able to undo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attach {
    /// The host end is a port of network `network`'s bridge.
    Bridge {
        /// Index of the network in [`Plan::networks`].
        network: usize,
        /// The host end.
        host_veth: IfName,
        /// The host end's alias.
        alias: String,
    },
    /// One end of point-to-point link `link`: the host end is wired (tc) to the host end of
    /// the link's other interface.
    Link {
        /// Index of the link in [`Plan::links`].
        link: usize,
        /// The host end.
        host_veth: IfName,
        /// The host end's alias.
        alias: String,
    },
}

impl InterfacePlan {
    /// The interface's host end.
    pub fn host_veth(&self) -> &IfName {
        match &self.attach {
            Attach::Bridge { host_veth, .. } | Attach::Link { host_veth, .. } => host_veth,
        }
    }

    /// The alias of the interface's host end: it names the lab, node and interface.
    pub fn alias(&self) -> &str {
        match &self.attach {
            Attach::Bridge { alias, .. } | Attach::Link { alias, .. } => alias,
        }
    }

    /// The IFB device that shapes what a bridged interface sends (`li-<id>-<n>` beside its
    /// host end `lv-<id>-<n>`); a link's impairment is on its peer's host end instead.
    pub fn ifb(&self) -> Option<IfName> {
        match &self.attach {
            Attach::Bridge { host_veth, .. } => identity::ifb_of(host_veth),
            Attach::Link { .. } => None,
        }
    }
}

/// A point-to-point link between two nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkPlan {
    /// (node index, interface name) of each end.
    pub endpoints: [(usize, IfName); 2],
    /// MTU of both ends.
    #[serde(default)]
    pub mtu: Option<u32>,
}

/// A host port forwarded to a node's address on a NAT network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortPlan {
    /// The node that receives the traffic.
    pub node: Name,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The port on the host.
    pub host_port: u16,
    /// The port in the node.
    pub node_port: u16,
    /// The node's address the traffic goes to.
    pub address: IpAddr,
    /// The bridge the node is reached through.
    pub bridge: IfName,
}

/// A static route of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutePlan {
    /// Where to.
    pub destination: IpNetwork,
    /// The next hop, on one of the node's subnets.
    pub via: IpAddr,
}

impl Plan {
    /// Decides everything about a lab. Fails, pointing into the topology file, only when the
    /// machine makes the file impossible (a subnet already in use, a pool exhausted).
    pub fn new(topology: &Topology, facts: &Facts) -> Result<Plan, TopologyError> {
        let lab = topology.name.clone();
        let (id, group) =
            identity::lab_id(&lab, |id, group| !facts.taken_ids.contains(id) && !facts.taken_groups.contains(&group));
        let networks = plan_networks(topology, facts, &id)?;
        let mut nodes = Vec::with_capacity(topology.nodes.len());
        let mut allocators: Vec<Allocator> = networks.iter().map(|n| Allocator::new(n.subnet, n.gateway)).collect();
        let mut allocators6: Vec<Option<Allocator>> =
            networks.iter().map(|n| n.subnet6.map(|s| Allocator::new(s, n.gateway6))).collect();
        for iface in topology.nodes.iter().flat_map(|n| &n.interfaces) {
            if let InterfaceKind::Network { network, addresses } = &iface.kind {
                for a in addresses {
                    let alloc =
                        if a.is_ipv4() { Some(&mut allocators[*network]) } else { allocators6[*network].as_mut() };
                    if let Some(alloc) = alloc {
                        alloc.taken.insert(*a);
                    }
                }
            }
        }

        let mut userns = UsernsAllocator { taken: &facts.taken_userns, next: 0 };
        let mut veth_counter = 0usize;
        for node in &topology.nodes {
            let mut interfaces = Vec::new();
            for iface in &node.interfaces {
                let (addresses, attach, mtu) = match &iface.kind {
                    InterfaceKind::Network { network, addresses } => {
                        let net = &networks[*network];
                        let exhausted = |subnet: IpNetwork| {
                            topology.error_at(
                                topology.networks[*network].span.clone(),
                                format!(
                                    "network `{}` ({subnet}) has no free address left for node `{}`",
                                    net.name, node.name
                                ),
                                Some("give the network a larger subnet".into()),
                            )
                        };
                        let v4 = match addresses.iter().find(|a| a.is_ipv4()) {
                            Some(ip) => *ip,
                            None => allocators[*network].next().ok_or_else(|| exhausted(net.subnet))?,
                        };
                        let mut addrs =
                            vec![IpNetwork::new(v4, net.subnet.prefix()).expect("prefix of a valid subnet")];
                        if let (Some(subnet6), Some(alloc)) = (net.subnet6, allocators6[*network].as_mut()) {
                            let v6 = match addresses.iter().find(|a| a.is_ipv6()) {
                                Some(ip) => *ip,
                                None => alloc.next().ok_or_else(|| exhausted(subnet6))?,
                            };
                            addrs.push(IpNetwork::new(v6, subnet6.prefix()).expect("prefix of a valid subnet"));
                        }
                        let host_veth = HostIf::Port.name(&id, veth_counter);
                        veth_counter += 1;
                        let alias = identity::interface_alias(&lab, &node.name, &iface.name);
                        (addrs, Attach::Bridge { network: *network, host_veth, alias }, net.mtu)
                    }
                    InterfaceKind::Link { link, addresses } => {
                        let host_veth = HostIf::Wire.name(&id, veth_counter);
                        veth_counter += 1;
                        let alias = identity::interface_alias(&lab, &node.name, &iface.name);
                        (addresses.clone(), Attach::Link { link: *link, host_veth, alias }, topology.links[*link].mtu)
                    }
                };
                let mac = Some(stable_mac(&format!("{id}/{}/{}", node.name, iface.name)));
                interfaces.push(InterfacePlan { name: iface.name.clone(), addresses, attach, mtu, mac });
            }
            let netns = identity::netns(&lab, &node.name);
            if let Some((_, who)) = facts.taken_netns.iter().find(|(n, _)| *n == netns) {
                return Err(topology.error_at(
                    node.span.clone(),
                    format!("node `{}`'s network namespace name `{netns}` is taken by {who}", node.name),
                    Some("rename the node or the lab (`lab up --name`)".into()),
                ));
            }
            let routes = routes(topology, node, &interfaces, &networks)?;
            let sec = &node.security;
            let userns = if sec.userns {
                Some(userns.next().ok_or_else(|| {
                    topology.error_at(
                        node.span.clone(),
                        format!("no free host id range left for node `{}`'s user namespace", node.name),
                        None,
                    )
                })?)
            } else {
                None
            };
            let ifnames = interfaces.iter().map(|i| i.name.as_str());
            let sysctls = policy::sysctls(ifnames, userns, !facts.no_ipv6, &node.sysctls);
            let (covers, view_files) = match &node.rootfs {
                Rootfs::Host => view::host_view(&node.reveal),
                Rootfs::Dir(_) => (Vec::new(), Vec::new()),
            };
            nodes.push(NodePlan {
                covers,
                view_files,
                policy: policy::decide(sec),
                userns,
                limits: node.limits,
                mounts: node.mounts.clone(),
                sysctls,
                impairments: node.impairments.clone(),
                service: node.service.clone(),
                netns,
                cgroup: identity::cgroup(&lab, &node.name),
                name: node.name.clone(),
                hostname: node.hostname.clone(),
                rootfs: node.rootfs.clone(),
                command: node.command.clone(),
                env: policy::environment(&node.hostname, &node.env),
                interfaces,
                routes,
                hosts: String::new(),
            });
        }
        let ports = ports(topology, facts, &nodes, &networks)?;
        let links: Vec<LinkPlan> = topology
            .links
            .iter()
            .map(|l| LinkPlan { endpoints: l.endpoints.clone().map(|e| (e.node, e.interface)), mtu: l.mtu })
            .collect();
        let hosts: Vec<String> = (0..nodes.len()).map(|i| hosts_file(i, &nodes, &networks)).collect();
        for (node, hosts) in nodes.iter_mut().zip(hosts) {
            node.hosts = hosts;
        }
        Ok(Plan { nft_table: identity::nft_table(&lab), lab, id, group, networks, nodes, links, ports })
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| n.name.as_str() == name)
    }

    /// The interface at end `end` (0 or 1) of link `link`: (node index, interface).
    pub fn link_end(&self, link: usize, end: usize) -> Option<(usize, &InterfacePlan)> {
        let (node, ifname) = &self.links.get(link)?.endpoints[end];
        let iface = self.nodes.get(*node)?.interfaces.iter().find(|i| i.name == *ifname)?;
        Some((*node, iface))
    }

    /// The interface at the other end of link interface `iface` of node `node`.
    pub fn link_peer(&self, node: usize, iface: &InterfacePlan) -> Option<(usize, &InterfacePlan)> {
        let Attach::Link { link, .. } = &iface.attach else { return None };
        let [(a, ia), _] = &self.links.get(*link)?.endpoints;
        let end = if *a == node && *ia == iface.name { 1 } else { 0 };
        self.link_end(*link, end)
    }

    /// Whether any network masquerades outbound traffic.
    pub fn needs_nat(&self) -> bool {
        self.networks.iter().any(|n| n.nat)
    }

    /// Whether any network masquerades outbound IPv6 traffic (the host must forward IPv6).
    pub fn needs_nat6(&self) -> bool {
        self.networks.iter().any(|n| n.nat && n.subnet6.is_some())
    }
}

fn plan_networks(topology: &Topology, facts: &Facts, id: &str) -> Result<Vec<NetworkPlan>, TopologyError> {
    let mut used = facts.used_subnets.clone();
    for n in &topology.networks {
        for (net, span) in [(n.subnet, &n.span), (n.subnet6, &n.span6)] {
            let Some(net) = net else { continue };
            if let Some((_, who)) = used.iter().find(|(u, _)| overlaps(*u, net)) {
                return Err(topology.error_at(
                    span.clone(),
                    format!("subnet {net} of network `{}` is already in use by {who}", n.name),
                    Some("pick another subnet, or leave it out to get a free one".into()),
                ));
            }
        }
    }
    for n in &topology.networks {
        for s in [n.subnet, n.subnet6].into_iter().flatten() {
            used.push((s, format!("network `{}` of this lab", n.name)));
        }
    }
    for l in &topology.links {
        for a in &l.endpoints[0].addresses {
            used.push((*a, "a link of this lab".into()));
        }
    }
    let mut out = Vec::new();
    for (k, n) in topology.networks.iter().enumerate() {
        let mut pick = |pool: &str, prefix: u8, span: &std::ops::Range<usize>| {
            let s = free_subnet(pool, prefix, &used).ok_or_else(|| {
                topology.error_at(
                    span.clone(),
                    format!("no free /{prefix} left in {pool} for network `{}`", n.name),
                    Some("give the network an explicit subnet".into()),
                )
            })?;
            used.push((s, format!("network `{}` of this lab", n.name)));
            Ok::<_, TopologyError>(s)
        };
        let subnet = match n.subnet {
            Some(s) => s,
            None => pick(SUBNET_POOL, POOL_PREFIX, &n.span)?,
        };
        let subnet6 = match (n.ipv6, n.subnet6) {
            (_, Some(s)) => Some(s),
            (true, None) => Some(pick(SUBNET6_POOL, POOL6_PREFIX, &n.span6)?),
            (false, None) => None,
        };
        out.push(NetworkPlan {
            name: n.name.clone(),
            bridge: HostIf::Bridge.name(id, k),
            alias: identity::network_alias(&topology.name, &n.name),
            mac: bridge_mac(id, k),
            subnet,
            gateway: if n.nat { gateway(subnet) } else { None },
            subnet6,
            gateway6: if n.nat { subnet6.and_then(gateway) } else { None },
            mtu: n.mtu,
            nat: n.nat,
        });
    }
    Ok(out)
}

/// The first /`prefix` of `pool` that overlaps nothing in use.
fn free_subnet(pool: &str, prefix: u8, used: &[(IpNetwork, String)]) -> Option<IpNetwork> {
    let pool: IpNetwork = pool.parse().ok()?;
    let count = 1u128.checked_shl(u32::from(prefix.checked_sub(pool.prefix())?))?;
    let (base, bits): (u128, u32) = match pool.network() {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    };
    let step = 1u128 << (bits - u32::from(prefix));
    (0..count)
        .filter_map(|i| {
            let start = base + i * step;
            let ip = if bits == 32 { IpAddr::V4((start as u32).into()) } else { IpAddr::V6(start.into()) };
            IpNetwork::new(ip, prefix).ok()
        })
        .find(|c| !used.iter().any(|(u, _)| overlaps(*u, *c)))
}

/// A node's routes: through the gateways of its first NAT network unless it names its own
/// default route, then the routes it names, each through a gateway on one of its subnets.
fn routes(
    topology: &Topology,
    node: &crate::topology::Node,
    interfaces: &[InterfacePlan],
    networks: &[NetworkPlan],
) -> Result<Vec<RoutePlan>, TopologyError> {
    let mut out = Vec::new();
    let own_default =
        |v4: bool| node.routes.iter().any(|r| r.destination.prefix() == 0 && r.destination.is_ipv4() == v4);
    let nat = interfaces.iter().find_map(|i| match &i.attach {
        Attach::Bridge { network, .. } if networks[*network].nat => Some(&networks[*network]),
        _ => None,
    });
    if let Some(net) = nat {
        for (via, any) in [(net.gateway, "0.0.0.0/0"), (net.gateway6, "::/0")] {
            let destination: IpNetwork = any.parse().expect("literal default route");
            if let Some(via) = via.filter(|_| !own_default(destination.is_ipv4())) {
                out.push(RoutePlan { destination, via });
            }
        }
    }
    for r in &node.routes {
        let on_link = interfaces.iter().flat_map(|i| &i.addresses).any(|a| a.contains(r.via) && a.ip() != r.via);
        if !on_link {
            let subnets: Vec<String> = interfaces
                .iter()
                .flat_map(|i| &i.addresses)
                .map(|a| format!("{}/{}", a.network(), a.prefix()))
                .collect();
            return Err(topology.error_at(
                r.span.clone(),
                format!("route to {}: gateway {} is on none of node `{}`'s subnets", r.destination, r.via, node.name),
                Some(if subnets.is_empty() {
                    "the node has no addresses".to_string()
                } else {
                    format!("its subnets: {}", subnets.join(", "))
                }),
            ));
        }
        out.push(RoutePlan { destination: r.destination, via: r.via });
    }
    Ok(out)
}

/// Forwarded host ports, each to the node's IPv4 address on its first NAT network.
fn ports(
    topology: &Topology,
    facts: &Facts,
    nodes: &[NodePlan],
    networks: &[NetworkPlan],
) -> Result<Vec<PortPlan>, TopologyError> {
    let mut out = Vec::new();
    for (node, plan) in topology.nodes.iter().zip(nodes) {
        for p in &node.ports {
            if let Some((_, who)) = facts.used_ports.iter().find(|(k, _)| *k == (p.host, p.protocol)) {
                return Err(topology.error_at(
                    p.span.clone(),
                    format!("host port {}/{} is already forwarded by {who}", p.host, p.protocol),
                    Some("pick another host port, or take that lab down first".into()),
                ));
            }
            let target = plan.interfaces.iter().find_map(|i| match &i.attach {
                Attach::Bridge { network, .. } if networks[*network].nat => {
                    Some((i.addresses.iter().find(|a| a.is_ipv4())?.ip(), networks[*network].bridge.clone()))
                }
                _ => None,
            });
            let (address, bridge) = target.expect("the topology checked the node is on a NAT network");
            out.push(PortPlan {
                node: node.name.clone(),
                protocol: p.protocol,
                host_port: p.host,
                node_port: p.node,
                address,
                bridge,
            });
        }
    }
    Ok(out)
}

/// First host id of the ranges user namespaces map to: far above the ranges /etc/subuid
/// hands out, each 65536 ids long.
pub const USERNS_BASE: u32 = 0x4000_0000;
/// Length of each range user namespaces map to.
pub const USERNS_SIZE: u32 = 65536;

/// Hands out host id ranges for user namespaces, skipping those other labs use.
struct UsernsAllocator<'a> {
    taken: &'a BTreeSet<u32>,
    next: u32,
}

impl UsernsAllocator<'_> {
    fn next(&mut self) -> Option<IdMap> {
        let slots = (u32::MAX - USERNS_BASE) / USERNS_SIZE;
        while self.next < slots {
            let host = USERNS_BASE + self.next * USERNS_SIZE;
            self.next += 1;
            if !self.taken.contains(&host) {
                return Some(IdMap { host, size: USERNS_SIZE });
            }
        }
        None
    }
}

/// Hands out addresses in order, skipping the network, gateway and static addresses.
struct Allocator {
    hosts: Box<dyn Iterator<Item = IpAddr>>,
    taken: HashSet<IpAddr>,
}

impl Allocator {
    fn new(subnet: IpNetwork, gateway: Option<IpAddr>) -> Allocator {
        let broadcast = subnet.is_ipv4().then(|| subnet.broadcast());
        // The first address is left for a gateway or a router even where the host takes none.
        let hosts = subnet.iter().skip(2).filter(move |ip| Some(*ip) != broadcast);
        Allocator { hosts: Box::new(hosts), taken: gateway.into_iter().collect() }
    }

    fn next(&mut self) -> Option<IpAddr> {
        let taken = &self.taken;
        let ip = self.hosts.find(|ip| !taken.contains(ip))?;
        self.taken.insert(ip);
        Some(ip)
    }
}

/// /etc/hosts for node `me`: every node by name, at the addresses of an interface `me` can
/// reach directly when there is one; every address also as `<node>.<network>`.
fn hosts_file(me: usize, nodes: &[NodePlan], networks: &[NetworkPlan]) -> String {
    let segment = |i: &InterfacePlan| match &i.attach {
        Attach::Bridge { network, .. } => format!("net:{network}"),
        Attach::Link { link, .. } => format!("link:{link}"),
    };
    let mine: HashSet<String> = nodes[me].interfaces.iter().map(segment).collect();
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let mut qualified = String::new();
    for (i, node) in nodes.iter().enumerate() {
        let addressed: Vec<&InterfacePlan> = node.interfaces.iter().filter(|i| !i.addresses.is_empty()).collect();
        let best = addressed.iter().find(|iface| i == me || mine.contains(&segment(iface))).or(addressed.first());
        let mut names = vec![node.name.to_string()];
        if node.hostname.as_str() != node.name.as_str() {
            names.push(node.hostname.to_string());
        }
        match best {
            Some(iface) => {
                for a in &iface.addresses {
                    writeln!(out, "{}\t{}", a.ip(), names.join(" ")).expect("writing to a String");
                }
            }
            None if i == me => writeln!(out, "127.0.1.1\t{}", names.join(" ")).expect("writing to a String"),
            None => {}
        }
        for iface in addressed {
            if let Attach::Bridge { network, .. } = &iface.attach {
                for a in &iface.addresses {
                    writeln!(qualified, "{}\t{}.{}", a.ip(), node.name, networks[*network].name)
                        .expect("writing to a String");
                }
            }
        }
    }
    out + &qualified
}

/// A stable, locally administered MAC for a bridge, so that it never changes as ports come
/// and go (the kernel would otherwise take the lowest port's MAC and stale ARP caches).
fn bridge_mac(id: &str, network: usize) -> [u8; 6] {
    stable_mac(&format!("{id}/{network}"))
}

/// A locally administered unicast MAC from a hash of `key`.
fn stable_mac(key: &str) -> [u8; 6] {
    let h = identity::fnv1a(key.as_bytes()).to_be_bytes();
    [0x02, h[0], h[1], h[2], h[3], h[4]]
}

pub mod policy;
pub mod view;

pub use policy::Policy;

#[cfg(test)]
mod tests;
