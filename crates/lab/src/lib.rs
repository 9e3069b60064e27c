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
pub use topology::Topology;

/// Everything that can go wrong in `lab`, with the failing object in the message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Topology(#[from] TopologyError),
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
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Failed(String),
    #[error("node {node}: {source}")]
    Node { node: String, source: Box<Error> },
    #[error("interrupted")]
    Interrupted,
    #[error("corrupt lab state: {0}")]
    Corrupt(String),
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Several(Vec<Error>),
}

impl Error {
    pub fn node(node: &str, e: impl Into<Error>) -> Error {
        Error::Node { node: node.to_string(), source: Box::new(e.into()) }
    }
}
