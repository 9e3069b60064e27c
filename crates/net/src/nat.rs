//! NAT over nf_tables: one `inet` table per lab, so that teardown is one delete and two labs
//! never touch each other's rules. The lab table masquerades outbound traffic and forwards
//! host ports (DNAT); its filter chains keep the lab's traffic to itself
//! ([`crate::firewall`]).

use crate::firewall::{self, Isolation};
use crate::nft::{cstring, match_ifname, match_source, send};
use crate::{Error, Result};
use ipnetwork::IpNetwork;
use nftnl::expr::{Immediate, InterfaceName, Nat, NatType, Register};
use nftnl::{nft_expr, Batch, Chain, ChainType, Hook, MsgType, Policy, ProtoFamily, Rule, Table};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

pub use crate::nft::{tables, Family};

/// Deletes table `inet <table>`. Already gone is success.
pub fn delete_table(table: &str) -> Result<()> {
    crate::nft::delete_table(Family::Inet, table)
}

/// Source NAT priority (`srcnat` in nft).
const SRCNAT: i32 = 100;
/// Destination NAT priority (`dstnat` in nft).
const DSTNAT: i32 = -100;

/// A transport protocol of a forwarded port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// Masquerade traffic from `subnet` that leaves through any interface but those `except`
/// names (an interface name, or a `prefix*` pattern). On a host with br_netfilter, frames
/// bridged within any lab's bridge pass the host's NAT hooks too, leaving "through" that
/// bridge: `except` must cover every bridge that may carry a subnet like this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Masquerade {
    pub subnet: IpNetwork,
    pub except: String,
}

/// Host port `host_port` (on every local address of the host) forwarded to `address:port`,
/// a node reached through `bridge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub protocol: Protocol,
    pub host_port: u16,
    pub address: Ipv4Addr,
    pub port: u16,
    pub bridge: String,
}

/// Creates table `inet <table>`: a postrouting chain that masquerades each network, and, for
/// port forwards, prerouting and output chains that DNAT packets for a local address of the
/// host (from outside and from the host itself). Connections from the host's loopback are
/// masqueraded on their way to the node, which could not answer 127.0.0.1; what arrives on
/// `isolation.lab_interfaces` is never forwarded (a node reaches no forwarded port through
/// the host's address). Its forward and
/// input chains keep the lab's traffic to itself, as `isolation` says.
pub fn create_table(
    table: &str,
    masquerades: &[Masquerade],
    forwards: &[Forward],
    isolation: &Isolation,
) -> Result<()> {
    let what = || format!("creating nftables table inet {table}");
    let name = cstring(table, what)?;
    let table_obj = Table::new(&name, ProtoFamily::Inet);
    let mut batch = Batch::new();
    batch.add(&table_obj, MsgType::Add);
    let chain = |name: &'static std::ffi::CStr, hook, priority| {
        let mut chain = Chain::new(name, &table_obj);
        chain.set_type(ChainType::Nat);
        chain.set_hook(hook, priority);
        chain.set_policy(Policy::Accept);
        chain
    };
    let post = chain(c"postrouting", Hook::PostRouting, SRCNAT);
    batch.add(&post, MsgType::Add);
    for m in masquerades {
        let mut rule = Rule::new(&post);
        match_source(&mut rule, m.subnet);
        match_ifname(&mut rule, false, &m.except, false)?;
        rule.add_expr(&nft_expr!(masquerade));
        batch.add(&rule, MsgType::Add);
    }
    if !forwards.is_empty() {
        let bridges: BTreeSet<&str> = forwards.iter().map(|f| f.bridge.as_str()).collect();
        let loopback = IpNetwork::V4(ipnetwork::Ipv4Network::new(Ipv4Addr::LOCALHOST, 8).expect("127.0.0.0/8"));
        for bridge in bridges {
            let mut rule = Rule::new(&post);
            match_source(&mut rule, loopback);
            rule.add_expr(&nft_expr!(meta oifname));
            rule.add_expr(&nft_expr!(cmp == InterfaceName::Exact(cstring(bridge, what)?)));
            rule.add_expr(&nft_expr!(masquerade));
            batch.add(&rule, MsgType::Add);
        }
        for (name, hook) in [(c"prerouting", Hook::PreRouting), (c"output", Hook::Out)] {
            let chain = chain(name, hook, DSTNAT);
            batch.add(&chain, MsgType::Add);
            for f in forwards {
                let mut rule = Rule::new(&chain);
                for own in &isolation.lab_interfaces {
                    match_ifname(&mut rule, true, own, false)?;
                }
                rule.add_expr(&nft_expr!(meta nfproto));
                rule.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV4 as u8));
                rule.add_expr(&crate::ffi::FibDaddrLocal);
                rule.add_expr(&nft_expr!(cmp == u32::from(libc::RTN_LOCAL)));
                rule.add_expr(&nft_expr!(meta l4proto));
                let port = f.host_port.to_be_bytes();
                match f.protocol {
                    Protocol::Tcp => {
                        rule.add_expr(&nft_expr!(cmp == libc::IPPROTO_TCP as u8));
                        rule.add_expr(&nft_expr!(payload tcp dport));
                    }
                    Protocol::Udp => {
                        rule.add_expr(&nft_expr!(cmp == libc::IPPROTO_UDP as u8));
                        rule.add_expr(&nft_expr!(payload udp dport));
                    }
                }
                rule.add_expr(&nft_expr!(cmp == &port[..]));
                rule.add_expr(&Immediate::new(f.address.octets(), Register::Reg1));
                rule.add_expr(&Immediate::new(f.port.to_be_bytes(), Register::Reg2));
                rule.add_expr(&Nat {
                    nat_type: NatType::DNat,
                    family: ProtoFamily::Ipv4,
                    ip_register: Register::Reg1,
                    port_register: Some(Register::Reg2),
                });
                batch.add(&rule, MsgType::Add);
            }
        }
    }
    firewall::add_isolation(&mut batch, &table_obj, isolation)?;
    send(&batch.finalize()).map_err(|e| Error::os(what(), e))
}
