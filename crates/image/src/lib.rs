//! OCI images for lab: references read as Docker reads them ([`Reference`]), a
//! content-addressed store of unpacked layers ([`Store`]) that nodes stack as overlay lower
//! directories, and import of `docker save` tarballs and OCI image layouts. Everything that
//! comes from an image is treated as hostile: blobs are checked against their digests, layers
//! are unpacked without ever following what they contain ([`unpack`]).

#![forbid(unsafe_code)]

pub mod digest;
pub mod oci;
pub mod pull;
pub mod reference;
mod store;
pub mod unpack;

pub use digest::Digest;
pub use oci::{HealthConfig, ImageConfig, RunConfig};
pub use reference::Reference;
pub use store::{Image, ImageInfo, Store, STORE_ROOT};

/// What can go wrong with an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("image reference `{reference}`: {why}")]
    Reference { reference: String, why: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: its digest is {got}, not the {want} it should have (corrupt or tampered with)")]
    DigestMismatch { what: String, want: String, got: String },
    #[error("layer entry `{entry}` is refused: {why}")]
    Unsafe { entry: String, why: String },
    #[error("{what}: media type `{media_type}` is not one lab reads")]
    UnsupportedMediaType { what: String, media_type: String },
    #[error("image {0} is not in the store (`lab image pull` or `lab image import` it)")]
    NotFound(String),
    #[error("pulling {image} from {registry}: {why}")]
    Pull { image: String, registry: String, why: String },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { what: what.into(), source }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
