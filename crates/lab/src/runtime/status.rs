//! What is up and how it is doing: `lab ps`, `lab stats`, and pausing nodes.

use super::exec::find_node;
use crate::state::{all_states, LabDir, LabState};
use crate::topology::Name;
use crate::Error;
use crate::NodeRef;
use lab_sandbox::cgroup::{self, Cgroups, Stats};
use lab_sandbox::{ExitStatus, NodeSpec};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A lab as `lab ps` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LabStatus {
    /// The lab's name.
    pub name: String,
    /// The topology file it came from.
    pub topology: PathBuf,
    /// `up` finished (false while coming up, or if `up` was killed).
    pub complete: bool,
    /// Its nodes, in file order.
    pub nodes: Vec<NodeStatus>,
}

/// A node as `lab ps` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// The node's name.
    pub name: String,
    /// Whether it runs, and how it ended.
    pub state: NodeState,
    /// The init's pid on the host, while it runs.
    pub pid: Option<i32>,
    /// `eth0=10.42.0.2/24` and so on.
    pub addresses: Vec<String>,
    /// Processes of the node the OOM killer killed (its memory limit was reached).
    pub oom_kills: u64,
    /// The node command's output, with timestamps.
    pub log: PathBuf,
}

/// Whether a node runs, and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "status")]
pub enum NodeState {
    /// Its init runs.
    Running,
    /// Frozen by `lab pause`.
    Paused,
    /// Being brought up (`lab up` or `lab start` has not finished with it).
    Starting,
    /// Stopped with `lab stop`.
    Stopped,
    /// Its init ended, with this status.
    Exited(ExitStatus),
    /// Not running, and no record of how it ended.
    Gone,
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeState::Running => f.write_str("running"),
            NodeState::Paused => f.write_str("paused"),
            NodeState::Starting => f.write_str("starting"),
            NodeState::Stopped => f.write_str("stopped"),
            NodeState::Exited(s) => write!(f, "exited ({s})"),
            NodeState::Gone => f.write_str("gone"),
        }
    }
}

/// Every lab with state, and its nodes.
pub fn list() -> Vec<LabStatus> {
    let cgroups = cgroup::detect().ok();
    all_states()
        .into_iter()
        .map(|(name, state)| match state {
            Some(s) => status(&LabDir::new(&name), &s, cgroups.as_deref()),
            None => LabStatus { name: name.to_string(), topology: PathBuf::new(), complete: false, nodes: Vec::new() },
        })
        .collect()
}

fn status(dir: &LabDir, state: &LabState, cgroups: Option<&dyn Cgroups>) -> LabStatus {
    let nodes = state
        .plan
        .nodes
        .iter()
        .map(|n| {
            let procs = state.node(n.name.as_str());
            let alive = procs.is_some_and(|p| p.init.is_alive());
            let frozen = alive && cgroups.is_some_and(|c| c.frozen(&n.cgroup));
            let exit =
                NodeSpec::load(&dir.node_dir(n.name.as_str()).join("spec.json")).ok().and_then(|s| s.exit_status());
            let stopped = state.runtime.stopped.contains(n.name.as_str());
            let node_state = match (alive, exit, procs) {
                _ if stopped => NodeState::Stopped,
                (true, _, _) if frozen => NodeState::Paused,
                (true, _, _) => NodeState::Running,
                (false, Some(e), _) => NodeState::Exited(e),
                (false, None, None) if !state.complete => NodeState::Starting,
                _ => NodeState::Gone,
            };
            NodeStatus {
                name: n.name.to_string(),
                state: node_state,
                pid: procs.filter(|_| alive).map(|p| p.init.pid),
                addresses: n
                    .interfaces
                    .iter()
                    .flat_map(|i| i.addresses.iter().map(move |a| format!("{}={a}", i.name)))
                    .collect(),
                oom_kills: cgroups.and_then(|c| c.stats(&n.cgroup).ok()).map_or(0, |s| s.oom_kills),
                log: dir.node_dir(n.name.as_str()).join("log"),
            }
        })
        .collect();
    LabStatus { name: state.plan.lab.to_string(), topology: state.topology.clone(), complete: state.complete, nodes }
}

/// What one node uses, as `lab stats` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStats {
    /// The lab.
    pub lab: String,
    /// The node.
    pub node: String,
    /// CPU use over the measurement, in percent of one CPU.
    pub cpu_percent: f64,
    /// Memory, pids, I/O of its cgroup.
    #[serde(flatten)]
    pub usage: Stats,
}

/// Resource use of every node (of `lab`, or just `node`), with CPU use measured over `window`.
pub fn stats(lab: Option<&Name>, node: Option<&str>, window: Duration) -> Result<Vec<NodeStats>, Error> {
    let cgroups = cgroup::detect()?;
    let mut targets: Vec<(String, String, String)> = Vec::new();
    match node {
        Some(node) => {
            let (lab, state) = find_node(lab, node)?;
            let plan = state.plan.node(node).expect("find_node checked the node");
            targets.push((lab.to_string(), node.to_string(), plan.cgroup.clone()));
        }
        None => {
            let states = all_states().into_iter().filter(|(n, _)| lab.is_none_or(|l| l == n));
            for (_, state) in states {
                let Some(state) = state else { continue };
                for n in &state.plan.nodes {
                    targets.push((state.plan.lab.to_string(), n.name.to_string(), n.cgroup.clone()));
                }
            }
            if let (Some(l), true) = (lab, targets.is_empty()) {
                return Err(Error::LabNotUp(l.clone()));
            }
        }
    }
    let sample = |path: &str| cgroups.stats(path).unwrap_or_default();
    let before: Vec<Stats> = targets.iter().map(|(_, _, c)| sample(c)).collect();
    let start = Instant::now();
    // CPU use is a rate: it needs a window, and nothing signals its end.
    std::thread::sleep(window);
    let elapsed = start.elapsed().as_micros().max(1) as f64;
    Ok(targets
        .into_iter()
        .zip(before)
        .map(|((lab, node, cgroup), b)| {
            let usage = sample(&cgroup);
            let cpu_percent = usage.cpu_usec.saturating_sub(b.cpu_usec) as f64 * 100.0 / elapsed;
            NodeStats { lab, node, cpu_percent, usage }
        })
        .collect())
}

/// Freezes (`lab pause`) or thaws (`lab resume`) every process of a node.
pub fn pause(lab: Option<&Name>, node: &str, frozen: bool) -> Result<(), Error> {
    let (lab, state) = find_node(lab, node)?;
    let running = state.node(node).is_some_and(|p| p.init.is_alive());
    if !running {
        return Err(Error::NotRunning(NodeRef::new(&lab, node)));
    }
    let plan = state.plan.node(node).expect("find_node checked the node");
    cgroup::detect()?.freeze(&plan.cgroup, frozen).map_err(|e| Error::node(node, e))
}
