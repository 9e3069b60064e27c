//! Applying plans to the machine. Here `up` and `down`; beside them `up` (building the
//! nodes), `resources` (what a lab made: recorded, found, removed), `status` (`ps`, `stats`,
//! `pause`), `exec`, `logs`, `faults` (carried out on the host side by `hostside`),
//! `lifecycle` (`stop`, `start`) and `capture`.

mod capture;
mod check;
mod copy;
mod exec;
mod facts;
mod faults;
mod gateway;
mod host;
mod hostside;
mod images;
mod lifecycle;
mod locked;
mod logs;
mod modules;
mod resources;
mod services;
mod shape;
mod status;
mod up;
mod which;

pub use capture::{capture, CaptureRequest};
pub use check::{check, junit, CheckResult};
pub use copy::{copy, parse_place, Copied, Place};
pub use exec::{exec, find_node, runnable, CommandExit, ExecRequest};
pub use faults::{heal, heal_partition, impair, partition, set_link};
pub use images::{image_import, image_list, image_prune, image_pull, image_remove, ImageRow};
pub use lifecycle::{start, stop};
pub use logs::{logs, since, LogRequest};
pub use resources::DownReport;
pub use services::{wait_until_healthy, Health, Progress, ProgressFn};
pub use shape::*;
pub use status::{inspect, list, pause, stats};
pub use which::{down_target, lab_name_from_arg, topology_file, DownTarget};

use crate::plan::{self, Plan};
use crate::state::{lab_names, Journal, LabDir, LabState, Lock};
use crate::topology::{Name, Rootfs, Topology};
use crate::Error;
use lab_net::Netlink;
use lab_sandbox::cgroup::{self, Cgroups};
use lab_sandbox::SealedExe;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to bring labs up.
#[derive(Clone)]
pub struct Options {
    /// The `lab` binary that nodes' monitors and inits run from (a sealed copy of it), and
    /// that health checks and hooks run as `lab exec`.
    pub lab_binary: PathBuf,
    /// `lab up --wait`: return only once every node with a health check is healthy.
    pub wait: bool,
    /// Told what bring-up waits for (dependencies, health checks) as it happens.
    pub progress: Option<ProgressFn>,
    /// Roll back on SIGINT and SIGTERM during bring-up (the CLI's `lab up`). Handlers stay
    /// installed for the rest of the process, so a library leaves this off: its caller's
    /// signals are its caller's.
    pub catch_signals: bool,
    /// Record this process as the lab's owner: once the process is gone, the lab is an
    /// orphan, which `lab down --orphans` (and the Rust API's next `up`) takes down.
    pub owned: bool,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("lab_binary", &self.lab_binary)
            .field("wait", &self.wait)
            .field("progress", &self.progress.is_some())
            .field("catch_signals", &self.catch_signals)
            .field("owned", &self.owned)
            .finish()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lab_binary: PathBuf::from("/proc/self/exe"),
            wait: false,
            progress: None,
            catch_signals: false,
            owned: false,
        }
    }
}

/// The cgroup setup lab found on this machine, as `lab version` says it.
pub fn cgroup_setup() -> String {
    match cgroup::detect() {
        Ok(c) => match c.version() {
            cgroup::Version::V1 => "v1 controllers (legacy or hybrid)".into(),
            cgroup::Version::V2 => "v2 (unified)".into(),
        },
        Err(e) => format!("none usable: {e}"),
    }
}

/// Fails with [`Error::NotRoot`] unless this process runs as root.
pub fn ensure_root() -> Result<(), Error> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(Error::NotRoot)
    }
}

/// A lab just brought up: its state, and its status as read before anyone else could change
/// it (what `lab up` prints).
#[derive(Debug, Clone)]
pub struct Up {
    /// What `exec`, `ps` and `down` will read.
    pub state: LabState,
    /// What `lab ps` would show for it.
    pub status: LabStatus,
}

/// Brings a lab up, or leaves the host as it was and says why not. A `lab down` of the same
/// lab during bring-up rolls back too, and so do Ctrl-C (SIGINT) and SIGTERM if
/// [`Options::catch_signals`].
pub async fn up(topology: &Topology, options: &Options) -> Result<Up, Error> {
    ensure_root()?;
    let profiles = preflight(topology)?;
    // Images the store lacks, before anything is made (and before signals are caught: a
    // pull stopped by Ctrl-C leaves nothing in the store that looks complete).
    images::pull_missing(topology, options.progress.as_ref()).await?;
    // Caught from before anything is made: a signal at any point means roll back.
    let mut interrupts = Interrupts::catch(options.catch_signals)?;
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
        let mut facts = facts::gather(&host, &topology.name).await?;
        facts.images = facts::images(topology)?;
        let plan = Plan::new(topology, &facts)?;
        check_ports(&plan)?;
        let filters = up::Filters::compile(&plan.nodes, &profiles)?;
        dir.create()?;
        let lock = dir.lock()?;
        let me = lab_sandbox::ProcessRef::of(std::process::id() as i32)
            .ok()
            .and_then(|p| serde_json::to_vec(&p).ok())
            .unwrap_or_default();
        if options.owned {
            let written = std::fs::write(dir.owner_path(), &me);
            if let Err(e) = written.map_err(|e| Error::Io(format!("writing {}", dir.owner_path().display()), e)) {
                let _ = dir.remove();
                return Err(e);
            }
        }
        // Who is bringing it up: a `lab down` meanwhile leaves word, which we watch for (see
        // `lock_for_down`).
        if let Err(e) = interrupts.watch(&dir) {
            let _ = dir.remove();
            return Err(e);
        }
        let _ = std::fs::write(dir.coming_up_path(), me);
        let source = std::path::absolute(&topology.source.path).unwrap_or_else(|_| topology.source.path.clone());
        let state = LabState {
            plan,
            topology: std::fs::canonicalize(&source).unwrap_or(source),
            complete: false,
            nodes: Vec::new(),
            runtime: Default::default(),
            warnings: Vec::new(),
            created: Some(lab_sandbox::monitor::timestamp(std::time::SystemTime::now())),
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
        progress: options.progress.as_ref(),
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
            let _ = std::fs::remove_file(dir.coming_up_path());
            let status = status::of(&dir, &state, Some(cgroups.as_ref()));
            Ok(Up { state, status })
        }
        Err(e) => {
            let e = match e {
                Error::Interrupted if dir.taken_down_path().exists() => Error::TakenDown(topology.name.clone()),
                // The node's log goes with the lab: what it said last comes with the error.
                e => logs::with_log(&dir, e),
            };
            if let Err(rollback) =
                remove(&topology.name, &dir, &host, cgroups.as_ref(), None, Some(Duration::ZERO), None).await
            {
                return Err(Error::UndoFailed { cause: Box::new(e), what: "rolling back", undo: Box::new(rollback) });
            }
            Err(Error::RolledBack(Box::new(e)))
        }
    }
}

/// What stops a bring-up: word from a `lab down` of the same lab (inotify on the lab's
/// directory), and SIGINT or SIGTERM if caught (held, not acted on by the default handler,
/// while registered).
struct Interrupts {
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
    taken_down: Option<(lab_sandbox::watch::DirWatch, PathBuf)>,
}

impl Interrupts {
    fn catch(signals: bool) -> Result<Interrupts, Error> {
        use tokio::signal::unix::{signal, SignalKind};
        let catch = |kind| signal(kind).map_err(|e| Error::Io("catching SIGINT and SIGTERM".into(), e));
        let signals =
            if signals { Some((catch(SignalKind::interrupt())?, catch(SignalKind::terminate())?)) } else { None };
        Ok(Interrupts { signals, taken_down: None })
    }

    /// Watches `dir` for a `lab down`'s word (before anyone can know to leave it).
    fn watch(&mut self, dir: &LabDir) -> Result<(), Error> {
        self.taken_down = Some((lab_sandbox::watch::DirWatch::new(dir.path())?, dir.taken_down_path()));
        Ok(())
    }

    /// Returns once a caught signal has arrived, or a `lab down` has left word, since `catch`.
    async fn wait(&mut self) {
        let signals = async {
            match self.signals.as_mut() {
                Some((int, term)) => tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                },
                None => std::future::pending().await,
            }
        };
        let taken_down = async {
            match self.taken_down.as_ref().map(|(w, path)| w.exists(path)) {
                Some(wait) => {
                    if let Err(e) = wait.await {
                        tracing::warn!("{e}: a lab down meanwhile will wait for the bring-up to end");
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = signals => {}
            () = taken_down => {}
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
        for m in node.mounts_of(&topology.name) {
            if !m.source.exists() {
                return Err(at(format!("mount source {} does not exist on this host", m.source.display())));
            }
        }
        if let Some(f) = node.files.as_ref().map(|f| node.fill(f, &topology.name)) {
            if !f.is_dir() {
                return Err(at(format!("files: {} is not a directory on this host", f.display())));
            }
        }
        for f in node.startup.iter().map(|f| node.fill(f, &topology.name)) {
            if !f.is_file() {
                return Err(at(format!("startup: {} is not a file on this host", f.display())));
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
/// file it made. Safe to repeat, and works after a crash or with its state deleted. Each
/// node's command gets its stop signal and `timeout` (else its own `stop_timeout`) to end,
/// all nodes at once, before everything left is killed.
pub async fn down(name: &Name, timeout: Option<Duration>, keep_volumes: bool) -> Result<DownReport, Error> {
    ensure_root()?;
    let dir = LabDir::new(name);
    // A lab without a directory may be one `lab up` is about to make: the global lock keeps
    // it from starting while we look for leftovers of that name.
    let global = Lock::global()?;
    let (lock, global) = if dir.exists() {
        drop(global);
        (Some(lock_for_down(&dir)?), None)
    } else {
        (None, Some(global))
    };
    let host = Netlink::host()?;
    let cgroups = cgroup::detect()?;
    let mut report = remove(name, &dir, &host, cgroups.as_ref(), global, timeout, Some(!keep_volumes)).await?;
    report.stopped_up = lock.is_some_and(|(_, stopped)| stopped);
    Ok(report)
}

/// The lab's lock, for `down`. A `lab up` still bringing the lab up is told to stop: it rolls
/// back, fails saying the lab was taken down, and lets go of the lock. Says whether it did.
fn lock_for_down(dir: &LabDir) -> Result<(Lock, bool), Error> {
    if let Some(lock) = dir.try_lock()? {
        return Ok((lock, false));
    }
    let mut stopped = false;
    let up = std::fs::read(dir.coming_up_path())
        .ok()
        .and_then(|b| serde_json::from_slice::<lab_sandbox::ProcessRef>(&b).ok());
    if up.is_some_and(|p| p.is_alive()) {
        // It watches its lab's directory for this file (no signal: the process may be a
        // program using the library, whose signals are its own).
        tracing::info!("a lab up is bringing the lab up: stopping it");
        std::fs::write(dir.taken_down_path(), b"")
            .map_err(|e| Error::Io(format!("writing {}", dir.taken_down_path().display()), e))?;
        stopped = true;
    }
    Ok((dir.lock()?, stopped))
}

/// Removes what lab `name` made; `global` is the global lock if the caller holds it. Its
/// volumes: all, none, or (`None`) those the journal says `up` made (see `with_volumes`).
async fn remove(
    name: &Name,
    dir: &LabDir,
    host: &Netlink,
    cgroups: &dyn Cgroups,
    global: Option<Lock>,
    timeout: Option<Duration>,
    volumes: Option<bool>,
) -> Result<DownReport, Error> {
    let found =
        resources::Found::collect(name, dir, host, cgroups).await?.with_timeout(timeout).with_volumes(name, volumes);
    let (report, errors) = found.remove(host, cgroups).await;
    if !errors.is_empty() {
        return Err(Error::Several(errors));
    }
    dir.remove()?;
    let _global = match global {
        Some(g) => g,
        None => Lock::global()?,
    };
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

/// Takes down every lab whose owner (the program that brought it up through the Rust API)
/// is gone: killed, crashed, or ended without taking it down. Labs without an owner (the
/// CLI's) and those whose owner still runs are left alone.
pub async fn down_orphans(timeout: Option<Duration>) -> Result<Vec<(Name, DownReport)>, Error> {
    ensure_root()?;
    let orphans = lab_names().into_iter().filter(|name| LabDir::new(name).owner().is_some_and(|o| !o.is_alive()));
    down_each(orphans.collect(), timeout, false).await
}

/// Takes every lab down.
pub async fn down_all(timeout: Option<Duration>, keep_volumes: bool) -> Result<Vec<(Name, DownReport)>, Error> {
    ensure_root()?;
    down_each(known_labs().await?, timeout, keep_volumes).await
}

/// Takes `labs` down, one after the other, going on after a failure.
async fn down_each(
    labs: Vec<Name>,
    timeout: Option<Duration>,
    keep_volumes: bool,
) -> Result<Vec<(Name, DownReport)>, Error> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for name in labs {
        match down(&name, timeout, keep_volumes).await {
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

/// The plan of `arg` and what was changed since it came up: the lab of that name if it is
/// up, else the plan a topology file would get on an empty machine (`lab graph` of a lab not
/// yet up), with no changes.
pub fn plan_of(arg: &str) -> Result<(Plan, Option<crate::state::RuntimeChanges>), Error> {
    let name = lab_name_from_arg(arg)?;
    if let Some(state) = LabDir::new(&name).read_state()? {
        return Ok((state.plan, Some(state.runtime)));
    }
    let path = Path::new(arg);
    if arg.ends_with(".toml") || path.is_file() {
        let facts = plan::Facts { images_unresolved: true, ..plan::Facts::default() };
        return Ok((Plan::new(&Topology::load(path)?, &facts)?, None));
    }
    Err(Error::Usage(format!("lab {name} is not up, and {arg} is not a topology file")))
}
