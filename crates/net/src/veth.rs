use crate::{Error, Netlink, Result};
use netlink_packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth};
use std::os::fd::{AsRawFd, BorrowedFd};

/// One end of a veth pair to create.
#[derive(Debug, Clone, Copy)]
pub struct VethEnd<'a> {
    pub name: &'a str,
    /// The network namespace it is created in; `None` for the handle's own.
    pub netns: Option<BorrowedFd<'a>>,
    /// Interface alias, shown by `ip link`; only for an end in the handle's own namespace.
    pub alias: Option<&'a str>,
    /// Index of a bridge to attach it to (in its namespace).
    pub bridge: Option<u32>,
    /// Link group, so that one request can delete many links at once.
    pub group: Option<u32>,
    pub mtu: Option<u32>,
    /// A fixed MAC address (else the kernel picks a random one).
    pub mac: Option<[u8; 6]>,
    /// Nothing of the handle's namespace answers through this end: no IPv6 (no link-local
    /// address, no router or neighbour solicitations) and no ARP. For host-side ends.
    pub mute: bool,
}

impl<'a> VethEnd<'a> {
    pub fn new(name: &'a str) -> Self {
        VethEnd { name, netns: None, alias: None, bridge: None, group: None, mtu: None, mac: None, mute: false }
    }
}

impl Netlink {
    /// Creates a veth pair, each end directly in its own namespace and, if asked, on its
    /// bridge: one request, no interface ever appears anywhere else. End `a` comes up; end `b`
    /// stays down (the kernel cannot open a veth before its peer is wired, ENOTCONN), for its
    /// namespace's own handle to bring up.
    pub async fn create_veth(&self, a: VethEnd<'_>, b: VethEnd<'_>) -> Result<()> {
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new().name(b.name.to_string());
        if let Some(ns) = b.netns {
            peer = peer.setns_by_fd(ns.as_raw_fd());
        }
        if let Some(bridge) = b.bridge {
            peer = peer.controller(bridge);
        }
        if let Some(group) = b.group {
            peer = peer.link_group(group);
        }
        if let Some(mtu) = b.mtu {
            peer = peer.mtu(mtu);
        }
        if let Some(mac) = b.mac {
            peer = peer.address(mac.to_vec());
        }
        let mut main = LinkVeth::new(a.name, b.name).set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())));
        if !a.mute {
            main = main.up();
        }
        if let Some(ns) = a.netns {
            main = main.setns_by_fd(ns.as_raw_fd());
        }
        if let Some(bridge) = a.bridge {
            main = main.controller(bridge);
        }
        if let Some(group) = a.group {
            main = main.link_group(group);
        }
        if let Some(mtu) = a.mtu {
            main = main.mtu(mtu);
        }
        if let Some(mac) = a.mac {
            main = main.address(mac.to_vec());
        }
        self.handle
            .link()
            .add(main.build())
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("creating veth pair {} <-> {}{}", a.name, b.name, self.place), e))?;
        for end in [a, b] {
            if end.netns.is_some() {
                continue;
            }
            if end.mute {
                // Down until muted: a link-local address would come with up.
                self.mute(end.name).await?;
                self.configure(end.name, end.alias, true).await?;
            } else if let Some(alias) = end.alias {
                self.set_alias(end.name, alias).await?;
            }
        }
        Ok(())
    }
}
