//! A running lab, locked for a change (a fault, a node stopped or started): its state read
//! under the lock, and how to find its nodes and their interfaces.

use super::exec::find_node;
use crate::plan::{InterfacePlan, NodePlan};
use crate::state::{all_states, LabDir, LabState, Lock};
use crate::topology::Name;
use crate::{Error, NodeRef};
use lab_net::netns;
use std::fs::File;

/// A lab locked for a change, with its state as read under the lock.
pub(super) struct Locked {
    pub(super) name: Name,
    pub(super) dir: LabDir,
    _lock: Lock,
    pub(super) state: LabState,
}

impl Locked {
    pub(super) fn take(name: Name) -> Result<Locked, Error> {
        let dir = LabDir::new(&name);
        let lock = dir.lock()?;
        let state = dir.read_state()?.ok_or_else(|| Error::LabNotUp(name.clone()))?;
        Ok(Locked { name, dir, _lock: lock, state })
    }

    /// The lab holding `node` (lab `lab` if given), locked.
    pub(super) fn of_node(lab: Option<&Name>, node: &str) -> Result<Locked, Error> {
        Locked::take(find_node(lab, node)?.0)
    }

    pub(super) fn node(&self, node: &str) -> Result<&NodePlan, Error> {
        self.state
            .plan
            .node(node)
            .ok_or_else(|| Error::NoSuchNode { lab: Some(self.name.clone()), node: node.to_string() })
    }

    /// Node `node`, which must be running.
    pub(super) fn running_node(&self, node: &str) -> Result<&NodePlan, Error> {
        let plan = self.node(node)?;
        if self.state.runtime.stopped.contains(node) {
            return Err(Error::Stopped(NodeRef::new(&self.name, node)));
        }
        if !running(&self.state, node) {
            return Err(Error::NotRunning(NodeRef::new(&self.name, node)));
        }
        Ok(plan)
    }

    pub(super) fn save(&self) -> Result<(), Error> {
        self.dir.write_state(&self.state)
    }
}

pub(super) fn running(state: &LabState, node: &str) -> bool {
    !state.runtime.stopped.contains(node) && state.node(node).is_some_and(|p| p.init.is_alive())
}

/// Interface `ifname` of a node, or an error listing the ones it has.
pub(super) fn interface<'a>(node: &'a NodePlan, ifname: &str) -> Result<&'a InterfacePlan, Error> {
    node.interfaces.iter().find(|i| i.name.as_str() == ifname).ok_or_else(|| Error::NoSuchInterface {
        node: node.name.to_string(),
        ifname: ifname.to_string(),
        has: node.interfaces.iter().map(|i| i.name.to_string()).collect(),
    })
}

/// The node's network namespace, by its name under /run/netns.
pub(super) fn netns_file(node: &NodePlan) -> Result<File, Error> {
    let path = netns::path(&node.netns);
    File::open(&path).map_err(|e| Error::node(node.name.as_str(), Error::Io(format!("opening {}", path.display()), e)))
}

/// Lab `lab`, or the only lab that is up.
pub(super) fn the_lab(lab: Option<&Name>) -> Result<Name, Error> {
    if let Some(l) = lab {
        return Ok(l.clone());
    }
    let names: Vec<Name> = all_states().into_iter().filter(|(_, s)| s.is_some()).map(|(n, _)| n).collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::NoLabUp),
        _ => Err(Error::AmbiguousLab(names)),
    }
}
