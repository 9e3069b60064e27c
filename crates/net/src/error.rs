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
    #[error("{what}: {message}")]
    Netlink { what: String, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn os(what: impl Into<String>, source: io::Error) -> Error {
        Error::Os { what: what.into(), source }
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
            Error::Netlink { .. } => None,
        }
    }

    /// The object is already gone: teardown treats this as success.
    pub fn is_gone(&self) -> bool {
        matches!(self.errno(), Some(libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL))
    }
}
