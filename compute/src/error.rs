//! Errors of the compute node. Anything a client should see carries a SQLSTATE through
//! [`blueshift_common::Error`] and crosses Flight as a status with that code.

use blueshift_common::error::sqlstate;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Common(#[from] blueshift_common::Error),
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("transport error: {0}")]
    Transport(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("configuration error: {0}")]
    Config(String),
    #[error("this node has not registered with the leader yet")]
    NotRegistered,
}

impl Error {
    pub fn to_status(&self) -> tonic::Status {
        match self {
            Error::Common(e) => e.to_status(),
            Error::DataFusion(e) => blueshift_common::Error::DataFusion(clone_df(e)).to_status(),
            Error::NotRegistered => blueshift_common::Error::sql(
                sqlstate::CANNOT_CONNECT_NOW,
                "compute node is still starting",
            )
            .to_status(),
            other => blueshift_common::Error::sql(sqlstate::INTERNAL_ERROR, other.to_string())
                .to_status(),
        }
    }
}

/// DataFusion errors are not `Clone`; keep code and message, which is all a status carries.
fn clone_df(e: &datafusion::error::DataFusionError) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(blueshift_common::Error::Remote {
        code: blueshift_common::error::datafusion_sqlstate(e),
        message: blueshift_common::error::datafusion_message(e),
    }))
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        e.to_status()
    }
}
