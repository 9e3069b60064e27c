//! A node's isolation and resource settings: seccomp, capabilities, privileged, user
//! namespace, cgroup limits, bind mounts. Each may be set per node or in `[defaults]`; the
//! node's own value wins.

use super::raw::{RawNode, RawScalar, Str};
use super::{Rootfs, Validator};
use lab_sandbox::caps::Cap;
use lab_sandbox::cgroup::Limits;
use lab_sandbox::BindMount;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Which seccomp profile a node runs under.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompChoice {
    /// lab's default profile (Docker's semantics).
    Default,
    /// No filter at all.
    Unconfined,
    /// A Docker/OCI JSON profile.
    Profile(PathBuf),
}

/// What a node's processes may do, as the topology file says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSecurity {
    /// `seccomp`.
    pub seccomp: SeccompChoice,
    /// Capability names (checked), or `ALL`.
    pub cap_add: Vec<String>,
    /// `cap_drop`: capability names (checked), or `ALL`.
    pub cap_drop: Vec<String>,
    /// `privileged`: every capability, no seccomp, all devices, /sys writable.
    pub privileged: bool,
    /// `userns`: root in the node is an unprivileged user on the host (the default unless
    /// `privileged`).
    pub userns: bool,
}

/// What a kind of node needs, named once instead of spelled out in every lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// A routing daemon's node (FRR, bird): SYS_ADMIN, which FRR asks for at start (it exits
    /// without it), confined to the node's own namespaces; NET_ADMIN, NET_RAW,
    /// NET_BIND_SERVICE and NET_BROADCAST (bird keeps them when it drops root); IPv4 and IPv6 forwarding on.
    Router,
}

impl Preset {
    /// Its name in a topology.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Router => "router",
        }
    }

    /// Capabilities it adds.
    pub fn caps(self) -> &'static [&'static str] {
        match self {
            Preset::Router => &["SYS_ADMIN", "NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE", "NET_BROADCAST"],
        }
    }

    /// Sysctls it sets (a node's own win).
    pub fn sysctls(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Preset::Router => &[("net.ipv4.ip_forward", "1"), ("net.ipv6.conf.all.forwarding", "1")],
        }
    }
}

/// Smallest memory limit accepted: below it not even a shell starts.
const MIN_MEMORY: u64 = 4 << 20;

impl Validator {
    pub(super) fn security(&mut self, node: &RawNode, preset: Option<Preset>, base: &Path) -> NodeSecurity {
        let seccomp = match node.seccomp.get() {
            None => SeccompChoice::Default,
            Some(s) => match s.get_ref().as_str() {
                "default" => SeccompChoice::Default,
                "unconfined" => SeccompChoice::Unconfined,
                "" => {
                    self.err_hint(s.span(), "seccomp is empty", "use \"default\", \"unconfined\" or a profile's path");
                    SeccompChoice::Default
                }
                path => SeccompChoice::Profile(base.join(path)),
            },
        };
        let caps = |v: &mut Validator, list: Option<&Spanned<Vec<Str>>>| -> Vec<String> {
            let Some(list) = list else { return Vec::new() };
            list.get_ref()
                .iter()
                .filter_map(|c| {
                    if c.get_ref().eq_ignore_ascii_case("ALL") {
                        return Some("ALL".to_string());
                    }
                    match Cap::parse(c.get_ref()) {
                        Ok(cap) => Some(cap.name().to_string()),
                        Err(m) => {
                            v.err(c.span(), m);
                            None
                        }
                    }
                })
                .collect()
        };
        let cap_add = caps(self, node.cap_add.get());
        let cap_drop = caps(self, node.cap_drop.get());
        let flag = |v: Option<&Spanned<bool>>| v.map(|b| *b.get_ref());
        let privileged = flag(node.privileged.as_ref()).unwrap_or(false);
        // A user namespace of its own unless privileged (as Docker's privileged containers
        // have the host's) or told otherwise.
        let userns = flag(node.userns.as_ref()).unwrap_or(!privileged);
        let mut cap_add = cap_add;
        if let Some(preset) = preset {
            if !userns && !privileged {
                let span = node.userns.as_ref().map(|u| u.span()).or(node.preset.span()).unwrap_or(0..0);
                self.err_hint(
                    span,
                    format!("preset \"{}\" needs the node's own user namespace", preset.name()),
                    "its SYS_ADMIN would be the host's without one: leave `userns` out",
                );
            }
            for cap in preset.caps() {
                if !cap_add.iter().any(|c| c == cap || c == "ALL") {
                    cap_add.push(cap.to_string());
                }
            }
        }
        NodeSecurity { seccomp, cap_add, cap_drop, privileged, userns }
    }

    /// `preset`, checked.
    pub(super) fn preset(&mut self, node: &RawNode) -> Option<Preset> {
        let p = node.preset.get()?;
        match p.get_ref().as_str() {
            "router" => Some(Preset::Router),
            other => {
                self.err_hint(p.span(), format!("`{other}` is not a preset"), "the presets: \"router\"");
                None
            }
        }
    }

    /// `scratch` and `scratch_size`.
    pub(super) fn scratch(&mut self, node: &RawNode) -> super::Scratch {
        let size = node.scratch_size.get().and_then(|s| {
            let bytes = match s.get_ref() {
                RawScalar::Int(n) if *n > 0 => Ok(*n as u64),
                RawScalar::Str(v) => crate::units::parse_size(v),
                _ => Err("scratch_size is a size such as \"512M\" or \"2G\"".to_string()),
            };
            bytes.map_err(|m| self.err(s.span(), m)).ok()
        });
        match node.scratch.get().map(|s| (s.get_ref().as_str(), s.span())) {
            None | Some(("disk", _)) => {
                if let (Some(s), Some(_)) = (node.scratch_size.get(), size) {
                    self.err_hint(
                        s.span(),
                        "scratch_size caps a tmpfs writable layer; on disk lab cannot cap it (that needs a file system with project quotas)",
                        "add `scratch = \"tmpfs\"`, or leave scratch_size out",
                    );
                }
                super::Scratch::Disk
            }
            Some(("tmpfs", _)) => super::Scratch::Tmpfs { size },
            Some((other, span)) => {
                self.err_hint(
                    span,
                    format!("scratch `{other}` is neither \"disk\" nor \"tmpfs\""),
                    "scratch = \"disk\" (the default) or \"tmpfs\"",
                );
                super::Scratch::Disk
            }
        }
    }

    pub(super) fn limits(&mut self, node: &RawNode) -> Limits {
        let memory = node.memory.get().and_then(|m| {
            let bytes = match m.get_ref() {
                RawScalar::Int(n) if *n > 0 => Ok(*n as u64),
                RawScalar::Str(s) => crate::units::parse_size(s),
                _ => Err("memory is a size such as \"256M\" or \"1G\", or a number of bytes".to_string()),
            };
            match bytes {
                Ok(b) if b < MIN_MEMORY => {
                    self.err(m.span(), format!("memory {b} bytes is too small: at least 4M"));
                    None
                }
                Ok(b) => Some(b),
                Err(msg) => {
                    self.err(m.span(), msg);
                    None
                }
            }
        });
        let millicpus = node.cpus.get().and_then(|c| {
            let cpus = match c.get_ref() {
                RawScalar::Int(n) => Some(*n as f64),
                RawScalar::Float(f) => Some(*f),
                RawScalar::Str(_) => None,
            };
            match cpus {
                Some(n) if (0.01..=1024.0).contains(&n) => Some((n * 1000.0).round() as u32),
                _ => {
                    self.err_hint(c.span(), "cpus is a number of CPUs between 0.01 and 1024", "e.g. cpus = 0.5");
                    None
                }
            }
        });
        let int = |v: &mut Validator,
                   raw: Option<&Spanned<RawScalar>>,
                   what: &str,
                   range: std::ops::RangeInclusive<i64>| {
            let raw = raw?;
            match raw.get_ref() {
                RawScalar::Int(n) if range.contains(n) => Some(*n),
                _ => {
                    v.err(raw.span(), format!("{what} is a whole number from {} to {}", range.start(), range.end()));
                    None
                }
            }
        };
        let pids = int(self, node.pids.get(), "pids", 1..=4_194_304).map(|n| n as u64);
        let io_weight = int(self, node.io_weight.get(), "io_weight", 10..=1000);
        Limits { memory, millicpus, pids, io_weight: io_weight.map(|w| w as u16) }
    }

    /// Host paths to show after all, checked against what the default view hides.
    pub(super) fn reveal(&mut self, node: &RawNode, own: bool, rootfs: Option<&Rootfs>) -> Vec<String> {
        let Some(list) = node.reveal.get() else { return Vec::new() };
        if !matches!(rootfs, Some(Rootfs::Host)) {
            if !own {
                // A default's reveal is for the nodes on the host's root.
                return Vec::new();
            }
            self.err_hint(
                list.span(),
                "reveal is for nodes on the host's root file system",
                "a rootfs directory shows as it is; reveal nothing",
            );
            return Vec::new();
        }
        let mut out = Vec::new();
        for p in list.get_ref() {
            let path = p.get_ref().trim_end_matches('/');
            let path = if path.is_empty() { "/" } else { path };
            if path != "/" && !lab_sandbox::spec::is_plain_path(path) {
                self.err(p.span(), format!("`{}` is not an absolute path of plain components", p.get_ref()));
            } else if !crate::plan::view::reveals_something(path) {
                self.err_hint(
                    p.span(),
                    format!("{path} is not hidden from nodes: there is nothing to reveal"),
                    format!("a node does not see {}", crate::plan::view::hidden().join(", ")),
                );
            } else {
                out.push(path.to_string());
            }
        }
        out
    }

    /// `mounts` and `shared` (at /shared), sources relative to the topology's directory `base`.
    /// `loopback`: addresses with their prefix (`/32` and `/128` for a single address).
    pub(super) fn loopback(&mut self, node: &RawNode) -> Vec<ipnetwork::IpNetwork> {
        let Some(list) = node.loopback.get() else { return Vec::new() };
        let mut out: Vec<ipnetwork::IpNetwork> = Vec::new();
        for a in list.get_ref() {
            match a.get_ref().parse::<ipnetwork::IpNetwork>() {
                Ok(n) if n.ip().is_loopback() || n.ip().is_unspecified() => {
                    self.err(a.span(), format!("{} is not an address a node can carry on lo", n.ip()));
                }
                Ok(n) if out.iter().any(|o| o.ip() == n.ip()) => self.err(a.span(), format!("{} twice", n.ip())),
                Ok(n) => out.push(n),
                Err(_) => self.err_hint(
                    a.span(),
                    format!("`{}` is not an address", a.get_ref()),
                    "write e.g. \"10.255.0.1/32\"",
                ),
            }
        }
        out
    }

    /// A path of the topology (files, startup): relative to its directory `base`.
    pub(super) fn path_of(&mut self, v: Option<&Spanned<String>>, base: &Path) -> Option<PathBuf> {
        let v = v?;
        if v.get_ref().is_empty() || v.get_ref().contains('\0') {
            self.err(v.span(), "a path cannot be empty");
            return None;
        }
        Some(base.join(v.get_ref()))
    }

    /// Paths of the topology (`startup`: one, or a list), each relative to `base`.
    pub(super) fn paths_of(&mut self, v: Option<&Spanned<super::raw::RawPaths>>, base: &Path) -> Vec<PathBuf> {
        let Some(v) = v else { return Vec::new() };
        match v.get_ref() {
            super::raw::OneOrList::One(p) => {
                self.path_of(Some(&Spanned::new(v.span(), p.clone())), base).into_iter().collect()
            }
            super::raw::OneOrList::List(list) => list.iter().filter_map(|p| self.path_of(Some(p), base)).collect(),
        }
    }

    pub(super) fn mounts(&mut self, node: &RawNode, base: &Path) -> Vec<BindMount> {
        let mut out: Vec<BindMount> = Vec::new();
        if let Some(shared) = node.shared.get() {
            out.push(BindMount { source: base.join(shared.get_ref()), target: "/shared".into(), read_only: false });
        }
        let Some(list) = node.mounts.get() else { return out };
        for m in list.get_ref() {
            match parse_mount(m.get_ref()).map(|b| BindMount { source: base.join(&b.source), ..b }) {
                Ok(bind) if out.iter().any(|o| o.target == bind.target) => {
                    self.err(m.span(), format!("two mounts on {}", bind.target));
                }
                Ok(bind) => out.push(bind),
                Err(msg) => self.err_hint(
                    m.span(),
                    msg,
                    "write mounts as \"host/path:/node/path\" or \"/host/path:/node/path:ro\" (a relative host path is from the topology's directory)",
                ),
            }
        }
        out
    }
}

impl Validator {
    /// `volumes`: `"NAME:/node/path[:ro]"`, on paths no mount of `mounts` takes.
    pub(super) fn volumes(&mut self, node: &RawNode, mounts: &mut [BindMount]) -> Vec<super::Volume> {
        let Some(list) = node.volumes.get() else { return Vec::new() };
        let mut out: Vec<super::Volume> = Vec::new();
        for v in list.get_ref() {
            let parsed = parse_mount(v.get_ref()).and_then(|m| {
                let name = m.source.to_string_lossy().into_owned();
                let ok = name.len() <= 64
                    && name.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
                if ok {
                    Ok(super::Volume { name, target: m.target, read_only: m.read_only })
                } else if name.contains('/') {
                    Err(format!("`{name}` is a path: a host directory is a mount, not a volume"))
                } else {
                    Err(format!("`{name}` is not a volume name: letters, digits, `_`, `.` and `-`"))
                }
            });
            match parsed {
                Ok(vol) if mounts.iter().any(|m| m.target == vol.target) || out.iter().any(|o| o.target == vol.target) => {
                    self.err(v.span(), format!("two mounts on {}", vol.target));
                }
                Ok(vol) if out.iter().any(|o| o.name == vol.name) => {
                    self.err(v.span(), format!("volume `{}` twice", vol.name));
                }
                Ok(vol) => out.push(vol),
                Err(msg) => self.err_hint(
                    v.span(),
                    msg,
                    "write volumes as \"NAME:/node/path\" or \"NAME:/node/path:ro\", e.g. \"pgdata:/var/lib/postgresql\"",
                ),
            }
        }
        out
    }
}

/// `"/host/path:/node/path[:ro|rw]"`.
fn parse_mount(s: &str) -> Result<BindMount, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, read_only) = match parts.as_slice() {
        [src, dst] => (*src, *dst, false),
        [src, dst, "ro"] => (*src, *dst, true),
        [src, dst, "rw"] => (*src, *dst, false),
        [_, _, opt] => return Err(format!("mount option `{opt}` is neither ro nor rw")),
        _ => return Err(format!("`{s}` is not a mount")),
    };
    if source.is_empty() || !target.starts_with('/') {
        return Err(format!("`{s}`: the path in the node must be absolute"));
    }
    let plain = |p: &str| p.split('/').all(|c| c != "." && c != "..");
    if !plain(target) {
        return Err(format!("`{s}`: the path in the node cannot contain `.` or `..`"));
    }
    let target = format!("/{}", target.split('/').filter(|c| !c.is_empty()).collect::<Vec<_>>().join("/"));
    let first = target.split('/').nth(1).unwrap_or("");
    if target == "/" || ["proc", "sys", "dev"].contains(&first) {
        return Err(format!("`{s}`: a mount cannot go on /, /proc, /sys or /dev"));
    }
    Ok(BindMount { source: PathBuf::from(source), target, read_only })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts() {
        let m = parse_mount("/srv/data:/data:ro").unwrap();
        assert_eq!((m.source.to_str().unwrap(), m.target.as_str(), m.read_only), ("/srv/data", "/data", true));
        assert_eq!(parse_mount("/a:/b//c/").unwrap().target, "/b/c");
        // A relative host path is the topology's to resolve (from its directory).
        assert_eq!(parse_mount("data/{node}:/x").unwrap().source.to_str(), Some("data/{node}"));
        assert!(parse_mount("/a:relative").is_err());
        assert!(parse_mount("/a:/proc/sys").is_err());
        assert!(parse_mount("/a:/").is_err());
        assert!(parse_mount("/a:/b:rx").unwrap_err().contains("neither ro nor rw"));
        assert!(parse_mount("/a:/b/../etc").is_err());
    }
}
