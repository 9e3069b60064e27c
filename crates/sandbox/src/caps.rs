//! Capabilities: names, the default set, and setting all five sets of a process.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// Capability names, by number (capability.h order).
const NAMES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Docker's default capabilities, plus NET_ADMIN: a network lab configures its own
/// interfaces, routes and firewall inside its own network namespace.
pub const DEFAULT: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
    "NET_ADMIN",
];

/// One capability, by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cap(pub u8);

impl Cap {
    /// `NET_ADMIN`, `CAP_NET_ADMIN` or `net_admin`.
    pub fn parse(name: &str) -> std::result::Result<Cap, String> {
        let upper = name.to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        NAMES
            .iter()
            .position(|n| *n == bare)
            .map(|i| Cap(i as u8))
            .ok_or_else(|| format!("`{name}` is not a capability (e.g. NET_ADMIN, SYS_TIME, or ALL)"))
    }

    pub fn name(self) -> &'static str {
        NAMES.get(usize::from(self.0)).copied().unwrap_or("UNKNOWN")
    }

    pub fn all() -> impl Iterator<Item = Cap> {
        (0..NAMES.len() as u8).map(Cap)
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CAP_{}", self.name())
    }
}

impl TryFrom<String> for Cap {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Cap, String> {
        Cap::parse(&s)
    }
}

impl From<Cap> for String {
    fn from(c: Cap) -> String {
        c.to_string()
    }
}

/// The capabilities a node's processes keep: the default set, `cap_add`ed, minus `cap_drop`ped
/// (`ALL` in either meaning every one), or every one when privileged.
pub fn effective_set(add: &[String], drop: &[String], privileged: bool) -> std::result::Result<BTreeSet<Cap>, String> {
    if privileged {
        return Ok(Cap::all().collect());
    }
    let mut set: BTreeSet<Cap> = DEFAULT.iter().map(|n| Cap::parse(n).expect("default names are known")).collect();
    let expand = |names: &[String]| -> std::result::Result<Vec<Cap>, String> {
        let mut out = Vec::new();
        for n in names {
            if n.eq_ignore_ascii_case("ALL") {
                out.extend(Cap::all());
            } else {
                out.push(Cap::parse(n)?);
            }
        }
        Ok(out)
    };
    // Docker's order: drop first, then add (so `cap_drop = ["ALL"], cap_add = [...]` works).
    for c in expand(drop)? {
        set.remove(&c);
    }
    set.extend(expand(add)?);
    Ok(set)
}

/// Applies `keep` (less any capability the caller lacks) to the calling thread: bounding set
/// reduced to it, permitted and effective
/// set to it, inheritable and ambient emptied (an inheritable set lets exec'd programs with
/// file capabilities regain what was dropped, CVE-2022-29162). Run before exec; the exec'd
/// program (as root) then has exactly `keep`.
pub fn apply(keep: &BTreeSet<Cap>) -> Result<()> {
    let last = last_cap();
    for cap in 0..=last {
        if keep.contains(&Cap(cap)) {
            continue;
        }
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) } != 0 {
            let e = std::io::Error::last_os_error();
            // EINVAL: a capability this kernel does not have.
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(Error::os(format!("dropping {} from the bounding set", Cap(cap)), e));
            }
        }
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(Error::os("clearing the ambient capabilities", e));
        }
    }
    // A node never gets a capability lab itself does not have (a privileged node gets all
    // that lab has).
    let mask: u64 = keep.iter().fold(0, |m, c| m | (1u64 << c.0)) & permitted()?;
    capset(mask, mask, 0)
}

/// The calling thread's permitted set.
fn permitted() -> Result<u64> {
    let header = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget with a v3 header and room for two data structs.
    let r = unsafe { libc::syscall(libc::SYS_capget, &header as *const CapHeader, data.as_mut_ptr()) };
    if r != 0 {
        return Err(Error::os("reading capabilities", std::io::Error::last_os_error()));
    }
    Ok(u64::from(data[0].permitted) | (u64::from(data[1].permitted) << 32))
}

/// The highest capability number this kernel knows.
fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(NAMES.len() as u8 - 1)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

fn capset(effective: u64, permitted: u64, inheritable: u64) -> Result<()> {
    let header = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
    let split = |v: u64| [(v & 0xffff_ffff) as u32, (v >> 32) as u32];
    let (e, p, i) = (split(effective), split(permitted), split(inheritable));
    let data = [
        CapData { effective: e[0], permitted: p[0], inheritable: i[0] },
        CapData { effective: e[1], permitted: p[1], inheritable: i[1] },
    ];
    // SAFETY: capset with a v3 header and two data structs, as capability.h defines.
    let r = unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    if r != 0 {
        return Err(Error::os("setting capabilities", std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(set: &BTreeSet<Cap>) -> Vec<&'static str> {
        set.iter().map(|c| c.name()).collect()
    }

    #[test]
    fn names_parse_with_or_without_prefix() {
        assert_eq!(Cap::parse("NET_ADMIN"), Ok(Cap(12)));
        assert_eq!(Cap::parse("cap_sys_admin"), Ok(Cap(21)));
        assert_eq!(Cap::parse("CHECKPOINT_RESTORE"), Ok(Cap(40)));
        assert!(Cap::parse("NET_ADMIM").unwrap_err().contains("not a capability"));
        assert_eq!(Cap(12).to_string(), "CAP_NET_ADMIN");
    }

    #[test]
    fn default_set_is_dockers_plus_net_admin() {
        let set = effective_set(&[], &[], false).unwrap();
        assert_eq!(set.len(), 15);
        assert!(set.contains(&Cap::parse("NET_ADMIN").unwrap()));
        assert!(set.contains(&Cap::parse("NET_RAW").unwrap()));
        assert!(!set.contains(&Cap::parse("SYS_ADMIN").unwrap()));
        assert!(!set.contains(&Cap::parse("SYS_PTRACE").unwrap()));
    }

    #[test]
    fn add_drop_all_and_privileged() {
        let set = effective_set(&["SYS_TIME".into()], &["NET_RAW".into()], false).unwrap();
        assert!(set.contains(&Cap::parse("SYS_TIME").unwrap()));
        assert!(!set.contains(&Cap::parse("NET_RAW").unwrap()));
        let only = effective_set(&["NET_ADMIN".into()], &["ALL".into()], false).unwrap();
        assert_eq!(names(&only), ["NET_ADMIN"]);
        assert_eq!(effective_set(&[], &[], true).unwrap().len(), NAMES.len());
        assert!(effective_set(&["BOGUS".into()], &[], false).is_err());
    }
}
