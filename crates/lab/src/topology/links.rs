//! `[[links]]`: point-to-point links, their endpoints and address pairs.

use super::attach::next_free_eth;
use super::raw::{self, Str};
use super::{overlaps, Endpoint, IfName, Interface, InterfaceKind, Link, Network, Node, Validator};
use ipnetwork::IpNetwork;
use std::collections::HashMap;
use std::ops::Range;
use toml::Spanned;

impl Validator {
    pub(super) fn links(
        &mut self,
        raw: &[Spanned<raw::RawLink>],
        node_index: &HashMap<&str, usize>,
        networks: &[Network],
        nodes: &mut [Node],
        if_spans: &mut [HashMap<IfName, Range<usize>>],
    ) -> Vec<Link> {
        let mut out = Vec::new();
        for rl in raw {
            let eps = rl.get_ref().endpoints.get_ref();
            if eps.len() != 2 {
                self.err(rl.get_ref().endpoints.span(), format!("a link has exactly 2 endpoints, not {}", eps.len()));
                continue;
            }
            let pairs = self.link_addresses(rl.get_ref(), networks);
            let mtu = rl.get_ref().mtu.as_ref().and_then(|m| self.mtu(m, pairs.iter().any(|p| p[0].is_ipv6())));
            let mut parsed = Vec::new();
            for (i, ep) in eps.iter().enumerate() {
                let (node_name, ifname) = match ep.get_ref().split_once(':') {
                    Some((n, i)) => (n, Some(i)),
                    None => (ep.get_ref().as_str(), None),
                };
                let Some(&node) = node_index.get(node_name) else {
                    self.err_hint(
                        ep.span(),
                        format!("link endpoint `{}` names node `{node_name}`, which is not defined", ep.get_ref()),
                        "write endpoints as \"node:interface\", e.g. \"node1:eth1\"",
                    );
                    continue;
                };
                let ifname = match ifname.map(IfName::parse) {
                    Some(Ok(n)) => Some(n),
                    Some(Err(m)) => {
                        self.err(ep.span(), m);
                        continue;
                    }
                    None => None,
                };
                parsed.push((node, ifname, ep.span(), pairs.iter().map(|p| p[i]).collect::<Vec<_>>()));
            }
            if parsed.len() != 2 {
                continue;
            }
            if parsed[0].0 == parsed[1].0 && parsed[0].1.is_some() && parsed[0].1 == parsed[1].1 {
                self.err(rl.get_ref().endpoints.span(), "a link cannot join an interface to itself");
                continue;
            }
            let index = out.len();
            let mut endpoints = Vec::new();
            for (node, ifname, span, addresses) in parsed {
                let spans = &mut if_spans[node];
                let ifname = ifname.unwrap_or_else(|| next_free_eth(spans));
                if spans.contains_key(&ifname) {
                    self.err_hint(
                        span,
                        format!("node `{}` already has an interface `{ifname}`", nodes[node].name),
                        "give this endpoint another interface name, or leave it out to pick the next free ethN",
                    );
                    continue;
                }
                spans.insert(ifname.clone(), span);
                let kind = InterfaceKind::Link { link: index, addresses: addresses.clone() };
                nodes[node].interfaces.push(Interface { name: ifname.clone(), kind });
                endpoints.push(Endpoint { node, interface: ifname, addresses });
            }
            if let Ok(endpoints) = <[Endpoint; 2]>::try_from(endpoints) {
                out.push(Link { endpoints, mtu });
            }
        }
        out
    }

    /// A link's address pairs: `addresses` (either IP version) and `addresses6` (IPv6).
    pub(super) fn link_addresses(&mut self, rl: &raw::RawLink, networks: &[Network]) -> Vec<[IpNetwork; 2]> {
        let mut out: Vec<[IpNetwork; 2]> = Vec::new();
        for (raw, v6_only) in [(&rl.addresses, false), (&rl.addresses6, true)] {
            let Some(raw) = raw else { continue };
            let Some(pair) = self.link_pair(raw, networks) else { continue };
            if v6_only && pair[0].is_ipv4() {
                self.err_hint(raw.span(), "`addresses6` holds IPv6 addresses", "IPv4 addresses go in `addresses`");
            } else if out.iter().any(|p| p[0].is_ipv4() == pair[0].is_ipv4()) {
                self.err(raw.span(), "`addresses` and `addresses6` are both IPv6: give `addresses` the IPv4 pair");
            } else {
                out.push(pair);
            }
        }
        out
    }

    pub(super) fn link_pair(&mut self, raw: &Spanned<Vec<Str>>, networks: &[Network]) -> Option<[IpNetwork; 2]> {
        if raw.get_ref().len() != 2 {
            self.err(raw.span(), format!("a link takes 2 addresses, one per endpoint, not {}", raw.get_ref().len()));
            return None;
        }
        let mut out = Vec::new();
        for a in raw.get_ref() {
            match a.get_ref().parse::<IpNetwork>() {
                Ok(n) if a.get_ref().contains('/') => {
                    self.addresses.entry(n.ip()).or_default().push(a.span());
                    out.push(n)
                }
                _ => {
                    self.err_hint(
                        a.span(),
                        format!("`{}` is not an address with a prefix length", a.get_ref()),
                        "write it like \"10.0.12.1/30\" or \"fd00:12::1/64\"",
                    );
                }
            }
        }
        let [a, b] = <[IpNetwork; 2]>::try_from(out).ok()?;
        if a.is_ipv4() != b.is_ipv4() {
            self.err(raw.span(), format!("link addresses {a} and {b} are of different IP versions"));
            return None;
        }
        if a.network() != b.network() || a.prefix() != b.prefix() {
            self.err(raw.span(), format!("link addresses {a} and {b} are not on one subnet"));
            return None;
        }
        if a.ip() == b.ip() {
            self.err(raw.span(), format!("both ends of the link have address {}", a.ip()));
            return None;
        }
        // IPv4 /31 and IPv6 /127 point-to-point subnets have no network or broadcast address.
        let p2p = if a.is_ipv4() { 31 } else { 127 };
        for n in [a, b] {
            let broadcast = n.is_ipv4() && n.ip() == n.broadcast();
            if a.prefix() < p2p && (n.ip() == n.network() || broadcast) {
                self.err(raw.span(), format!("{n} is the network or broadcast address of its subnet"));
                return None;
            }
        }
        let clash = networks.iter().find(|n| [n.subnet, n.subnet6].into_iter().flatten().any(|s| overlaps(s, a)));
        if let Some(net) = clash {
            self.err(raw.span(), format!("link subnet {} overlaps network `{}`", a.network(), net.name));
            return None;
        }
        Some([a, b])
    }
}
