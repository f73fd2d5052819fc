//! The one error type of nnlab. Every public function returns `Result<_, Error>`; messages are
//! written for the person who has to act on them (what was wrong, what was expected).

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// Tensor shapes that do not fit an op (message names the op and both shapes).
    Shape(String),
    /// An argument out of its allowed range (stride 0, negative size, unknown name...).
    Invalid(String),
    /// The GPU could not be used: no adapter, device lost, a limit that cannot be met.
    Gpu(String),
    /// A weights file that does not match the model (missing name, wrong shape, corrupt file).
    Weights(String),
    /// Reading or writing a file or data set failed.
    Io(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shape(m) => write!(f, "shape error: {m}"),
            Error::Invalid(m) => write!(f, "invalid argument: {m}"),
            Error::Gpu(m) => write!(f, "GPU error: {m}"),
            Error::Weights(m) => write!(f, "weights error: {m}"),
            Error::Io(m) => write!(f, "I/O error: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for returning a shape error with a formatted message.
#[macro_export]
macro_rules! shape_err {
    ($($arg:tt)*) => { Err($crate::Error::Shape(format!($($arg)*))) };
}

/// Shorthand for returning an invalid-argument error with a formatted message.
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => { Err($crate::Error::Invalid(format!($($arg)*))) };
}
