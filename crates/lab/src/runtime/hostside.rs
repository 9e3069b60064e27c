//! The host side of nodes' interfaces, where lab carries out what a node must not be able to
//! undo (a node's NET_ADMIN stops at its own namespaces): the wires of point-to-point links,
//! impairments, carrier (`lab link ... down`) and partitions.
//!
//! - A link's two interfaces each have a host end; tc on each host end sends whatever arrives
//!   out of the other (a wire). What interface A sends is shaped by a qdisc on the host end
//!   that delivers it to B; a partition takes the wire away.
//! - A bridged interface's host end is a bridge port. What it sends is shaped by an IFB
//!   device its incoming traffic is diverted through; a partition is a rule of the lab's
//!   `bridge` table that drops frames between the two sides' ports.

use crate::plan::{Attach, InterfacePlan, NodePlan, Plan};
use crate::state::{Journal, Resource, RuntimeChanges};
use crate::topology::Impairment;
use crate::Error;
use lab_net::{firewall, Netlink};
use std::collections::BTreeSet;

pub(super) struct HostSide<'a> {
    pub plan: &'a Plan,
    pub host: &'a Netlink,
}

impl HostSide<'_> {
    fn at(&self, node: usize) -> impl Fn(lab_net::Error) -> Error + '_ {
        move |e| Error::node(self.plan.nodes[node].name.as_str(), e)
    }

    /// Joins the host ends of link `link`, both ways.
    pub async fn wire(&self, link: usize) -> Result<(), Error> {
        let (Some((na, a)), Some((_, b))) = (self.plan.link_end(link, 0), self.plan.link_end(link, 1)) else {
            return Ok(());
        };
        let at = self.at(na);
        let (ia, ib) =
            (self.host.index(a.host_veth()).await.map_err(&at)?, self.host.index(b.host_veth()).await.map_err(&at)?);
        self.host.redirect(ia, a.host_veth(), ib).await.map_err(&at)?;
        self.host.redirect(ib, b.host_veth(), ia).await.map_err(&at)
    }

    /// Takes link `link`'s wire away: nothing crosses it (what arrives on a host end goes to
    /// the host, which drops it). Host ends that are gone are fine.
    pub async fn unwire(&self, link: usize) -> Result<(), Error> {
        for end in 0..2 {
            let Some((n, iface)) = self.plan.link_end(link, end) else { continue };
            if let Some(l) = self.host.link(iface.host_veth()).await.map_err(self.at(n))? {
                self.host.clear_ingress(l.index, iface.host_veth()).await.map_err(self.at(n))?;
            }
        }
        Ok(())
    }

    /// Sets what interface `iface` of node `node` sends to be impaired as `imp` (an empty one
    /// clears it). `journal` records an IFB device before it is made.
    pub async fn impair(
        &self,
        node: usize,
        iface: &InterfacePlan,
        imp: &Impairment,
        journal: &Journal,
    ) -> Result<(), Error> {
        let at = self.at(node);
        match &iface.attach {
            Attach::Link { .. } => {
                let Some((peer, peer_iface)) = self.plan.link_peer(node, iface) else { return Ok(()) };
                // The peer's host end sends to the peer what this interface sent.
                let index = self.host.index(peer_iface.host_veth()).await.map_err(self.at(peer))?;
                self.host.impair(index, peer_iface.host_veth(), imp).await.map_err(at)
            }
            Attach::Bridge { host_veth, .. } => {
                let ifb = iface.ifb().expect("a bridged interface has an IFB name");
                let port = self.host.index(host_veth).await.map_err(&at)?;
                if imp.is_empty() {
                    self.host.clear_ingress(port, host_veth).await.map_err(&at)?;
                    return self.host.delete_link(&ifb).await.map_err(at);
                }
                let index = match self.host.link(&ifb).await.map_err(&at)? {
                    Some(l) => l.index,
                    None => {
                        journal.record(&[Resource::Veth { name: ifb.clone() }])?;
                        let alias = crate::identity::impair_alias(iface.alias());
                        self.host.create_ifb(&ifb, &alias, self.plan.group).await.map_err(&at)?
                    }
                };
                self.host.impair(index, &ifb, imp).await.map_err(&at)?;
                self.host.redirect(port, host_veth, index).await.map_err(at)
            }
        }
    }

    /// Gives interface `iface` of node `node` its carrier, or takes it away (its host end, and
    /// for a link the peer's too, up or down: a cable plugged in or pulled).
    pub async fn set_carrier(&self, node: usize, iface: &InterfacePlan, up: bool) -> Result<(), Error> {
        let mut ends = vec![(node, iface)];
        ends.extend(self.plan.link_peer(node, iface));
        for (n, i) in ends {
            let Some(l) = self.host.link(i.host_veth()).await.map_err(self.at(n))? else { continue };
            let r = if up {
                self.host.set_up(l.index, i.host_veth()).await
            } else {
                self.host.set_down(l.index, i.host_veth()).await
            };
            r.map_err(self.at(n))?;
        }
        Ok(())
    }

    /// Carries out the lab's partitions: the `bridge` table's rules for bridged interfaces,
    /// and every link between two running nodes wired unless a partition cuts it.
    pub async fn partitions(&self, changes: &RuntimeChanges, running: &BTreeSet<String>) -> Result<(), Error> {
        self.links_of(None, changes, running).await
    }

    /// As [`HostSide::partitions`], for the links of node `node` only (just started).
    pub async fn node_links(
        &self,
        node: usize,
        changes: &RuntimeChanges,
        running: &BTreeSet<String>,
    ) -> Result<(), Error> {
        self.links_of(Some(node), changes, running).await
    }

    async fn links_of(
        &self,
        node: Option<usize>,
        changes: &RuntimeChanges,
        running: &BTreeSet<String>,
    ) -> Result<(), Error> {
        let ports = |side: &BTreeSet<String>| -> Vec<String> {
            side.iter()
                .filter_map(|n| self.plan.node(n))
                .flat_map(|n| &n.interfaces)
                .filter(|i| matches!(i.attach, Attach::Bridge { .. }))
                .map(|i| i.host_veth().to_string())
                .collect()
        };
        let pairs: Vec<(Vec<String>, Vec<String>)> =
            changes.partitions.iter().map(|[a, b]| (ports(a), ports(b))).collect();
        firewall::set_partitions(&self.plan.nft_table, &pairs)?;
        for k in 0..self.plan.links.len() {
            let [(a, _), (b, _)] = &self.plan.links[k].endpoints;
            if node.is_some_and(|n| n != *a && n != *b) {
                continue;
            }
            let (a, b) = (self.plan.nodes[*a].name.as_str(), self.plan.nodes[*b].name.as_str());
            if !running.contains(a) || !running.contains(b) {
                continue;
            }
            if changes.cut(a, b) {
                self.unwire(k).await?;
            } else {
                self.wire(k).await?;
            }
        }
        Ok(())
    }
}

/// The index of `node` in `plan`.
pub(super) fn index_of(plan: &Plan, node: &NodePlan) -> usize {
    plan.nodes.iter().position(|n| n.name == node.name).expect("a node of this plan")
}
