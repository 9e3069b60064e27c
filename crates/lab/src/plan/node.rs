//! One node's plan: its interfaces (addresses, host ends, MACs), network namespace name,
//! routes, user namespace range, sysctls, view of the host, policy and environment.

use super::network::Addresses;
use super::{policy, view, Attach, Facts, InterfacePlan, NetworkPlan, NodePlan, RoutePlan};
use crate::identity::{self, HostIf};
use crate::topology::{Interface, InterfaceKind, Node, Rootfs, Topology};
use crate::TopologyError;
use ipnetwork::IpNetwork;
use lab_sandbox::IdMap;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// Decides nodes one after the other: they share the networks' free addresses, the host
/// ends' numbering and the user namespace ranges.
pub(super) struct Planner<'a> {
    topology: &'a Topology,
    facts: &'a Facts,
    id: &'a str,
    networks: &'a [NetworkPlan],
    addresses: Addresses,
    userns: UsernsAllocator<'a>,
    /// Host ends made so far: the next one's number.
    host_ends: usize,
}

impl<'a> Planner<'a> {
    /// A planner for the nodes of `topology`, on `networks` (lab id `id`).
    pub(super) fn new(topology: &'a Topology, facts: &'a Facts, id: &'a str, networks: &'a [NetworkPlan]) -> Self {
        Planner {
            topology,
            facts,
            id,
            networks,
            addresses: Addresses::new(topology, networks),
            userns: UsernsAllocator { taken: &facts.taken_userns, next: 0 },
            host_ends: 0,
        }
    }

    /// The plan of `node` (its hosts file is left empty: it needs every node's addresses).
    pub(super) fn node(&mut self, node: &Node) -> Result<NodePlan, TopologyError> {
        let (topology, facts, lab) = (self.topology, self.facts, &self.topology.name);
        let interfaces = node.interfaces.iter().map(|i| self.interface(node, i)).collect::<Result<Vec<_>, _>>()?;
        let netns = identity::netns(lab, &node.name);
        if let Some((_, who)) = facts.taken_netns.iter().find(|(n, _)| *n == netns) {
            return Err(topology.error_at(
                node.span.clone(),
                format!("node `{}`'s network namespace name `{netns}` is taken by {who}", node.name),
                Some("rename the node or the lab (`lab up --name`)".into()),
            ));
        }
        let routes = routes(topology, node, &interfaces, self.networks)?;
        let sec = &node.security;
        let userns = if sec.userns {
            Some(self.userns.next().ok_or_else(|| {
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
        let (covers, mut view_files) = match &node.rootfs {
            Rootfs::Host => view::host_view(&node.reveal),
            Rootfs::Dir(_) | Rootfs::Image(_) => (Vec::new(), Vec::new()),
        };
        let image = match &node.rootfs {
            Rootfs::Image(_) if facts.images_unresolved => None,
            Rootfs::Image(reference) => {
                let image = facts.images.get(reference).ok_or_else(|| {
                    topology.error_at(
                        node.rootfs_span.clone(),
                        format!("image {reference} is not in lab's image store"),
                        Some("`lab image import FILE|DIR` it (a `docker save` tarball or an OCI layout)".into()),
                    )
                })?;
                if image.layers.is_empty() {
                    return Err(topology.error_at(
                        node.rootfs_span.clone(),
                        format!("image {reference} has no layers: nothing to run on"),
                        None,
                    ));
                }
                Some(image)
            }
            _ => None,
        };
        let run = image.map(|i| super::image::Run::of(node, &i.config)).transpose().map_err(|m| {
            topology.error_at(node.rootfs_span.clone(), format!("image {}: {m}", node_image(node)), None)
        })?;
        if node.systemctl {
            view_files.push(view::systemctl_shim());
        }
        Ok(NodePlan {
            covers,
            view_files,
            policy: policy::decide(sec),
            userns,
            limits: node.limits,
            mounts: {
                let mut mounts = node.mounts_of(lab);
                mounts.extend(node.volumes.iter().map(|v| lab_sandbox::BindMount {
                    source: crate::state::volume_dir(lab, node.name.as_str(), &v.name),
                    target: v.target.clone(),
                    read_only: v.read_only,
                }));
                mounts
            },
            volumes: node.volumes.clone(),
            files_from: node.files.as_ref().map(|f| node.fill(f, lab)),
            loopback: node.loopback.clone(),
            startups: node.startup.iter().map(|f| node.fill(f, lab)).collect(),
            sysctls,
            impairments: node.impairments.clone(),
            service: {
                // The startup scripts run first of the hooks, in order, once the network is up.
                let mut s = node.service.clone();
                if let Some(run) = &run {
                    run.apply(&mut s);
                }
                let scripts = (0..node.startup.len()).map(crate::topology::startup_path);
                s.exec.splice(0..0, scripts);
                s
            },
            netns,
            cgroup: identity::cgroup(lab, &node.name),
            name: node.name.clone(),
            hostname: node.hostname.clone(),
            rootfs: node.rootfs.clone(),
            layers: image.map(|i| i.layers.clone()).unwrap_or_default(),
            image_digest: image.map(|i| i.digest.clone()),
            scratch: node.scratch,
            command: match &run {
                Some(run) => run.command.clone(),
                None => node.command.clone(),
            },
            env: match &run {
                Some(run) => policy::environment(&node.hostname, &run.env),
                None => policy::environment(&node.hostname, &node.env),
            },
            interfaces,
            routes,
            hosts: String::new(),
        })
    }

    /// Interface `iface` of `node`: its addresses (static, else the next free ones), its host
    /// end, MTU and MAC.
    fn interface(&mut self, node: &Node, iface: &Interface) -> Result<InterfacePlan, TopologyError> {
        let (topology, lab) = (self.topology, &self.topology.name);
        let host_end = self.host_ends;
        self.host_ends += 1;
        let alias = identity::interface_alias(lab, &node.name, &iface.name);
        let (addresses, attach, mtu) = match &iface.kind {
            InterfaceKind::Network { network, addresses, vlans } => {
                let net = &self.networks[*network];
                let exhausted = |subnet: IpNetwork| {
                    topology.error_at(
                        topology.networks[*network].span.clone(),
                        format!("network `{}` ({subnet}) has no free address left for node `{}`", net.name, node.name),
                        Some("give the network a larger subnet".into()),
                    )
                };
                // A network without addresses (a bare segment), or a trunk (whose frames are
                // all tagged: the node addresses its VLAN interfaces): only those it names.
                let trunk = matches!(vlans, crate::topology::PortVlans::Trunk(_));
                let addressed = topology.networks[*network].addressed && !trunk;
                let v4 = match addresses.iter().find(|a| a.is_ipv4()) {
                    Some(ip) => Some(*ip),
                    None if !addressed => None,
                    None => Some(self.addresses.next_v4(*network).ok_or_else(|| exhausted(net.subnet))?),
                };
                let mut primary: Vec<IpAddr> = v4.into_iter().collect();
                if let Some(subnet6) = net.subnet6.filter(|_| addressed || addresses.iter().any(|a| a.is_ipv6())) {
                    let v6 = match addresses.iter().find(|a| a.is_ipv6()) {
                        Some(ip) => *ip,
                        None => self.addresses.next_v6(*network).ok_or_else(|| exhausted(subnet6))?,
                    };
                    primary.push(v6);
                }
                // Primary addresses first, then the secondary ones as written.
                let secondary = addresses.iter().filter(|a| !primary.contains(a)).copied();
                let prefix = |ip: &IpAddr| match ip {
                    IpAddr::V4(_) => net.subnet.prefix(),
                    IpAddr::V6(_) => net.subnet6.map_or(128, |s| s.prefix()),
                };
                let addrs = primary
                    .clone()
                    .into_iter()
                    .chain(secondary)
                    .map(|ip| IpNetwork::new(ip, prefix(&ip)).expect("prefix of a valid subnet"))
                    .collect();
                let host_veth = HostIf::Port.name(self.id, host_end);
                (addrs, Attach::Bridge { network: *network, host_veth, alias, vlans: vlans.clone() }, net.mtu)
            }
            InterfaceKind::Link { link, addresses } => {
                let host_veth = HostIf::Wire.name(self.id, host_end);
                (addresses.clone(), Attach::Link { link: *link, host_veth, alias }, topology.links[*link].mtu)
            }
        };
        let mac = Some(stable_mac(&format!("{}/{}/{}", self.id, node.name, iface.name)));
        Ok(InterfacePlan { name: iface.name.clone(), addresses, attach, mtu, mac })
    }
}

/// A node's routes: through the gateways of its first NAT network unless it names its own
/// default route, then the routes it names, each through a gateway on one of its subnets.
fn routes(
    topology: &Topology,
    node: &Node,
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

/// A locally administered unicast MAC from a hash of `key`.
pub(super) fn stable_mac(key: &str) -> [u8; 6] {
    let h = identity::fnv1a(key.as_bytes()).to_be_bytes();
    [0x02, h[0], h[1], h[2], h[3], h[4]]
}

/// The image a node names, for errors.
fn node_image(node: &Node) -> &str {
    match &node.rootfs {
        Rootfs::Image(r) => r,
        _ => "",
    }
}
