use crate::{Error, Result};
use futures::TryStreamExt;
use netlink_packet_route::link::{AfSpecInet6, AfSpecUnspec, In6AddrGenMode, LinkAttribute, LinkFlags, LinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, AsyncSocket, TokioSocket};
use nix::sched::CloneFlags;
use rtnetlink::LinkUnspec;
use std::os::fd::{AsFd, OwnedFd};

/// An rtnetlink connection bound to one network namespace.
#[derive(Clone)]
pub struct Netlink {
    pub(crate) handle: rtnetlink::Handle,
    /// " in <namespace>" for messages, empty for the host.
    pub(crate) place: String,
}

/// What `ip link` shows of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub alias: Option<String>,
    /// Link group (`ip link ... group N`); 0 is the default.
    pub group: u32,
    pub up: bool,
}

impl Netlink {
    /// A connection in the caller's network namespace. Needs a tokio runtime.
    pub fn host() -> Result<Netlink> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| Error::os("opening a netlink socket", e))?;
        tokio::spawn(conn);
        Ok(Netlink { handle, place: String::new() })
    }

    /// A connection inside the network namespace `netns` (a file from /proc/PID/ns/net or
    /// /run/netns). `label` names the namespace in error messages.
    pub async fn in_netns(netns: &impl AsFd, label: &str) -> Result<Netlink> {
        Netlink::in_netns_with(netns, label, || Ok(())).await
    }

    /// Like [`Netlink::in_netns`], running `setup` first on the same thread, inside the
    /// namespace (writing its /proc/sys/net, say): one thread and one setns for both.
    pub async fn in_netns_with(
        netns: &impl AsFd,
        label: &str,
        setup: impl FnOnce() -> Result<()> + Send + 'static,
    ) -> Result<Netlink> {
        let place = format!(" in {label}");
        let fd: OwnedFd = netns
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::os(format!("duplicating the namespace fd of {label}"), e))?;
        let rt = tokio::runtime::Handle::current();
        let (tx, rx) = tokio::sync::oneshot::channel();
        // setns only changes the calling thread: do it on a thread of our own that ends
        // right after opening the socket, never on a runtime worker.
        let what = format!("opening a netlink socket{place}");
        let thread_what = what.clone();
        std::thread::spawn(move || {
            let socket = nix::sched::setns(&fd, CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::os(thread_what.clone(), e.into()))
                .and_then(|()| setup())
                .and_then(|()| {
                    let _rt = rt.enter();
                    TokioSocket::new(NETLINK_ROUTE).map_err(|e| Error::os(thread_what, e))
                });
            let _ = tx.send(socket);
        });
        let socket = rx.await.map_err(|_| Error::Thread { what })??;
        let (conn, handle, _) = rtnetlink::from_socket(socket);
        tokio::spawn(conn);
        Ok(Netlink { handle, place })
    }

    /// Every interface of the namespace.
    pub async fn links(&self) -> Result<Vec<LinkInfo>> {
        let msgs: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::netlink(format!("listing interfaces{}", self.place), e))?;
        Ok(msgs.iter().map(link_info).collect())
    }

    /// The interface called `name`, or `None`.
    pub async fn link(&self, name: &str) -> Result<Option<LinkInfo>> {
        let res: std::result::Result<Vec<LinkMessage>, _> =
            self.handle.link().get().match_name(name.to_string()).execute().try_collect().await;
        match res.map_err(|e| Error::netlink(format!("looking up interface {name}{}", self.place), e)) {
            Ok(msgs) => Ok(msgs.first().map(link_info)),
            Err(e) if e.is_gone() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Index of the interface `name`; an error if it does not exist.
    pub async fn index(&self, name: &str) -> Result<u32> {
        match self.link(name).await? {
            Some(l) => Ok(l.index),
            None => Err(Error::os(
                format!("looking up interface {name}{}", self.place),
                std::io::Error::from_raw_os_error(libc::ENODEV),
            )),
        }
    }

    /// Brings interface `index` up (`ip link set ... up`).
    pub async fn set_up(&self, index: u32, name: &str) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("bringing up {name}{}", self.place), e))
    }

    /// Takes interface `index` down (`ip link set ... down`).
    pub async fn set_down(&self, index: u32, name: &str) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).down().build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("taking down {name}{}", self.place), e))
    }

    /// Sets the alias (`ip link set NAME alias ...`). The kernel ignores an alias given when a
    /// link is created, so this is always its own request.
    pub async fn set_alias(&self, name: &str, alias: &str) -> Result<()> {
        let msg = LinkUnspec::new_with_name(name).alias(alias).build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("setting the alias of {name}{}", self.place), e))
    }

    /// Sets the alias of `name` (if given) and brings it up with ARP off, in one request: for
    /// an interface the handle's namespace must answer nothing through (see [`Netlink::mute`]).
    pub async fn configure(&self, name: &str, alias: Option<&str>, up_without_arp: bool) -> Result<()> {
        let mut msg = LinkUnspec::new_with_name(name);
        if let Some(alias) = alias {
            msg = msg.alias(alias);
        }
        if up_without_arp {
            msg = msg.arp(false).up();
        }
        self.handle
            .link()
            .set(msg.build())
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("configuring {name}{}", self.place), e))
    }

    /// No IPv6 address on interface `name`, not even a link-local one, so nothing is
    /// solicited or answered through it (IFLA_INET6_ADDR_GEN_MODE none). The kernel makes the
    /// link-local address when the interface comes up: call this while it is down.
    pub async fn mute(&self, name: &str) -> Result<()> {
        if !std::path::Path::new("/proc/sys/net/ipv6").exists() {
            return Ok(());
        }
        let mut msg = LinkUnspec::new_with_name(name).build();
        msg.attributes.push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
            In6AddrGenMode::None,
        )])]));
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("turning IPv6 addresses off on {name}{}", self.place), e))
    }

    /// Deletes every interface in link group `group` in one request: the kernel unregisters
    /// them as one batch (one RCU grace period instead of one each). None left is success.
    pub async fn delete_group(&self, group: u32) -> Result<()> {
        let mut msg = LinkUnspec::new_with_index(0).build();
        msg.attributes.push(LinkAttribute::Group(group));
        let r = self.handle.link().del_with_message(msg).execute().await;
        gone_is_ok(
            r.map_err(|e| Error::netlink(format!("deleting the interfaces of link group {group}{}", self.place), e)),
        )
    }

    /// Deletes interface `name` (for a veth, both ends). Already gone is success.
    pub async fn delete_link(&self, name: &str) -> Result<()> {
        let msg = LinkUnspec::new_with_name(name).build();
        let r = self.handle.link().del_with_message(msg).execute().await;
        gone_is_ok(r.map_err(|e| Error::netlink(format!("deleting interface {name}{}", self.place), e)))
    }
}

/// Teardown's rule: an object that is already gone counts as removed.
fn gone_is_ok(r: Result<()>) -> Result<()> {
    match r {
        Err(e) if e.is_gone() => Ok(()),
        r => r,
    }
}

fn link_info(m: &LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: m.header.index,
        name: String::new(),
        alias: None,
        group: 0,
        up: m.header.flags.contains(LinkFlags::Up),
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => info.name = n.clone(),
            LinkAttribute::IfAlias(a) => info.alias = Some(a.clone()),
            LinkAttribute::Group(g) => info.group = *g,
            _ => {}
        }
    }
    info
}
