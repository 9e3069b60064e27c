//! `lab exec`: running a command in a node, and finding the node.

use crate::state::{lab_names, LabDir, LabState};
use crate::topology::Name;
use crate::Error;
use crate::NodeRef;
use lab_sandbox::cgroup;
use lab_sandbox::join::JoinRequest;
use lab_sandbox::NodeSpec;

/// A command to run in a node.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// `None`: the one lab that has a node of that name.
    pub lab: Option<Name>,
    /// The node.
    pub node: String,
    /// The command and its arguments.
    pub argv: Vec<String>,
    /// Added to (and overriding) the node's environment.
    pub env: Vec<(String, String)>,
    /// Working directory (else the node's).
    pub workdir: Option<String>,
    /// A pseudo-terminal for the command (`-t`).
    pub tty: bool,
    /// Standard input passed to the command (`-i`).
    pub interactive: bool,
    /// Who to run as (`-u`), `uid[:gid]` or `name[:group]`; `None`: the node's `user`, as
    /// `docker exec` does (its root if it has none).
    pub user: Option<String>,
    /// Kill the command (and its process group) once it has run this long.
    pub timeout: Option<std::time::Duration>,
}

/// How a command run by [`exec`] ended (its code, the signal that killed it, whether it
/// started at all and whether its timeout killed it).
pub use lab_sandbox::join::Exit as CommandExit;

/// A node that can run a command now: in a lab that is up, running, not stopped or paused.
/// Returns the lab and its state.
pub fn runnable(lab: Option<&Name>, node: &str) -> Result<(Name, LabState), Error> {
    checked(lab, node).map(|(lab, state, _)| (lab, state))
}

/// [`runnable`], with the cgroup setup it looked at.
fn checked(lab: Option<&Name>, node: &str) -> Result<(Name, LabState, Box<dyn cgroup::Cgroups>), Error> {
    let (lab, state) = find_node(lab, node)?;
    let plan = state.plan.node(node).ok_or_else(|| Error::NoSuchNode { lab: Some(lab.clone()), node: node.into() })?;
    if state.runtime.stopped.contains(node) {
        return Err(Error::Stopped(NodeRef::new(&lab, node)));
    }
    if state.node(node).is_none() {
        return Err(Error::NotRunning(NodeRef::new(&lab, node)));
    }
    let cgroups = cgroup::detect()?;
    if cgroups.frozen(&plan.cgroup) {
        return Err(Error::Paused(NodeRef::new(&lab, node)));
    }
    Ok((lab, state, cgroups))
}

/// Runs a command in a node; says how it ended. Must be called from a single-threaded
/// process (no async runtime): it forks and joins the node's namespaces.
pub fn exec(req: &ExecRequest) -> Result<CommandExit, Error> {
    let (lab, state, cgroups) = checked(req.lab.as_ref(), &req.node)?;
    let plan = state
        .plan
        .node(&req.node)
        .ok_or_else(|| Error::NoSuchNode { lab: Some(lab.clone()), node: req.node.clone() })?;
    let procs = state.node(&req.node).ok_or_else(|| Error::NotRunning(NodeRef::new(&lab, &req.node)))?;
    // The node's environment (HOME comes from its root's passwd entry, in the node).
    let mut env = plan.env.clone();
    if req.tty {
        env.push(("TERM".into(), std::env::var("TERM").unwrap_or_else(|_| "xterm".into())));
    }
    for (k, v) in &req.env {
        env.retain(|(key, _)| key != k);
        env.push((k.clone(), v.clone()));
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
        user: req.user.clone().or_else(|| plan.service.user.clone()),
    };
    lab_sandbox::join::exec(&join, req.timeout).map_err(|e| match e {
        lab_sandbox::Error::NotRunning => Error::NotRunning(NodeRef::new(&lab, &req.node)),
        e => Error::node(&req.node, e),
    })
}

/// The lab holding node `node`: lab `lab` if given, else the only lab that has it.
pub fn find_node(lab: Option<&Name>, node: &str) -> Result<(Name, LabState), Error> {
    // Only the lab named is read, if one is: `lab exec --lab` parses one state file.
    let candidates: Vec<(Name, LabState)> = lab_names()
        .into_iter()
        .filter(|n| lab.is_none_or(|l| l == n))
        .filter_map(|n| LabDir::new(&n).read_state().ok().flatten().map(|s| (n, s)))
        .collect();
    if let Some(l) = lab {
        if candidates.is_empty() {
            return Err(Error::LabNotUp(l.clone()));
        }
    }
    let with_node: Vec<(Name, LabState)> =
        candidates.into_iter().filter(|(_, s)| s.plan.node(node).is_some()).collect();
    match with_node.len() {
        1 => Ok(with_node.into_iter().next().expect("one element")),
        0 => Err(Error::NoSuchNode { lab: lab.cloned(), node: node.to_string() }),
        _ => {
            Err(Error::AmbiguousNode { node: node.to_string(), labs: with_node.into_iter().map(|(n, _)| n).collect() })
        }
    }
}
