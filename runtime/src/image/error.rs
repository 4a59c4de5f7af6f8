//! The image subsystem's error type: what went wrong and where.

use std::path::PathBuf;

/// Everything that can go wrong while storing, importing, pulling or unpacking images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("image reference {reference:?} is invalid: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("digest {digest:?} is invalid: expected sha256:<64 hex digits>")]
    InvalidDigest { digest: String },
    #[error("{what}: digest mismatch (expected {expected}, got {actual})")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{what}: size mismatch (expected {expected} bytes, got {actual})")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("archive {}: {reason}", path.display())]
    Archive { path: PathBuf, reason: String },
    #[error("layer {layer}: {reason}")]
    Layer { layer: String, reason: String },
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    LayerEntry {
        layer: String,
        entry: String,
        reason: String,
    },
    #[error("{what}: {reason}")]
    Manifest { what: String, reason: String },
    #[error("{what}: invalid json: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("pull {reference}: {source}")]
    Registry {
        reference: String,
        #[source]
        source: oci_client::errors::OciDistributionError,
    },
    #[error("pull {reference}: {reason}")]
    Pull { reference: String, reason: String },
    #[error(
        "pull {reference}: registry {registry} refused access ({source}): give it credentials \
         for {registry} in the pull options, or check the ones given"
    )]
    Unauthorized {
        reference: String,
        registry: String,
        #[source]
        source: oci_client::errors::OciDistributionError,
    },
    #[error("image store database ({context}): {source}")]
    Database {
        context: &'static str,
        #[source]
        source: Box<redb::Error>,
    },
    #[error("image {reference} is not in the local store: pull or import it first")]
    NotFound { reference: String },
}

impl ImageError {
    /// An IO error with a sentence of context (`"create /var/lib/skiff/images/blobs"`).
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ImageError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn db(context: &'static str, source: impl Into<redb::Error>) -> Self {
        ImageError::Database {
            context,
            source: Box::new(source.into()),
        }
    }

    pub(crate) fn json(what: impl Into<String>, source: serde_json::Error) -> Self {
        ImageError::Json {
            what: what.into(),
            source,
        }
    }
}
