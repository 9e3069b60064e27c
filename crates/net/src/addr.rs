use crate::{Error, Netlink, Result};
use futures::TryStreamExt;
use ipnetwork::IpNetwork;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType};
use rtnetlink::RouteMessageBuilder;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A route of the host's main table, to keep lab subnets away from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoute {
    pub destination: IpNetwork,
    pub dev: Option<String>,
}

impl Netlink {
    /// Adds a route to `destination` through gateway `via`, replacing one to the same
    /// destination (so that re-adding routes after a link comes back is safe).
    pub async fn add_route(&self, destination: IpNetwork, via: IpAddr) -> Result<()> {
        let what = || format!("adding route {destination} via {via}{}", self.place);
        let msg = match (destination, via) {
            (IpNetwork::V4(d), IpAddr::V4(v)) => {
                RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(d.network(), d.prefix()).gateway(v).build()
            }
            (IpNetwork::V6(d), IpAddr::V6(v)) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .destination_prefix(d.network(), d.prefix())
                .gateway(v)
                .build(),
            _ => return Err(Error::invalid(what(), "gateway and destination are of different IP versions")),
        };
        self.handle.route().add(msg).replace().execute().await.map_err(|e| Error::netlink(what(), e))
    }

    /// IPv4 and IPv6 unicast routes of the main table, except default routes and IPv6
    /// link-local ones (fe80::/64 is on every interface).
    pub async fn host_routes(&self) -> Result<Vec<HostRoute>> {
        let links = self.links().await?;
        let mut msgs: Vec<RouteMessage> = Vec::new();
        for query in [RouteMessageBuilder::<Ipv4Addr>::new().build(), RouteMessageBuilder::<Ipv6Addr>::new().build()] {
            let got: Vec<RouteMessage> = self
                .handle
                .route()
                .get(query)
                .execute()
                .try_collect()
                .await
                .map_err(|e| Error::netlink(format!("listing routes{}", self.place), e))?;
            msgs.extend(got);
        }
        let mut out = Vec::new();
        for m in msgs {
            if m.header.table != RouteHeader::RT_TABLE_MAIN
                || m.header.kind != RouteType::Unicast
                || m.header.destination_prefix_length == 0
            {
                continue;
            }
            let mut dst = None;
            let mut dev = None;
            for a in &m.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = Some(IpAddr::V4(*ip)),
                    RouteAttribute::Destination(RouteAddress::Inet6(ip)) if !is_link_local(ip) => {
                        dst = Some(IpAddr::V6(*ip))
                    }
                    RouteAttribute::Oif(i) => dev = links.iter().find(|l| l.index == *i).map(|l| l.name.clone()),
                    _ => {}
                }
            }
            if let Some(Ok(destination)) = dst.map(|d| IpNetwork::new(d, m.header.destination_prefix_length)) {
                out.push(HostRoute { destination, dev });
            }
        }
        Ok(out)
    }
}

fn is_link_local(ip: &Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}
