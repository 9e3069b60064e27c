use crate::{Error, Netlink, Result};
use ipnetwork::IpNetwork;
use rtnetlink::LinkBridge;

impl Netlink {
    /// Creates bridge `name`, up, in link `group`, with a fixed MAC (so that it does not
    /// change as ports come and go) and an alias tying it to its owner. Returns its index.
    pub async fn create_bridge(&self, name: &str, alias: &str, mac: [u8; 6], group: u32) -> Result<u32> {
        let msg = LinkBridge::new(name).address(mac.to_vec()).link_group(group).up().build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("creating bridge {name}{}", self.place), e))?;
        self.set_alias(name, alias).await?;
        self.index(name).await
    }

    /// Adds `address` to interface `index` (`ip addr add`).
    pub async fn add_address(&self, index: u32, ifname: &str, address: IpNetwork) -> Result<()> {
        let req = self.handle.address().add(index, address.ip(), address.prefix());
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
