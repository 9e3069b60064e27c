//! The kernel modules that nodes commonly need, loaded before they start, for kernels that do
//! not load one for a request from inside a user namespace ([`lab_net::preload`]). Debian
//! 12's does (checked in scripts/vm-test's guest: sch_netem, 8021q and nft_ct load for a
//! node), so there this only saves the node the wait.

use crate::Error;
use lab_net::preload::{autoload, Kinds};

/// Interface kinds of routing and switching labs: VLANs, overlays, VRFs, VPNs. Not those whose
/// modules make devices of their own when they load, on the host too: the IP tunnels (gre,
/// ipip, sit, ip6tnl put gre0, tunl0, ... into every namespace), dummy (dummy0), bonding
/// (bond0) and ifb (ifb0, ifb1). A node that makes one has the kernel load it itself, where
/// the kernel does that for a user namespace.
const LINKS: &[&str] =
    &["bridge", "vlan", "macvlan", "ipvlan", "vxlan", "geneve", "team", "vrf", "wireguard", "macsec"];
/// Queueing disciplines: impairments, shaping, fair queueing.
const QDISCS: &[&str] = &["netem", "htb", "tbf", "prio", "fq_codel", "fq", "sfq", "hfsc", "red", "cake", "clsact"];
const CLASSIFIERS: &[&str] = &["u32", "matchall", "flower", "basic", "fw", "route", "bpf"];
const ACTIONS: &[&str] = &["mirred", "gact", "police", "pedit", "skbedit", "vlan", "nat", "csum", "tunnel_key"];
/// nftables expressions of firewalls and NAT (and, through `nat`, nat chains).
const NFT_EXPRESSIONS: &[&str] = &[
    "ct",
    "nat",
    "masq",
    "redir",
    "reject",
    "limit",
    "log",
    "quota",
    "fib",
    "numgen",
    "hash",
    "connlimit",
    "dup",
    "fwd",
    "queue",
    "synproxy",
    "tproxy",
    "socket",
    "osf",
    "xfrm",
    "tunnel",
];

/// Has the kernel load those it has as modules and has not loaded yet.
pub fn preload() -> Result<(), Error> {
    let t = std::time::Instant::now();
    let asked = autoload(Kinds {
        links: LINKS,
        qdiscs: QDISCS,
        classifiers: CLASSIFIERS,
        actions: ACTIONS,
        nft_expressions: NFT_EXPRESSIONS,
    })?;
    tracing::debug!(elapsed = ?t.elapsed(), ?asked, "asked the kernel for the modules nodes commonly need");
    Ok(())
}
