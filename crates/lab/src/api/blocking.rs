//! The same API for plain `#[test]`s and other synchronous code: each method waits for its
//! async counterpart in [`super::RunningLab`], whose work runs on the API's own runtime (so
//! these may be called from anywhere, even inside an async runtime, where they block that
//! thread as any blocking call does).
//!
//! ```no_run
//! use lab::api::blocking::RunningLab;
//! use lab::api::{LabBuilder, Node};
//!
//! let topology = LabBuilder::unique("doc")
//!     .network("lan", lab::api::Network::new())
//!     .node("a", Node::new().network("lan").command(["sleep", "infinity"]))
//!     .node("b", Node::new().network("lan").command(["sleep", "infinity"]))
//!     .build()?;
//! let lab = RunningLab::up(&topology)?;
//! let out = lab.exec("a", &["ping", "-c1", "-W2", "b"])?;
//! assert!(out.success(), "{out:?}");
//! lab.down()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::worker::block_on;
use super::{Exec, ExecOutput, IntoImpairment, LogLine, UpOptions};
use crate::runtime::{DownReport, LabStatus, NodeStatus};
use crate::topology::Name;
use crate::{Error, Topology};
use std::path::Path;
use std::time::Duration;

/// A lab that is up, for synchronous code. Dropping it takes the lab down (and waits, unless
/// dropped on an async runtime's thread: see [`super::RunningLab`]), also when a test panics.
#[derive(Debug)]
pub struct RunningLab {
    inner: super::RunningLab,
}

impl RunningLab {
    /// Brings up a checked topology, waiting for its health checks.
    pub fn up(topology: &Topology) -> Result<RunningLab, Error> {
        block_on(super::RunningLab::up(topology)).map(|inner| RunningLab { inner })
    }

    /// Brings up the lab of a topology file.
    pub fn up_file(path: impl AsRef<Path>) -> Result<RunningLab, Error> {
        block_on(super::RunningLab::up_file(path)).map(|inner| RunningLab { inner })
    }

    /// Brings up a topology as `options` say.
    pub fn up_with(topology: &Topology, options: UpOptions) -> Result<RunningLab, Error> {
        block_on(super::RunningLab::up_with(topology, options)).map(|inner| RunningLab { inner })
    }

    /// The lab's name.
    pub fn name(&self) -> &Name {
        self.inner.name()
    }

    /// The `lab` executable it runs commands with.
    pub fn lab_binary(&self) -> &Path {
        self.inner.lab_binary()
    }

    /// Runs `argv` in `node` and waits: see [`super::RunningLab::exec`].
    pub fn exec<S: AsRef<str>>(&self, node: &str, argv: &[S]) -> Result<ExecOutput, Error> {
        block_on(self.inner.exec(node, argv))
    }

    /// Runs a command as [`Exec`] says: see [`super::RunningLab::exec_with`].
    pub fn exec_with(&self, node: &str, exec: Exec) -> Result<ExecOutput, Error> {
        block_on(self.inner.exec_with(node, exec))
    }

    /// Runs `sh -c script`: its standard output if it exited 0, else an error.
    pub fn sh(&self, node: &str, script: &str) -> Result<String, Error> {
        block_on(self.inner.sh(node, script))
    }

    /// What `lab inspect` says of a node.
    pub fn node(&self, name: &str) -> Result<NodeStatus, Error> {
        block_on(self.inner.node(name))
    }

    /// What `lab inspect` says of the lab.
    pub fn inspect(&self) -> Result<LabStatus, Error> {
        block_on(self.inner.inspect())
    }

    /// CPU, memory and process counts of every node, CPU measured over `window`.
    pub fn stats(&self, window: Duration) -> Result<LabStatus, Error> {
        block_on(self.inner.stats(window))
    }

    /// Drops all traffic between nodes `a` and nodes `b`, until healed.
    pub fn partition(&self, a: &[&str], b: &[&str]) -> Result<(), Error> {
        block_on(self.inner.partition(a, b))
    }

    /// Ends the partition between `a` and `b` (others stay).
    pub fn heal_partition(&self, a: &[&str], b: &[&str]) -> Result<(), Error> {
        block_on(self.inner.heal_partition(a, b))
    }

    /// Ends every partition.
    pub fn heal(&self) -> Result<(), Error> {
        block_on(self.inner.heal())
    }

    /// Takes an interface of a node down or up.
    pub fn set_link(&self, node: &str, ifname: &str, up: bool) -> Result<(), Error> {
        block_on(self.inner.set_link(node, ifname, up))
    }

    /// Shapes what an interface sends; an empty impairment clears it.
    pub fn impair(&self, node: &str, ifname: &str, impairment: impl IntoImpairment) -> Result<(), Error> {
        block_on(self.inner.impair(node, ifname, impairment))
    }

    /// Freezes a node.
    pub fn pause(&self, node: &str) -> Result<(), Error> {
        block_on(self.inner.pause(node))
    }

    /// Thaws a paused node.
    pub fn resume(&self, node: &str) -> Result<(), Error> {
        block_on(self.inner.resume(node))
    }

    /// Stops a node (its stop signal, its `stop_timeout`, then SIGKILL).
    pub fn stop(&self, node: &str) -> Result<(), Error> {
        block_on(self.inner.stop(node))
    }

    /// Stops a node, giving its command `grace` after the stop signal.
    pub fn stop_with(&self, node: &str, grace: Duration) -> Result<(), Error> {
        block_on(self.inner.stop_with(node, grace))
    }

    /// Starts a stopped node again.
    pub fn start(&self, node: &str) -> Result<(), Error> {
        block_on(self.inner.start(node))
    }

    /// Runs the node's health check until it passes, for at most `timeout`.
    pub fn wait_healthy(&self, node: &str, timeout: Duration) -> Result<(), Error> {
        block_on(self.inner.wait_healthy(node, timeout))
    }

    /// Waits until a line the node's command wrote matches `pattern`; returns it.
    pub fn wait_for_log(&self, node: &str, pattern: &str, timeout: Duration) -> Result<LogLine, Error> {
        block_on(self.inner.wait_for_log(node, pattern, timeout))
    }

    /// Waits until a process in the node listens on TCP `port`.
    pub fn wait_for_port(&self, node: &str, port: u16, timeout: Duration) -> Result<(), Error> {
        block_on(self.inner.wait_for_port(node, port, timeout))
    }

    /// The node's log, line by line, with times and streams.
    pub fn log_lines(&self, node: &str) -> Result<Vec<LogLine>, Error> {
        block_on(self.inner.log_lines(node))
    }

    /// The node's log as `lab logs -t` prints it.
    pub fn logs(&self, node: &str) -> Result<String, Error> {
        block_on(self.inner.logs(node))
    }

    /// Takes the lab down now, and says what was removed.
    pub fn down(self) -> Result<DownReport, Error> {
        block_on(self.inner.down())
    }

    /// The handle forgets the lab: it stays up.
    pub fn leak(self) -> Name {
        self.inner.leak()
    }
}
