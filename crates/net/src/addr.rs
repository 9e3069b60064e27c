use crate::{Error, Netlink, Result};
use futures::TryStreamExt;
use ipnetwork::IpNetwork;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType};
use rtnetlink::RouteMessageBuilder;
use std::net::{IpAddr, Ipv4Addr};

/// A route of the host's main table, to keep lab subnets away from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoute {
    pub destination: IpNetwork,
    pub dev: Option<String>,
}

impl Netlink {
    /// Adds a route to `destination` through gateway `via`.
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
            _ => {
                return Err(Error::Netlink {
                    what: what(),
                    message: "gateway and destination are of different IP versions".into(),
                })
            }
        };
        self.handle.route().add(msg).execute().await.map_err(|e| Error::netlink(what(), e))
    }

    /// IPv4 unicast routes of the main table, except default routes.
    pub async fn host_routes(&self) -> Result<Vec<HostRoute>> {
        let links = self.links().await?;
        let msgs: Vec<RouteMessage> = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::netlink(format!("listing routes{}", self.place), e))?;
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
