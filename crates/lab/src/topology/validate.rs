//! The walk over a whole topology file: names, defaults, nodes, then what needs every
//! interface known (links, ports, impairments); the checks of each part live in their files.

use super::raw::{self, OneOrList, RawCommand, RawTopology, Str};
use super::{Hostname, IfName, InterfaceKind, Name, Node, Protocol, Rootfs, Topology};
use crate::diagnostic::{Diagnostic, Source};
use indexmap::IndexMap;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Collects every problem of a file, so that one run reports them all.
#[derive(Default)]
pub(super) struct Validator {
    pub(super) diags: Vec<Diagnostic>,
    /// Where each static address is written, to report addresses used twice.
    pub(super) addresses: BTreeMap<IpAddr, Vec<Range<usize>>>,
    /// Host ports forwarded, to report one forwarded twice.
    pub(super) host_ports: HashSet<(u16, Protocol)>,
}

impl Validator {
    pub(super) fn err(&mut self, span: Range<usize>, msg: impl Into<String>) {
        self.diags.push(Diagnostic::new(span, msg));
    }

    pub(super) fn err_hint(&mut self, span: Range<usize>, msg: impl Into<String>, hint: impl Into<String>) {
        self.diags.push(Diagnostic::new(span, msg).hint(hint));
    }

    pub(super) fn name(&mut self, s: &Str) -> Option<Name> {
        Name::parse(s.get_ref()).map_err(|m| self.err(s.span(), m)).ok()
    }

    pub(super) fn topology(&mut self, raw: RawTopology, source: &Source) -> Option<Topology> {
        let name = match &raw.name {
            Some(n) => self.name(n),
            None => {
                let stem = default_name(&source.path);
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

        if let Some(n) = &raw.defaults.networks {
            self.err(n.span(), "`networks` is per node; it cannot be a default");
        }
        if let Some(h) = &raw.defaults.hostname {
            self.err(h.span(), "`hostname` is per node; it cannot be a default");
        }
        self.node_only_keys(&raw.defaults);
        if raw.nodes.is_empty() {
            self.err_hint(0..0, "the topology has no nodes", "add one: `[nodes.node1]` and a line `networks = [...]`");
        }
        // Each node with the defaults applied: what every check below reads.
        let merged: Vec<(Str, raw::RawNode)> =
            raw.nodes.iter().map(|(k, n)| (k.clone(), super::merge::merged(&raw.defaults, n, k.get_ref()))).collect();
        let pairs: Vec<(Str, &raw::RawNode)> = merged.iter().map(|(k, n)| (k.clone(), n)).collect();
        self.dependencies(&pairs);
        // Relative paths (seccomp profiles, files, mounts) are relative to the topology file.
        let base = source.path.parent().map(Path::to_path_buf).unwrap_or_default();

        let node_index: HashMap<&str, usize> =
            raw.nodes.keys().enumerate().map(|(i, k)| (k.get_ref().as_str(), i)).collect();
        let mut nodes = Vec::new();
        let mut if_spans: Vec<HashMap<IfName, Range<usize>>> = Vec::new();
        for ((key, rn), own) in merged.iter().zip(raw.nodes.values()) {
            let name = self.name(key);
            if key.get_ref() == "localhost" {
                self.err(key.span(), "`localhost` cannot be a node name: every node already has one");
            }
            let hostname = match &rn.hostname {
                Some(h) => Hostname::parse(h.get_ref()).map_err(|m| self.err(h.span(), m)).ok(),
                None => name.as_ref().map(Hostname::from),
            };
            let rootfs = match (rn.rootfs.get(), rn.image.get()) {
                (Some(r), Some(i)) => {
                    self.err_hint(
                        i.span(),
                        "a node runs on an image or on a rootfs, not both",
                        format!("remove `rootfs` ({})", r.get_ref()),
                    );
                    None
                }
                (Some(r), None) => self.rootfs(r),
                (None, Some(i)) => self.image(i),
                (None, None) => Some(Rootfs::Host),
            };
            let rootfs_span = rn.image.span().or_else(|| rn.rootfs.span()).unwrap_or_else(|| key.span());
            let command = rn.command.get().and_then(|c| self.command(c));
            let entrypoint = match rn.entrypoint.get() {
                Some(e) if !matches!(rootfs, Some(Rootfs::Image(_))) => {
                    self.err_hint(e.span(), "`entrypoint` is for nodes that run an image", "use `command` instead");
                    None
                }
                Some(e) => self.command(e),
                None => None,
            };
            let env = self.env(&rn.env);
            let mut spans = HashMap::new();
            let interfaces = self.attachments(key, rn.networks.as_ref(), &net_index, &networks, &mut spans);
            if_spans.push(spans);
            let preset = self.preset(rn);
            let security = self.security(rn, preset, &base);
            let limits = self.limits(rn);
            let mut mounts = self.mounts(rn, &base);
            let volumes = self.volumes(rn, &mut mounts);
            let files = self.path_of(rn.files.get(), &base);
            let startup = self.paths_of(rn.startup.get(), &base);
            let loopback = self.loopback(rn);
            let reveal = self.reveal(rn, own.reveal.get().is_some(), rootfs.as_ref());
            let routes = self.routes(rn);
            let service = self.service(rn);
            let mut sysctls = self.sysctls(rn);
            if let Some(preset) = preset {
                for (k, v) in preset.sysctls().iter().rev() {
                    if !sysctls.iter().any(|(key, _)| key == k) {
                        sysctls.insert(0, (k.to_string(), v.to_string()));
                    }
                }
            }
            // Keep one node per table even when it is invalid, so that indexes stay aligned;
            // the errors already recorded make the whole topology invalid.
            let name = name.unwrap_or_else(placeholder);
            nodes.push(Node {
                span: key.span(),
                hostname: hostname.unwrap_or_else(|| Hostname::from(&name)),
                name,
                rootfs: rootfs.unwrap_or(Rootfs::Host),
                rootfs_span,
                command,
                entrypoint,
                stop_signal_given: rn.stop_signal.get().is_some(),
                scratch: self.scratch(rn),
                env: env.into_iter().collect(),
                interfaces,
                security,
                limits,
                mounts,
                volumes,
                files,
                startup,
                loopback,
                reveal,
                routes,
                sysctls,
                ports: Vec::new(),
                impairments: Vec::new(),
                service,
                systemctl: rn.systemd,
            });
        }

        let links = self.links(&raw.links, &node_index, &networks, &mut nodes, &mut if_spans);
        let mut networks = networks;
        for iface in nodes.iter().flat_map(|n| &n.interfaces) {
            if let InterfaceKind::Network { network, vlans, .. } = &iface.kind {
                if *vlans != super::PortVlans::Default {
                    networks[*network].vlan_filtering = true;
                }
            }
        }
        // Interfaces are all known now, links' included.
        for ((key, rn), node) in merged.iter().zip(&mut nodes) {
            node.ports = self.ports(key, rn, &node.interfaces, &networks);
            node.impairments = self.impairments(key, rn, &raw.defaults, &node.interfaces);
        }
        self.report_duplicate_addresses();
        let names: Vec<&str> = raw.nodes.keys().map(|k| k.get_ref().as_str()).collect();
        let checks = self.checks(&raw.checks, &names);
        // A mistake in `[defaults]` is found once per node: tell it once.
        let mut seen = HashSet::new();
        self.diags.retain(|d| seen.insert((d.span.clone(), d.message.clone())));

        Some(Topology { name: name?, networks, nodes, links, checks, source: source.clone() })
    }

    pub(super) fn rootfs(&mut self, s: &Spanned<String>) -> Option<Rootfs> {
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

    /// `image = "..."`, read as Docker reads image names.
    pub(super) fn image(&mut self, s: &Spanned<String>) -> Option<Rootfs> {
        match lab_image::Reference::parse(s.get_ref()) {
            Ok(r) => Some(Rootfs::Image(r.to_string())),
            Err(e) => {
                self.err_hint(
                    s.span(),
                    e.to_string(),
                    "e.g. \"alpine:3.20\", \"ghcr.io/org/app:v1\", \"localhost:5000/app@sha256:...\"",
                );
                None
            }
        }
    }

    pub(super) fn command(&mut self, c: &Spanned<RawCommand>) -> Option<Vec<String>> {
        match c.get_ref() {
            OneOrList::One(s) if s.trim().is_empty() => {
                self.err(c.span(), "command is empty");
                None
            }
            OneOrList::One(s) => Some(vec!["/bin/sh".into(), "-c".into(), s.clone()]),
            OneOrList::List(v) if v.is_empty() => {
                self.err(c.span(), "command is empty");
                None
            }
            OneOrList::List(v) => {
                if let Some(bad) = v.iter().find(|a| a.get_ref().contains('\0')) {
                    self.err(bad.span(), "command arguments cannot contain NUL bytes");
                    return None;
                }
                Some(v.iter().map(|a| a.get_ref().clone()).collect())
            }
        }
    }

    pub(super) fn env(&mut self, raw: &IndexMap<Str, Str>) -> IndexMap<String, String> {
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

    /// An address given twice, on one network or anywhere among links and networks.
    pub(super) fn report_duplicate_addresses(&mut self) {
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

/// The name of a node or network whose own name is invalid: keeps indexes aligned.
pub(super) fn placeholder() -> Name {
    Name::parse("invalid").expect("a valid literal name")
}

pub(super) fn sorted(mut v: Vec<&str>) -> Vec<&str> {
    v.sort_unstable();
    v
}

/// The name of a lab whose file has no `name`, as Compose names a project: the file's name
/// without `.toml` (and `.lab`), or its directory's when the file is `lab.toml`; lowercased,
/// with anything a name cannot hold turned into `-`.
pub(super) fn default_name(path: &std::path::Path) -> String {
    let file = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let base = if file == "lab.toml" || file == "lab.conf" {
        let dir = std::path::absolute(path).ok().and_then(|p| p.parent().map(std::path::Path::to_path_buf));
        dir.and_then(|d| d.file_name().map(|s| s.to_string_lossy().into_owned())).unwrap_or_default()
    } else {
        let stem = file.strip_suffix(".toml").unwrap_or(&file);
        stem.strip_suffix(".lab").unwrap_or(stem).to_string()
    };
    let mut name = String::new();
    for c in base.to_lowercase().chars() {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' };
        if !(c == '-' && (name.is_empty() || name.ends_with('-'))) {
            name.push(c);
        }
    }
    name.truncate(Name::MAX_LEN);
    name.trim_end_matches('-').to_string()
}
