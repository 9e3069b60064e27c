//! Where a lab's NAT networks are routed: by the host (their gateways on the bridges), or,
//! for a copy of a lab that is up, by a gateway namespace of the lab's own (`GatewayPlan`),
//! which holds the gateways on legs into the bridges, masquerades and forwards the lab's
//! ports, and reaches the host through one uplink that the host masquerades in turn.

use crate::identity::HostIf;
use crate::plan::{GatewayPlan, Plan};
use crate::state::{Journal, Resource};
use crate::Error;
use futures::future::try_join_all;
use ipnetwork::IpNetwork;
use lab_net::{firewall, nat, netns, sysctl, Netlink, VethEnd};
use std::net::IpAddr;
use std::os::fd::AsFd;

/// The rules of one nftables table: what it masquerades, the ports it forwards, what it
/// keeps from crossing.
pub(super) struct Rules {
    pub masquerades: Vec<nat::Masquerade>,
    pub forwards: Vec<nat::Forward>,
    pub isolation: firewall::Isolation,
}

impl Rules {
    pub fn is_empty(&self) -> bool {
        self.masquerades.is_empty() && self.forwards.is_empty() && self.isolation.is_empty()
    }
}

/// Every lab's interfaces that one lab's NAT traffic must not reach through the host.
fn other_labs() -> Vec<String> {
    [HostIf::Bridge, HostIf::Wire, HostIf::Gateway].iter().map(|k| k.pattern(None)).collect()
}

/// Every lab's host-side interfaces.
fn lab_interfaces() -> Vec<String> {
    [HostIf::Bridge, HostIf::Port, HostIf::Wire, HostIf::Gateway].iter().map(|k| k.pattern(None)).collect()
}

/// The host's table of the lab. Without a gateway namespace: masquerade for NAT networks
/// (both IP versions), DNAT of forwarded ports to the nodes, and filter chains in which NAT
/// networks reach out (only replies and forwarded ports reach in), other networks and links'
/// host ends are nothing of the host's, and no network reaches another lab's. With one: the
/// same for its uplink alone, every bridge being a segment the host is not on.
pub(super) fn host_rules(plan: &Plan) -> Rules {
    let sealed = if plan.links.is_empty() { Vec::new() } else { vec![HostIf::Wire.pattern(Some(&plan.id))] };
    let Some(g) = &plan.gateway else {
        let bridges = |nat: bool| plan.networks.iter().filter(|n| n.nat == nat).map(|n| n.bridge.to_string()).collect();
        let any_bridge = HostIf::Bridge.pattern(None);
        let masquerades = plan.networks.iter().filter(|n| n.nat).flat_map(|n| masquerades_of(n, &any_bridge)).collect();
        let forwards = plan
            .ports
            .iter()
            .filter_map(|p| {
                let IpAddr::V4(address) = p.address else { return None };
                Some(nat::Forward {
                    protocol: p.protocol,
                    host_port: p.host_port,
                    address,
                    port: p.node_port,
                    bridge: p.bridge.to_string(),
                })
            })
            .collect();
        let isolation = firewall::Isolation {
            nat_bridges: bridges(true),
            plain_bridges: bridges(false),
            sealed,
            other_labs: other_labs(),
            lab_interfaces: lab_interfaces(),
        };
        return Rules { masquerades, forwards, isolation };
    };
    let uplink = g.uplink.to_string();
    let masquerades = g
        .host_addresses
        .iter()
        .map(|a| nat::Masquerade { subnet: network_of(*a), except: HostIf::Bridge.pattern(None) })
        .collect();
    let to = g.addresses.iter().find_map(|a| match a.ip() {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    });
    let forwards = to
        .map(|address| {
            plan.ports
                .iter()
                .filter(|p| p.address.is_ipv4())
                .map(|p| nat::Forward {
                    protocol: p.protocol,
                    host_port: p.host_port,
                    address,
                    port: p.host_port,
                    bridge: uplink.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    let isolation = firewall::Isolation {
        nat_bridges: vec![uplink],
        plain_bridges: plan.networks.iter().map(|n| n.bridge.to_string()).collect(),
        sealed,
        other_labs: other_labs(),
        lab_interfaces: lab_interfaces(),
    };
    Rules { masquerades, forwards, isolation }
}

/// The gateway namespace's own table: each NAT network masqueraded out of the uplink, the
/// lab's ports (arriving for the namespace's uplink address) forwarded to their nodes, and
/// no NAT network reaching another (only replies and forwarded ports reach in).
fn namespace_rules(plan: &Plan, g: &GatewayPlan) -> Rules {
    let leg_of = |network: usize| g.leg(network).map(|l| l.name.to_string());
    let masquerades = g.legs.iter().flat_map(|l| masquerades_of(&plan.networks[l.network], l.name.as_str())).collect();
    let forwards = plan
        .ports
        .iter()
        .filter_map(|p| {
            let IpAddr::V4(address) = p.address else { return None };
            let network = plan.networks.iter().position(|n| n.bridge == p.bridge)?;
            Some(nat::Forward {
                protocol: p.protocol,
                host_port: p.host_port,
                address,
                port: p.node_port,
                bridge: leg_of(network)?,
            })
        })
        .collect();
    let isolation = firewall::Isolation {
        nat_bridges: g.legs.iter().map(|l| l.name.to_string()).collect(),
        ..firewall::Isolation::default()
    };
    Rules { masquerades, forwards, isolation }
}

/// Network `n`'s subnets (both versions) masqueraded, except out of `except`.
fn masquerades_of<'a>(n: &'a crate::plan::NetworkPlan, except: &'a str) -> impl Iterator<Item = nat::Masquerade> + 'a {
    [Some(n.subnet), n.subnet6]
        .into_iter()
        .flatten()
        .map(move |subnet| nat::Masquerade { subnet, except: except.to_string() })
}

/// The network an interface address is on (`10.42.248.1/30` → `10.42.248.0/30`).
pub(super) fn network_of(a: IpNetwork) -> IpNetwork {
    IpNetwork::new(a.network(), a.prefix()).unwrap_or(a)
}

/// Makes the lab's gateway namespace, if it has one: the namespace, its uplink and a leg on
/// each NAT network's bridge (`bridges`: their indexes), addresses, routes and its table.
pub(super) async fn make(plan: &Plan, host: &Netlink, journal: &Journal, bridges: &[u32]) -> Result<(), Error> {
    let Some(g) = &plan.gateway else { return Ok(()) };
    let mut records = vec![Resource::Netns { name: g.netns.clone() }, Resource::Veth { name: g.uplink.clone() }];
    records.extend(g.legs.iter().map(|l| Resource::Veth { name: l.host_end.clone() }));
    journal.record(&records)?;
    let path = netns::create(&g.netns)?;
    let ns = std::fs::File::open(&path).map_err(|e| Error::Io(format!("opening {}", path.display()), e))?;
    let label = format!("gateway namespace {}", g.netns);
    let v6 = g.addresses.iter().any(|a| a.is_ipv6());
    let mut settings = vec![("net.ipv4.ip_forward".to_string(), "1".to_string())];
    if v6 {
        settings.push(("net.ipv6.conf.all.forwarding".into(), "1".into()));
    }
    let setup_label = label.clone();
    let nl = Netlink::in_netns_with(&ns, &label, move || sysctl::write_here(&setup_label, &settings)).await?;

    let uplink_alias = crate::identity::gateway_alias(&plan.lab, GatewayPlan::UPLINK);
    let mut veths = vec![(
        VethEnd { alias: Some(&uplink_alias), group: Some(plan.group), ..VethEnd::new(g.uplink.as_str()) },
        VethEnd { netns: Some(ns.as_fd()), ..VethEnd::new(GatewayPlan::UPLINK) },
    )];
    for l in &g.legs {
        let mtu = plan.networks[l.network].mtu;
        veths.push((
            VethEnd {
                alias: Some(&l.alias),
                bridge: Some(bridges[l.network]),
                group: Some(plan.group),
                mtu,
                ..VethEnd::new(l.host_end.as_str())
            },
            VethEnd { netns: Some(ns.as_fd()), mtu, ..VethEnd::new(l.name.as_str()) },
        ));
    }
    try_join_all(veths.into_iter().map(|(a, b)| host.create_veth(a, b))).await?;

    let uplink = host.index(g.uplink.as_str()).await?;
    try_join_all(g.host_addresses.iter().map(|a| host.add_address(uplink, g.uplink.as_str(), *a))).await?;
    if !plan.ports.is_empty() {
        // Forwarded ports answer on the host's loopback too: such packets may leave through
        // the uplink (masqueraded) instead of being dropped as martians.
        sysctl::write(&format!("/proc/sys/net/ipv4/conf/{}/route_localnet", g.uplink), "1")?;
    }

    let links = nl.links().await?;
    let find = |name: &str| links.iter().find(|l| l.name == name).map(|l| l.index);
    let mut addresses: Vec<(u32, &str, IpNetwork)> = Vec::new();
    for l in &g.legs {
        let index = find(l.name.as_str()).ok_or_else(|| Error::Corrupt(format!("{label} has no {}", l.name)))?;
        addresses.extend(plan.networks[l.network].gateway_addresses().into_iter().map(|a| (index, l.name.as_str(), a)));
    }
    let up_index = find(GatewayPlan::UPLINK).ok_or_else(|| Error::Corrupt(format!("{label} has no uplink")))?;
    addresses.extend(g.addresses.iter().map(|a| (up_index, GatewayPlan::UPLINK, *a)));
    // Loopback, the uplink and the legs; not the fallback devices (gre0, tunl0...) the kernel
    // puts in every namespace once a tunnel module is loaded.
    let ours = |l: &&lab_net::LinkInfo| {
        l.name == "lo" || l.name == GatewayPlan::UPLINK || g.legs.iter().any(|leg| leg.name.as_str() == l.name)
    };
    try_join_all(links.iter().filter(ours).map(|l| nl.set_up(l.index, &l.name))).await?;
    try_join_all(addresses.iter().map(|(i, name, a)| nl.add_address(*i, name, *a))).await?;
    let defaults = g.host_addresses.iter().map(|a| {
        let any = if a.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
        nl.add_route(any.parse().expect("a default route"), a.ip())
    });
    try_join_all(defaults).await?;

    let rules = namespace_rules(plan, g);
    let table = plan.nft_table.clone();
    netns::run_in(ns.as_fd(), &label, || {
        nat::create_table(&table, &rules.masquerades, &rules.forwards, &rules.isolation)
    })?;
    Ok(())
}
