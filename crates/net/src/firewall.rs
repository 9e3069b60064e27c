//! Filtering on the host, where nothing in a node can reach it: the chains of a lab's own
//! table that keep its traffic to itself, and a lab's partitions, which drop what crosses
//! between the bridge ports of the nodes on either side.

use crate::nft::{cstring, match_ifname, send, Family};

pub use crate::nft::delete_table;
use crate::{Error, Result};
use nftnl::expr::ct::{ConntrackStatus, States};
use nftnl::{nft_expr, Batch, Chain, ChainType, Hook, MsgType, Policy, Rule, Table};

/// What a lab's table keeps from crossing the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Isolation {
    /// The lab's NAT bridges: the host forwards what they send to anything but another lab,
    /// and forwards to them only replies and forwarded ports.
    pub nat_bridges: Vec<String>,
    /// The lab's other bridges: the host forwards nothing from or to them, and answers
    /// nothing that arrives on them.
    pub plain_bridges: Vec<String>,
    /// The lab's host-side interfaces that are nothing of the host's (wire ends), as names or
    /// `prefix*` patterns: treated as plain bridges.
    pub sealed: Vec<String>,
    /// Every lab's interfaces, as `prefix*` patterns, that one lab's NAT bridges must not
    /// reach through the host.
    pub other_labs: Vec<String>,
    /// Every lab's host-side interfaces, as `prefix*` patterns: nothing arriving on them is
    /// port-forwarded (on a host with br_netfilter, frames bridged within another lab's
    /// bridge pass the host's NAT hooks, arriving on its ports).
    pub lab_interfaces: Vec<String>,
}

impl Isolation {
    pub fn is_empty(&self) -> bool {
        self.nat_bridges.is_empty() && self.plain_bridges.is_empty() && self.sealed.is_empty()
    }
}

/// A rule of `chain`: `iifname`/`oifname` matches, then `verdict` (`accept`/`drop`), with
/// whatever `extra` adds between them.
fn rule<'a>(
    chain: &'a Chain<'a>,
    iif: Option<&str>,
    oif: Option<(&str, bool)>,
    extra: impl FnOnce(&mut Rule),
    accept: bool,
) -> Result<Rule<'a>> {
    let mut r = Rule::new(chain);
    if let Some(i) = iif {
        match_ifname(&mut r, true, i, true)?;
    }
    if let Some((o, equal)) = oif {
        match_ifname(&mut r, false, o, equal)?;
    }
    extra(&mut r);
    if accept {
        r.add_expr(&nft_expr!(verdict accept));
    } else {
        r.add_expr(&nft_expr!(verdict drop));
    }
    Ok(r)
}

/// Adds a forward and an input chain to the lab's table in `batch`.
pub(crate) fn add_isolation(batch: &mut Batch, table: &Table, iso: &Isolation) -> Result<()> {
    if iso.is_empty() {
        return Ok(());
    }
    let base = |name: &'static std::ffi::CStr, hook| {
        let mut c = Chain::new(name, table);
        c.set_type(ChainType::Filter);
        c.set_hook(hook, 0);
        c.set_policy(Policy::Accept);
        c
    };
    let forward = base(c"forward", Hook::Forward);
    batch.add(&forward, MsgType::Add);
    let input = base(c"input", Hook::In);
    batch.add(&input, MsgType::Add);
    let bridges = iso.nat_bridges.iter().chain(&iso.plain_bridges);
    let sealed: Vec<&String> = iso.plain_bridges.iter().chain(&iso.sealed).collect();
    let mut rules = Vec::new();
    // Within one bridge (seen here on hosts with br_netfilter): its own business.
    for b in bridges {
        rules.push(rule(&forward, Some(b), Some((b, true)), |_| {}, true)?);
    }
    for s in &sealed {
        rules.push(rule(&forward, Some(s), None, |_| {}, false)?);
        rules.push(rule(&forward, None, Some((s, true)), |_| {}, false)?);
    }
    for b in &iso.nat_bridges {
        for other in &iso.other_labs {
            rules.push(rule(&forward, Some(b), Some((other, true)), |_| {}, false)?);
        }
        let established = |r: &mut Rule| {
            r.add_expr(&nft_expr!(ct state));
            let mask = (States::ESTABLISHED | States::RELATED).bits();
            r.add_expr(&nft_expr!(bitwise mask mask, xor 0u32));
            r.add_expr(&nft_expr!(cmp != 0u32));
        };
        rules.push(rule(&forward, None, Some((b, true)), established, true)?);
        let dnat = |r: &mut Rule| {
            r.add_expr(&nft_expr!(ct status));
            let mask = ConntrackStatus::DST_NAT.bits();
            r.add_expr(&nft_expr!(bitwise mask mask, xor 0u32));
            r.add_expr(&nft_expr!(cmp != 0u32));
        };
        rules.push(rule(&forward, None, Some((b, true)), dnat, true)?);
        rules.push(rule(&forward, None, Some((b, true)), |_| {}, false)?);
    }
    for s in &sealed {
        rules.push(rule(&input, Some(s), None, |_| {}, false)?);
    }
    for r in &rules {
        batch.add(r, MsgType::Add);
    }
    Ok(())
}

/// Replaces table `bridge <table>` with one that drops every frame bridged between an
/// interface of `pairs[i].0` and one of `pairs[i].1`, both ways; no pairs: no table.
pub fn set_partitions(table: &str, pairs: &[(Vec<String>, Vec<String>)]) -> Result<()> {
    let what = || format!("setting nftables table bridge {table}");
    if pairs.iter().all(|(a, b)| a.is_empty() || b.is_empty()) {
        return crate::nft::delete_table(Family::Bridge, table);
    }
    let name = cstring(table, what)?;
    let table_obj = Table::new(&name, Family::Bridge.proto());
    let mut batch = Batch::new();
    // Add then delete then add: one transaction that replaces whatever was there.
    batch.add(&table_obj, MsgType::Add);
    batch.add(&table_obj, MsgType::Del);
    batch.add(&table_obj, MsgType::Add);
    let mut chain = Chain::new(c"forward", &table_obj);
    chain.set_type(ChainType::Filter);
    chain.set_hook(Hook::Forward, 0);
    chain.set_policy(Policy::Accept);
    batch.add(&chain, MsgType::Add);
    let mut rules = Vec::new();
    for (side_a, side_b) in pairs {
        for a in side_a {
            for b in side_b {
                rules.push(rule(&chain, Some(a), Some((b, true)), |_| {}, false)?);
                rules.push(rule(&chain, Some(b), Some((a, true)), |_| {}, false)?);
            }
        }
    }
    for r in &rules {
        batch.add(r, MsgType::Add);
    }
    send(&batch.finalize()).map_err(|e| Error::os(what(), e))
}
