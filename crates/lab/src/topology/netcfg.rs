//! A node's own network settings: static routes, sysctls, forwarded host ports and link
//! impairments. Sysctls may also be defaults; the others are per node.

use super::raw::{RawImpair, RawNode, RawScalar, Str};
use super::{IfName, Impairment, Protocol};
use super::{Interface, InterfaceKind, Network, Validator};
use crate::units;
use ipnetwork::IpNetwork;
use std::net::IpAddr;
use std::ops::Range;
use toml::Spanned;

/// `routes = ["10.2.0.0/24 via 10.1.0.1", "default via 10.1.0.1"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Where to (`default` is 0.0.0.0/0 or ::/0).
    pub destination: IpNetwork,
    /// The next hop.
    pub via: IpAddr,
    /// Where it is written, for errors the plan finds (a gateway on no subnet of the node).
    pub span: Range<usize>,
}

/// `ports = ["8080:80", "5353:53/udp"]`: a host port forwarded to a port of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The port on the host.
    pub host: u16,
    /// The port in the node.
    pub node: u16,
    /// TCP (the default) or UDP.
    pub protocol: Protocol,
    /// Where it is written.
    pub span: Range<usize>,
}

impl Validator {
    /// Keys that only make sense for one node, refused in `[defaults]`.
    pub(super) fn node_only_keys(&mut self, defaults: &RawNode) {
        let spans = [("ports", defaults.ports.span()), ("loopback", defaults.loopback.span())];
        for (key, span) in spans {
            if let Some(span) = span {
                self.err_hint(
                    span,
                    format!("`{key}` is per node; it cannot be a default"),
                    "two nodes cannot have the same one: set it in each node",
                );
            }
        }
    }

    pub(super) fn routes(&mut self, node: &RawNode) -> Vec<Route> {
        let Some(list) = node.routes.get() else { return Vec::new() };
        let mut out: Vec<Route> = Vec::new();
        for r in list.get_ref() {
            match parse_route(r.get_ref()) {
                Ok((destination, _)) if out.iter().any(|o| o.destination == destination) => {
                    self.err(r.span(), format!("two routes to {destination}"));
                }
                Ok((destination, via)) => out.push(Route { destination, via, span: r.span() }),
                Err(msg) => self.err_hint(
                    r.span(),
                    msg,
                    "write routes as \"10.2.0.0/24 via 10.1.0.1\" or \"default via 10.1.0.1\"",
                ),
            }
        }
        out
    }

    pub(super) fn sysctls(&mut self, node: &RawNode) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (k, v) in &node.sysctls {
            let key = k.get_ref();
            if let Err(msg) = check_sysctl_key(key) {
                self.err_hint(k.span(), msg, "e.g. sysctls = { \"net.ipv4.ip_forward\" = 1 }");
                continue;
            }
            let value = match v.get_ref() {
                RawScalar::Int(n) => n.to_string(),
                RawScalar::Float(f) => f.to_string(),
                RawScalar::Str(s) if !s.contains(['\0', '\n']) => s.clone(),
                RawScalar::Str(_) => {
                    self.err(v.span(), "a sysctl value cannot contain NUL or newline");
                    continue;
                }
            };
            out.push((key.clone(), value));
        }
        out
    }

    /// Forwarded ports; the node must be on a NAT network (the host routes to it there).
    pub(super) fn ports(
        &mut self,
        node: &Str,
        raw: &RawNode,
        interfaces: &[Interface],
        networks: &[Network],
    ) -> Vec<Port> {
        let Some(list) = raw.ports.get() else { return Vec::new() };
        let on_nat = interfaces
            .iter()
            .any(|i| matches!(i.kind, InterfaceKind::Network { network, .. } if networks[network].nat));
        if !on_nat && !list.get_ref().is_empty() {
            self.err_hint(
                list.span(),
                format!("node `{}` forwards ports but is on no network with `nat = true`", node.get_ref()),
                "host ports reach a node through a NAT network: add one to its `networks`",
            );
            return Vec::new();
        }
        let mut out = Vec::new();
        for p in list.get_ref() {
            match parse_port(p.get_ref()) {
                Ok((host, _, protocol)) if self.host_ports.contains(&(host, protocol)) => {
                    self.err(p.span(), format!("host port {host}/{protocol} is forwarded twice"));
                }
                Ok((host, port, protocol)) => {
                    self.host_ports.insert((host, protocol));
                    out.push(Port { host, node: port, protocol, span: p.span() });
                }
                Err(msg) => {
                    self.err_hint(p.span(), msg, "write ports as \"HOST:NODE\" or \"HOST:NODE/udp\", e.g. \"8080:80\"")
                }
            }
        }
        out
    }

    pub(super) fn impairments(
        &mut self,
        node: &Str,
        raw: &RawNode,
        defaults: &RawNode,
        interfaces: &[Interface],
    ) -> Vec<(IfName, Impairment)> {
        let mut out = Vec::new();
        for (ifname, imp) in &raw.impair {
            let Some(iface) = interfaces.iter().find(|i| i.name.as_str() == ifname.get_ref()) else {
                // A default impairment is for the nodes that have that interface.
                if defaults.impair.get(ifname).is_some_and(|d| d.span() == imp.span()) {
                    continue;
                }
                let names: Vec<&str> = interfaces.iter().map(|i| i.name.as_str()).collect();
                self.err_hint(
                    ifname.span(),
                    format!("node `{}` has no interface `{}` to impair", node.get_ref(), ifname.get_ref()),
                    if names.is_empty() {
                        "it has no interfaces".to_string()
                    } else {
                        format!("its interfaces: {}", names.join(", "))
                    },
                );
                continue;
            };
            if let Some(i) = self.impairment(imp) {
                out.push((iface.name.clone(), i));
            }
        }
        out
    }

    fn impairment(&mut self, raw: &Spanned<RawImpair>) -> Option<Impairment> {
        let r = raw.get_ref();
        let mut ok = true;
        let mut text = |v: &Option<Str>, parse: fn(&str) -> Result<u64, String>, this: &mut Validator| {
            let s = v.as_ref()?;
            parse(s.get_ref())
                .map_err(|m| {
                    this.err(s.span(), m);
                    ok = false;
                })
                .ok()
        };
        let rate = text(&r.rate, units::parse_rate, self);
        let delay = text(&r.delay, units::parse_time, self);
        let jitter = text(&r.jitter, units::parse_time, self);
        let mut percent = |v: &Option<Spanned<RawScalar>>, this: &mut Validator| {
            let s = v.as_ref()?;
            let ppm = match s.get_ref() {
                RawScalar::Str(t) => units::parse_percent(t),
                RawScalar::Int(n) => {
                    units::percent_ppm(*n as f64).ok_or_else(|| format!("{n}% is not between 0% and 100%"))
                }
                RawScalar::Float(f) => units::percent_ppm(*f).ok_or_else(|| format!("{f}% is not between 0% and 100%")),
            };
            ppm.map_err(|m| {
                this.err(s.span(), m);
                ok = false;
            })
            .ok()
        };
        let loss = percent(&r.loss, self);
        let corrupt = percent(&r.corrupt, self);
        let duplicate = percent(&r.duplicate, self);
        let i = Impairment { rate, delay, jitter, loss, corrupt, duplicate };
        if !ok {
            return None;
        }
        if i.is_empty() {
            self.err_hint(
                raw.span(),
                "this impairment sets nothing",
                "set rate, delay, jitter, loss, corrupt or duplicate",
            );
            return None;
        }
        if i.jitter.is_some() && i.delay.is_none() {
            self.err(raw.span(), "jitter varies the delay: set `delay` too");
            return None;
        }
        Some(i)
    }
}

/// `"DEST via GATEWAY"`, `"default via GATEWAY"`; a destination without a prefix is one host.
pub fn parse_route(s: &str) -> Result<(IpNetwork, IpAddr), String> {
    let words: Vec<&str> = s.split_whitespace().collect();
    let [dest, "via", via] = words.as_slice() else {
        return Err(format!("`{s}` is not a route"));
    };
    let via: IpAddr = via.parse().map_err(|_| format!("route `{s}`: `{via}` is not a gateway address"))?;
    let destination = if *dest == "default" {
        let any: IpAddr = if via.is_ipv4() { [0u8; 4].into() } else { [0u16; 8].into() };
        IpNetwork::new(any, 0).map_err(|e| e.to_string())?
    } else {
        let net: IpNetwork = dest.parse().map_err(|_| format!("route `{s}`: `{dest}` is not a destination"))?;
        if net.network() != net.ip() {
            return Err(format!(
                "route `{s}`: {net} has host bits set (did you mean {}/{}?)",
                net.network(),
                net.prefix()
            ));
        }
        net
    };
    if destination.is_ipv4() != via.is_ipv4() {
        return Err(format!("route `{s}`: destination and gateway are of different IP versions"));
    }
    Ok((destination, via))
}

/// `"HOST:NODE"` or `"HOST:NODE/tcp|udp"`.
pub fn parse_port(s: &str) -> Result<(u16, u16, Protocol), String> {
    let (ports, protocol) = match s.split_once('/') {
        Some((p, "tcp")) => (p, Protocol::Tcp),
        Some((p, "udp")) => (p, Protocol::Udp),
        Some((_, other)) => return Err(format!("`{s}`: protocol `{other}` is neither tcp nor udp")),
        None => (s, Protocol::Tcp),
    };
    let Some((host, node)) = ports.split_once(':') else {
        return Err(format!("`{s}` is not a port forward"));
    };
    let port = |p: &str| match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{s}`: `{p}` is not a port number from 1 to 65535")),
    };
    Ok((port(host)?, port(node)?, protocol))
}

fn check_sysctl_key(key: &str) -> Result<(), String> {
    if !key.starts_with("net.") {
        return Err(format!("sysctl `{key}`: only net.* sysctls can be set in a node (the others are the host's)"));
    }
    let ok = key
        .split('.')
        .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
    if !ok {
        return Err(format!("`{key}` is not a sysctl name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let (d, v) = parse_route("10.2.0.0/24 via 10.1.0.1").unwrap();
        assert_eq!((d.to_string(), v.to_string()), ("10.2.0.0/24".into(), "10.1.0.1".into()));
        assert_eq!(parse_route("default via 10.1.0.1").unwrap().0.to_string(), "0.0.0.0/0");
        assert_eq!(parse_route("default via fd00::1").unwrap().0.to_string(), "::/0");
        assert_eq!(parse_route("10.9.9.9 via 10.1.0.1").unwrap().0.to_string(), "10.9.9.9/32");
        assert!(parse_route("10.2.0.1/24 via 10.1.0.1").unwrap_err().contains("host bits"));
        assert!(parse_route("fd00::/64 via 10.1.0.1").unwrap_err().contains("different IP versions"));
        assert!(parse_route("10.2.0.0/24 10.1.0.1").is_err());
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("8080:80"), Ok((8080, 80, Protocol::Tcp)));
        assert_eq!(parse_port("5353:53/udp"), Ok((5353, 53, Protocol::Udp)));
        assert!(parse_port("80").is_err());
        assert!(parse_port("0:80").is_err());
        assert!(parse_port("8080:80/sctp").unwrap_err().contains("neither tcp nor udp"));
    }

    #[test]
    fn sysctl_keys() {
        assert!(check_sysctl_key("net.ipv4.ip_forward").is_ok());
        assert!(check_sysctl_key("net.ipv6.conf.all.forwarding").is_ok());
        assert!(check_sysctl_key("kernel.hostname").is_err());
        assert!(check_sysctl_key("net..x").is_err());
        assert!(check_sysctl_key("net.ipv4/../x").is_err());
    }
}
