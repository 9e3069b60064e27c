//! `lab`: networks of isolated Linux nodes from one TOML file.

pub mod diagnostic;
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
