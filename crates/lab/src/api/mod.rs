//! Labs from Rust tests: bring one up from a builder or a file, run commands in its nodes,
//! wait for what they do, break and heal the network, and take it down, also when a test
//! panics or its process is killed.
//!
//! Two faces, one implementation: [`RunningLab`] is async (for `#[tokio::test]`, or any
//! executor), [`blocking::RunningLab`] waits (for `#[test]`). Either may be used from sync
//! or async code: the work runs on a small runtime of the API's own, never on the caller's,
//! and no signal handler is installed (Ctrl-C and CI's SIGTERM still stop a test run).
//!
//! Commands run through the `lab` executable's `lab exec`, so the calling process (a
//! multi-threaded test harness) never forks into a node itself, and nodes' monitors run from
//! a sealed copy of it: [`lab_binary`] finds it (`$LAB_BIN`, then `lab` on `PATH`), or
//! [`UpOptions::lab_binary`] names it. Bringing labs up needs root, as `lab up` does.
//!
//! Everything a test needs is here: `use lab::api::*;`.
//!
//! # A lab in a plain test
//!
//! ```
//! use lab::api::blocking::RunningLab;
//! use lab::api::{LabBuilder, Network, Node};
//!
//! let topology = LabBuilder::unique("doc-sync")
//!     .network("lan", Network::new())
//!     .node("a", Node::new().network("lan").command(["sleep", "infinity"]))
//!     .node("b", Node::new().network("lan").command(["sleep", "infinity"]))
//!     .build()?;
//! let lab = RunningLab::up(&topology)?;
//! let ping = lab.exec("a", &["ping", "-c1", "-W2", "b"])?;
//! assert!(ping.success(), "{ping:?}");
//! // Dropping `lab` would take it down too (also while a failed assertion unwinds).
//! let report = lab.down()?;
//! assert_eq!(report.nodes.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # A lab in an async test
//!
//! The same calls, awaited; dropping the handle inside the runtime never blocks it.
//!
//! ```
//! use lab::api::{LabBuilder, Network, Node, RunningLab};
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), lab::Error> {
//!     let topology = LabBuilder::unique("doc-async")
//!         .network("lan", Network::new())
//!         .node("a", Node::new().network("lan").command(["sleep", "infinity"]))
//!         .build()?;
//!     let lab = RunningLab::up(&topology).await?;
//!     let out = lab.exec("a", &["hostname"]).await?;
//!     assert_eq!(out.stdout_text().trim(), "a");
//!     lab.down().await?;
//!     Ok(())
//! }
//! ```
//!
//! # Running commands
//!
//! `exec` is `Ok` whatever the command's exit code, and `Err` when lab could not run it
//! (no such node, stopped, paused): a code of 125 is always the command's own. A command
//! killed by a signal says which. [`Exec`] adds environment, standard input, working
//! directory, user and a timeout, past which the command is killed and the call fails.
//!
//! ```
//! use lab::api::blocking::RunningLab;
//! use lab::api::{Error, Exec, LabBuilder, Node};
//! use std::time::Duration;
//!
//! let lab = RunningLab::up(&LabBuilder::unique("doc-exec").node("a", Node::new().command(["sleep", "infinity"])).build()?)?;
//! let out = lab.exec_with("a", Exec::new(["sh", "-c", "cat; echo $GREETING; pwd"])
//!     .stdin("in\n").env("GREETING", "hi").workdir("/tmp").user("nobody"))?;
//! assert_eq!(out.stdout_text(), "in\nhi\n/tmp\n");
//! let killed = lab.exec("a", &["sh", "-c", "kill -9 $$"])?;
//! assert_eq!((killed.code, killed.signal), (137, Some(9)));
//! let hung = lab.exec_with("a", Exec::new(["sleep", "60"]).timeout(Duration::from_millis(200)));
//! assert!(matches!(hung.unwrap_err().root(), Error::TimedOut { .. }));
//! assert!(matches!(lab.exec("nobody-here", &["true"]).unwrap_err().root(), Error::NoSuchNode { .. }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Waiting for readiness, and looking inside
//!
//! ```
//! use lab::api::blocking::RunningLab;
//! use lab::api::{Healthcheck, LabBuilder, Network, Node, NodeState};
//! use std::time::Duration;
//!
//! let server = "echo starting; sleep 0.2; echo ready; while :; do busybox nc -l -p 8000 </dev/null; done";
//! let topology = LabBuilder::unique("doc-wait")
//!     .network("lan", Network::new().ipv6())
//!     .node("web", Node::new().network("lan").shell(server)
//!         .healthcheck(Healthcheck::cmd(["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8000"]).interval(Duration::from_millis(100))))
//!     .build()?;
//! let lab = RunningLab::up_with(&topology, lab::api::UpOptions { wait: false, ..Default::default() })?;
//! let line = lab.wait_for_log("web", "^ready$", Duration::from_secs(10))?;
//! assert_eq!(line.text, "ready");
//! lab.wait_for_port("web", 8000, Duration::from_secs(10))?;
//! lab.wait_healthy("web", Duration::from_secs(10))?;
//! let web = lab.node("web")?;
//! assert_eq!(web.state, NodeState::Running);
//! assert!(web.ipv4("lan").is_some() && web.ipv6("lan").is_some() && web.mac("lan").is_some());
//! lab.pause("web")?;
//! assert_eq!(lab.node("web")?.state, NodeState::Paused);
//! lab.resume("web")?;
//! lab.stop_with("web", Duration::from_millis(500))?;
//! lab.start("web")?;
//! let stats = lab.stats(Duration::from_millis(100))?;
//! assert!(stats.nodes[0].usage.as_ref().is_some_and(|u| u.pids >= 1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Faults
//!
//! ```
//! use lab::api::blocking::RunningLab;
//! use lab::api::{Impair, LabBuilder, Network, Node};
//!
//! let sleeper = || Node::new().network("lan").command(["sleep", "infinity"]);
//! let topology = LabBuilder::unique("doc-faults")
//!     .network("lan", Network::new())
//!     .node("a", sleeper()).node("b", sleeper()).node("c", sleeper())
//!     .build()?;
//! let lab = RunningLab::up(&topology)?;
//! // A few tries: a neighbour entry that failed during a partition takes a moment to come back.
//! let reaches = |from: &str, to: &str| lab.exec(from, &["ping", "-c3", "-i0.2", "-W1", to]).map(|o| o.success());
//! lab.partition(&["a"], &["b"])?;
//! lab.partition(&["a"], &["c"])?;
//! assert!(!reaches("a", "b")? && !reaches("a", "c")?);
//! lab.heal_partition(&["a"], &["b"])?;
//! assert!(reaches("a", "b")? && !reaches("a", "c")?);
//! lab.heal()?;
//! lab.impair("a", "eth0", Impair::new().rate("16mbit"))?;
//! assert!(lab.node("a")?.interfaces[0].impairment.is_some());
//! lab.set_link("a", "eth0", false)?;
//! assert!(!reaches("a", "b")?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Errors
//!
//! Every call returns [`Error`]; [`Error::report`] renders it as the CLI prints it (with
//! the hint, and a topology mistake's file, line and column).
//!
//! ```
//! use lab::api::{LabBuilder, Node};
//!
//! let err = LabBuilder::new("bad").node("a", Node::new().set("restart", "sometimes")).build().unwrap_err();
//! assert!(err.to_string().contains("restart `sometimes` is not a policy"));
//! ```
//!
//! # No leaks
//!
//! A lab is taken down when its handle is dropped, or by [`RunningLab::down`]. A lab the API
//! brings up records the process that owns it; if that process is killed before it takes
//! the lab down, the next `up` from the API (in any process) removes it, and so does
//! `lab down --orphans`.

mod binary;
pub mod blocking;
mod builder;
mod exec;
mod lab;
mod logs;
mod worker;

pub use binary::lab_binary;
pub use builder::{Healthcheck, Impair, IntoImpairment, LabBuilder, Link, Network, Node};
pub use exec::{Exec, ExecOutput};
pub use lab::{RunningLab, UpOptions};
pub use logs::{LogLine, Stream};

pub use crate::runtime::{
    DownReport, Health, InterfaceStatus, LabStatus, NodeState, NodeStatus, Progress, ProgressFn, Usage,
};
pub use crate::topology::Impairment;
pub use crate::{Error, Name, Topology, TopologyError};

/// The toml crate, for `toml::toml!` tables in a [`LabBuilder`].
pub use toml;
