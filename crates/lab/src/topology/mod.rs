//! Topology files: parse TOML into checked types, or say exactly what is wrong and where.
//!
//! Everything that can be judged from the file alone is judged here: names, references,
//! addresses, interface names. What depends on the machine (free subnets, other labs) is the
//! plan's business. This file holds the checked types; the checks live beside it, one file
//! per part of the file format (`validate.rs` walks the file and calls them).

mod attach;
mod checks;
mod kathara;
mod links;
mod merge;
mod names;
mod netcfg;
mod networks;
mod raw;
mod services;
mod settings;
mod validate;

pub use checks::{expect_regex, parse_checks, Check, CheckKind};
pub use lab_net::nat::Protocol;
pub use lab_net::tc::Impairment;
pub use names::{Hostname, IfName, Name};
pub use netcfg::{Port, Route};
pub use networks::{gateway, overlaps};
pub use services::{parse_signal, Healthcheck, Restart, Service};
pub use settings::{NodeSecurity, SeccompChoice};

use crate::diagnostic::{Diagnostic, Source, TopologyError};
use ipnetwork::IpNetwork;
use raw::RawTopology;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use validate::Validator;

/// A checked topology: every name valid, every reference resolved, every address in range.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The lab's name (`name`, else the file's name).
    pub name: Name,
    /// `[networks.*]`, in file order.
    pub networks: Vec<Network>,
    /// `[nodes.*]`, in file order.
    pub nodes: Vec<Node>,
    /// `[[links]]`, in file order.
    pub links: Vec<Link>,
    /// `[[checks]]`, in file order (what `lab check` checks).
    pub checks: Vec<Check>,
    /// The file it came from, to point later errors (a subnet that is taken) at it.
    pub source: Source,
}

/// `[networks.<name>]`.
#[derive(Debug, Clone)]
pub struct Network {
    /// The network's name.
    pub name: Name,
    /// The IPv4 subnet; `None`: picked from the free pool when the lab comes up.
    pub subnet: Option<IpNetwork>,
    /// Whether the network is dual stack.
    pub ipv6: bool,
    /// The IPv6 subnet; `None` with `ipv6`: a /64 picked from the free pool.
    pub subnet6: Option<IpNetwork>,
    /// MTU of the bridge and of every interface on it; `None`: the kernel's (1500).
    pub mtu: Option<u32>,
    /// `nat`: nodes reach beyond the host, masqueraded behind its address.
    pub nat: bool,
    /// `stp`: the bridge runs spanning tree.
    pub stp: bool,
    /// `addresses`: nodes get an address on it unless they name one (`false`: none).
    pub addressed: bool,
    /// Some node's port on it has VLANs: the bridge filters by VLAN.
    pub vlan_filtering: bool,
    /// Where the subnet (or, without one, the network) is written.
    pub span: Range<usize>,
    /// Where the IPv6 subnet (or `ipv6 = true`, or the network) is written.
    pub span6: Range<usize>,
}

/// `[nodes.<name>]`, with `[defaults]` applied.
#[derive(Debug, Clone)]
pub struct Node {
    /// The node's name.
    pub name: Name,
    /// Where the node's table starts in the file, for errors about the node as a whole.
    pub span: Range<usize>,
    /// `hostname`, else the node's name.
    pub hostname: Hostname,
    /// `rootfs`: the host's `/` or a directory.
    pub rootfs: Rootfs,
    /// Where `rootfs` or `image` is written, for errors about it.
    pub rootfs_span: Range<usize>,
    /// `None`: the node's init just waits for signals (or, on an image, runs its Cmd).
    pub command: Option<Vec<String>>,
    /// `entrypoint`: on an image, replaces its Entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// `scratch`, `scratch_size`: where its writable layer is.
    pub scratch: Scratch,
    /// Whether the node (or `[defaults]`) names a stop signal (else an image's applies).
    pub stop_signal_given: bool,
    /// `env`, defaults first, in file order.
    pub env: Vec<(String, String)>,
    /// Its interfaces: networks in file order, then link ends.
    pub interfaces: Vec<Interface>,
    /// Privileges, capabilities, seccomp, user namespace.
    pub security: NodeSecurity,
    /// `cpus`, `memory`, `pids`, `io_weight`.
    pub limits: lab_sandbox::cgroup::Limits,
    /// `mounts`: bind mounts from the host.
    pub mounts: Vec<lab_sandbox::BindMount>,
    /// `volumes`: directories lab makes for the node, kept across stop/start.
    pub volumes: Vec<Volume>,
    /// `files`: a host directory whose tree is laid over the node's root (`{lab}` and
    /// `{node}` in it are substituted in the plan, as in mount sources).
    pub files: Option<PathBuf>,
    /// `startup`: scripts run in the node once its network is up, in order, before its hooks.
    pub startup: Vec<PathBuf>,
    /// `loopback`: addresses on its `lo` (a router's id, a service address).
    pub loopback: Vec<IpNetwork>,
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
    /// `workdir`, `user`, `restart`, `depends_on`, `healthcheck`, `exec`.
    pub service: Service,
    /// `systemctl start SERVICE` runs `/etc/init.d/SERVICE start` (a Kathará lab's nodes).
    pub systemctl: bool,
}

/// `volumes = ["pgdata:/var/lib/postgresql"]`: a directory lab makes for the node (under
/// `/var/lib/lab/volumes/<lab>/<node>/<name>`) and mounts at `target`; it lasts until `lab
/// down` (or longer, with `--keep-volumes`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Volume {
    /// Its name: letters, digits, `_`, `.`, `-`.
    pub name: String,
    /// Where it is in the node.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Where a node's writable layer is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Scratch {
    /// A directory of the node's own under `/var/lib/lab/scratch`, as Docker keeps a
    /// container's layer on disk.
    #[default]
    Disk,
    /// A tmpfs: faster, in memory (charged to the node's memory limit), holding at most
    /// `size` bytes (else the node's memory limit).
    Tmpfs {
        /// `scratch_size`.
        size: Option<u64>,
    },
}

/// What a node runs on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rootfs {
    /// The host's `/`, read-only, under a private writable layer.
    Host,
    /// A directory on the host, read-only, under a private writable layer.
    Dir(PathBuf),
    /// An OCI image (its full reference, `docker.io/library/alpine:3.20`): its layers from
    /// the image store, read-only, under a private writable layer.
    Image(String),
}

/// One interface of a node.
#[derive(Debug, Clone)]
pub struct Interface {
    /// Its name in the node (`eth0`, or `ifname`).
    pub name: IfName,
    /// What it is attached to.
    pub kind: InterfaceKind,
}

/// A node's port on a network's bridge, by VLAN.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortVlans {
    /// Untagged, in the bridge's default VLAN (1).
    #[default]
    Default,
    /// `vlan = N`: an access port: untagged frames, all of VLAN N.
    Access(u16),
    /// `vlans = [N, M]`: a trunk: frames of those VLANs, tagged (nothing untagged).
    Trunk(Vec<u16>),
}

/// What an interface is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfaceKind {
    /// A port on network `network` (index into `Topology::networks`) with its static
    /// addresses; a version it has none of gets the next free address.
    Network {
        /// Index of the network in [`Topology::networks`].
        network: usize,
        /// Its static addresses, in the network's subnets: the first of each version is the
        /// interface's primary address, the others secondary ones.
        addresses: Vec<IpAddr>,
        /// Its VLANs on the network's bridge.
        vlans: PortVlans,
    },
    /// One end of point-to-point link `link` (index into `Topology::links`).
    Link {
        /// Index of the link in [`Topology::links`].
        link: usize,
        /// This end's addresses, with their prefixes.
        addresses: Vec<IpNetwork>,
    },
}

/// A veth pair straight between two nodes.
#[derive(Debug, Clone)]
pub struct Link {
    /// Its two ends.
    pub endpoints: [Endpoint; 2],
    /// `mtu` of both ends.
    pub mtu: Option<u32>,
}

/// One end of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Index of the node in [`Topology::nodes`].
    pub node: usize,
    /// The interface's name in that node.
    pub interface: IfName,
    /// At most one per IP version.
    pub addresses: Vec<IpNetwork>,
}

/// Where the (first) startup script goes in a node, and how its hook runs it.
pub const STARTUP_PATH: &str = "/etc/lab/startup";

/// Where startup script `k` (from 0) goes in a node: [`STARTUP_PATH`], then
/// `/etc/lab/startup.1`, `/etc/lab/startup.2`, ...
pub fn startup_path(k: usize) -> String {
    if k == 0 {
        STARTUP_PATH.to_string()
    } else {
        format!("{STARTUP_PATH}.{k}")
    }
}

impl Node {
    /// A path of this node's with `{lab}` and `{node}` filled in (mount sources, `files`,
    /// `startup`): so that `--name` copies of one lab, and nodes sharing a `[defaults]`
    /// entry, each get their own.
    pub fn fill(&self, path: &Path, lab: &Name) -> PathBuf {
        PathBuf::from(path.to_string_lossy().replace("{lab}", lab.as_str()).replace("{node}", self.name.as_str()))
    }

    /// Its bind mounts, sources filled in.
    pub fn mounts_of(&self, lab: &Name) -> Vec<lab_sandbox::BindMount> {
        self.mounts.iter().map(|m| lab_sandbox::BindMount { source: self.fill(&m.source, lab), ..m.clone() }).collect()
    }
}

impl Topology {
    /// The images its nodes run on (full references), each once.
    pub fn images(&self) -> std::collections::BTreeSet<&str> {
        self.nodes
            .iter()
            .filter_map(|n| match &n.rootfs {
                Rootfs::Image(r) => Some(r.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Reads and checks a topology file: a lab.toml, or a Kathará lab's lab.conf.
    pub fn load(path: &Path) -> Result<Topology, crate::Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| crate::Error::Io(format!("reading topology file {}", path.display()), e))?;
        if path.file_name().is_some_and(|n| n == "lab.conf") {
            let (topology, warnings) = Topology::parse_kathara(Source::new(path, text))?;
            for w in warnings {
                tracing::warn!("{w}");
            }
            return Ok(topology);
        }
        Ok(Topology::parse(Source::new(path, text))?)
    }

    /// Parses and checks a Kathará lab's lab.conf (its directory beside it), with what lab
    /// does differently.
    pub fn parse_kathara(source: Source) -> Result<(Topology, Vec<String>), TopologyError> {
        let dir = source.path.parent().map(Path::to_path_buf).unwrap_or_default();
        let (raw, warnings) = kathara::raw(&source, &dir).map_err(|d| TopologyError::new(source.clone(), d))?;
        let mut v = Validator::default();
        let topology = v.topology(raw, &source);
        match topology {
            Some(t) if v.diags.is_empty() => Ok((Topology { source, ..t }, warnings)),
            _ => Err(TopologyError::new(source, v.diags)),
        }
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

    /// Node `name`, if the topology has one.
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

#[cfg(test)]
mod tests;
