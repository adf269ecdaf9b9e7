//! Typed errors for the library. Only `main` turns them into messages and exit codes.

use std::fmt;
use std::io;

/// Everything that can go wrong, grouped by what the user has to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line or a reference could not be understood (exit code 2).
    #[error("{0}")]
    Usage(String),

    /// A reference did not parse.
    #[error("invalid image reference '{input}': {reason}")]
    Reference { input: String, reason: String },

    /// Reading or writing a local file failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },

    /// A registry answered with an error, or could not be reached.
    #[error("{registry}: {message}")]
    Registry {
        registry: String,
        kind: RegistryErrorKind,
        message: String,
    },

    /// Content did not match the digest that names it.
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    /// A manifest, config, index or layer is malformed or hostile.
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },

    /// Well-formed input that coldpress does not handle.
    #[error("{what}: {message}")]
    Unsupported { what: String, message: String },

    /// The image or tag does not exist.
    #[error("{what}: not found{hint}")]
    NotFound { what: String, hint: String },

    /// A CI threshold was exceeded (exit code 3).
    #[error("{0}")]
    Threshold(String),

    /// The output did not pass verification; nothing was tagged.
    #[error("verification failed: {0}")]
    Verify(String),

    /// The smoke run failed: the output does not answer like the source, or an
    /// image could not be run. Nothing was tagged.
    #[error("smoke: {0}")]
    Smoke(String),
}

/// What a registry error means for the caller: retry, re-authenticate, or give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryErrorKind {
    /// Connection refused/reset, timeout, TLS failure.
    Network,
    /// 401/403 after credentials were offered (or none were available).
    Auth,
    /// 404 for a manifest, blob or repository.
    NotFound,
    /// 429 or 5xx: worth retrying.
    Transient,
    /// Any other answer the registry should not have given.
    Protocol,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(what: impl fmt::Display, source: io::Error) -> Self {
        Error::Io {
            what: what.to_string(),
            source,
        }
    }

    pub fn invalid(what: impl fmt::Display, message: impl fmt::Display) -> Self {
        Error::Invalid {
            what: what.to_string(),
            message: message.to_string(),
        }
    }

    pub fn unsupported(what: impl fmt::Display, message: impl fmt::Display) -> Self {
        Error::Unsupported {
            what: what.to_string(),
            message: message.to_string(),
        }
    }

    /// Whether repeating the same request might succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Registry {
                kind: RegistryErrorKind::Transient | RegistryErrorKind::Network,
                ..
            }
        )
    }

    /// Exit code for `main`: 2 usage (flags that cannot work together), 3 threshold,
    /// 1 everything else. A reference that does not parse is bad input, like a
    /// missing tag, so it is 1 (issue 5), as in crane and skopeo.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Threshold(_) => 3,
            _ => 1,
        }
    }
}

/// Attach "what were we doing" to io errors at the call site.
pub trait IoContext<T> {
    fn ctx(self, what: impl fmt::Display) -> Result<T>;
    fn with_ctx<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::io(what, e))
    }
    fn with_ctx<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}

/// Errors that travel through `std::io::Read` (e.g. a digest mismatch found at EOF)
/// are wrapped in an `io::Error`; this recovers the typed error.
pub fn from_io(what: impl fmt::Display, e: io::Error) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        let inner = e.into_inner().expect("checked above");
        return *inner.downcast::<Error>().expect("checked above");
    }
    Error::io(what, e)
}

/// Wrap a typed error so it can travel through `std::io::Read`.
pub fn to_io(e: Error) -> io::Error {
    io::Error::other(e)
}
