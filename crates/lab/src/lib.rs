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
//! [`api`] brings labs up from tests, sync ([`api::blocking::RunningLab`]) or async
//! ([`api::RunningLab`]): it runs commands in their nodes, waits for logs, ports and health,
//! breaks and heals the network, and takes them down when dropped, also when a test panics
//! or its process is killed. It needs root and the `lab` executable (`$LAB_BIN`, or `lab`
//! on `PATH`):
//!
//! ```no_run
//! use lab::api::blocking::RunningLab;
//! use lab::api::{LabBuilder, Network, Node};
//!
//! let kv = |peers: &str| Node::new().network("lan").command(["my-kv", "--peers", peers]);
//! let topology = LabBuilder::unique("kv-test")
//!     .network("lan", Network::new())
//!     .node("n1", kv("n2,n3"))
//!     .node("n2", kv("n1,n3"))
//!     .node("n3", kv("n1,n2"))
//!     .build()?;
//! let lab = RunningLab::up(&topology)?;
//!
//! let out = lab.exec("n1", &["my-kv-cli", "put", "x", "1"])?;
//! assert!(out.success());
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
    /// `lab exec` could not run the command (what it said, and how it ended).
    #[error("lab exec could not run `{command}`: {why}")]
    ExecFailed {
        /// The command.
        command: String,
        /// Why not, as lab exec said.
        why: String,
    },
    /// Something waited for did not happen in time.
    #[error("{what}: not within {after:?}")]
    TimedOut {
        /// What was waited for.
        what: String,
        /// How long.
        after: std::time::Duration,
    },
    /// The `lab` executable the API runs cannot be found, or is not one it can use.
    #[error("{0}")]
    LabBinary(String),
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

    /// What to do next, chosen by what went wrong (whatever node it is about): the CLI's
    /// `hint:` line.
    pub fn hint(&self) -> Option<String> {
        if self.is_missing_feature() {
            return Some("the kernel was built without it; most distribution kernels have it".into());
        }
        Some(match self.root() {
            Error::NotRoot => "run it as root, e.g. with sudo".into(),
            Error::AlreadyUp(name) => {
                format!("take it down first with `lab down {name}`, or pick another name with --name")
            }
            Error::LabNotUp(_) | Error::NoLabUp | Error::NoSuchNode { .. } => {
                "`lab ps` lists the labs and nodes that are up".into()
            }
            Error::AmbiguousLab(labs) => format!("name the lab (`lab ps` lists them), e.g. {}", labs.first()?),
            Error::AmbiguousNode { node, labs } => {
                let first = labs.first()?;
                format!("write LAB/NODE (e.g. {first}/{node}) or add --lab {first}")
            }
            Error::NoSuchInterface { node, .. } => format!("`lab ps` shows the interfaces of {node}"),
            Error::NotRunning(NodeRef { lab, node }) => {
                format!("`lab logs {lab}/{node}` shows how it ended; `lab start {lab}/{node}` runs it again")
            }
            Error::Stopped(NodeRef { lab, node }) => format!("`lab start {lab}/{node}` starts it again"),
            Error::Paused(NodeRef { lab, node }) => format!("`lab resume {lab}/{node}` thaws it"),
            Error::PortBusy { port, .. } => format!("free port {port}, or forward another host port in `ports`"),
            Error::UndoFailed { .. } | Error::Unkillable(..) => {
                "some resources are left behind; `lab down` removes them (it is safe to repeat)".into()
            }
            Error::LabBinary(_) => "set LAB_BIN to the lab executable (cargo build puts it in target/)".into(),
            _ if matches!(self, Error::RolledBack(_)) => "everything made so far was removed".into(),
            _ => return None,
        })
    }

    /// The error as the CLI prints it (without colour): `error: ...` and its hint, or a
    /// topology error with its file, line, column and the line itself.
    pub fn report(&self) -> String {
        if let Error::Topology(t) = self {
            return t.to_string();
        }
        match self.hint() {
            Some(h) => format!("error: {self}\n  hint: {h}"),
            None => format!("error: {self}"),
        }
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

#[cfg(test)]
mod tests {
    use super::{Error, Name};

    fn name(s: &str) -> Name {
        Name::parse(s).expect("a valid name")
    }

    #[test]
    fn hints_follow_the_error_through_the_node_it_is_about() {
        let stopped = Error::node("a", Error::NotRunning(super::NodeRef::new(&name("demo"), "a")));
        assert!(stopped.hint().is_some_and(|h| h.contains("lab logs demo/a")));
        // Nothing was made: no word of removing it.
        assert_eq!(Error::Usage("x".into()).hint(), None);
        let rolled = Error::RolledBack(Box::new(Error::node("b", Error::Service("exec hook failed".into()))));
        assert_eq!(rolled.hint().as_deref(), Some("everything made so far was removed"));
        let ambiguous = Error::AmbiguousNode { node: "a".into(), labs: vec![name("x"), name("y")] };
        assert_eq!(ambiguous.hint().as_deref(), Some("write LAB/NODE (e.g. x/a) or add --lab x"));
        let undo = Error::UndoFailed {
            cause: Box::new(Error::Interrupted),
            what: "rolling back",
            undo: Box::new(Error::Unkillable(2, 5)),
        };
        assert!(undo.hint().is_some_and(|h| h.contains("lab down")));
        assert!(undo.to_string().starts_with("interrupted; rolling back also failed: 2 processes"));
        let gone = Error::node("b", Error::LabNotUp(name("demo")));
        assert!(gone.hint().is_some_and(|h| h.contains("lab ps")));
    }

    #[test]
    fn reports_read_as_the_cli_prints_them() {
        let stopped = Error::Stopped(super::NodeRef::new(&name("demo"), "a"));
        assert_eq!(
            stopped.report(),
            "error: node a of lab demo is stopped; `lab start a` first\n  hint: `lab start demo/a` starts it again"
        );
    }
}
