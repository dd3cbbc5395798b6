//! The error type shared by leader and compute code, the SQLSTATE each error carries, and the
//! one place that turns errors into gRPC statuses and back, so a compute node's
//! "division by zero" reaches the client as `22012`, not as "internal error".

use datafusion::error::DataFusionError;

/// Metadata key carrying the SQLSTATE of an error across gRPC / Flight.
pub const SQLSTATE_METADATA: &str = "x-blueshift-sqlstate";

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// SQLSTATE codes we use (PostgreSQL's table of error codes).
pub mod sqlstate {
    pub const SYNTAX_ERROR: &str = "42601";
    pub const UNDEFINED_TABLE: &str = "42P01";
    pub const UNDEFINED_COLUMN: &str = "42703";
    pub const DUPLICATE_TABLE: &str = "42P07";
    pub const DUPLICATE_COLUMN: &str = "42701";
    pub const DATATYPE_MISMATCH: &str = "42804";
    pub const UNDEFINED_FUNCTION: &str = "42883";
    pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
    pub const BAD_COPY_FILE_FORMAT: &str = "22P04";
    pub const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";
    pub const STRING_DATA_RIGHT_TRUNCATION: &str = "22001";
    pub const DIVISION_BY_ZERO: &str = "22012";
    pub const NOT_NULL_VIOLATION: &str = "23502";
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const UNDEFINED_FILE: &str = "58P01";
    pub const IO_ERROR: &str = "58030";
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const QUERY_CANCELED: &str = "57014";
    pub const CARDINALITY_VIOLATION: &str = "21000";
    pub const SERIALIZATION_FAILURE: &str = "40001";
    pub const STATEMENT_COMPLETION_UNKNOWN: &str = "40003";
    pub const WRONG_OBJECT_TYPE: &str = "42809";
    pub const INVALID_TABLE_DEFINITION: &str = "42P16";
    pub const INVALID_SAVEPOINT: &str = "3B001";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const INVALID_GRANT_OPERATION: &str = "0LP01";
    pub const OBJECT_IN_USE: &str = "55006";
    pub const NO_ACTIVE_TRANSACTION: &str = "25P01";
    pub const IN_FAILED_TRANSACTION: &str = "25P02";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const INVALID_CATALOG_NAME: &str = "3D000";
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const INVALID_AUTHORIZATION: &str = "28000";
    pub const DUPLICATE_OBJECT: &str = "42710";
    pub const UNDEFINED_OBJECT: &str = "42704";
    pub const INVALID_CURSOR_NAME: &str = "34000";
    pub const INVALID_CURSOR_DEFINITION: &str = "42P11";
    pub const DUPLICATE_CURSOR: &str = "42P03";
    pub const OUT_OF_MEMORY: &str = "53200";
    pub const INVALID_SCHEMA_NAME: &str = "3F000";
    pub const DUPLICATE_SCHEMA: &str = "42P06";
    pub const DEPENDENT_OBJECTS_STILL_EXIST: &str = "2BP01";
    pub const INVALID_OBJECT_DEFINITION: &str = "42P17";
    pub const INTERNAL_ERROR: &str = "XX000";
    pub const DATA_CORRUPTED: &str = "XX001";
    pub const INVALID_REGULAR_EXPRESSION: &str = "2201B";
    pub const ACTIVE_SQL_TRANSACTION: &str = "25001";
    pub const INVALID_COLUMN_DEFINITION: &str = "42611";
    /// A value given for an `IDENTITY` column (PostgreSQL's code for `GENERATED ALWAYS`).
    pub const GENERATED_ALWAYS: &str = "428C9";
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error with an explicit SQLSTATE, meant for the user as is.
    #[error("{message}")]
    Sql { code: &'static str, message: String },

    /// The same, received from another process (the code is whatever it sent).
    #[error("{message}")]
    Remote { code: String, message: String },

    #[error(transparent)]
    DataFusion(#[from] DataFusionError),

    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),

    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),

    #[error(transparent)]
    ObjectStore(#[from] object_store::Error),

    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub fn sql(code: &'static str, message: impl Into<String>) -> Self {
        Error::Sql {
            code,
            message: message.into(),
        }
    }

    /// The SQLSTATE a client should see for this error.
    pub fn sqlstate(&self) -> String {
        match self {
            Error::Sql { code, .. } => (*code).to_string(),
            Error::Remote { code, .. } => code.clone(),
            Error::DataFusion(e) => datafusion_sqlstate(e),
            Error::Arrow(e) => arrow_sqlstate(e).to_string(),
            Error::Parquet(_) => sqlstate::DATA_CORRUPTED.to_string(),
            Error::ObjectStore(object_store::Error::NotFound { .. }) => {
                sqlstate::UNDEFINED_FILE.to_string()
            }
            Error::ObjectStore(_) | Error::Io(_) => sqlstate::IO_ERROR.to_string(),
        }
    }

    /// The message a client should see (without DataFusion's nesting noise).
    pub fn user_message(&self) -> String {
        match self {
            Error::DataFusion(e) => datafusion_message(e),
            other => other.to_string(),
        }
    }

    /// Wraps this error for a DataFusion extension point, keeping the SQLSTATE.
    pub fn into_datafusion(self) -> DataFusionError {
        match self {
            Error::DataFusion(e) => e,
            other => DataFusionError::External(Box::new(other)),
        }
    }

    /// Encodes the error as a gRPC status that [`Error::from_status`] decodes losslessly.
    pub fn to_status(&self) -> tonic::Status {
        let code = self.sqlstate();
        let grpc_code = if code == sqlstate::QUERY_CANCELED {
            tonic::Code::Cancelled
        } else if code.starts_with("XX") || code.starts_with("58") {
            tonic::Code::Internal
        } else {
            tonic::Code::InvalidArgument
        };
        let mut status = tonic::Status::new(grpc_code, self.user_message());
        if let Ok(value) = code.parse() {
            status.metadata_mut().insert(SQLSTATE_METADATA, value);
        }
        status
    }

    /// Decodes a status from a peer; transport failures become connection errors.
    pub fn from_status(status: &tonic::Status, peer: &str) -> Self {
        if let Some(code) = status
            .metadata()
            .get(SQLSTATE_METADATA)
            .and_then(|v| v.to_str().ok())
        {
            return Error::Remote {
                code: code.to_string(),
                message: status.message().to_string(),
            };
        }
        match status.code() {
            // Without our SQLSTATE the status is not the peer's answer but the transport's:
            // a peer that dies mid-stream resets its HTTP/2 streams (RST_STREAM CANCEL),
            // which tonic reports as Cancelled. A cancel the peer meant carries 57014.
            tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled => Error::Remote {
                code: sqlstate::CONNECTION_FAILURE.to_string(),
                message: format!(
                    "lost connection to compute node {peer}: {}",
                    status.message()
                ),
            },
            _ => Error::Remote {
                code: sqlstate::INTERNAL_ERROR.to_string(),
                message: format!("compute node {peer}: {}", status.message()),
            },
        }
    }
}

impl From<Error> for DataFusionError {
    fn from(e: Error) -> Self {
        e.into_datafusion()
    }
}

fn arrow_sqlstate(e: &arrow::error::ArrowError) -> &'static str {
    use arrow::error::ArrowError as A;
    match e {
        A::DivideByZero => sqlstate::DIVISION_BY_ZERO,
        A::CastError(_) | A::ParseError(_) => sqlstate::INVALID_TEXT_REPRESENTATION,
        A::ComputeError(m) if m.contains("overflow") => sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
        A::ArithmeticOverflow(_) => sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
        // A NULL reached a NOT NULL column (a VALUES row planned against the table's schema).
        A::InvalidArgumentError(m) if m.contains("non-nullable but contains null") => {
            sqlstate::NOT_NULL_VIOLATION
        }
        A::InvalidArgumentError(_) => sqlstate::INVALID_PARAMETER_VALUE,
        A::NotYetImplemented(_) => sqlstate::FEATURE_NOT_SUPPORTED,
        A::IoError(..) => sqlstate::IO_ERROR,
        _ => sqlstate::INTERNAL_ERROR,
    }
}

/// Finds the SQLSTATE for a DataFusion error, looking through its wrappers for one of ours.
pub fn datafusion_sqlstate(e: &DataFusionError) -> String {
    use datafusion::common::SchemaError;
    match e {
        DataFusionError::External(inner) => external_sqlstate(inner.as_ref()),
        DataFusionError::Context(_, inner) => datafusion_sqlstate(inner),
        DataFusionError::Shared(inner) => datafusion_sqlstate(inner),
        DataFusionError::Diagnostic(_, inner) => datafusion_sqlstate(inner),
        DataFusionError::ArrowError(a, _) => arrow_sqlstate(a).to_string(),
        DataFusionError::SchemaError(s, _) => match s.as_ref() {
            SchemaError::FieldNotFound { .. } => sqlstate::UNDEFINED_COLUMN,
            SchemaError::DuplicateQualifiedField { .. }
            | SchemaError::DuplicateUnqualifiedField { .. } => sqlstate::DUPLICATE_COLUMN,
            SchemaError::AmbiguousReference { .. } => "42702",
        }
        .to_string(),
        DataFusionError::SQL(..) => sqlstate::SYNTAX_ERROR.to_string(),
        DataFusionError::NotImplemented(_) => sqlstate::FEATURE_NOT_SUPPORTED.to_string(),
        DataFusionError::ResourcesExhausted(_) => sqlstate::OUT_OF_MEMORY.to_string(),
        DataFusionError::IoError(_) => sqlstate::IO_ERROR.to_string(),
        DataFusionError::ObjectStore(_) => sqlstate::IO_ERROR.to_string(),
        DataFusionError::ParquetError(_) => sqlstate::DATA_CORRUPTED.to_string(),
        DataFusionError::Plan(m) => plan_sqlstate(m).to_string(),
        DataFusionError::Execution(m) => execution_sqlstate(m).to_string(),
        _ => sqlstate::INTERNAL_ERROR.to_string(),
    }
}

fn external_sqlstate(inner: &(dyn std::error::Error + Send + Sync + 'static)) -> String {
    if let Some(ours) = inner.downcast_ref::<Error>() {
        return ours.sqlstate();
    }
    if let Some(df) = inner.downcast_ref::<DataFusionError>() {
        return datafusion_sqlstate(df);
    }
    if let Some(a) = inner.downcast_ref::<arrow::error::ArrowError>() {
        return arrow_sqlstate(a).to_string();
    }
    sqlstate::INTERNAL_ERROR.to_string()
}

fn plan_sqlstate(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("table") && (m.contains("not found") || m.contains("doesn't exist")) {
        sqlstate::UNDEFINED_TABLE
    } else if m.contains("invalid function") || m.contains("no function matches") {
        sqlstate::UNDEFINED_FUNCTION
    } else if m.contains("cannot be cast") || m.contains("coerc") || m.contains("type mismatch") {
        sqlstate::DATATYPE_MISMATCH
    } else {
        sqlstate::SYNTAX_ERROR
    }
}

fn execution_sqlstate(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("divide by zero") || m.contains("division by zero") {
        sqlstate::DIVISION_BY_ZERO
    } else if m.contains("overflow") {
        sqlstate::NUMERIC_VALUE_OUT_OF_RANGE
    } else if m.contains("cast") || m.contains("parse") {
        sqlstate::INVALID_TEXT_REPRESENTATION
    } else {
        sqlstate::INTERNAL_ERROR
    }
}

/// The innermost meaningful message of a DataFusion error.
pub fn datafusion_message(e: &DataFusionError) -> String {
    match e {
        DataFusionError::External(inner) => {
            if let Some(ours) = inner.downcast_ref::<Error>() {
                ours.user_message()
            } else if let Some(df) = inner.downcast_ref::<DataFusionError>() {
                datafusion_message(df)
            } else {
                inner.to_string()
            }
        }
        DataFusionError::Context(_, inner) => datafusion_message(inner),
        DataFusionError::Shared(inner) => datafusion_message(inner),
        DataFusionError::Diagnostic(_, inner) => datafusion_message(inner),
        DataFusionError::ArrowError(a, _) => a.to_string(),
        DataFusionError::Plan(m)
        | DataFusionError::Execution(m)
        | DataFusionError::NotImplemented(m)
        | DataFusionError::Internal(m)
        | DataFusionError::ResourcesExhausted(m) => m.clone(),
        DataFusionError::SQL(e, _) => e.to_string(),
        DataFusionError::SchemaError(s, _) => s.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstate_survives_a_grpc_round_trip() {
        let e = Error::sql(sqlstate::DIVISION_BY_ZERO, "division by zero");
        let back = Error::from_status(&e.to_status(), "node-1");
        assert_eq!(back.sqlstate(), "22012");
        assert_eq!(back.user_message(), "division by zero");
    }

    #[test]
    fn wrapped_errors_keep_their_code() {
        let e: DataFusionError = Error::sql(sqlstate::UNDEFINED_FILE, "no such file").into();
        let e = e.context("while loading");
        assert_eq!(datafusion_sqlstate(&e), "58P01");
        assert_eq!(datafusion_message(&e), "no such file");
    }

    #[test]
    fn transport_failures_are_connection_errors() {
        let status = tonic::Status::unavailable("connection refused");
        assert_eq!(Error::from_status(&status, "n1").sqlstate(), "08006");
        // A killed peer's reset streams: a lost node (retried), not a user's cancel.
        let reset = tonic::Status::cancelled("h2 protocol error: stream reset");
        assert_eq!(Error::from_status(&reset, "n1").sqlstate(), "08006");
        // A cancel the peer reported keeps its SQLSTATE.
        let cancelled = Error::sql(sqlstate::QUERY_CANCELED, "query q has ended");
        assert_eq!(
            Error::from_status(&cancelled.to_status(), "n1").sqlstate(),
            "57014"
        );
    }
}
