//! A node's `networks`: which networks it is on, its interface names and static addresses.

use super::raw::{RawAttach, RawAttachments, Str};
use super::validate::sorted;
use super::{gateway, IfName, Interface, InterfaceKind, Network, PortVlans, Validator};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::ops::Range;
use toml::Spanned;

impl Validator {
    pub(super) fn attachments(
        &mut self,
        node: &Str,
        raw: Option<&Spanned<RawAttachments>>,
        net_index: &HashMap<&str, usize>,
        networks: &[Network],
        if_spans: &mut HashMap<IfName, Range<usize>>,
    ) -> Vec<Interface> {
        let Some(raw) = raw else { return Vec::new() };
        let entries: Vec<(&Str, Option<&Spanned<RawAttach>>)> = match raw.get_ref() {
            RawAttachments::List(l) => l.iter().map(|n| (n, None)).collect(),
            RawAttachments::Table(t) => t.iter().map(|(n, a)| (n, Some(a))).collect(),
        };
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (net_name, attach) in entries {
            let Some(&network) = net_index.get(net_name.get_ref().as_str()) else {
                let known: Vec<&str> = net_index.keys().copied().collect();
                self.err_hint(
                    net_name.span(),
                    format!("node `{}` is on network `{}`, which is not defined", node.get_ref(), net_name.get_ref()),
                    if known.is_empty() {
                        "define it with a [networks.NAME] table".to_string()
                    } else {
                        format!("defined networks: {}", sorted(known).join(", "))
                    },
                );
                continue;
            };
            if !seen.insert(network) {
                self.err(
                    net_name.span(),
                    format!("node `{}` is on network `{}` twice", node.get_ref(), net_name.get_ref()),
                );
                continue;
            }
            let mut vlans = PortVlans::Default;
            let (ifname, texts): (Option<&Str>, Vec<(&str, Range<usize>)>) = match attach.map(|a| (a, a.get_ref())) {
                None => (None, Vec::new()),
                Some((a, RawAttach::One(s))) => (None, vec![(s.as_str(), a.span())]),
                Some((_, RawAttach::Addresses(l))) => {
                    (None, l.iter().map(|s| (s.get_ref().as_str(), s.span())).collect())
                }
                Some((a, RawAttach::Table { ifname, addresses, vlan, vlans: trunk })) => {
                    vlans = self.port_vlans(a.span(), vlan.as_ref(), trunk.as_ref());
                    (ifname.as_ref(), addresses.iter().map(|s| (s.get_ref().as_str(), s.span())).collect())
                }
            };
            let (name, span) = match ifname {
                Some(n) => match IfName::parse(n.get_ref()) {
                    Ok(name) => (name, n.span()),
                    Err(m) => {
                        self.err(n.span(), m);
                        continue;
                    }
                },
                None => (next_free_eth(if_spans), net_name.span()),
            };
            if if_spans.contains_key(&name) {
                self.err(span, format!("node `{}` already has an interface `{name}`", node.get_ref()));
                continue;
            }
            let addresses = self.node_addresses(&texts, &networks[network]);
            if_spans.insert(name.clone(), span);
            out.push(Interface { name, kind: InterfaceKind::Network { network, addresses, vlans } });
        }
        out
    }

    /// `vlan = N` (an access port) or `vlans = [N, M]` (a trunk), not both; VLANs 1 to 4094.
    fn port_vlans(
        &mut self,
        span: Range<usize>,
        vlan: Option<&Spanned<i64>>,
        trunk: Option<&Spanned<Vec<Spanned<i64>>>>,
    ) -> PortVlans {
        let mut id = |v: &Spanned<i64>| match u16::try_from(*v.get_ref()) {
            Ok(n) if (1..=4094).contains(&n) => Some(n),
            _ => {
                self.err(v.span(), format!("VLAN {} is not between 1 and 4094", v.get_ref()));
                None
            }
        };
        match (vlan, trunk) {
            (Some(_), Some(_)) => {
                self.err_hint(span, "a port is `vlan` (access) or `vlans` (trunk), not both", "keep one of them");
                PortVlans::Default
            }
            (Some(v), None) => id(v).map_or(PortVlans::Default, PortVlans::Access),
            (None, Some(list)) if list.get_ref().is_empty() => {
                self.err(list.span(), "a trunk of no VLAN: list at least one, e.g. vlans = [10, 20]");
                PortVlans::Default
            }
            (None, Some(list)) => {
                let mut ids: Vec<u16> = list.get_ref().iter().filter_map(&mut id).collect();
                ids.sort_unstable();
                ids.dedup();
                PortVlans::Trunk(ids)
            }
            (None, None) => PortVlans::Default,
        }
    }

    /// A node's static addresses on one network, or "auto". The first of each IP version is
    /// its primary address; the others are secondary addresses on the same interface.
    pub(super) fn node_addresses(&mut self, texts: &[(&str, Range<usize>)], network: &Network) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        for (text, span) in texts {
            let Some(ip) = self.node_address(text, span.clone(), network) else { continue };
            self.addresses.entry(ip).or_default().push(span.clone());
            out.push(ip);
        }
        out
    }

    pub(super) fn node_address(&mut self, text: &str, span: Range<usize>, network: &Network) -> Option<IpAddr> {
        if text == "auto" {
            return None;
        }
        let ip: IpAddr = match text.parse() {
            Ok(ip) => ip,
            Err(_) => {
                self.err_hint(
                    span,
                    format!("`{text}` is not an IP address"),
                    "write a plain address such as \"10.42.0.12\" or \"fd42::12\", or \"auto\"",
                );
                return None;
            }
        };
        let subnet = if ip.is_ipv4() { network.subnet } else { network.subnet6 };
        let Some(subnet) = subnet else {
            let (what, key) = match ip {
                IpAddr::V4(_) => ("no subnet", "subnet"),
                IpAddr::V6(_) if !network.ipv6 => ("no IPv6", "subnet6"),
                IpAddr::V6(_) => ("no subnet6", "subnet6"),
            };
            self.err_hint(
                span,
                format!("address {ip} on network `{}`, which has {what}", network.name),
                format!("give [networks.{}] a {key} that contains {ip}, or leave the address out", network.name),
            );
            return None;
        };
        if !subnet.contains(ip) {
            self.err(span, format!("address {ip} is outside network `{}`'s subnet {subnet}", network.name));
            return None;
        }
        if ip == subnet.network() || (ip.is_ipv4() && ip == subnet.broadcast()) {
            let what = if ip == subnet.network() { "network" } else { "broadcast" };
            self.err(span, format!("address {ip} is the {what} address of subnet {subnet}"));
            return None;
        }
        if network.nat && Some(ip) == gateway(subnet) {
            self.err_hint(
                span,
                format!("address {ip} is the gateway of network `{}` (the host's side, for NAT)", network.name),
                "pick another address; the first one of a NAT network belongs to the host",
            );
            return None;
        }
        Some(ip)
    }
}

/// The first `ethN` a node does not use yet.
pub(super) fn next_free_eth(used: &HashMap<IfName, Range<usize>>) -> IfName {
    (0..).map(IfName::eth).find(|n| !used.contains_key(n)).expect("some ethN is free")
}
