//! Traffic steered with tc on host-side interfaces, where nothing in a node can reach it:
//! two veth ends joined into a wire (whatever arrives on one leaves through the other, every
//! frame, as a cable would carry it: LACP, STP and LLDP included, which a bridge would eat),
//! and an interface's incoming traffic diverted through an IFB device whose qdisc shapes it.

use crate::{Error, Netlink, Result};
use netlink_packet_route::link::InfoKind;
use netlink_packet_route::tc::{TcHandle, TcMessage};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::{LinkMessageBuilder, LinkUnspec};

/// ETH_P_ALL in network byte order: every protocol.
const ALL_PROTOCOLS: u16 = 0x0003u16.to_be();

impl Netlink {
    /// Sends whatever arrives on interface `from` out of interface `to` (an ingress qdisc on
    /// `from`, a match-all u32 filter with a mirred egress redirect), replacing what `from`
    /// did with its traffic before.
    pub async fn redirect(&self, from: u32, from_name: &str, to: u32) -> Result<()> {
        self.clear_ingress(from, from_name).await?;
        let what = || format!("redirecting what arrives on {from_name}{}", self.place);
        self.handle.qdisc().add(from as i32).ingress().execute().await.map_err(|e| Error::netlink(what(), e))?;
        let filter = self
            .handle
            .traffic_filter(from as i32)
            .add()
            .ingress()
            .priority(1)
            .protocol(ALL_PROTOCOLS)
            .redirect(to)
            .map_err(|e| Error::netlink(what(), e))?;
        filter.execute().await.map_err(|e| Error::netlink(what(), e))
    }

    /// Removes what [`Netlink::redirect`] set on interface `index`: its traffic goes where the
    /// kernel would send it. None is success.
    pub async fn clear_ingress(&self, index: u32, name: &str) -> Result<()> {
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.parent = TcHandle::INGRESS;
        msg.header.handle = TcHandle { major: 0xffff, minor: 0 };
        match self.request(RouteNetlinkMessage::DelQueueDiscipline(msg), 0).await {
            Ok(()) | Err(libc::ENOENT | libc::EINVAL | libc::ENODEV) => Ok(()),
            Err(code) => Err(Error::os(
                format!("clearing the ingress of {name}{}", self.place),
                std::io::Error::from_raw_os_error(code),
            )),
        }
    }

    /// Creates IFB device `name` (up, in link `group`, with an alias), through which an
    /// interface's incoming traffic can be shaped. Returns its index.
    pub async fn create_ifb(&self, name: &str, alias: &str, group: u32) -> Result<u32> {
        let msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Ifb)
            .name(name.to_string())
            .link_group(group)
            .up()
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("creating IFB device {name}{}", self.place), e))?;
        self.set_alias(name, alias).await?;
        self.index(name).await
    }
}
