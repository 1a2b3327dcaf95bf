//! The crate's error: a message, a message with its cause, or a wrapped library error.

use std::fmt::Display;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Msg(String),
    /// What was being done, and why it failed (the cause is printed as its own line).
    #[error("{context}")]
    Context {
        context: String,
        #[source]
        source: Box<Error>,
    },
    #[error(transparent)]
    Core(#[from] lumen_core::Error),
    #[error(transparent)]
    Candle(#[from] lumen_core::candle::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Image(#[from] image::ImageError),
    #[error(transparent)]
    Fmt(#[from] std::fmt::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn msg(m: impl Display) -> Self {
        Error::Msg(m.to_string())
    }
}

/// Returns early with a formatted [`Error::Msg`].
#[macro_export]
macro_rules! bail {
    ($($t:tt)*) => { return Err($crate::Error::Msg(format!($($t)*))) };
}

/// A formatted [`Error::Msg`].
#[macro_export]
macro_rules! err {
    ($($t:tt)*) => { $crate::Error::Msg(format!($($t)*)) };
}

/// Adds what was being done to an error.
pub trait Context<T> {
    fn context(self, c: impl Display) -> Result<T>;
    fn with_context<C: Display>(self, f: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, c: impl Display) -> Result<T> {
        self.map_err(|e| Error::Context { context: c.to_string(), source: Box::new(e.into()) })
    }
    fn with_context<C: Display>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| Error::Context { context: f().to_string(), source: Box::new(e.into()) })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, c: impl Display) -> Result<T> {
        self.ok_or_else(|| Error::Msg(c.to_string()))
    }
    fn with_context<C: Display>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.ok_or_else(|| Error::Msg(f().to_string()))
    }
}
