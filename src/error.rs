//! Typed errors for the library. Only `main` turns them into messages and exit codes.
//!
//! Each error's `Display` says what failed, at its own level only; what caused it is
//! its `#[source]` chain, and what to do about it is its [`Error::hint`]. `main`
//! prints the three the way uv does: `error: …`, `  caused by: …` per source, then
//! one `hint: …`. Where an error has to fit on one line (a warning, an audit row),
//! [`Chain`] joins the message and its causes with `: `.

use std::fmt;
use std::io;

/// Everything that can go wrong, grouped by what the user has to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Flags that cannot work together (exit code 2).
    #[error("{0}")]
    Usage(String),

    /// A reference did not parse (exit code 1: bad input, like a missing tag).
    #[error("invalid image reference '{input}': {reason}")]
    Reference { input: String, reason: String },

    /// Reading or writing a local file failed.
    #[error("{what}")]
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
        /// The transport error underneath (URLs stripped: they may carry tokens).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
        /// What the user can do about it, when we know.
        hint: Option<String>,
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

    /// The image or tag does not exist. `hint` (empty for none) says what is there
    /// instead or where to look.
    #[error("{what}: not found")]
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

    pub fn registry(
        registry: impl fmt::Display,
        kind: RegistryErrorKind,
        message: impl fmt::Display,
    ) -> Self {
        Error::Registry {
            registry: registry.to_string(),
            kind,
            message: message.to_string(),
            source: None,
            hint: None,
        }
    }

    /// Attach what the user can do. Only the variants that carry a hint take one;
    /// for the others it is dropped (their messages already say what to fix).
    pub fn with_hint(mut self, text: impl Into<String>) -> Self {
        match &mut self {
            Error::Registry { hint, .. } => *hint = Some(text.into()),
            Error::NotFound { hint, .. } => *hint = text.into(),
            _ => {}
        }
        self
    }

    /// The one `hint:` line for this error, if it has one.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::Registry { hint, .. } => hint.as_deref(),
            Error::NotFound { hint, .. } if !hint.is_empty() => Some(hint),
            // An error that travelled through `io::Read` keeps its hint.
            Error::Io { source, .. } => source
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<Error>())
                .and_then(Error::hint),
            _ => None,
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

/// An error and its causes on one line, `message: cause: cause`, for places that
/// have only one line (warnings, audit rows, traces).
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        for cause in causes(self.0) {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

/// The `#[source]` chain below `e`, as lines worth printing. An `io::Error` that
/// only carries one of our errors (see [`to_io`]) prints the same text as that
/// error, so the repeat is skipped.
pub fn causes(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut last = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if text != last && !text.is_empty() {
            out.push(text.clone());
        }
        last = text;
        next = s.source();
    }
    out
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
