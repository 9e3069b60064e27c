//! Host-wide settings that lab changes for its labs and puts back when the last lab goes:
//! IPv4 forwarding (NAT needs it), IPv6 forwarding (for NAT networks with IPv6) and /run/netns as a shared mount point (as `ip netns`
//! makes it). A marker file under /run/lab remembers what lab changed. Callers hold the
//! global lock.

use crate::plan::Plan;
use crate::state::{all_states, STATE_ROOT};
use crate::Error;
use lab_net::{nat, netns, sysctl};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Changes {
    /// IPv4 forwarding was off before a lab needed it.
    forwarding: bool,
    /// IPv6 forwarding was off before a lab needed it.
    #[serde(default)]
    forwarding6: bool,
    /// lab created /run/netns, and made it a mount point.
    netns_dir: bool,
    netns_mount: bool,
}

fn marker() -> PathBuf {
    PathBuf::from(STATE_ROOT).join(".host-changes.json")
}

fn load() -> Changes {
    std::fs::read(marker()).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

fn save(c: &Changes) -> Result<(), Error> {
    if !c.forwarding && !c.forwarding6 && !c.netns_dir && !c.netns_mount {
        return match std::fs::remove_file(marker()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::Io(format!("removing {}", marker().display()), e))
            }
            _ => Ok(()),
        };
    }
    // Atomically: a `lab up` killed mid-write must not leave a torn marker, which would
    // read as "nothing changed" and leave forwarding on for good.
    let json = serde_json::to_vec(c).map_err(|e| Error::Corrupt(e.to_string()))?;
    let tmp = marker().with_extension("tmp");
    std::fs::write(&tmp, json).map_err(|e| Error::Io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, marker()).map_err(|e| Error::Io(format!("writing {}", marker().display()), e))
}

/// Before a lab is made: /run/netns ready, and forwarding on if the lab has NAT.
pub fn prepare(plan: &Plan) -> Result<(), Error> {
    let mut c = load();
    // Recorded before it is done: a `lab up` killed in between leaves nothing unknown.
    let will = netns::preparation();
    if (will.created_dir && !c.netns_dir) || (will.mounted && !c.netns_mount) {
        c.netns_dir |= will.created_dir;
        c.netns_mount |= will.mounted;
        save(&c)?;
    }
    let prepared = netns::prepare_dir()?;
    c.netns_dir |= prepared.created_dir;
    c.netns_mount |= prepared.mounted;
    if plan.needs_nat() && sysctl::read(sysctl::IPV4_FORWARD)? == "0" {
        c.forwarding = true;
        save(&c)?;
        sysctl::write(sysctl::IPV4_FORWARD, "1")?;
    }
    if plan.needs_nat6() && sysctl::read(sysctl::IPV6_FORWARD)? == "0" {
        c.forwarding6 = true;
        save(&c)?;
        sysctl::write(sysctl::IPV6_FORWARD, "1")?;
    }
    save(&c)
}

/// After a lab is removed: put back what no remaining lab needs.
pub fn restore() -> Result<(), Error> {
    let mut c = load();
    let states: Vec<_> = all_states().into_iter().filter_map(|(_, s)| s).collect();
    if c.forwarding {
        let nat_left = states.iter().any(|s| s.plan.needs_nat())
            || nat::tables()?.iter().any(|t| crate::identity::is_lab_table(t));
        if !nat_left {
            sysctl::write(sysctl::IPV4_FORWARD, "0")?;
            c.forwarding = false;
        }
    }
    if c.forwarding6 && !states.iter().any(|s| s.plan.needs_nat6()) {
        sysctl::write(sysctl::IPV6_FORWARD, "0")?;
        c.forwarding6 = false;
    }
    if (c.netns_dir || c.netns_mount) && states.is_empty() {
        let prepared = netns::Prepared { created_dir: c.netns_dir, mounted: c.netns_mount };
        if netns::release_dir(prepared)? {
            c.netns_dir = false;
            c.netns_mount = false;
        }
    }
    save(&c)
}
