use crate::{Error, Netlink, Result};
use ipnetwork::IpNetwork;
use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::LinkBridge;

impl Netlink {
    /// Creates bridge `name`, up, in link `group`, with a fixed MAC (so that it does not
    /// change as ports come and go) and an alias tying it to its owner. Returns its index.
    /// `mtu`, when given, is set on the bridge itself (its ports get theirs when made). A
    /// `mute` bridge carries no address of the handle's namespace, of either version, and
    /// answers no ARP: a segment the host is not on.
    pub async fn create_bridge(
        &self,
        name: &str,
        alias: &str,
        mac: [u8; 6],
        group: u32,
        mtu: Option<u32>,
        mute: bool,
    ) -> Result<u32> {
        let mut builder = LinkBridge::new(name).address(mac.to_vec()).link_group(group);
        if !mute {
            builder = builder.up();
        }
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        let msg = builder.build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("creating bridge {name}{}", self.place), e))?;
        if mute {
            self.mute(name).await?;
            self.configure(name, Some(alias), true).await?;
        } else {
            self.set_alias(name, alias).await?;
        }
        self.index(name).await
    }

    /// Adds `address` to interface `index` (`ip addr add`). IPv6 addresses skip duplicate
    /// address detection (`nodad`): the plan made them unique, and DAD would hold them
    /// unusable for a second or more after the link comes up.
    pub async fn add_address(&self, index: u32, ifname: &str, address: IpNetwork) -> Result<()> {
        let mut req = self.handle.address().add(index, address.ip(), address.prefix());
        if address.is_ipv6() {
            req.message_mut().attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        req.execute().await.map_err(|e| {
            let e = Error::netlink(format!("adding address {address} to {ifname}{}", self.place), e);
            if e.errno() == Some(libc::EACCES) && address.is_ipv6() {
                Error::os(
                    format!("adding IPv6 address {address} to {ifname}{}: IPv6 is disabled (net.ipv6.conf.all.disable_ipv6=1)", self.place),
                    std::io::Error::from_raw_os_error(libc::EACCES),
                )
            } else {
                e
            }
        })
    }
}
