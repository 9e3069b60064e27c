//! NAT over nf_tables: one `inet` table per lab, so that teardown is one delete and two labs
//! never touch each other's rules.

use crate::{Error, Result};
use ipnetwork::IpNetwork;
use nftnl::expr::InterfaceName;
use nftnl::{nft_expr, Batch, Chain, ChainType, FinalizedBatch, Hook, MsgType, Policy, ProtoFamily, Rule, Table};
use std::collections::HashSet;
use std::ffi::CString;
use std::io;

/// Source NAT priority (`srcnat` in nft).
const SRCNAT: i32 = 100;

/// Masquerade traffic from `subnet` that leaves through any interface but `bridge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Masquerade {
    pub subnet: IpNetwork,
    pub bridge: String,
}

/// Creates table `inet <table>` with a postrouting chain that masquerades each network.
pub fn create_table(table: &str, rules: &[Masquerade]) -> Result<()> {
    let what = || format!("creating nftables table inet {table}");
    let name = cstring(table, what)?;
    let table_obj = Table::new(&name, ProtoFamily::Inet);
    let mut batch = Batch::new();
    batch.add(&table_obj, MsgType::Add);
    let mut chain = Chain::new(c"postrouting", &table_obj);
    chain.set_type(ChainType::Nat);
    chain.set_hook(Hook::PostRouting, SRCNAT);
    chain.set_policy(Policy::Accept);
    batch.add(&chain, MsgType::Add);
    for m in rules {
        let IpNetwork::V4(subnet) = m.subnet else {
            return Err(Error::Netlink {
                what: what(),
                message: format!("IPv6 masquerade for {} is not supported", m.subnet),
            });
        };
        let bridge = cstring(&m.bridge, what)?;
        let mut rule = Rule::new(&chain);
        rule.add_expr(&nft_expr!(meta nfproto));
        rule.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV4 as u8));
        rule.add_expr(&nft_expr!(payload ipv4 saddr));
        rule.add_expr(&nft_expr!(bitwise mask subnet.mask(), xor 0u32));
        rule.add_expr(&nft_expr!(cmp == subnet.network()));
        rule.add_expr(&nft_expr!(meta oifname));
        rule.add_expr(&nft_expr!(cmp != InterfaceName::Exact(bridge)));
        rule.add_expr(&nft_expr!(masquerade));
        batch.add(&rule, MsgType::Add);
    }
    send(&batch.finalize()).map_err(|e| Error::os(what(), e))
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
fn send(batch: &FinalizedBatch) -> io::Result<()> {
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
