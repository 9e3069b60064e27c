//! NAT and filtering over nf_tables: one `inet` table per lab, so that teardown is one
//! delete and two labs never touch each other's rules. The lab table masquerades outbound
//! traffic and forwards host ports (DNAT); a partition's table lives in a node's own network
//! namespace and drops what crosses the partition.

use crate::{Error, Result};
use ipnetwork::IpNetwork;
use nftnl::expr::{Expression, Immediate, InterfaceName, Nat, NatType, Register};
use nftnl::{nft_expr, Batch, Chain, ChainType, FinalizedBatch, Hook, MsgType, Policy, ProtoFamily, Rule, Table};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};
use std::ffi::CString;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::ptr::NonNull;

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

/// Masquerade traffic from `subnet` that leaves through any interface but `bridge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Masquerade {
    pub subnet: IpNetwork,
    pub bridge: String,
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
/// masqueraded on their way to the node, which could not answer 127.0.0.1.
pub fn create_table(table: &str, masquerades: &[Masquerade], forwards: &[Forward]) -> Result<()> {
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
        let bridge = cstring(&m.bridge, what)?;
        let mut rule = Rule::new(&post);
        match_source(&mut rule, m.subnet);
        rule.add_expr(&nft_expr!(meta oifname));
        rule.add_expr(&nft_expr!(cmp != InterfaceName::Exact(bridge)));
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
                rule.add_expr(&nft_expr!(meta nfproto));
                rule.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV4 as u8));
                rule.add_expr(&FibDaddrLocal);
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
    send(&batch.finalize()).map_err(|e| Error::os(what(), e))
}

/// Replaces table `inet <table>` (in the calling thread's network namespace) with one that
/// drops every packet to or from `addresses`, in and out: a node's side of a partition.
pub fn create_filter(table: &str, addresses: &[IpAddr]) -> Result<()> {
    let what = || format!("creating nftables table inet {table}");
    let name = cstring(table, what)?;
    let table_obj = Table::new(&name, ProtoFamily::Inet);
    let mut batch = Batch::new();
    // Add then delete then add: one transaction that replaces whatever was there.
    batch.add(&table_obj, MsgType::Add);
    batch.add(&table_obj, MsgType::Del);
    batch.add(&table_obj, MsgType::Add);
    for (chain_name, hook, source) in [(c"input", Hook::In, true), (c"output", Hook::Out, false)] {
        let mut chain = Chain::new(chain_name, &table_obj);
        chain.set_type(ChainType::Filter);
        chain.set_hook(hook, 0);
        chain.set_policy(Policy::Accept);
        batch.add(&chain, MsgType::Add);
        for a in addresses {
            let mut rule = Rule::new(&chain);
            match_address(&mut rule, *a, source);
            rule.add_expr(&nft_expr!(verdict drop));
            batch.add(&rule, MsgType::Add);
        }
    }
    send(&batch.finalize()).map_err(|e| Error::os(what(), e))
}

/// Matches packets whose source address is in `subnet`.
fn match_source(rule: &mut Rule, subnet: IpNetwork) {
    rule.add_expr(&nft_expr!(meta nfproto));
    match subnet {
        IpNetwork::V4(s) => {
            rule.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV4 as u8));
            rule.add_expr(&nft_expr!(payload ipv4 saddr));
            rule.add_expr(&nft_expr!(bitwise mask s.mask(), xor 0u32));
            rule.add_expr(&nft_expr!(cmp == s.network()));
        }
        IpNetwork::V6(s) => {
            rule.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV6 as u8));
            rule.add_expr(&nft_expr!(payload ipv6 saddr));
            rule.add_expr(&nft_expr!(bitwise mask s.mask(), xor std::net::Ipv6Addr::UNSPECIFIED));
            rule.add_expr(&nft_expr!(cmp == s.network()));
        }
    }
}

/// Matches packets from (`source`) or to `address`.
fn match_address(rule: &mut Rule, address: IpAddr, source: bool) {
    rule.add_expr(&nft_expr!(meta nfproto));
    match (address, source) {
        (IpAddr::V4(_), true) => {
            rule.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV4 as u8));
            rule.add_expr(&nft_expr!(payload ipv4 saddr));
        }
        (IpAddr::V4(_), false) => {
            rule.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV4 as u8));
            rule.add_expr(&nft_expr!(payload ipv4 daddr));
        }
        (IpAddr::V6(_), true) => {
            rule.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV6 as u8));
            rule.add_expr(&nft_expr!(payload ipv6 saddr));
        }
        (IpAddr::V6(_), false) => {
            rule.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV6 as u8));
            rule.add_expr(&nft_expr!(payload ipv6 daddr));
        }
    }
    rule.add_expr(&nft_expr!(cmp == address));
}

/// `fib daddr type`: the route type of the packet's destination into register 1 (compared
/// with RTN_LOCAL it means "addressed to this host"). The nftnl crate has no fib expression.
struct FibDaddrLocal;

/// NFT_FIB_RESULT_ADDRTYPE and NFTA_FIB_F_DADDR of linux/netfilter/nf_tables.h.
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const NFTA_FIB_F_DADDR: u32 = 1 << 1;

impl Expression for FibDaddrLocal {
    fn to_expr(&self, _rule: &Rule) -> NonNull<nftnl::nftnl_sys::nftnl_expr> {
        use nftnl::nftnl_sys as sys;
        // SAFETY: a fresh expression of libnftnl's, given only u32 attributes it defines.
        unsafe {
            let expr = NonNull::new(sys::nftnl_expr_alloc(c"fib".as_ptr())).expect("libnftnl: out of memory");
            sys::nftnl_expr_set_u32(expr.as_ptr(), sys::NFTNL_EXPR_FIB_DREG as u16, Register::Reg1.to_raw());
            sys::nftnl_expr_set_u32(expr.as_ptr(), sys::NFTNL_EXPR_FIB_RESULT as u16, NFT_FIB_RESULT_ADDRTYPE);
            sys::nftnl_expr_set_u32(expr.as_ptr(), sys::NFTNL_EXPR_FIB_FLAGS as u16, NFTA_FIB_F_DADDR);
            expr
        }
    }
}

/// Deletes table `inet <table>` and everything in it. Already gone is success.
pub fn delete_table(table: &str) -> Result<()> {
    let what = || format!("deleting nftables table inet {table}");
    let name = cstring(table, what)?;
    let mut batch = Batch::new();
    batch.add(&Table::new(&name, ProtoFamily::Inet), MsgType::Del);
    match send(&batch.finalize()) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(Error::os(what(), e)),
    }
}

/// Names of every nftables table on the host, of any family.
pub fn tables() -> Result<Vec<String>> {
    let what = "listing nftables tables";
    let socket = mnl::Socket::new(mnl::Bus::Netfilter).map_err(|e| Error::os(what, e))?;
    let portid = socket.portid();
    let seq = 1;
    socket.send(&nftnl::table::get_tables_nlmsg(seq)).map_err(|e| Error::os(what, e))?;
    let mut names: HashSet<CString> = HashSet::new();
    let mut buffer = vec![0u8; nftnl::nft_nlmsg_maxsize() as usize];
    loop {
        let n = socket.recv_raw(&mut buffer).map_err(|e| Error::os(what, e))?;
        if n == 0 {
            break;
        }
        match mnl::cb_run2(&buffer[..n], seq, portid, nftnl::table::get_tables_cb, &mut names) {
            Ok(mnl::CbResult::Stop) => break,
            Ok(mnl::CbResult::Ok) => {}
            Err(e) => return Err(Error::os(what, e)),
        }
    }
    let mut out: Vec<String> = names.into_iter().map(|n| n.to_string_lossy().into_owned()).collect();
    out.sort();
    Ok(out)
}

fn cstring(s: &str, what: impl Fn() -> String) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Netlink { what: what(), message: format!("{s:?} contains a NUL byte") })
}

/// Sends a batch and checks the kernel's answer to every message in it.
pub(crate) fn send(batch: &FinalizedBatch) -> io::Result<()> {
    let socket = mnl::Socket::new(mnl::Bus::Netfilter)?;
    let portid = socket.portid();
    socket.send_all(batch)?;
    let mut buffer = vec![0u8; nftnl::nft_nlmsg_maxsize() as usize];
    let mut expected = batch.sequence_numbers();
    while !expected.is_empty() {
        for message in socket.recv(&mut buffer[..])? {
            let message = message?;
            let Some(seq) = expected.next() else {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "unexpected nftables acknowledgement"));
            };
            mnl::cb_run(message, seq, portid)?;
        }
    }
    Ok(())
}
