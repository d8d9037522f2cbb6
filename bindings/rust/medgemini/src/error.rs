//! Status codes and the error type.
use crate::sys;
use std::fmt;

/// The library's status codes (values pinned forever by the C API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// An argument is out of range or missing.
    InvalidArg,
    /// Wrong, freed or busy handle; calls in the wrong order.
    Misuse,
    /// An allocation failed.
    NoMem,
    /// Opening, reading, writing or mapping a file failed.
    Io,
    /// The model file is malformed or inconsistent.
    ModelFormat,
    /// A stored checksum does not match the data.
    Checksum,
    /// A valid request the library cannot serve.
    Unsupported,
    /// Image data is corrupt, truncated or of an unknown format.
    ImageFormat,
    /// The input exceeds a configured limit.
    Limit,
    /// Stopped by an [`Interrupter`](crate::Interrupter) or the callback.
    Interrupted,
    /// The context's token capacity is used up.
    ContextFull,
    /// A buffer is too small (the wrappers size buffers themselves).
    BufferTooSmall,
    /// No such metadata key or tensor.
    NotFound,
    /// The value exists with another type.
    Type,
    /// A bug in the library.
    Internal,
    /// A genotype or scoring file is malformed.
    DataFormat,
    /// A code this binding does not know (from a newer library).
    Unknown(i32),
}

impl Status {
    /// The status of a C return code (`MG_OK` has none: it maps to Unknown(0)).
    pub fn from_code(code: i32) -> Status {
        match code {
            sys::MG_E_INVALID_ARG => Status::InvalidArg,
            sys::MG_E_MISUSE => Status::Misuse,
            sys::MG_E_NOMEM => Status::NoMem,
            sys::MG_E_IO => Status::Io,
            sys::MG_E_MODEL_FORMAT => Status::ModelFormat,
            sys::MG_E_CHECKSUM => Status::Checksum,
            sys::MG_E_UNSUPPORTED => Status::Unsupported,
            sys::MG_E_IMAGE_FORMAT => Status::ImageFormat,
            sys::MG_E_LIMIT => Status::Limit,
            sys::MG_E_INTERRUPTED => Status::Interrupted,
            sys::MG_E_CONTEXT_FULL => Status::ContextFull,
            sys::MG_E_BUFFER_TOO_SMALL => Status::BufferTooSmall,
            sys::MG_E_NOT_FOUND => Status::NotFound,
            sys::MG_E_TYPE => Status::Type,
            sys::MG_E_INTERNAL => Status::Internal,
            sys::MG_E_DATA_FORMAT => Status::DataFormat,
            n => Status::Unknown(n),
        }
    }

    /// The C value (`MG_E_*`).
    pub fn code(self) -> i32 {
        match self {
            Status::InvalidArg => sys::MG_E_INVALID_ARG,
            Status::Misuse => sys::MG_E_MISUSE,
            Status::NoMem => sys::MG_E_NOMEM,
            Status::Io => sys::MG_E_IO,
            Status::ModelFormat => sys::MG_E_MODEL_FORMAT,
            Status::Checksum => sys::MG_E_CHECKSUM,
            Status::Unsupported => sys::MG_E_UNSUPPORTED,
            Status::ImageFormat => sys::MG_E_IMAGE_FORMAT,
            Status::Limit => sys::MG_E_LIMIT,
            Status::Interrupted => sys::MG_E_INTERRUPTED,
            Status::ContextFull => sys::MG_E_CONTEXT_FULL,
            Status::BufferTooSmall => sys::MG_E_BUFFER_TOO_SMALL,
            Status::NotFound => sys::MG_E_NOT_FOUND,
            Status::Type => sys::MG_E_TYPE,
            Status::Internal => sys::MG_E_INTERNAL,
            Status::DataFormat => sys::MG_E_DATA_FORMAT,
            Status::Unknown(n) => n,
        }
    }

    /// The library's static description of this status.
    pub fn description(self) -> &'static str {
        crate::status_str(self.code())
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// An error from the library: its status and message. Generation errors
/// that stop midway ([`Status::Interrupted`], [`Status::ContextFull`]) also
/// carry the text produced until then.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    status: Status,
    message: String,
    partial: Option<String>,
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn new(status: Status, message: impl Into<String>) -> Error {
        Error { status, message: message.into(), partial: None }
    }

    pub(crate) fn from_code(code: i32) -> Error {
        let status = Status::from_code(code);
        Error::new(status, status.description())
    }

    pub(crate) fn with_partial(mut self, text: Option<String>) -> Error {
        self.partial = text;
        self
    }

    /// The status code.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The library's message for this failure (may name a file, line or
    /// field); the status description when the library gave none.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// For an interrupted or full-context generation: the text made so far.
    pub fn partial_text(&self) -> Option<&str> {
        self.partial.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let desc = self.status.description();
        if self.message.is_empty() || self.message == desc {
            write!(f, "{desc} (status {})", self.status.code())
        } else {
            write!(f, "{} ({desc}, status {})", self.message, self.status.code())
        }
    }
}

impl std::error::Error for Error {}
