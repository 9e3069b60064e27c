//! The plan: every name, address, interface and route of a lab decided up front, by a pure
//! function of the topology and a few facts about the machine. No side effects, so it is
//! unit-tested without root, and the runtime only has to carry it out.

//!
//! `Plan::new` walks the topology: [`network`] picks subnets and addresses, `node` decides
//! each node (interfaces, routes, namespaces, [`policy`], [`view`]), `hosts` writes the
//! /etc/hosts files once every address is known.

mod hosts;
mod image;
pub mod network;
mod node;
pub mod policy;
pub mod view;

pub use network::{SUBNET6_POOL, SUBNET_POOL};
pub use node::{USERNS_BASE, USERNS_SIZE};
pub use policy::Policy;

use crate::identity;
use crate::topology::{Hostname, IfName, Impairment, Name, Protocol, Rootfs, Service, Topology};
use crate::TopologyError;
use ipnetwork::IpNetwork;
use lab_sandbox::cgroup::Limits;
use lab_sandbox::{BindMount, Cover, IdMap, NodeFile};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::IpAddr;

pub use crate::identity::{GROUP_BASE, ID_LEN};

/// What the plan needs to know about the machine; gathered by the runtime.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Subnets the host routes for itself, each with who uses it: a NAT network cannot have
    /// one.
    pub used_subnets: Vec<(IpNetwork, String)>,
    /// Subnets the host routes for other labs (their NAT networks, their gateways' uplinks):
    /// a NAT network that has one of them (a copy of a lab that is up) is routed in a
    /// gateway namespace of its lab's own instead of by the host.
    pub lab_subnets: Vec<(IpNetwork, String)>,
    /// Other labs' networks without NAT: segments the host is not on, whose subnets any
    /// network may have too (copies of one lab), but a free one is picked elsewhere.
    pub segment_subnets: Vec<(IpNetwork, String)>,
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
    /// The images the topology names that the image store has, by full reference.
    pub images: std::collections::BTreeMap<String, ImageFacts>,
    /// Plan without the store (to draw a file): nodes on images take no layers or config.
    pub images_unresolved: bool,
}

/// An image of the store, as a plan needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFacts {
    /// Its manifest's digest.
    pub digest: String,
    /// Its unpacked layers, bottom first.
    pub layers: Vec<std::path::PathBuf>,
    /// How Docker would run it.
    pub config: lab_image::RunConfig,
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
    /// What `lab check` checks (the topology's `[[checks]]`).
    #[serde(default)]
    pub checks: Vec<crate::topology::Check>,
    /// Where the NAT networks are routed when not by the host (a copy of a lab that is up).
    #[serde(default)]
    pub gateway: Option<GatewayPlan>,
}

/// A network namespace of the lab's own that routes its NAT networks in place of the host:
/// it holds their gateway addresses (on a leg on each network's bridge), masquerades them
/// and forwards the lab's ports; the host sees only its uplink, on a transfer subnet of its
/// own, which the host masquerades in turn. So copies of one lab may have the same NAT
/// subnets: none of them is the host's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayPlan {
    /// Its name under /run/netns (the lab's name: `ip netns exec <lab> ...` reaches the
    /// lab's NAT networks from the host).
    pub netns: String,
    /// The host end of the uplink (`lg-<id>-0`); the other end is [`GatewayPlan::UPLINK`].
    pub uplink: IfName,
    /// The host end's addresses on the transfer subnets (IPv4, and IPv6 with IPv6 NAT).
    pub host_addresses: Vec<IpNetwork>,
    /// The namespace end's addresses on them; the host forwards the lab's ports to the IPv4 one.
    pub addresses: Vec<IpNetwork>,
    /// One per NAT network: a veth whose host end is a port of its bridge.
    pub legs: Vec<GatewayLeg>,
}

impl GatewayPlan {
    /// The uplink's name inside the namespace.
    pub const UPLINK: &'static str = "uplink";

    /// The leg on network `network` (an index into the plan's networks).
    pub fn leg(&self, network: usize) -> Option<&GatewayLeg> {
        self.legs.iter().find(|l| l.network == network)
    }
}

/// The gateway namespace's interface on one NAT network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayLeg {
    /// The network, an index into the plan's networks.
    pub network: usize,
    /// The veth's host end, a port of the network's bridge (`lg-<id>-<k>`).
    pub host_end: IfName,
    /// The veth's end in the namespace, which holds the network's gateway addresses (the
    /// network's name where it fits an interface name).
    pub name: IfName,
    /// Its interface alias on the host.
    pub alias: String,
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
    /// The bridge runs spanning tree.
    #[serde(default)]
    pub stp: bool,
    /// The bridge filters by VLAN (its ports' VLANs are in their `Attach::Bridge`).
    #[serde(default)]
    pub vlan_filtering: bool,
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
    /// On an image: its layers from the store, bottom first.
    #[serde(default)]
    pub layers: Vec<std::path::PathBuf>,
    /// On an image: its manifest's digest when the lab came up.
    #[serde(default)]
    pub image_digest: Option<String>,
    /// Where its writable layer is.
    #[serde(default)]
    pub scratch: crate::topology::Scratch,
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
    /// Bind mounts from the host, its volumes' last.
    pub mounts: Vec<BindMount>,
    /// Its volumes (their directories are in `mounts` too).
    #[serde(default)]
    pub volumes: Vec<crate::topology::Volume>,
    /// Addresses on its `lo` (`loopback`).
    #[serde(default)]
    pub loopback: Vec<IpNetwork>,
    /// A host directory whose tree is copied over the node's root when it starts (`files`).
    #[serde(default)]
    pub files_from: Option<std::path::PathBuf>,
    /// Host scripts copied to `/etc/lab/startup` (then `startup.1`, ...) and run as the
    /// first hooks (`startup`).
    #[serde(default)]
    pub startups: Vec<std::path::PathBuf>,
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
    /// Its addresses with their prefixes: the primary IPv4, the primary IPv6, then the
    /// secondary ones.
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
        /// Its VLANs on the bridge.
        #[serde(default)]
        vlans: crate::topology::PortVlans,
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
        let networks = network::networks(topology, facts, &id)?;
        let mut planner = node::Planner::new(topology, facts, &id, &networks);
        let mut nodes = topology.nodes.iter().map(|n| planner.node(n)).collect::<Result<Vec<_>, _>>()?;
        let ports = network::ports(topology, facts, &nodes, &networks)?;
        let links: Vec<LinkPlan> = topology
            .links
            .iter()
            .map(|l| LinkPlan { endpoints: l.endpoints.clone().map(|e| (e.node, e.interface)), mtu: l.mtu })
            .collect();
        let gateway = network::gateway_namespace(topology, facts, &id, &networks)?;
        hosts::fill(&mut nodes, &networks);
        let checks = topology.checks.clone();
        Ok(Plan {
            nft_table: identity::nft_table(&lab),
            lab,
            id,
            group,
            networks,
            nodes,
            links,
            ports,
            checks,
            gateway,
        })
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

#[cfg(test)]
mod tests;
