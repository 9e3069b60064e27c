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

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod diagnostic;
#[doc(hidden)]
pub mod fuzzing;
pub mod graph;
pub mod identity;
pub mod plan;
pub mod roles;
pub mod runtime;
pub mod state;
pub mod topology;
pub mod units;

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
    /// A file or system call of lab's own failed: what it was doing, and why.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// Links, addresses, routes, nftables or traffic control.
    #[error(transparent)]
    Net(#[from] lab_net::Error),
    /// Making, joining or limiting a node's process.
    #[error(transparent)]
    Sandbox(#[from] lab_sandbox::Error),

    /// An image could not be read, imported or resolved.
    #[error(transparent)]
    Image(#[from] lab_image::Error),

    /// `lab image rm` of an image a lab that is up runs on.
    #[error("image {image} is used by lab {}: take {} down first", .labs.join(", "), if .labs.len() == 1 { "it" } else { "them" })]
    ImageInUse {
        /// The image.
        image: String,
        /// The labs up that run it.
        labs: Vec<String>,
    },
    /// Only root can bring a lab up (and most other commands).
    #[error("lab needs root (it creates namespaces, interfaces and cgroups)")]
    NotRoot,
    /// A lab of this name is up already.
    #[error("lab {0} is already up")]
    AlreadyUp(String),
    /// The lab named is not up.
    #[error("lab {0} is not up")]
    LabNotUp(Name),
    /// The request needs a lab, and none is up.
    #[error("no lab is up")]
    NoLabUp,
    /// Several labs are up and the request did not say which.
    #[error("several labs are up ({}); say which", names(.0))]
    AmbiguousLab(Vec<Name>),
    /// No node of that name in the lab named (`lab`), or in any lab that is up (`None`).
    #[error("{}", match .lab { Some(l) => format!("lab {l} has no node {}", .node), None => format!("no lab that is up has a node {}", .node) })]
    NoSuchNode {
        /// The lab the request named, if it named one.
        lab: Option<Name>,
        /// The node asked for.
        node: String,
    },
    /// Nodes of that name are in several labs that are up.
    #[error("node {node} is in several labs; name it as one of: {}", .labs.iter().map(|l| format!("{l}/{node}")).collect::<Vec<_>>().join(", "))]
    AmbiguousNode {
        /// The node asked for.
        node: String,
        /// The labs that have one.
        labs: Vec<Name>,
    },
    /// The node has no interface of that name.
    #[error("node {node} has no interface {ifname} (it has {})", if .has.is_empty() { "none".to_string() } else { .has.join(", ") })]
    NoSuchInterface {
        /// The node.
        node: String,
        /// The interface asked for.
        ifname: String,
        /// The interfaces it has.
        has: Vec<String>,
    },
    /// The node is not running: it ended, or was never started.
    #[error("{0} is not running")]
    NotRunning(NodeRef),
    /// The node was stopped with `lab stop`.
    #[error("{} is stopped; `lab start {}` first", .0, .0.node)]
    Stopped(NodeRef),
    /// The node is frozen with `lab pause`.
    #[error("{} is paused; `lab resume {}` first", .0, .0.node)]
    Paused(NodeRef),
    /// `lab start` of a node that runs.
    #[error("{0} is running")]
    Running(NodeRef),
    /// `lab stop` of a node that is stopped.
    #[error("{0} is already stopped")]
    AlreadyStopped(NodeRef),
    /// Something the topology needs is not on this host (a rootfs, a mount source).
    #[error("{0}")]
    Missing(String),
    /// A host port the lab would forward is not free.
    #[error("cannot forward host port {port}/{protocol}: {why}")]
    PortBusy {
        /// The host port.
        port: u16,
        /// Its protocol.
        protocol: lab_net::nat::Protocol,
        /// Why it cannot be had.
        why: String,
    },
    /// A seccomp profile under which nothing could run.
    #[error("{0}")]
    UnusableProfile(String),
    /// A node's `exec` hook or health check failed.
    #[error("{0}")]
    Service(String),
    /// A node ended while it was being brought up.
    #[error("{0}")]
    Died(String),
    /// Processes that did not exit when killed: how many, and the seconds waited.
    #[error("{0} processes of the lab did not exit within {1}s of SIGKILL; run lab down again")]
    Unkillable(usize, u64),
    /// A command run in a node (by the API) failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        /// The command.
        command: String,
        /// How it ended.
        status: String,
        /// What it wrote to standard error.
        stderr: String,
    },
    /// An error about one node.
    #[error("node {node}: {source}")]
    Node {
        /// The node.
        node: String,
        /// The error.
        source: Box<Error>,
    },
    /// An error about one lab, of several (`lab down --all`).
    #[error("lab {lab}: {source}")]
    InLab {
        /// The lab.
        lab: Name,
        /// The error.
        source: Box<Error>,
    },
    /// SIGINT or SIGTERM arrived while a lab was being brought up.
    #[error("interrupted")]
    Interrupted,
    /// An error about a node, with the last lines its command wrote (its log goes with a
    /// rolled-back lab: this is what is left of it).
    #[error("{source}\n  the last lines of node {node}'s log:\n{}", .log.iter().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n"))]
    WithLog {
        /// The node.
        node: String,
        /// The error.
        source: Box<Error>,
        /// Its log's last lines (stream and text).
        log: Vec<String>,
    },
    /// `lab up` failed after it had made something, and removed all of it again.
    #[error(transparent)]
    RolledBack(Box<Error>),
    /// `lab down` of the lab arrived while it was being brought up.
    #[error("lab {0} was taken down (`lab down`) while it came up")]
    TakenDown(Name),
    /// Bringing something up failed, and so did undoing it: both causes.
    #[error("{cause}; {} also failed: {undo}", .what)]
    UndoFailed {
        /// Why it failed.
        cause: Box<Error>,
        /// The undoing ("rolling back").
        what: &'static str,
        /// Why the undoing failed.
        undo: Box<Error>,
    },
    /// The lab's state file or journal cannot be read.
    #[error("corrupt lab state: {0}")]
    Corrupt(String),
    /// Several independent failures (teardown goes on after the first).
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Several(Vec<Error>),
}

/// A node of a lab, as errors name it: "node a of lab demo".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRef {
    /// The lab.
    pub lab: Name,
    /// The node.
    pub node: String,
}

impl NodeRef {
    /// Node `node` of lab `lab`.
    pub fn new(lab: &Name, node: &str) -> NodeRef {
        NodeRef { lab: lab.clone(), node: node.to_string() }
    }
}

impl std::fmt::Display for NodeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {} of lab {}", self.node, self.lab)
    }
}

fn names(n: &[Name]) -> String {
    n.iter().map(Name::to_string).collect::<Vec<_>>().join(", ")
}

impl Error {
    /// The node this error is about, if it names one.
    pub fn node_name(&self) -> Option<&str> {
        match self {
            Error::Node { node, .. } => Some(node),
            Error::RolledBack(e) | Error::WithLog { source: e, .. } => e.node_name(),
            _ => None,
        }
    }

    /// `e`, about node `node`.
    pub fn node(node: &str, e: impl Into<Error>) -> Error {
        Error::Node { node: node.to_string(), source: Box::new(e.into()) }
    }

    /// Whether the kernel or machine lacks what was asked for (a qdisc, a cgroup controller).
    pub fn is_missing_feature(&self) -> bool {
        matches!(
            self.root(),
            Error::Net(lab_net::Error::MissingFeature { .. })
                | Error::Sandbox(lab_sandbox::Error::MissingFeature { .. })
        )
    }

    /// The error itself, whatever node it is about.
    pub fn root(&self) -> &Error {
        match self {
            Error::Node { source, .. } | Error::InLab { source, .. } => source.root(),
            Error::RolledBack(e) => e.root(),
            Error::WithLog { source, .. } => source.root(),
            e => e,
        }
    }
}
