//! The one JSON shape of labs and nodes, version [`JSON_VERSION`]: what `lab up --json`,
//! `lab ps --json`, `lab inspect --json` and `lab stats --json` print, and what
//! `docs/lab.schema.json` describes. `ps` fills the common fields; `inspect` adds each node's
//! `details`; `stats` adds each node's `usage`. Fields are only ever added within a version.

use super::Health;
use serde::Serialize;
use std::path::PathBuf;

/// The version of the JSON shape; bumped when a field changes meaning or goes.
pub const JSON_VERSION: u32 = 1;

/// What every `--json` prints: `{"version": 1, "labs": [...]}`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`JSON_VERSION`].
    pub version: u32,
    /// The labs, by name.
    pub labs: Vec<LabStatus>,
}

impl Report {
    /// A report of these labs.
    pub fn new(labs: Vec<LabStatus>) -> Report {
        Report { version: JSON_VERSION, labs }
    }
}

/// A lab.
#[derive(Debug, Clone, Serialize)]
pub struct LabStatus {
    /// The lab's name.
    pub name: String,
    /// The topology file it came from (absolute).
    pub topology: PathBuf,
    /// `up` finished (false while coming up, or if `up` was killed).
    pub complete: bool,
    /// When `lab up` made it (RFC 3339, UTC).
    pub created: Option<String>,
    /// Its networks, in file order.
    pub networks: Vec<NetworkStatus>,
    /// Its point-to-point links, in file order.
    pub links: Vec<LinkStatus>,
    /// Partitions in force: each cuts every node of one side off from every node of the other.
    pub partitions: Vec<[Vec<String>; 2]>,
    /// Its nodes, in file order.
    pub nodes: Vec<NodeStatus>,
}

/// A network (a bridge on the host).
#[derive(Debug, Clone, Serialize)]
pub struct NetworkStatus {
    /// Its name in the topology.
    pub name: String,
    /// The bridge's name on the host.
    pub bridge: String,
    /// IPv4 subnet, e.g. `10.42.0.0/24`.
    pub subnet: String,
    /// IPv6 subnet of a dual-stack network.
    pub subnet6: Option<String>,
    /// The gateway's addresses (NAT networks): the nodes' default gateways.
    pub gateways: Vec<String>,
    /// Where the gateways are when not on the host's bridge: the network namespace (under
    /// /run/netns) that routes the lab's NAT networks, for a copy of a lab that is up.
    pub gateway_netns: Option<String>,
    /// Whether it is masqueraded to the outside.
    pub nat: bool,
    /// MTU, if the topology set one.
    pub mtu: Option<u32>,
}

/// A point-to-point link.
#[derive(Debug, Clone, Serialize)]
pub struct LinkStatus {
    /// Its two ends, as `node:interface`.
    pub endpoints: [String; 2],
    /// MTU, if the topology set one.
    pub mtu: Option<u32>,
}

/// Whether a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Its init runs.
    Running,
    /// Frozen by `lab pause`.
    Paused,
    /// Being brought up: waiting for the nodes it depends on, its hooks or health check.
    Starting,
    /// Stopped with `lab stop`.
    Stopped,
    /// Its init ended by itself (`exit` says how).
    Exited,
    /// Not running, and no record of how it ended.
    Gone,
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeState::Running => "running",
            NodeState::Paused => "paused",
            NodeState::Starting => "starting",
            NodeState::Stopped => "stopped",
            NodeState::Exited => "exited",
            NodeState::Gone => "gone",
        })
    }
}

/// How a node's init ended: an exit code or a signal.
#[derive(Debug, Clone, Serialize)]
pub struct Exit {
    /// Its exit code, if it exited.
    pub code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// That signal's name (`SIGKILL`).
    pub signal_name: Option<String>,
    /// As `lab ps` says it: `exit code 1`, `killed by signal 9 (SIGKILL)`.
    pub text: String,
}

/// A node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// The node's name.
    pub name: String,
    /// Whether it runs.
    pub state: NodeState,
    /// The image it runs on (its full reference), if it runs on one.
    pub image: Option<String>,
    /// That image's manifest digest when the lab came up.
    pub image_digest: Option<String>,
    /// How it ended, once it has.
    pub exit: Option<Exit>,
    /// What its health check last found, if it was run.
    pub health: Option<Health>,
    /// The init's pid on the host, while it runs.
    pub pid: Option<i32>,
    /// When its init started (RFC 3339, UTC), while it runs.
    pub started: Option<String>,
    /// Seconds since then.
    pub uptime_seconds: Option<f64>,
    /// Its interfaces, in order.
    pub interfaces: Vec<InterfaceStatus>,
    /// The addresses on its `lo` (`loopback`).
    pub loopback: Vec<Address>,
    /// Host ports forwarded to it.
    pub ports: Vec<PortStatus>,
    /// Processes of the node the OOM killer killed (its memory limit was reached).
    pub oom_kills: u64,
    /// The node command's output, with timestamps.
    pub log: PathBuf,
    /// Everything else about it (`lab inspect`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<NodeDetails>,
    /// What it uses now (`lab stats`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

impl NodeStatus {
    /// Its interface on network `network`, if it has one.
    pub fn interface_on(&self, network: &str) -> Option<&InterfaceStatus> {
        self.interfaces.iter().find(|i| i.network.as_deref() == Some(network))
    }

    /// Its (first, primary) IPv4 address on network `network`.
    pub fn ipv4(&self, network: &str) -> Option<std::net::Ipv4Addr> {
        self.interface_on(network)?.addresses.iter().find_map(|a| a.address.parse().ok())
    }

    /// Its (first, primary) IPv6 address on network `network`.
    pub fn ipv6(&self, network: &str) -> Option<std::net::Ipv6Addr> {
        self.interface_on(network)?.addresses.iter().find_map(|a| a.address.parse().ok())
    }

    /// The MAC address of its interface on network `network`.
    pub fn mac(&self, network: &str) -> Option<&str> {
        self.interface_on(network)?.mac.as_deref()
    }
}

/// An interface of a node.
#[derive(Debug, Clone, Serialize)]
pub struct InterfaceStatus {
    /// Its name in the node.
    pub name: String,
    /// Its MAC address.
    pub mac: Option<String>,
    /// Its addresses, IPv4 first.
    pub addresses: Vec<Address>,
    /// The network it is on, for a bridged interface.
    pub network: Option<String>,
    /// That network's bridge on the host.
    pub bridge: Option<String>,
    /// The other end of its link (`node:interface`), for a link's interface.
    pub peer: Option<String>,
    /// The host end of its veth.
    pub host_end: String,
    /// False while `lab link ... down` holds it down.
    pub up: bool,
    /// What is done to the packets it sends, if anything.
    pub impairment: Option<ImpairmentStatus>,
}

/// An address with its prefix.
#[derive(Debug, Clone, Serialize)]
pub struct Address {
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
    /// The address, e.g. `10.42.0.2`.
    pub address: String,
    /// The prefix length, e.g. 24.
    pub prefix: u8,
}

/// A host port forwarded to a node.
#[derive(Debug, Clone, Serialize)]
pub struct PortStatus {
    /// `tcp` or `udp`.
    pub protocol: String,
    /// The port on the host.
    pub host_port: u16,
    /// The port in the node.
    pub node_port: u16,
    /// The node's address the traffic goes to.
    pub address: String,
}

/// An impairment, in the units `lab impair` takes.
#[derive(Debug, Clone, Serialize)]
pub struct ImpairmentStatus {
    /// Bits per second.
    pub rate_bps: Option<u64>,
    /// Added delay, microseconds.
    pub delay_us: Option<u64>,
    /// Delay variation, microseconds.
    pub jitter_us: Option<u64>,
    /// Percent of packets dropped.
    pub loss_percent: Option<f64>,
    /// Percent of packets with a flipped bit.
    pub corrupt_percent: Option<f64>,
    /// Percent of packets sent twice.
    pub duplicate_percent: Option<f64>,
    /// As `lab impair` prints it: `rate 10mbit, delay 50ms`.
    pub text: String,
}

/// What `lab inspect` adds about a node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeDetails {
    /// Its hostname.
    pub hostname: String,
    /// `host` (the host's `/`) or the directory it runs on.
    pub rootfs: String,
    /// What its init runs (`null`: idle).
    pub command: Option<Vec<String>>,
    /// Its environment.
    pub env: Vec<[String; 2]>,
    /// Working directory of its command.
    pub workdir: Option<String>,
    /// The user its command runs as.
    pub user: Option<String>,
    /// `no`, `on-failure` or `always`.
    pub restart: String,
    /// The signal `lab stop` sends first.
    pub stop_signal: String,
    /// How long it has to stop before it is killed, seconds.
    pub stop_timeout_seconds: f64,
    /// Its network namespace's name under /run/netns.
    pub netns: String,
    /// Its cgroup, below each hierarchy's root.
    pub cgroup: String,
    /// Its static routes, `destination via gateway`.
    pub routes: Vec<String>,
    /// Bind mounts, `source:target[:ro]`.
    pub mounts: Vec<String>,
    /// Its limits (`null`: none).
    pub limits: Limits,
    /// What its processes may do.
    pub security: SecurityStatus,
}

/// A node's limits.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    /// Memory, bytes.
    pub memory_bytes: Option<u64>,
    /// CPUs (0.5 = half a CPU).
    pub cpus: Option<f64>,
    /// Processes.
    pub pids: Option<u64>,
    /// Block I/O weight, 10 to 1000.
    pub io_weight: Option<u16>,
}

/// What a node's processes may do.
#[derive(Debug, Clone, Serialize)]
pub struct SecurityStatus {
    /// The capabilities they keep (`NET_ADMIN`, ...).
    pub capabilities: Vec<String>,
    /// `default`, `unconfined` or the profile's path.
    pub seccomp: String,
    /// Whether execve can gain privileges (false: no_new_privs is set).
    pub no_new_privs: bool,
    /// Whether it has a user namespace of its own.
    pub userns: bool,
    /// Root inside is this host uid (with a user namespace).
    pub host_uid: Option<u32>,
}

/// What a node uses, measured by `lab stats`.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    /// CPU use over the measurement, percent of one CPU.
    pub cpu_percent: f64,
    /// CPU time used since it started, microseconds.
    pub cpu_usec: u64,
    /// Memory, bytes.
    pub memory_bytes: u64,
    /// Its memory limit, bytes.
    pub memory_limit_bytes: Option<u64>,
    /// Processes.
    pub pids: u64,
    /// Its process limit.
    pub pids_limit: Option<u64>,
}
