//! Loading kernel modules the way the kernel does it for root: by asking for what they
//! provide. Where the kernel (or a security module) does not load modules for requests from
//! inside a user namespace, `ip link add ... type dummy`, a netem qdisc or an nftables rule
//! with `ct state` would fail inside a node. lab, root on the host, asks for each kind once,
//! in a scratch network namespace that goes away with its thread: a request for a kind the
//! kernel does not know loads the module that provides it (and is refused afterwards for its
//! missing parameters, which does not matter here).

use crate::{Error, Netlink, Result};
use futures::StreamExt;
use netlink_packet_core::{NetlinkMessage, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionMessage, TcActionMessageAttribute, TcAttribute, TcHandle, TcMessage,
};
use netlink_packet_route::RouteNetlinkMessage;
use nftnl::{Batch, Chain, ChainType, Hook, MsgType, Policy, ProtoFamily, Rule, Table};

/// What to have the kernel load, by the names it knows them by.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kinds<'a> {
    /// Interface kinds (`ip link add ... type KIND`): dummy, vlan, vxlan, bond, gre ...
    pub links: &'a [&'a str],
    /// Queueing disciplines: netem, htb, tbf ...
    pub qdiscs: &'a [&'a str],
    /// tc classifiers: u32, flower, matchall ...
    pub classifiers: &'a [&'a str],
    /// tc actions: mirred, gact, police ...
    pub actions: &'a [&'a str],
    /// nftables expressions: ct, nat, masq, reject, limit, log ...
    pub nft_expressions: &'a [&'a str],
}

/// Asks the kernel, from a scratch network namespace, for every kind in `kinds` that a module
/// of this kernel provides and that is not loaded yet (by the kernel's own module index, so
/// that nothing is asked for twice: each request for a missing kind runs modprobe). Kinds it
/// cannot provide are not an error: a node that needs one finds out itself. Returns the
/// modules it asked for.
pub fn autoload(kinds: Kinds<'_>) -> Result<Vec<String>> {
    let Some(index) = ModuleIndex::read() else { return Ok(Vec::new()) };
    let mut asked = Vec::new();
    let mut pick = |names: &[&str], module: &dyn Fn(&str) -> Option<String>| -> Vec<String> {
        let mut out = Vec::new();
        for name in names {
            if let Some(m) = module(name).filter(|m| index.loadable(m)) {
                asked.push(m);
                out.push(name.to_string());
            }
        }
        out
    };
    let owned = OwnedKinds {
        links: pick(kinds.links, &|k| index.alias(&format!("rtnl-link-{k}"))),
        qdiscs: pick(kinds.qdiscs, &|k| Some(format!("sch_{k}"))),
        classifiers: pick(kinds.classifiers, &|k| Some(format!("cls_{k}"))),
        actions: pick(kinds.actions, &|k| Some(format!("act_{k}"))),
        nft_expressions: pick(kinds.nft_expressions, &|k| {
            index.alias(&format!("nft-expr-1-{k}")).or_else(|| index.alias(&format!("nft-expr-{k}")))
        }),
    };
    if asked.is_empty() {
        return Ok(asked);
    }
    ask_in_scratch_namespace(owned)?;
    Ok(asked)
}

/// The kernel's module index (modules.alias and modules.builtin under /lib/modules) and what
/// is loaded (/sys/module).
struct ModuleIndex {
    aliases: std::collections::HashMap<String, String>,
    builtin: std::collections::HashSet<String>,
    available: std::collections::HashSet<String>,
}

impl ModuleIndex {
    /// `None` when this kernel has no loadable modules (no index for it).
    fn read() -> Option<ModuleIndex> {
        let release = nix::sys::utsname::uname().ok()?.release().to_string_lossy().into_owned();
        let dir = std::path::Path::new("/lib/modules").join(release);
        let alias_text = std::fs::read_to_string(dir.join("modules.alias")).ok()?;
        let aliases = alias_text
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                match (w.next(), w.next(), w.next()) {
                    (Some("alias"), Some(a), Some(m)) => Some((a.to_string(), normal(m))),
                    _ => None,
                }
            })
            .collect();
        let names = |file: &str| -> std::collections::HashSet<String> {
            std::fs::read_to_string(dir.join(file))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split(':').next())
                .filter_map(|p| p.rsplit('/').next())
                .map(|f| normal(f.split('.').next().unwrap_or(f)))
                .collect()
        };
        Some(ModuleIndex { aliases, builtin: names("modules.builtin"), available: names("modules.dep") })
    }

    fn alias(&self, alias: &str) -> Option<String> {
        self.aliases.get(alias).cloned()
    }

    /// A module this kernel has as a file, not built in and not loaded.
    fn loadable(&self, module: &str) -> bool {
        let m = normal(module);
        self.available.contains(&m)
            && !self.builtin.contains(&m)
            && !std::path::Path::new("/sys/module").join(&m).exists()
    }
}

/// Module names use `-` and `_` interchangeably; the kernel shows `_`.
fn normal(name: &str) -> String {
    name.replace('-', "_")
}

fn ask_in_scratch_namespace(owned: OwnedKinds) -> Result<()> {
    std::thread::spawn(move || -> Result<()> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::os("creating a scratch network namespace", e.into()))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::os("starting a runtime for the scratch namespace", e))?;
        rt.block_on(ask(&owned))?;
        for expr in &owned.nft_expressions {
            nft_expression(expr);
        }
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| Err(Error::Thread { what: "loading kernel modules".into() }))
}

struct OwnedKinds {
    links: Vec<String>,
    qdiscs: Vec<String>,
    classifiers: Vec<String>,
    actions: Vec<String>,
    nft_expressions: Vec<String>,
}

async fn ask(kinds: &OwnedKinds) -> Result<()> {
    let nl = Netlink::host()?;
    for kind in &kinds.links {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName("lab-preload".into()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::from(kind.as_str()))]));
        let _ = nl.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL).await;
        let _ = nl.delete_link("lab-preload").await;
    }
    // Qdiscs, classifiers and actions need an interface: a veth pair of the scratch namespace.
    nl.create_veth(crate::VethEnd::new("lab-preload0"), crate::VethEnd::new("lab-preload1")).await?;
    let index = nl.index("lab-preload0").await? as i32;
    for kind in &kinds.qdiscs {
        let mut msg = TcMessage::with_index(index);
        msg.header.parent = TcHandle::ROOT;
        msg.attributes.push(TcAttribute::Kind(kind.clone()));
        let _ = nl.request(RouteNetlinkMessage::NewQueueDiscipline(msg), NLM_F_CREATE).await;
    }
    let mut ingress = TcMessage::with_index(index);
    ingress.header.parent = TcHandle::INGRESS;
    ingress.header.handle = TcHandle { major: 0xffff, minor: 0 };
    ingress.attributes.push(TcAttribute::Kind("ingress".into()));
    let _ = nl.request(RouteNetlinkMessage::NewQueueDiscipline(ingress), NLM_F_CREATE).await;
    for kind in &kinds.classifiers {
        let mut msg = TcMessage::with_index(index);
        msg.header.parent = TcHandle { major: 0xffff, minor: 0 };
        // Priority 1, every protocol (ETH_P_ALL, in network order).
        msg.header.info = (1 << 16) | u32::from(0x0003u16.to_be());
        msg.attributes.push(TcAttribute::Kind(kind.clone()));
        let _ = nl.request(RouteNetlinkMessage::NewTrafficFilter(msg), NLM_F_CREATE).await;
    }
    for kind in &kinds.actions {
        let mut action = TcAction::default();
        action.attributes.push(TcActionAttribute::Kind(kind.clone()));
        let mut msg = TcActionMessage::default();
        msg.attributes.push(TcActionMessageAttribute::Actions(vec![action]));
        let _ = nl.request(RouteNetlinkMessage::NewTrafficAction(msg), NLM_F_CREATE).await;
    }
    Ok(())
}

/// An expression of kind `name` without its attributes, in a rule of a scratch table: the
/// kernel loads the module providing it, then refuses the rule.
fn nft_expression(name: &str) {
    let Ok(cname) = std::ffi::CString::new(name) else { return };
    let table = Table::new(c"lab-preload", ProtoFamily::Inet);
    let mut batch = Batch::new();
    batch.add(&table, MsgType::Add);
    let mut chain = Chain::new(c"preload", &table);
    // A nat chain, for the masquerade, redirect and nat expressions (and nft_chain_nat).
    if ["masq", "redir", "nat"].contains(&name) {
        chain.set_type(ChainType::Nat);
        chain.set_hook(Hook::PostRouting, 100);
    } else {
        chain.set_type(ChainType::Filter);
        chain.set_hook(Hook::In, 0);
    }
    chain.set_policy(Policy::Accept);
    batch.add(&chain, MsgType::Add);
    let mut rule = Rule::new(&chain);
    rule.add_expr(&crate::ffi::Named(cname));
    batch.add(&rule, MsgType::Add);
    let _ = crate::nft::send(&batch.finalize());
}

impl Netlink {
    /// Sends `msg` and waits for its acknowledgement; the errno on failure.
    pub(crate) async fn request(&self, msg: RouteNetlinkMessage, flags: u16) -> std::result::Result<(), i32> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        let mut handle = self.handle.clone();
        let mut response = handle.request(req).map_err(|_| libc::EIO)?;
        while let Some(m) = response.next().await {
            if let netlink_packet_core::NetlinkPayload::Error(e) = m.payload {
                if let Some(code) = e.code {
                    return Err(-code.get());
                }
            }
        }
        Ok(())
    }
}
