//! Reading and writing /proc/sys.

use crate::{Error, Result};
use std::fs;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;

/// Global IPv4 forwarding, which NAT needs.
pub const IPV4_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
/// Global IPv6 forwarding, which NAT of IPv6 networks needs.
pub const IPV6_FORWARD: &str = "/proc/sys/net/ipv6/conf/all/forwarding";

pub fn read(path: &str) -> Result<String> {
    fs::read_to_string(path).map(|s| s.trim().to_string()).map_err(|e| Error::os(format!("reading {path}"), e))
}

pub fn write(path: &str, value: &str) -> Result<()> {
    fs::write(path, value).map_err(|e| Error::os(format!("writing {value} to {path}"), e))
}

/// The /proc/sys path of a `net.*` key: dotted (`net.ipv4.ip_forward`), or with `/` between
/// components where one holds a dot (`net/ipv4/conf/eth0.10/forwarding`).
pub fn net_path(key: &str) -> Option<PathBuf> {
    let parts: Vec<&str> = if key.contains('/') { key.split('/').collect() } else { key.split('.').collect() };
    let ok = parts.len() >= 2 && parts[0] == "net" && parts.iter().all(|p| !p.is_empty() && *p != "." && *p != "..");
    ok.then(|| parts.iter().fold(PathBuf::from("/proc/sys"), |path, p| path.join(p)))
}

/// Sets `net.*` sysctls of the network namespace `netns`, in order.
pub fn write_in(netns: BorrowedFd<'_>, label: &str, settings: &[(String, String)]) -> Result<()> {
    crate::netns::run_in(netns, label, || write_here(label, settings))
}

/// Sets `net.*` sysctls of the calling thread's network namespace (`label` names it in
/// errors), in order: for a thread that entered a node's namespace.
pub fn write_here(label: &str, settings: &[(String, String)]) -> Result<()> {
    for (key, value) in settings {
        let what = || format!("setting sysctl {key}={value} in {label}");
        let Some(path) = net_path(key) else {
            return Err(Error::invalid(what(), "only net.* keys can be set"));
        };
        fs::write(&path, value).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::MissingFeature { what: what(), feature: path.display().to_string() },
            _ => Error::os(what(), e),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::net_path;
    use std::path::Path;

    #[test]
    fn paths() {
        assert_eq!(net_path("net.ipv4.ip_forward").as_deref(), Some(Path::new("/proc/sys/net/ipv4/ip_forward")));
        assert_eq!(
            net_path("net/ipv4/conf/eth0.10/rp_filter").as_deref(),
            Some(Path::new("/proc/sys/net/ipv4/conf/eth0.10/rp_filter"))
        );
        assert_eq!(net_path("kernel.pid_max"), None);
        assert_eq!(net_path("net/../kernel/pid_max"), None);
        assert_eq!(net_path("net..x"), None);
    }
}
