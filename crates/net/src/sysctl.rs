//! Reading and writing /proc/sys.

use crate::{Error, Result};
use std::fs;

/// Global IPv4 forwarding, which NAT needs.
pub const IPV4_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

pub fn read(path: &str) -> Result<String> {
    fs::read_to_string(path).map(|s| s.trim().to_string()).map_err(|e| Error::os(format!("reading {path}"), e))
}

pub fn write(path: &str, value: &str) -> Result<()> {
    fs::write(path, value).map_err(|e| Error::os(format!("writing {value} to {path}"), e))
}
