//! `lab exec`: running a command in a node, and finding the node.

use crate::state::{all_states, LabDir, LabState, STATE_ROOT};
use crate::topology::Name;
use crate::Error;
use lab_sandbox::cgroup;
use lab_sandbox::join::JoinRequest;
use lab_sandbox::NodeSpec;

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
    if state.runtime.stopped.contains(&req.node) {
        return Err(Error::NotFound(format!(
            "node {} of lab {lab} is stopped; `lab start {}` first",
            req.node, req.node
        )));
    }
    let procs = state
        .node(&req.node)
        .ok_or_else(|| Error::NotFound(format!("node {} of lab {lab} has not started", req.node)))?;
    let cgroups = cgroup::detect()?;
    // The node's environment (HOME comes from its root's passwd entry, in the node).
    let mut env = plan.env.clone();
    if req.tty {
        env.push(("TERM".into(), std::env::var("TERM").unwrap_or_else(|_| "xterm".into())));
    }
    for (k, v) in &req.env {
        env.retain(|(key, _)| key != k);
        env.push((k.clone(), v.clone()));
    }
    if cgroups.frozen(&plan.cgroup) {
        return Err(Error::Failed(format!(
            "node {} of lab {lab} is paused; `lab resume {}` first",
            req.node, req.node
        )));
    }
    // The node's own settings, as its init applied them: the command gets the same.
    let spec_path = LabDir::new(&lab).node_dir(&req.node).join("spec.json");
    let spec = NodeSpec::load(&spec_path)?;
    let join = JoinRequest {
        init: procs.init,
        cgroup_procs: cgroups.procs_files(&plan.cgroup),
        userns: spec.userns.is_some(),
        security: spec.security,
        argv: req.argv.clone(),
        env,
        cwd: req.workdir.clone().or_else(|| plan.service.workdir.clone()).unwrap_or_else(|| "/".into()),
        tty: req.tty,
        interactive: req.interactive,
    };
    lab_sandbox::join::exec(&join).map_err(|e| match e {
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
