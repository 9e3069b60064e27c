//! The kernel modules that nodes commonly need, loaded before they start: a node cannot have
//! the kernel load one for it from inside its user namespace ([`lab_net::preload`]).

use crate::Error;
use lab_net::preload::{autoload, Kinds};

/// Interface kinds of routing and switching labs: VLANs, tunnels, bonds, VRFs, VPNs.
const LINKS: &[&str] = &[
    "dummy",
    "bridge",
    "vlan",
    "macvlan",
    "ipvlan",
    "vxlan",
    "geneve",
    "gre",
    "gretap",
    "ip6gre",
    "ip6gretap",
    "ipip",
    "sit",
    "ip6tnl",
    "bond",
    "team",
    "vrf",
    "wireguard",
    "ifb",
    "macsec",
];
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
