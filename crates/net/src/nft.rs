//! What every nftables table of lab's needs: sending a batch, listing and deleting tables,
//! and matching packets by address or interface name.

use crate::{Error, Result};
use ipnetwork::IpNetwork;
use nftnl::expr::InterfaceName;
use nftnl::{nft_expr, Batch, FinalizedBatch, MsgType, ProtoFamily, Rule, Table};
use std::collections::HashSet;
use std::ffi::CString;
use std::io;

/// The families of lab's tables: `inet` (NAT, isolation) and `bridge` (partitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Inet,
    Bridge,
}

impl Family {
    pub(crate) fn proto(self) -> ProtoFamily {
        match self {
            Family::Inet => ProtoFamily::Inet,
            Family::Bridge => ProtoFamily::Bridge,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Bridge => "bridge",
        }
    }
}

/// Deletes table `<family> <table>` and everything in it. Already gone is success.
pub fn delete_table(family: Family, table: &str) -> Result<()> {
    let what = || format!("deleting nftables table {} {table}", family.name());
    let name = cstring(table, what)?;
    let mut batch = Batch::new();
    batch.add(&Table::new(&name, family.proto()), MsgType::Del);
    match send(&batch.finalize()) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(Error::os(what(), e)),
    }
}

/// Names of every nftables table on the host, of any family.
pub fn tables() -> Result<Vec<String>> {
    // A dump that another process's change interrupted (NLM_F_DUMP_INTR, which libmnl reports
    // as EINTR) is simply asked for again: the answer is only right once it was not.
    let mut tries = 0;
    loop {
        match dump_tables() {
            Err(e) if e.errno() == Some(libc::EINTR) && tries < 20 => tries += 1,
            r => return r,
        }
    }
}

fn dump_tables() -> Result<Vec<String>> {
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

pub(crate) fn cstring(s: &str, what: impl Fn() -> String) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(what(), format!("{s:?} contains a NUL byte")))
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

/// An interface name to match: exactly, or, ending in `*`, by its beginning.
pub(crate) fn ifname(pattern: &str, what: impl Fn() -> String) -> Result<InterfaceName> {
    Ok(match pattern.strip_suffix('*') {
        Some(prefix) => InterfaceName::StartingWith(cstring(prefix, what)?),
        None => InterfaceName::Exact(cstring(pattern, what)?),
    })
}

/// Matches packets coming in on (`input`) or going out of interface `pattern` (see
/// [`ifname`]); `equal: false` matches every other interface.
pub(crate) fn match_ifname(rule: &mut Rule, input: bool, pattern: &str, equal: bool) -> Result<()> {
    let name = ifname(pattern, || format!("matching interface {pattern}"))?;
    if input {
        rule.add_expr(&nft_expr!(meta iifname));
    } else {
        rule.add_expr(&nft_expr!(meta oifname));
    }
    if equal {
        rule.add_expr(&nft_expr!(cmp == name));
    } else {
        rule.add_expr(&nft_expr!(cmp != name));
    }
    Ok(())
}

/// Matches packets whose source address is in `subnet`.
pub(crate) fn match_source(rule: &mut Rule, subnet: IpNetwork) {
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
