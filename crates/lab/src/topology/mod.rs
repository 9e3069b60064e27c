//! Topology files: parse TOML into checked types, or say exactly what is wrong and where.
//!
//! Everything that can be judged from the file alone is judged here: names, references,
//! addresses, interface names. What depends on the machine (free subnets, other labs) is the
//! plan's business.

mod names;
mod netcfg;
mod raw;
mod services;
mod settings;

pub use lab_net::nat::Protocol;
pub use lab_net::tc::Impairment;
pub use names::{Hostname, IfName, Name};
pub use netcfg::{Port, Route};
pub use services::{Healthcheck, Restart, Service};
pub use settings::{parse_size, NodeSecurity, SeccompChoice};

use crate::diagnostic::{Diagnostic, Source, TopologyError};
use indexmap::IndexMap;
use ipnetwork::IpNetwork;
use raw::{RawAttach, RawAttachments, RawCommand, RawTopology, Str};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A checked topology: every name valid, every reference resolved, every address in range.
#[derive(Debug, Clone)]
pub struct Topology {
    pub name: Name,
    pub networks: Vec<Network>,
    pub nodes: Vec<Node>,
    pub links: Vec<Link>,
    /// The file it came from, to point later errors (a subnet that is taken) at it.
    pub source: Source,
}

#[derive(Debug, Clone)]
pub struct Network {
    pub name: Name,
    /// The IPv4 subnet; `None`: picked from the free pool when the lab comes up.
    pub subnet: Option<IpNetwork>,
    /// Whether the network is dual stack.
    pub ipv6: bool,
    /// The IPv6 subnet; `None` with `ipv6`: a /64 picked from the free pool.
    pub subnet6: Option<IpNetwork>,
    /// MTU of the bridge and of every interface on it; `None`: the kernel's (1500).
    pub mtu: Option<u32>,
    pub nat: bool,
    /// Where the subnet (or, without one, the network) is written.
    pub span: Range<usize>,
    /// Where the IPv6 subnet (or `ipv6 = true`, or the network) is written.
    pub span6: Range<usize>,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: Name,
    /// Where the node's table starts in the file, for errors about the node as a whole.
    pub span: Range<usize>,
    pub hostname: Hostname,
    pub rootfs: Rootfs,
    /// `None`: the node's init just waits for signals.
    pub command: Option<Vec<String>>,
    pub env: Vec<(String, String)>,
    pub interfaces: Vec<Interface>,
    pub security: NodeSecurity,
    pub limits: lab_sandbox::cgroup::Limits,
    pub mounts: Vec<lab_sandbox::BindMount>,
    /// Host paths shown although the default view of the host hides them.
    pub reveal: Vec<String>,
    /// Static routes, in the order written.
    pub routes: Vec<Route>,
    /// Sysctls of the node's network namespace (net.* only), defaults first.
    pub sysctls: Vec<(String, String)>,
    /// Host ports forwarded to the node.
    pub ports: Vec<Port>,
    /// Impairments of the node's interfaces when the lab comes up.
    pub impairments: Vec<(IfName, Impairment)>,
    pub service: Service,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rootfs {
    /// The host's `/`, read-only, under a private writable layer.
    Host,
    /// A directory on the host, read-only, under a private writable layer.
    Dir(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Interface {
    pub name: IfName,
    pub kind: InterfaceKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfaceKind {
    /// A port on network `network` (index into `Topology::networks`) with its static
    /// addresses, at most one per IP version; the others are allocated.
    Network { network: usize, addresses: Vec<IpAddr> },
    /// One end of point-to-point link `link` (index into `Topology::links`).
    Link { link: usize, addresses: Vec<IpNetwork> },
}

/// A veth pair straight between two nodes.
#[derive(Debug, Clone)]
pub struct Link {
    pub endpoints: [Endpoint; 2],
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub node: usize,
    pub interface: IfName,
    /// At most one per IP version.
    pub addresses: Vec<IpNetwork>,
}

impl Topology {
    /// Reads and checks a topology file.
    pub fn load(path: &Path) -> Result<Topology, crate::Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| crate::Error::Io(format!("reading topology file {}", path.display()), e))?;
        Ok(Topology::parse(Source::new(path, text))?)
    }

    /// Parses and checks topology text; `source.path` is used for messages and, when the file
    /// has no `name`, for the lab's name.
    pub fn parse(source: Source) -> Result<Topology, TopologyError> {
        let raw: RawTopology = match toml::from_str(&source.text) {
            Ok(raw) => raw,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let diag = Diagnostic::new(span, e.message().trim_end().to_string());
                return Err(TopologyError::new(source, vec![diag]));
            }
        };
        let mut v = Validator::default();
        let topology = v.topology(raw, &source);
        match topology {
            Some(t) if v.diags.is_empty() => Ok(Topology { source, ..t }),
            _ => Err(TopologyError::new(source, v.diags)),
        }
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name.as_str() == name)
    }

    /// An error pointing at `span` of this topology's file.
    pub fn error_at(&self, span: Range<usize>, message: String, hint: Option<String>) -> TopologyError {
        let mut d = Diagnostic::new(span, message);
        d.hint = hint;
        TopologyError::new(self.source.clone(), vec![d])
    }
}

#[derive(Default)]
struct Validator {
    diags: Vec<Diagnostic>,
    /// Where each static address is written, to report addresses used twice.
    addresses: BTreeMap<IpAddr, Vec<Range<usize>>>,
    /// Host ports forwarded, to report one forwarded twice.
    host_ports: HashSet<(u16, Protocol)>,
}

impl Validator {
    fn err(&mut self, span: Range<usize>, msg: impl Into<String>) {
        self.diags.push(Diagnostic::new(span, msg));
    }

    fn err_hint(&mut self, span: Range<usize>, msg: impl Into<String>, hint: impl Into<String>) {
        self.diags.push(Diagnostic::new(span, msg).hint(hint));
    }

    fn name(&mut self, s: &Str) -> Option<Name> {
        Name::parse(s.get_ref()).map_err(|m| self.err(s.span(), m)).ok()
    }

    fn topology(&mut self, raw: RawTopology, source: &Source) -> Option<Topology> {
        let name = match &raw.name {
            Some(n) => self.name(n),
            None => {
                let stem = source.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                match Name::parse(&stem) {
                    Ok(n) => Some(n),
                    Err(m) => {
                        self.err_hint(
                            0..0,
                            format!("the lab has no `name` and the file name cannot be one: {m}"),
                            "add `name = \"my-lab\"` at the top of the file",
                        );
                        None
                    }
                }
            }
        };

        let networks = self.networks(&raw.networks);
        let net_index: HashMap<&str, usize> =
            raw.networks.keys().enumerate().map(|(i, k)| (k.get_ref().as_str(), i)).collect();

        let defaults_rootfs = raw.defaults.rootfs.as_ref().and_then(|r| self.rootfs(r));
        let defaults_command = raw.defaults.command.as_ref().and_then(|c| self.command(c));
        let defaults_env = self.env(&raw.defaults.env);
        if let Some(n) = &raw.defaults.networks {
            self.err(n.span(), "`networks` is per node; it cannot be a default");
        }
        if let Some(h) = &raw.defaults.hostname {
            self.err(h.span(), "`hostname` is per node; it cannot be a default");
        }
        self.node_only_keys(&raw.defaults);
        let pairs: Vec<(Str, &raw::RawNode)> = raw.nodes.iter().map(|(k, n)| (k.clone(), n)).collect();
        self.dependencies(&pairs);
        let default_sysctls = self.sysctls(&raw.defaults);
        // Relative seccomp profile paths are relative to the topology file.
        let base = source.path.parent().map(Path::to_path_buf).unwrap_or_default();

        let node_index: HashMap<&str, usize> =
            raw.nodes.keys().enumerate().map(|(i, k)| (k.get_ref().as_str(), i)).collect();
        let mut nodes = Vec::new();
        let mut if_spans: Vec<HashMap<IfName, Range<usize>>> = Vec::new();
        for (key, rn) in &raw.nodes {
            let name = self.name(key);
            if key.get_ref() == "localhost" {
                self.err(key.span(), "`localhost` cannot be a node name: every node already has one");
            }
            let hostname = match &rn.hostname {
                Some(h) => Hostname::parse(h.get_ref()).map_err(|m| self.err(h.span(), m)).ok(),
                None => name.as_ref().map(Hostname::from),
            };
            let rootfs = match &rn.rootfs {
                Some(r) => self.rootfs(r),
                None => defaults_rootfs.clone().or(Some(Rootfs::Host)),
            };
            let command = match &rn.command {
                Some(c) => self.command(c),
                None => defaults_command.clone(),
            };
            let mut env = defaults_env.clone();
            for (k, v) in self.env(&rn.env) {
                env.insert(k, v);
            }
            let mut spans = HashMap::new();
            let interfaces = self.attachments(key, rn.networks.as_ref(), &net_index, &networks, &mut spans);
            if_spans.push(spans);
            let security = self.security(rn, &raw.defaults, &base);
            let limits = self.limits(rn, &raw.defaults);
            let mounts = self.mounts(rn, &raw.defaults);
            let reveal = self.reveal(rn, &raw.defaults, rootfs.as_ref());
            let routes = self.routes(rn);
            let service = self.service(rn, &raw.defaults);
            let mut sysctls = default_sysctls.clone();
            for (k, v) in self.sysctls(rn) {
                sysctls.retain(|(key, _)| *key != k);
                sysctls.push((k, v));
            }
            // Keep one node per table even when it is invalid, so that indexes stay aligned;
            // the errors already recorded make the whole topology invalid.
            let name = name.unwrap_or_else(placeholder);
            nodes.push(Node {
                span: key.span(),
                hostname: hostname.unwrap_or_else(|| Hostname::from(&name)),
                name,
                rootfs: rootfs.unwrap_or(Rootfs::Host),
                command,
                env: env.into_iter().collect(),
                interfaces,
                security,
                limits,
                mounts,
                reveal,
                routes,
                sysctls,
                ports: Vec::new(),
                impairments: Vec::new(),
                service,
            });
        }

        let links = self.links(&raw.links, &node_index, &networks, &mut nodes, &mut if_spans);
        // Interfaces are all known now, links' included.
        for ((key, rn), node) in raw.nodes.iter().zip(&mut nodes) {
            node.ports = self.ports(key, rn, &node.interfaces, &networks);
            node.impairments = self.impairments(key, rn, &node.interfaces);
        }
        self.report_duplicate_addresses();

        Some(Topology { name: name?, networks, nodes, links, source: source.clone() })
    }

    fn networks(&mut self, raw: &IndexMap<Str, raw::RawNetwork>) -> Vec<Network> {
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
                span,
                span6,
            });
        }
        out
    }

    /// An MTU the kernel takes for a veth; IPv6 needs at least 1280.
    fn mtu(&mut self, m: &Spanned<i64>, ipv6: bool) -> Option<u32> {
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
    fn subnet(&mut self, s: &Str, v6: bool) -> Option<IpNetwork> {
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

    fn rootfs(&mut self, s: &Str) -> Option<Rootfs> {
        let v = s.get_ref();
        if v == "host" {
            return Some(Rootfs::Host);
        }
        if !v.starts_with('/') {
            self.err_hint(
                s.span(),
                format!("rootfs `{v}` is neither \"host\" nor an absolute path"),
                "use \"host\" or a directory such as \"/srv/rootfs/alpine\"",
            );
            return None;
        }
        if v.contains([',', ':', '\\']) {
            self.err(
                s.span(),
                format!("rootfs `{v}` contains `,`, `:` or `\\`, which overlayfs cannot take in a layer path"),
            );
            return None;
        }
        Some(Rootfs::Dir(PathBuf::from(v)))
    }

    fn command(&mut self, c: &Spanned<RawCommand>) -> Option<Vec<String>> {
        match c.get_ref() {
            RawCommand::Shell(s) if s.trim().is_empty() => {
                self.err(c.span(), "command is empty");
                None
            }
            RawCommand::Shell(s) => Some(vec!["/bin/sh".into(), "-c".into(), s.clone()]),
            RawCommand::Argv(v) if v.is_empty() => {
                self.err(c.span(), "command is empty");
                None
            }
            RawCommand::Argv(v) => {
                if let Some(bad) = v.iter().find(|a| a.get_ref().contains('\0')) {
                    self.err(bad.span(), "command arguments cannot contain NUL bytes");
                    return None;
                }
                Some(v.iter().map(|a| a.get_ref().clone()).collect())
            }
        }
    }

    fn env(&mut self, raw: &IndexMap<Str, Str>) -> IndexMap<String, String> {
        let mut out = IndexMap::new();
        for (k, v) in raw {
            let key = k.get_ref();
            if key.is_empty() || key.contains(['=', '\0']) {
                self.err(k.span(), format!("`{key}` is not a valid environment variable name"));
            } else if v.get_ref().contains('\0') {
                self.err(v.span(), "environment values cannot contain NUL bytes");
            } else {
                out.insert(key.clone(), v.get_ref().clone());
            }
        }
        out
    }

    fn attachments(
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
            let (ifname, texts): (Option<&Str>, Vec<(&str, Range<usize>)>) = match attach.map(|a| (a, a.get_ref())) {
                None => (None, Vec::new()),
                Some((a, RawAttach::One(s))) => (None, vec![(s.as_str(), a.span())]),
                Some((_, RawAttach::Addresses(l))) => {
                    (None, l.iter().map(|s| (s.get_ref().as_str(), s.span())).collect())
                }
                Some((_, RawAttach::Table { ifname, addresses })) => {
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
            out.push(Interface { name, kind: InterfaceKind::Network { network, addresses } });
        }
        out
    }

    /// A node's static addresses on one network: at most one per IP version, or "auto".
    fn node_addresses(&mut self, texts: &[(&str, Range<usize>)], network: &Network) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        for (text, span) in texts {
            let Some(ip) = self.node_address(text, span.clone(), network) else { continue };
            if out.iter().any(|o| o.is_ipv4() == ip.is_ipv4()) {
                let v = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
                self.err(
                    span.clone(),
                    format!("a second {v} address on network `{}`: one per IP version", network.name),
                );
                continue;
            }
            self.addresses.entry(ip).or_default().push(span.clone());
            out.push(ip);
        }
        out
    }

    fn node_address(&mut self, text: &str, span: Range<usize>, network: &Network) -> Option<IpAddr> {
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

    fn links(
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
    fn link_addresses(&mut self, rl: &raw::RawLink, networks: &[Network]) -> Vec<[IpNetwork; 2]> {
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

    fn link_pair(&mut self, raw: &Spanned<Vec<Str>>, networks: &[Network]) -> Option<[IpNetwork; 2]> {
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

    /// An address given twice, on one network or anywhere among links and networks.
    fn report_duplicate_addresses(&mut self) {
        let dups: Vec<(IpAddr, Range<usize>)> = self
            .addresses
            .iter()
            .flat_map(|(addr, spans)| spans.iter().skip(1).map(move |s| (*addr, s.clone())))
            .collect();
        for (addr, span) in dups {
            self.err(span, format!("address {addr} is used twice"));
        }
    }
}

fn placeholder() -> Name {
    Name::parse("invalid").expect("a valid literal name")
}

fn next_free_eth(used: &HashMap<IfName, Range<usize>>) -> IfName {
    (0..).map(IfName::eth).find(|n| !used.contains_key(n)).expect("some ethN is free")
}

fn sorted(mut v: Vec<&str>) -> Vec<&str> {
    v.sort_unstable();
    v
}

/// Whether two subnets share any address.
pub fn overlaps(a: IpNetwork, b: IpNetwork) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

/// The first usable address of a subnet: the host's side of a NAT network.
pub fn gateway(subnet: IpNetwork) -> Option<IpAddr> {
    subnet.iter().nth(1)
}

#[cfg(test)]
mod tests;
