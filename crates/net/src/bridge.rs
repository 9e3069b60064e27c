use crate::{Error, Netlink, Result};
use ipnetwork::IpNetwork;
use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use netlink_packet_route::link::{BridgeStpState, BridgeVlanInfoFlags};
use rtnetlink::{LinkBridge, LinkBridgeVlan};

/// How a bridge is made, beyond its name and identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgeOptions {
    /// MTU of the bridge itself (its ports get theirs when made); `None`: the kernel's.
    pub mtu: Option<u32>,
    /// It carries no address of the handle's namespace, of either version, and answers no
    /// ARP: a segment the host is not on.
    pub mute: bool,
    /// Frames are switched by VLAN; ports are in VLAN 1, untagged, until told otherwise.
    pub vlan_filtering: bool,
    /// The kernel's spanning tree, with its shortest timers (forward delay 2 s, hello 1 s,
    /// max age 6 s): a port forwards 4 s after it comes up instead of 30.
    pub stp: bool,
}

/// A port's membership of one VLAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortVlan {
    /// The VLAN.
    pub vid: u16,
    /// Untagged frames in are of this VLAN, and its frames go out untagged (an access port);
    /// else they go out tagged (a trunk).
    pub access: bool,
}

impl Netlink {
    /// Creates bridge `name`, up, in link `group`, with a fixed MAC (so that it does not
    /// change as ports come and go) and an alias tying it to its owner. Returns its index.
    /// See [`BridgeOptions`] for the rest.
    pub async fn create_bridge(
        &self,
        name: &str,
        alias: &str,
        mac: [u8; 6],
        group: u32,
        options: BridgeOptions,
    ) -> Result<u32> {
        let BridgeOptions { mtu, mute, .. } = options;
        let mut builder = LinkBridge::new(name).address(mac.to_vec()).link_group(group);
        if options.vlan_filtering {
            builder = builder.vlan_filtering(true);
        }
        if options.stp {
            builder = builder.forward_delay(200).hello_time(100).max_age(600).stp_state(BridgeStpState::KernelStp);
        }
        if !mute {
            builder = builder.up();
        }
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        let msg = builder.build();
        self.handle.link().add(msg).execute().await.map_err(|e| {
            match Error::netlink(format!("creating bridge {name}{}", self.place), e) {
                e if e.errno() == Some(libc::EOPNOTSUPP) && options.vlan_filtering => Error::MissingFeature {
                    what: format!("creating bridge {name}{}", self.place),
                    feature: "VLAN filtering on bridges (CONFIG_BRIDGE_VLAN_FILTERING), which `vlan` and \
                              `vlans` need"
                        .into(),
                },
                e => e,
            }
        })?;
        if mute {
            self.mute(name).await?;
            self.configure(name, Some(alias), true).await?;
        } else {
            self.set_alias(name, alias).await?;
        }
        self.index(name).await
    }

    /// Makes bridge port `port` (index `index`) a member of `vlans` only (`bridge vlan`): out
    /// of VLAN 1, which every port starts in, then in each of `vlans`.
    pub async fn set_port_vlans(&self, index: u32, port: &str, vlans: &[PortVlan]) -> Result<()> {
        let place = |what: &str| format!("{what} VLANs of bridge port {port}{}", self.place);
        let default = LinkBridgeVlan::new(index).vlan(1, BridgeVlanInfoFlags::empty()).build();
        self.handle
            .link()
            .del_with_message(default)
            .execute()
            .await
            .map_err(|e| Error::netlink(place("clearing the"), e))?;
        let mut msg = LinkBridgeVlan::new(index);
        for v in vlans {
            let flags = if v.access {
                BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged
            } else {
                BridgeVlanInfoFlags::empty()
            };
            msg = msg.vlan(v.vid, flags);
        }
        self.handle.link().set(msg.build()).execute().await.map_err(|e| Error::netlink(place("setting the"), e))
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
