use std::io;

/// A failed network operation, naming the object it was about and keeping the errno.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Os {
        what: String,
        #[source]
        source: io::Error,
    },
    /// netlink itself failed (a message that did not decode, a closed socket): no errno.
    #[error("{what}: {message}")]
    Netlink { what: String, message: String },
    /// A request that cannot be made as asked (a name with a NUL byte, mixed IP versions).
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    /// This kernel lacks what the request needs (a qdisc, a sysctl).
    #[error("{what}: this kernel has no {feature}")]
    MissingFeature { what: String, feature: String },
    /// A worker thread (one that entered a namespace) died before it answered.
    #[error("{what}: the worker thread died")]
    Thread { what: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn os(what: impl Into<String>, source: io::Error) -> Error {
        Error::Os { what: what.into(), source }
    }

    pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Invalid { what: what.into(), message: message.into() }
    }

    pub(crate) fn netlink(what: impl Into<String>, e: rtnetlink::Error) -> Error {
        match e {
            rtnetlink::Error::NetlinkError(msg) => match msg.code {
                Some(code) => Error::os(what, io::Error::from_raw_os_error(-code.get())),
                None => Error::Netlink { what: what.into(), message: "unexpected acknowledgement".into() },
            },
            other => Error::Netlink { what: what.into(), message: other.to_string() },
        }
    }

    /// The errno, when the kernel gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Os { source, .. } => source.raw_os_error(),
            Error::Netlink { .. } | Error::Invalid { .. } | Error::MissingFeature { .. } | Error::Thread { .. } => None,
        }
    }

    /// The object is already gone: teardown treats this as success.
    pub fn is_gone(&self) -> bool {
        matches!(self.errno(), Some(libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL))
    }
}
