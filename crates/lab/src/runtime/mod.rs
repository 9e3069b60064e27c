//! Applying plans to the machine: `up`, `down`, `ps` and `exec`.

mod down;
mod facts;
mod host;
mod up;

pub use down::DownReport;

use crate::plan::Plan;
use crate::state::{all_states, lab_names, Journal, LabDir, LabState, Lock, STATE_ROOT};
use crate::topology::{Name, Rootfs, Topology};
use crate::Error;
use lab_net::Netlink;
use lab_sandbox::cgroup::{self, Cgroups};
use lab_sandbox::{ExitStatus, NodeSpec, SealedExe};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// How to bring labs up.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `lab` binary that nodes' monitors and inits run from (a sealed copy of it).
    pub lab_binary: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options { lab_binary: PathBuf::from("/proc/self/exe") }
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
    preflight(topology)?;
    let exe = SealedExe::of(&options.lab_binary)?;
    let host = Netlink::host()?;
    let cgroups = cgroup::detect()?;
    let dir = LabDir::new(&topology.name);
    let (mut state, _lock) = {
        let _global = Lock::global()?;
        if dir.exists() {
            return Err(Error::AlreadyUp(topology.name.to_string()));
        }
        let facts = facts::gather(&host, &topology.name).await?;
        let plan = Plan::new(topology, &facts)?;
        dir.create()?;
        let lock = dir.lock()?;
        let state = LabState { plan, topology: topology.source.path.clone(), complete: false, nodes: Vec::new() };
        let prepared = dir.write_state(&state).and_then(|()| host::prepare(&state.plan));
        if let Err(e) = prepared {
            let _ = dir.remove();
            return Err(e);
        }
        (state, lock)
    };
    let journal = Journal::open(&dir)?;
    let builder = up::Builder {
        plan: &state.plan,
        dir: &dir,
        journal: &journal,
        host: &host,
        cgroups: cgroups.as_ref(),
        exe: &exe,
    };
    let result = tokio::select! {
        r = builder.run() => r,
        _ = interrupts.wait() => Err(Error::Interrupted),
    };
    match result {
        Ok(nodes) => {
            state.nodes = nodes;
            state.complete = true;
            dir.write_state(&state)?;
            Ok(state)
        }
        Err(e) => {
            if let Err(rollback) = remove(&topology.name, &dir, &host, cgroups.as_ref()).await {
                return Err(Error::Failed(format!("{e}; rolling back also failed: {rollback}")));
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

/// What can be checked before anything is made.
fn preflight(topology: &Topology) -> Result<(), Error> {
    for node in &topology.nodes {
        if let Rootfs::Dir(dir) = &node.rootfs {
            if !dir.is_dir() {
                return Err(Error::node(
                    node.name.as_str(),
                    Error::NotFound(format!("rootfs {} is not a directory on this host", dir.display())),
                ));
            }
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
    let found = down::Found::collect(name, dir, host, cgroups).await?;
    let report = down::teardown(name, dir, found, host, cgroups).await?;
    let _global = Lock::global()?;
    host::restore()?;
    Ok(report)
}

/// Every lab on the machine: those with state, and those only their leftovers name.
pub async fn known_labs() -> Result<Vec<Name>, Error> {
    let mut names: BTreeSet<Name> = lab_names().into_iter().collect();
    let cgroups = cgroup::detect()?;
    names.extend(cgroups.children("lab").iter().filter_map(|n| Name::parse(n).ok()));
    let host = Netlink::host()?;
    for link in host.links().await? {
        let lab = link.alias.as_deref().and_then(|a| a.strip_prefix("lab/")).and_then(|a| a.split('/').next());
        if let Some(Ok(n)) = lab.map(Name::parse) {
            names.insert(n);
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
            Err(e) => errors.push(Error::Failed(format!("lab {name}: {e}"))),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Error::Several(errors))
    }
}

/// A lab as `lab ps` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LabStatus {
    pub name: String,
    pub topology: PathBuf,
    /// `up` finished (false while coming up, or if `up` was killed).
    pub complete: bool,
    pub nodes: Vec<NodeStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub state: NodeState,
    /// The init's pid on the host, while it runs.
    pub pid: Option<i32>,
    /// `eth0=10.42.0.2/24` and so on.
    pub addresses: Vec<String>,
    /// The node command's output, with timestamps.
    pub log: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "status")]
pub enum NodeState {
    Running,
    Starting,
    Exited(ExitStatus),
    /// Not running, and no record of how it ended.
    Gone,
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeState::Running => f.write_str("running"),
            NodeState::Starting => f.write_str("starting"),
            NodeState::Exited(s) => write!(f, "exited ({s})"),
            NodeState::Gone => f.write_str("gone"),
        }
    }
}

/// Every lab with state, and its nodes.
pub fn list() -> Vec<LabStatus> {
    all_states()
        .into_iter()
        .map(|(name, state)| {
            let dir = LabDir::new(&name);
            match state {
                Some(s) => status(&dir, &s),
                None => {
                    LabStatus { name: name.to_string(), topology: PathBuf::new(), complete: false, nodes: Vec::new() }
                }
            }
        })
        .collect()
}

fn status(dir: &LabDir, state: &LabState) -> LabStatus {
    let nodes = state
        .plan
        .nodes
        .iter()
        .map(|n| {
            let procs = state.node(n.name.as_str());
            let alive = procs.is_some_and(|p| p.init.is_alive());
            let exit = read_exit_status(dir, n.name.as_str());
            let node_state = match (alive, exit, procs) {
                (true, _, _) => NodeState::Running,
                (false, Some(e), _) => NodeState::Exited(e),
                (false, None, None) if !state.complete => NodeState::Starting,
                _ => NodeState::Gone,
            };
            NodeStatus {
                name: n.name.to_string(),
                state: node_state,
                pid: procs.filter(|_| alive).map(|p| p.init.pid),
                addresses: n.interfaces.iter().filter_map(|i| i.address.map(|a| format!("{}={a}", i.name))).collect(),
                log: dir.node_dir(n.name.as_str()).join("log"),
            }
        })
        .collect();
    LabStatus { name: state.plan.lab.to_string(), topology: state.topology.clone(), complete: state.complete, nodes }
}

fn read_exit_status(dir: &LabDir, node: &str) -> Option<ExitStatus> {
    let spec = NodeSpec::load(&dir.node_dir(node).join("spec.json")).ok()?;
    spec.exit_status()
}

/// A command to run in a node.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// `None`: the one lab that has a node of that name.
    pub lab: Option<Name>,
    pub node: String,
    pub argv: Vec<String>,
    /// Added to (and overriding) the node's environment.
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    pub tty: bool,
    pub interactive: bool,
}

/// Runs a command in a node; returns its exit code. Must be called from a single-threaded
/// process (no async runtime): it forks and joins the node's namespaces.
pub fn exec(req: &ExecRequest) -> Result<i32, Error> {
    let (lab, state) = find_node(req.lab.as_ref(), &req.node)?;
    let plan = state.plan.node(&req.node).expect("find_node checked the node");
    let procs = state
        .node(&req.node)
        .ok_or_else(|| Error::NotFound(format!("node {} of lab {lab} has not started", req.node)))?;
    let cgroups = cgroup::detect()?;
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), lab_sandbox::init::DEFAULT_PATH.into()),
        ("HOSTNAME".into(), plan.hostname.to_string()),
        ("HOME".into(), "/root".into()),
    ];
    if req.tty {
        env.push(("TERM".into(), std::env::var("TERM").unwrap_or_else(|_| "xterm".into())));
    }
    for (k, v) in plan.env.iter().chain(&req.env) {
        env.retain(|(key, _)| key != k);
        env.push((k.clone(), v.clone()));
    }
    let opts = lab_sandbox::join::ExecOptions {
        argv: req.argv.clone(),
        env,
        cwd: req.workdir.clone().unwrap_or_else(|| "/".into()),
        tty: req.tty,
        interactive: req.interactive,
    };
    lab_sandbox::join::exec(&procs.init, &cgroups.procs_files(&plan.cgroup), &opts).map_err(|e| match e {
        lab_sandbox::Error::NotRunning => Error::NotFound(format!("node {} of lab {lab} is not running", req.node)),
        e => Error::node(&req.node, e),
    })
}

/// The lab holding node `node`: lab `lab` if given, else the only lab that has it.
pub fn find_node(lab: Option<&Name>, node: &str) -> Result<(Name, LabState), Error> {
    let candidates: Vec<(Name, LabState)> = all_states()
        .into_iter()
        .filter(|(n, _)| lab.is_none_or(|l| l == n))
        .filter_map(|(n, s)| s.map(|s| (n, s)))
        .collect();
    if let Some(l) = lab {
        if candidates.is_empty() {
            return Err(Error::NotFound(format!("lab {l} is not up (state in {STATE_ROOT}/{l})")));
        }
    }
    let with_node: Vec<(Name, LabState)> =
        candidates.into_iter().filter(|(_, s)| s.plan.node(node).is_some()).collect();
    match with_node.len() {
        1 => Ok(with_node.into_iter().next().expect("one element")),
        0 => Err(Error::NotFound(match lab {
            Some(l) => format!("lab {l} has no node {node}"),
            None => format!("no lab that is up has a node {node}"),
        })),
        _ => Err(Error::Failed(format!(
            "node {node} is in several labs ({}); say which with --lab",
            with_node.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Reads the lab name from a topology file or takes `arg` as a name: `lab down` accepts both.
pub fn lab_name_from_arg(arg: &str) -> Result<Name, Error> {
    let path = Path::new(arg);
    if arg.ends_with(".toml") || path.is_file() {
        return Ok(Topology::load(path)?.name);
    }
    Name::parse(arg).map_err(Error::NotFound)
}
