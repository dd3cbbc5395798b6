//! The leader's error type. Every error a client can see has a SQLSTATE; the pgwire layer is
//! the one place that turns it into an ErrorResponse.

use blueshift_common::error::sqlstate;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Common(#[from] blueshift_common::Error),
    #[error("catalog storage: {0}")]
    CatalogIo(String),
    #[error("transport error: {0}")]
    Transport(String),
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    pub fn sql(code: &'static str, message: impl Into<String>) -> Self {
        Error::Common(blueshift_common::Error::sql(code, message))
    }

    pub fn sqlstate(&self) -> String {
        match self {
            Error::Common(e) => e.sqlstate(),
            Error::CatalogIo(_) => sqlstate::IO_ERROR.to_string(),
            Error::Transport(_) => sqlstate::CONNECTION_FAILURE.to_string(),
            Error::Config(_) => "F0000".to_string(),
        }
    }

    pub fn user_message(&self) -> String {
        match self {
            Error::Common(e) => e.user_message(),
            other => other.to_string(),
        }
    }
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Error::Common(blueshift_common::Error::DataFusion(e))
    }
}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Error::Common(blueshift_common::Error::Arrow(e))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Common(blueshift_common::Error::Io(e))
    }
}

impl From<Error> for datafusion::error::DataFusionError {
    fn from(e: Error) -> Self {
        match e {
            Error::Common(c) => c.into_datafusion(),
            other => datafusion::error::DataFusionError::External(Box::new(other)),
        }
    }
}
