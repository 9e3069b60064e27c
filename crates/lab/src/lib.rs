//! `lab`: networks of isolated Linux nodes from one TOML file.
//!
//! A topology file is parsed into a checked [`Topology`], which a pure function turns into a
//! [`Plan`]: every interface name, subnet, address, route and hosts file decided before
//! anything is made. [`runtime::up`] carries a plan out (as root), [`runtime::down`] undoes it.
//!
//! ```
//! use lab::{plan::Facts, Plan, Source, Topology};
//!
//! let text = r#"
//!     name = "demo"
//!     [networks.lan]
//!     subnet = "10.42.7.0/24"
//!     nat = true
//!     [nodes.a]
//!     networks = ["lan"]
//!     [nodes.b]
//!     networks = { lan = "10.42.7.20" }
//! "#;
//! let topology = Topology::parse(Source::new("demo.toml", text))?;
//! let plan = Plan::new(&topology, &Facts::default())?;
//! let a = plan.node("a").expect("node a");
//! assert_eq!(a.interfaces[0].addresses[0].to_string(), "10.42.7.2/24");
//! assert!(a.hosts.contains("10.42.7.20\tb\n"));
//!
//! // Mistakes point at the file, line and column.
//! let err = Topology::parse(Source::new("bad.toml", "[nodes.A]\n")).unwrap_err();
//! assert_eq!(err.location(), "bad.toml:1:8");
//! # Ok::<(), lab::TopologyError>(())
//! ```
//!
//! ## Labs in integration tests
//!
//! [`api::RunningLab`] brings a lab up (from a file, or from an [`api::LabBuilder`]), runs
//! commands in its nodes, breaks and heals it, and takes it down when dropped, also when the
//! test panics. It needs root and the `lab` executable:
//!
//! ```no_run
//! use lab::api::{toml::toml, LabBuilder, RunningLab};
//! use lab::runtime::Options;
//!
//! let topology = LabBuilder::new("kv-test")
//!     .network("lan", toml! { nat = false })
//!     .node("n1", toml! { networks = ["lan"] command = ["my-kv", "--peers", "n2,n3"] })
//!     .node("n2", toml! { networks = ["lan"] command = ["my-kv", "--peers", "n1,n3"] })
//!     .node("n3", toml! { networks = ["lan"] command = ["my-kv", "--peers", "n1,n2"] })
//!     .build()?;
//! let options = Options { lab_binary: "/usr/local/bin/lab".into(), ..Options::default() };
//! let lab = RunningLab::up(&topology, options)?;
//!
//! let out = lab.exec("n1", &["my-kv-cli", "put", "x", "1"])?;
//! assert!(out.status.success());
//! lab.partition(&["n1"], &["n2", "n3"])?;      // n1 is cut off from the majority
//! assert_eq!(lab.sh("n2", "my-kv-cli get x")?, "1\n");
//! lab.heal()?;
//! lab.stop("n3")?;
//! lab.start("n3")?;                            // same addresses, links, faults
//! println!("{}", lab.logs("n3")?);
//! // Dropped here (or on a panic above): the lab is taken down.
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod api;
pub mod diagnostic;
#[doc(hidden)]
pub mod fuzzing;
pub mod graph;
pub mod identity;
pub mod plan;
pub mod runtime;
pub mod state;
pub mod topology;

pub use diagnostic::{Diagnostic, Source, TopologyError};
pub use plan::Plan;
pub use topology::{Name, Topology};

/// Everything that can go wrong in `lab`, with the failing object in the message. A variant
/// for each thing a caller acts on (the CLI keys its hints and exit codes on them).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad topology file: file, line, column.
    #[error("{0}")]
    Topology(#[from] TopologyError),
    /// A bad request (command-line arguments, or the API's equivalent).
    #[error("{0}")]
    Usage(String),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error(transparent)]
    Net(#[from] lab_net::Error),
    #[error(transparent)]
    Sandbox(#[from] lab_sandbox::Error),
    #[error("lab needs root (it creates namespaces, interfaces and cgroups)")]
    NotRoot,
    #[error("lab {0} is already up")]
    AlreadyUp(String),
    #[error("lab {0} is not up")]
    LabNotUp(Name),
    #[error("no lab is up")]
    NoLabUp,
    /// Several labs are up and the request did not say which.
    #[error("several labs are up ({}); say which", names(.0))]
    AmbiguousLab(Vec<Name>),
    #[error("{}", match .lab { Some(l) => format!("lab {l} has no node {}", .node), None => format!("no lab that is up has a node {}", .node) })]
    NoSuchNode { lab: Option<Name>, node: String },
    #[error("node {node} is in several labs ({}); say which with --lab", names(.labs))]
    AmbiguousNode { node: String, labs: Vec<Name> },
    #[error("node {node} has no interface {ifname} (it has {})", if .has.is_empty() { "none".to_string() } else { .has.join(", ") })]
    NoSuchInterface { node: String, ifname: String, has: Vec<String> },
    /// The node is not running: it ended, or was never started.
    #[error("node {node} of lab {lab} is not running")]
    NotRunning { lab: Name, node: String },
    #[error("node {node} of lab {lab} is stopped; `lab start {node}` first")]
    Stopped { lab: Name, node: String },
    #[error("node {node} of lab {lab} is paused; `lab resume {node}` first")]
    Paused { lab: Name, node: String },
    /// `lab start` of a node that runs.
    #[error("node {node} of lab {lab} is running")]
    Running { lab: Name, node: String },
    /// `lab stop` of a node that is stopped.
    #[error("node {node} of lab {lab} is already stopped")]
    AlreadyStopped { lab: Name, node: String },
    /// Something the topology needs is not on this host (a rootfs, a mount source).
    #[error("{0}")]
    Missing(String),
    /// A host port the lab would forward is not free.
    #[error("cannot forward host port {port}/{protocol}: {why}")]
    PortBusy { port: u16, protocol: lab_net::nat::Protocol, why: String },
    /// A seccomp profile under which nothing could run.
    #[error("{0}")]
    UnusableProfile(String),
    /// A node's `exec` hook or health check failed.
    #[error("{0}")]
    Service(String),
    /// A node ended while it was being brought up.
    #[error("{0}")]
    Died(String),
    /// Processes that did not exit when killed.
    #[error("{0} processes of the lab did not exit within {1}s of SIGKILL; run lab down again")]
    Unkillable(usize, u64),
    /// A command run in a node (by the API) failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed { command: String, status: String, stderr: String },
    #[error("node {node}: {source}")]
    Node { node: String, source: Box<Error> },
    #[error("lab {lab}: {source}")]
    InLab { lab: Name, source: Box<Error> },
    #[error("interrupted")]
    Interrupted,
    /// Bringing something up failed, and so did undoing it: both causes.
    #[error("{cause}; {} also failed: {undo}", .what)]
    UndoFailed { cause: Box<Error>, what: &'static str, undo: Box<Error> },
    #[error("corrupt lab state: {0}")]
    Corrupt(String),
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Several(Vec<Error>),
}

fn names(n: &[Name]) -> String {
    n.iter().map(Name::to_string).collect::<Vec<_>>().join(", ")
}

impl Error {
    pub fn node(node: &str, e: impl Into<Error>) -> Error {
        Error::Node { node: node.to_string(), source: Box::new(e.into()) }
    }

    /// The error itself, whatever node it is about.
    pub fn root(&self) -> &Error {
        match self {
            Error::Node { source, .. } | Error::InLab { source, .. } => source.root(),
            e => e,
        }
    }
}
