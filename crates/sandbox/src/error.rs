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
    /// libseccomp refused; its errno is kept.
    #[error("seccomp: {what}: {source}")]
    Seccomp {
        what: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    /// A seccomp profile that is not valid JSON of the Docker/OCI format.
    #[error("seccomp profile {file}:{line}:{column}: {message}")]
    BadProfile { file: String, line: usize, column: usize, message: String },
    /// This machine lacks what the node needs (a cgroup controller, an interface file).
    #[error("{what} needs {feature}, which this machine does not have")]
    MissingFeature { what: String, feature: String },
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
            Error::Seccomp { source, .. } => seccomp_errno(source),
            Error::NotRunning | Error::BadProfile { .. } | Error::MissingFeature { .. } | Error::Other(_) => None,
        }
    }
}

fn seccomp_errno(e: &libseccomp::error::SeccompError) -> Option<i32> {
    use libseccomp::error::SeccompErrno as E;
    Some(match e.errno()? {
        E::EACCES => libc::EACCES,
        E::ECANCELED => libc::ECANCELED,
        E::EDOM => libc::EDOM,
        E::EEXIST => libc::EEXIST,
        E::EFAULT => libc::EFAULT,
        E::EINVAL => libc::EINVAL,
        E::ENOENT => libc::ENOENT,
        E::ENOMEM => libc::ENOMEM,
        E::EOPNOTSUPP => libc::EOPNOTSUPP,
        E::ERANGE => libc::ERANGE,
        E::ESRCH => libc::ESRCH,
        _ => return e.sysrawrc().map(|c| -c),
    })
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
