//! The crate's error kinds and the exit code each one maps to.
//!
//! Every failure a run can meet is one of these kinds; `main` prints the whole cause chain and
//! exits with [`Error::exit_code`]. Exit codes are a contract with schedulers (ARCHITECTURE.md "Exit codes"):
//! `0` published, `1` bad input or configuration, `2` infrastructure or unexpected failure,
//! `3` input not ready, `99` nothing to do (already published).

use std::fmt;

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, by kind; each kind has one exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration or command line is invalid. A retry will not help.
    #[error("configuration error: {0}")]
    Config(String),
    /// The input data breaks its contract (missing column, wrong type, corrupt file...).
    #[error("bad input: {0}")]
    Input(String),
    /// The input for the run date does not exist yet (the scheduler may retry later).
    #[error("input not ready: {0}")]
    NotReady(String),
    /// The date is already published and `--force` was not given.
    #[error("already published: {0}")]
    AlreadyPublished(String),
    /// Storage, engine or other failure outside the input's control. A retry may help.
    #[error("{context}: {source}")]
    Infra {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An invariant of the produced data did not hold; nothing was published.
    #[error("audit failed: {0}")]
    Audit(String),
    /// Another process holds the date's lease (it is being written); a retry later may help.
    #[error("busy: {0}")]
    Busy(String),
}

/// Exit codes, as documented in `--help`, the README and ARCHITECTURE.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Published, or nothing went wrong.
    Published = 0,
    /// Bad input or configuration.
    BadInput = 1,
    /// Infrastructure or unexpected failure.
    Infrastructure = 2,
    /// Input not ready.
    NotReady = 3,
    /// Nothing to do: already published.
    NothingToDo = 99,
}

impl Error {
    /// The exit code of this kind of error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Config(_) | Error::Input(_) => ExitCode::BadInput,
            Error::NotReady(_) => ExitCode::NotReady,
            Error::AlreadyPublished(_) => ExitCode::NothingToDo,
            Error::Infra { .. } | Error::Audit(_) | Error::Busy(_) => ExitCode::Infrastructure,
        }
    }

    /// An infrastructure error: `context` says what was being done.
    pub fn infra(
        context: impl fmt::Display,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Infra {
            context: context.to_string(),
            source: source.into(),
        }
    }
}

/// Attach context to infrastructure errors (storage, engine, model runtime).
pub trait Context<T> {
    /// Map the error to [`Error::Infra`] with `what` as its context.
    fn context(self, what: impl fmt::Display) -> Result<T>;
}

impl<T, E> Context<T> for std::result::Result<T, E>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::infra(what, e))
    }
}
