//! What a node may do and what it starts with, decided once, here: capabilities, seccomp,
//! no_new_privs, devices, masked and read-only paths, its environment and the sysctls of its
//! network namespace. `privileged` is read nowhere else; the runtime and the sandbox only
//! carry out what the plan says.

use crate::topology::{Hostname, SeccompChoice};
use lab_sandbox::caps::{effective_set, Cap};
use lab_sandbox::cgroup::devices::{self, DeviceRule};
use lab_sandbox::rootfs::{OCI_MASKED, OCI_READ_ONLY};
use lab_sandbox::IdMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The search path every node's processes start with, as Docker's containers.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a node's processes may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Capabilities every process of the node keeps.
    pub caps: BTreeSet<Cap>,
    /// The seccomp filter: lab's default, a profile, or none (`Unconfined`).
    pub seccomp: SeccompChoice,
    /// Processes cannot gain privileges by execve (setuid, file capabilities).
    pub no_new_privs: bool,
    /// Devices the node may make and open (devices cgroup on v1, a BPF program on v2).
    pub devices: Vec<DeviceRule>,
    /// Paths hidden from the node (an empty file or directory over them).
    pub masked_paths: Vec<String>,
    /// Paths the node may read but not change.
    pub read_only_paths: Vec<String>,
    /// /sys writable (and mounted read-write).
    pub writable_sys: bool,
}

/// A node's policy from its settings: Docker's defaults (and NET_ADMIN), or, privileged, every
/// capability, no seccomp unless a profile is named, no no_new_privs, every device, nothing
/// masked and /sys writable, as Docker's `--privileged`.
pub fn decide(sec: &crate::topology::NodeSecurity) -> Policy {
    let caps = effective_set(&sec.cap_add, &sec.cap_drop, sec.privileged)
        .expect("capability names were checked when the topology was parsed");
    let seccomp = match &sec.seccomp {
        SeccompChoice::Default if sec.privileged => SeccompChoice::Unconfined,
        other => other.clone(),
    };
    let list = |l: &[&str]| if sec.privileged { Vec::new() } else { l.iter().map(|p| p.to_string()).collect() };
    Policy {
        caps,
        seccomp,
        no_new_privs: !sec.privileged,
        devices: if sec.privileged { devices::ALLOW_ALL } else { devices::DEFAULT_RULES }.to_vec(),
        masked_paths: list(OCI_MASKED),
        read_only_paths: list(OCI_READ_ONLY),
        writable_sys: sec.privileged,
    }
}

/// The environment every process of the node starts with: the search path and host name,
/// then the topology's variables (which may replace them). HOME is not here: it is the home
/// of whoever a process runs as, from the node's own /etc/passwd (the sandbox adds it).
pub fn environment(hostname: &Hostname, env: &[(String, String)]) -> Vec<(String, String)> {
    let mut out = vec![("PATH".to_string(), DEFAULT_PATH.to_string()), ("HOSTNAME".to_string(), hostname.to_string())];
    for (k, v) in env {
        out.retain(|(key, _)| key != k);
        out.push((k.clone(), v.clone()));
    }
    out
}

/// Sysctls of a node's network namespace, in order: SLAAC off on every interface (addresses
/// are the plan's, and a stray router advertisement must not add more) and no duplicate
/// address detection (a link-local address held tentative for a second loses the first
/// packets routed through it), where the machine has IPv6; ping for every group of the node
/// and ports below 1024 for every user, as Docker sets them; then the topology's own.
pub fn sysctls<'a>(
    interfaces: impl Iterator<Item = &'a str>,
    userns: Option<IdMap>,
    ipv6: bool,
    own: &[(String, String)],
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if ipv6 {
        for name in ["all", "default"].into_iter().chain(interfaces) {
            for key in ["accept_ra", "autoconf", "accept_dad"] {
                out.push((format!("net/ipv6/conf/{name}/{key}"), "0".to_string()));
            }
        }
    }
    // The range is written from the host, so in host ids.
    let groups = match userns {
        Some(m) => format!("{} {}", m.host, m.host + (m.size - 1)),
        None => "0 2147483647".to_string(),
    };
    out.push(("net.ipv4.ping_group_range".to_string(), groups));
    out.push(("net.ipv4.ip_unprivileged_port_start".to_string(), "0".to_string()));
    for (k, v) in own {
        out.retain(|(key, _)| key != k);
        out.push((k.clone(), v.clone()));
    }
    out
}
