//! `lab`: networks of isolated Linux nodes from one TOML file.

pub mod diagnostic;
pub mod plan;
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
}
