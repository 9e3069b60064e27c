use std::io;

/// A failed sandbox operation, naming what it was doing and keeping the errno.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Os {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("the node is not running")]
    NotRunning,
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn os(what: impl Into<String>, source: impl Into<io::Error>) -> Error {
        Error::Os { what: what.into(), source: source.into() }
    }

    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Os { source, .. } => source.raw_os_error(),
            Error::NotRunning | Error::Other(_) => None,
        }
    }
}

/// Adds "what we were doing" to an io or nix error.
pub(crate) trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<io::Error>> Context<T> for std::result::Result<T, E> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::os(what(), e))
    }
}
