//! Applying plans to the machine. Here `up` and `down`; beside them `up` (building the
//! nodes), `resources` (what a lab made: recorded, found, removed), `status` (`ps`, `stats`,
//! `pause`), `exec`, `logs`, `faults` (carried out on the host side by `hostside`),
//! `lifecycle` (`stop`, `start`) and `capture`.

mod capture;
mod exec;
mod facts;
mod faults;
mod host;
mod hostside;
mod lifecycle;
mod locked;
mod logs;
mod modules;
mod resources;
mod services;
mod status;
mod up;

pub use capture::capture;
pub use exec::{exec, find_node, ExecRequest};
pub use faults::{heal, impair, partition, set_link};
pub use lifecycle::{start, stop};
pub use logs::{logs, LogRequest};
pub use resources::DownReport;
pub use status::{list, pause, stats, LabStatus, NodeState, NodeStats, NodeStatus};

use crate::plan::{self, Plan};
use crate::state::{lab_names, Journal, LabDir, LabState, Lock};
use crate::topology::{Name, Rootfs, Topology};
use crate::Error;
use lab_net::Netlink;
use lab_sandbox::cgroup::{self, Cgroups};
use lab_sandbox::SealedExe;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// How to bring labs up.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `lab` binary that nodes' monitors and inits run from (a sealed copy of it), and
    /// that health checks and hooks run as `lab exec`.
    pub lab_binary: PathBuf,
    /// `lab up --wait`: return only once every node with a health check is healthy.
    pub wait: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { lab_binary: PathBuf::from("/proc/self/exe"), wait: false }
    }
}

fn ensure_root() -> Result<(), Error> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(Error::NotRoot)
    }
}

/// Brings a lab up, or leaves the host as it was and says why not. Ctrl-C (SIGINT) and
/// SIGTERM during bring-up roll back too.
pub async fn up(topology: &Topology, options: &Options) -> Result<LabState, Error> {
    ensure_root()?;
    // Caught from before anything is made: a signal at any point means roll back.
    let mut interrupts = Interrupts::catch()?;
    let profiles = preflight(topology)?;
    // On a thread of its own meanwhile: the modules nodes may need, which they cannot load.
    let preloading = tokio::task::spawn_blocking(modules::preload);
    let exe = SealedExe::of(&options.lab_binary)?;
    let host = Netlink::host()?;
    let cgroups = cgroup::detect()?;
    let dir = LabDir::new(&topology.name);
    let (mut state, _lock, filters) = {
        let _global = Lock::global()?;
        if dir.exists() {
            return Err(Error::AlreadyUp(topology.name.to_string()));
        }
        let facts = facts::gather(&host, &topology.name).await?;
        let plan = Plan::new(topology, &facts)?;
        check_ports(&plan)?;
        let filters = up::Filters::compile(&plan.nodes, &profiles)?;
        dir.create()?;
        let lock = dir.lock()?;
        let state = LabState {
            plan,
            topology: topology.source.path.clone(),
            complete: false,
            nodes: Vec::new(),
            runtime: Default::default(),
            warnings: Vec::new(),
        };
        let prepared = dir.write_state(&state).and_then(|()| host::prepare(&state.plan));
        if let Err(e) = prepared {
            let _ = dir.remove();
            return Err(e);
        }
        (state, lock, filters)
    };
    // Best effort: a node that needs a module the kernel could not load says so itself.
    match preloading.await {
        Ok(Err(e)) => tracing::warn!("loading kernel modules for the nodes: {e}"),
        Err(e) => tracing::warn!("loading kernel modules for the nodes: {e}"),
        Ok(Ok(())) => {}
    }
    let journal = Journal::open(&dir)?;
    let builder = up::Builder {
        plan: &state.plan,
        dir: &dir,
        journal: &journal,
        host: &host,
        cgroups: cgroups.as_ref(),
        exe: &exe,
        filters: &filters,
        lab_binary: &options.lab_binary,
        wait: options.wait,
        warnings: Default::default(),
    };
    let result = tokio::select! {
        r = builder.run() => r,
        _ = interrupts.wait() => Err(Error::Interrupted),
    };
    match result {
        Ok(nodes) => {
            state.nodes = nodes;
            state.warnings = builder.warnings();
            state.complete = true;
            dir.write_state(&state)?;
            Ok(state)
        }
        Err(e) => {
            if let Err(rollback) = remove(&topology.name, &dir, &host, cgroups.as_ref()).await {
                return Err(Error::UndoFailed { cause: Box::new(e), what: "rolling back", undo: Box::new(rollback) });
            }
            Err(e)
        }
    }
}

/// SIGINT and SIGTERM, held (not acted on by the default handler) while registered.
struct Interrupts {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Interrupts {
    fn catch() -> Result<Interrupts, Error> {
        use tokio::signal::unix::{signal, SignalKind};
        let catch = |kind| signal(kind).map_err(|e| Error::Io("catching SIGINT and SIGTERM".into(), e));
        Ok(Interrupts { int: catch(SignalKind::interrupt())?, term: catch(SignalKind::terminate())? })
    }

    /// Returns once either signal has arrived since `catch`.
    async fn wait(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

/// What can be checked before anything is made: rootfs directories and mount sources exist,
/// seccomp profiles load. Returns the profiles, read once.
fn preflight(topology: &Topology) -> Result<up::Profiles, Error> {
    let mut profiles = up::Profiles::new();
    for node in &topology.nodes {
        let at = |m: String| Error::node(node.name.as_str(), Error::Missing(m));
        if let Rootfs::Dir(dir) = &node.rootfs {
            if !dir.is_dir() {
                return Err(at(format!("rootfs {} is not a directory on this host", dir.display())));
            }
        }
        for m in &node.mounts {
            if !m.source.exists() {
                return Err(at(format!("mount source {} does not exist on this host", m.source.display())));
            }
        }
        up::load_profile(&mut profiles, node.name.as_str(), &node.security.seccomp)?;
    }
    Ok(profiles)
}

/// Fails if a host port the lab forwards is in use by a process on the host: forwarding it
/// would take its connections away.
fn check_ports(plan: &Plan) -> Result<(), Error> {
    use crate::topology::Protocol;
    for p in &plan.ports {
        let any = std::net::Ipv4Addr::UNSPECIFIED;
        let bound = match p.protocol {
            Protocol::Tcp => std::net::TcpListener::bind((any, p.host_port)).map(drop),
            Protocol::Udp => std::net::UdpSocket::bind((any, p.host_port)).map(drop),
        };
        if let Err(e) = bound {
            let why = if e.kind() == std::io::ErrorKind::AddrInUse {
                "a process on the host listens on it".to_string()
            } else {
                e.to_string()
            };
            return Err(Error::node(p.node.as_str(), Error::PortBusy { port: p.host_port, protocol: p.protocol, why }));
        }
    }
    Ok(())
}

/// Takes lab `name` down: every process, interface, nft table, namespace name, cgroup and
/// file it made. Safe to repeat, and works after a crash or with its state deleted.
pub async fn down(name: &Name) -> Result<DownReport, Error> {
    ensure_root()?;
    let dir = LabDir::new(name);
    let _lock = if dir.exists() { Some(dir.lock()?) } else { None };
    let host = Netlink::host()?;
    let cgroups = cgroup::detect()?;
    remove(name, &dir, &host, cgroups.as_ref()).await
}

async fn remove(name: &Name, dir: &LabDir, host: &Netlink, cgroups: &dyn Cgroups) -> Result<DownReport, Error> {
    let found = resources::Found::collect(name, dir, host, cgroups).await?;
    let (report, errors) = found.remove(host, cgroups).await;
    if !errors.is_empty() {
        return Err(Error::Several(errors));
    }
    dir.remove()?;
    let _global = Lock::global()?;
    host::restore()?;
    Ok(report)
}

/// Every lab on the machine: those with state, and those only their leftovers name.
pub async fn known_labs() -> Result<Vec<Name>, Error> {
    let mut names: BTreeSet<Name> = lab_names().into_iter().collect();
    let cgroups = cgroup::detect()?;
    names.extend(cgroups.children(crate::identity::CGROUP_ROOT).iter().filter_map(|n| Name::parse(n).ok()));
    let host = Netlink::host()?;
    for link in host.links().await? {
        if let Some((lab, _)) = link.alias.as_deref().and_then(crate::identity::parse_alias) {
            names.insert(lab);
        }
    }
    Ok(names.into_iter().collect())
}

/// Takes every lab down.
pub async fn down_all() -> Result<Vec<(Name, DownReport)>, Error> {
    ensure_root()?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for name in known_labs().await? {
        match down(&name).await {
            Ok(r) => out.push((name, r)),
            Err(e) => errors.push(Error::InLab { lab: name, source: Box::new(e) }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Error::Several(errors))
    }
}

/// The plan of `arg`: the lab of that name if it is up, else the plan a topology file would
/// get on an empty machine (`lab graph` of a lab not yet up).
pub fn plan_of(arg: &str) -> Result<Plan, Error> {
    let name = lab_name_from_arg(arg)?;
    if let Some(state) = LabDir::new(&name).read_state()? {
        return Ok(state.plan);
    }
    let path = Path::new(arg);
    if arg.ends_with(".toml") || path.is_file() {
        return Ok(Plan::new(&Topology::load(path)?, &plan::Facts::default())?);
    }
    Err(Error::Usage(format!("lab {name} is not up, and {arg} is not a topology file")))
}

/// Reads the lab name from a topology file or takes `arg` as a name: `lab down` accepts both.
pub fn lab_name_from_arg(arg: &str) -> Result<Name, Error> {
    let path = Path::new(arg);
    if arg.ends_with(".toml") || path.is_file() {
        return Ok(Topology::load(path)?.name);
    }
    Name::parse(arg).map_err(Error::Usage)
}
