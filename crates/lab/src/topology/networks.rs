//! `[networks.*]`: subnets, dual stack, MTU.

use super::raw::{self, Str};
use super::validate::placeholder;
use super::{Network, Validator};
use indexmap::IndexMap;
use ipnetwork::IpNetwork;
use std::net::IpAddr;
use toml::Spanned;

impl Validator {
    pub(super) fn networks(&mut self, raw: &IndexMap<Str, raw::RawNetwork>) -> Vec<Network> {
        let mut out: Vec<Network> = Vec::new();
        for (key, rn) in raw {
            let name = self.name(key);
            let subnet = rn.subnet.as_ref().and_then(|s| self.subnet(s, false));
            let subnet6 = rn.subnet6.as_ref().and_then(|s| self.subnet(s, true));
            let span = rn.subnet.as_ref().map_or(key.span(), |s| s.span());
            let span6 = match (&rn.subnet6, &rn.ipv6) {
                (Some(s), _) => s.span(),
                (None, Some(b)) => b.span(),
                (None, None) => key.span(),
            };
            let ipv6 = match (&rn.ipv6, &rn.subnet6) {
                (Some(b), Some(_)) if !*b.get_ref() => {
                    self.err(b.span(), "`ipv6 = false` and a `subnet6`: drop one of them");
                    false
                }
                (Some(b), _) => *b.get_ref(),
                (None, s) => s.is_some(),
            };
            for (new, at) in [(subnet, &span), (subnet6, &span6)] {
                let Some(new) = new else { continue };
                let clash = out.iter().find(|n| [n.subnet, n.subnet6].into_iter().flatten().any(|o| overlaps(o, new)));
                if let Some(other) = clash {
                    self.err(at.clone(), format!("subnet {new} overlaps network `{}`'s subnet", other.name));
                }
            }
            let mtu = rn.mtu.as_ref().and_then(|m| self.mtu(m, ipv6));
            // Keep the network even when its name is bad, so that indexes stay aligned.
            out.push(Network {
                name: name.unwrap_or_else(placeholder),
                subnet,
                ipv6,
                subnet6,
                mtu,
                nat: rn.nat,
                stp: rn.stp,
                addressed: rn.addresses,
                vlan_filtering: false,
                span,
                span6,
            });
        }
        out
    }

    /// An MTU the kernel takes for a veth; IPv6 needs at least 1280.
    pub(super) fn mtu(&mut self, m: &Spanned<i64>, ipv6: bool) -> Option<u32> {
        let min = if ipv6 { 1280 } else { 68 };
        match u32::try_from(*m.get_ref()) {
            Ok(v) if (min..=65535).contains(&v) => Some(v),
            _ if ipv6 && *m.get_ref() < 1280 => {
                self.err(m.span(), format!("mtu {} is below 1280, the least IPv6 works with", m.get_ref()));
                None
            }
            _ => {
                self.err(m.span(), format!("mtu {} is not between {min} and 65535", m.get_ref()));
                None
            }
        }
    }

    /// A subnet in CIDR notation, of the version the key is for.
    pub(super) fn subnet(&mut self, s: &Str, v6: bool) -> Option<IpNetwork> {
        let net: IpNetwork = match s.get_ref().parse() {
            Ok(n) => n,
            Err(_) => {
                self.err_hint(
                    s.span(),
                    format!("`{}` is not a subnet in CIDR notation", s.get_ref()),
                    "write it as address/prefix, e.g. 10.42.0.0/24",
                );
                return None;
            }
        };
        if !s.get_ref().contains('/') {
            self.err_hint(
                s.span(),
                format!("subnet `{}` has no prefix length", s.get_ref()),
                format!("e.g. {}/24", s.get_ref()),
            );
            return None;
        }
        if net.is_ipv6() && !v6 {
            self.err_hint(s.span(), format!("{net} is an IPv6 subnet"), "IPv6 subnets go in `subnet6`");
            return None;
        }
        if net.is_ipv4() && v6 {
            self.err_hint(s.span(), format!("{net} is not an IPv6 subnet"), "IPv4 subnets go in `subnet`");
            return None;
        }
        if net.network() != net.ip() {
            self.err_hint(
                s.span(),
                format!("subnet {net} has host bits set"),
                format!("did you mean {}/{}?", net.network(), net.prefix()),
            );
            return None;
        }
        let max = if v6 { 126 } else { 30 };
        if net.prefix() > max {
            self.err(s.span(), format!("subnet {net} is too small: a network needs at least a /{max}"));
            return None;
        }
        Some(net)
    }
}

/// Whether two subnets share any address.
pub fn overlaps(a: IpNetwork, b: IpNetwork) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

/// The first usable address of a subnet: the host's side of a NAT network.
pub fn gateway(subnet: IpNetwork) -> Option<IpAddr> {
    subnet.iter().nth(1)
}
