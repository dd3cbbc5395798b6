//! Stopping a running statement: a PostgreSQL cancel request (Ctrl-C in psql, pgwire's
//! `ConnectionHandle`) or the session's `statement_timeout`. [`Interrupt::fired`] resolves
//! with the error to report; [`rows_until`] ends a result stream with it. Dropping the
//! statement's stream is what stops the work: the distributed plan's root then releases the
//! query on every compute node.
//!
//! This module only decides *when* to stop; it must not know how statements run.

use std::time::Duration;

use blueshift_common::Error;
use blueshift_common::error::sqlstate;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::time::Instant;

/// The setting name, as in PostgreSQL and Redshift.
pub const STATEMENT_TIMEOUT: &str = "statement_timeout";

/// Resolves `true` on a cancel request, `false` when the request can no longer come (the
/// connection moved on to another statement).
pub type CancelSignal = BoxFuture<'static, bool>;

pub struct Interrupt {
    cancel: Option<CancelSignal>,
    deadline: Option<Instant>,
}

impl Interrupt {
    pub fn new(cancel: Option<CancelSignal>, timeout: Option<Duration>) -> Self {
        Self {
            cancel,
            deadline: timeout.map(|t| Instant::now() + t),
        }
    }

    /// Resolves once the statement must stop, with the error to report; never otherwise.
    pub async fn fired(&mut self) -> Error {
        loop {
            let deadline = self.deadline;
            let cancelled = {
                let cancel = async {
                    match self.cancel.as_mut() {
                        Some(signal) => Some(signal.await),
                        None => std::future::pending().await,
                    }
                };
                let timer = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    c = cancel => c,
                    _ = timer => None,
                }
            };
            match cancelled {
                Some(true) => {
                    return Error::sql(
                        sqlstate::QUERY_CANCELED,
                        "canceling statement due to user request",
                    );
                }
                // The sender was replaced without a cancel: only the timer is left.
                Some(false) => self.cancel = None,
                None => {
                    return Error::sql(
                        sqlstate::QUERY_CANCELED,
                        "canceling statement due to statement timeout",
                    );
                }
            }
        }
    }
}

/// `stream`, ended with the interrupt's error as soon as it fires.
pub fn rows_until(
    stream: SendableRecordBatchStream,
    interrupt: Interrupt,
) -> SendableRecordBatchStream {
    let schema = stream.schema();
    let rows = futures::stream::unfold(Some((stream, interrupt)), |state| async move {
        let (mut stream, mut interrupt) = state?;
        tokio::select! {
            biased;
            e = interrupt.fired() => Some((Err(e.into_datafusion()), None)),
            item = stream.next() => item.map(|i| (i, Some((stream, interrupt)))),
        }
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, rows))
}

/// Parses a `statement_timeout` value as PostgreSQL does: a number of milliseconds, or a
/// number with a unit (`ms`, `s`, `min`, `h`, `d`). Zero disables the timeout.
pub fn parse_timeout(value: &str) -> Result<Option<Duration>, Error> {
    let bad = || {
        Error::sql(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("invalid value for parameter \"statement_timeout\": \"{value}\""),
        )
    };
    let (n, unit) = crate::limits::number_and_unit(value).ok_or_else(bad)?;
    let ms = match unit.as_str() {
        "" | "ms" => n,
        "s" => n * 1e3,
        "min" => n * 60e3,
        "h" => n * 3600e3,
        "d" => n * 86_400e3,
        _ => return Err(bad()),
    };
    if !ms.is_finite() || ms < 0.0 {
        return Err(bad());
    }
    Ok((ms >= 1.0).then(|| Duration::from_millis(ms as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_like_postgres() {
        assert_eq!(
            parse_timeout("1500").unwrap(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_timeout("2s").unwrap(), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_timeout("'1min'").unwrap(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_timeout("0").unwrap(), None);
        assert!(parse_timeout("soon").is_err());
        assert!(parse_timeout("5 parsecs").is_err());
    }

    #[tokio::test]
    async fn a_cancel_fires_and_a_replaced_sender_does_not() {
        use futures::FutureExt;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut i = Interrupt::new(Some(async move { rx.await.is_ok() }.boxed()), None);
        tx.send(()).unwrap();
        assert!(i.fired().await.user_message().contains("user request"));

        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move { rx.await.is_ok() }.boxed();
        let mut i = Interrupt::new(Some(signal), Some(Duration::from_millis(20)));
        drop(tx);
        assert!(i.fired().await.user_message().contains("statement timeout"));
    }
}
