//! The PostgreSQL wire protocol on the leader (port 5439, optionally TLS): the simple and
//! extended query protocols, results as text or binary rows, errors as ErrorResponse with
//! the SQLSTATE of the error, transaction status, and cancel requests (each statement runs
//! under an [`Interrupt`]). Statement execution itself lives in [`crate::session`].
//!
//! * [`startup`]: login (SCRAM-SHA-256 / MD5 / password-less loopback) and parameter statuses;
//! * [`extended`]: Parse / Describe / Bind / Execute;
//! * [`response`]: outcomes as pgwire responses;
//! * [`copy`]: COPY FROM STDIN data;
//! * [`cursors`]: DECLARE / FETCH / CLOSE.
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use tracing::Instrument as _;

use arrow::datatypes::{DataType, SchemaRef};
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use datafusion::common::ParamValues;
use futures::{FutureExt, Sink, SinkExt, StreamExt};
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    CopyResponse, DescribePortalResponse, DescribeStatementResponse, FieldInfo, QueryResponse,
    Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::{ClientInfo, ConnectionHandle, ConnectionManager, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::response::TransactionStatus;
use tokio::net::TcpListener;

use crate::LeaderState;
use crate::error::Error;
use crate::interrupt::{Interrupt, STATEMENT_TIMEOUT, parse_timeout, rows_until};
use crate::planner::query_context;
use crate::session::{CopyInLoad, Executor, Outcome};
use crate::sql::cursor::CursorStatement;
use crate::sql::statement::{Parsed, Statement};
use crate::sql::transaction::TxChange;
use blueshift_common::error::sqlstate;
use cursors::Cursors;

mod copy;
mod cursors;
mod extended;
mod response;
pub mod sasl;
pub mod sessions;
mod startup;

use copy::CopyInState;
use extended::Parser;
use response::into_response;

const SETTING_PREFIX: &str = "blueshift.setting.";

pub fn error_info(e: &Error) -> ErrorInfo {
    ErrorInfo::new("ERROR".to_string(), e.sqlstate(), e.user_message())
}

fn user_error(e: Error) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(&e)))
}

/// Serves PostgreSQL clients on `listener` until the task is dropped.
pub async fn serve(
    leader: Arc<LeaderState>,
    listener: TcpListener,
    tls: Option<pgwire::tokio::TlsAcceptor>,
) {
    let handlers = Arc::new(Handlers {
        handler: Arc::new(Handler {
            executor: Executor {
                leader: leader.clone(),
            },
            parser: Arc::new(Parser { leader }),
            connections: Arc::new(ConnectionManager::new()),
        }),
    });
    loop {
        match listener.accept().await {
            Ok((socket, _)) => {
                // Small replies must not wait for the client's delayed ACK (Nagle).
                if let Err(e) = socket.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY on a client socket");
                }
                let h = handlers.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    if let Err(e) = pgwire::tokio::process_socket(socket, tls, h).await {
                        tracing::debug!(error = %e, "client connection ended with an error");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

struct Handlers {
    handler: Arc<Handler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.handler.clone()
    }
    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.handler.clone()
    }
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.handler.clone()
    }
    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.handler.clone()
    }
    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::new(DefaultCancelHandler::new(self.handler.connections.clone()))
    }
}

/// The session's cancel handle. Kept under our own type: pgwire races `do_query` against a
/// handle stored as `Arc<ConnectionHandle>`, which would cover only planning, while our
/// results stream after `do_query` returns ([`Interrupt`] covers both).
struct SessionCancel(Arc<ConnectionHandle>);

struct Handler {
    executor: Executor,
    parser: Arc<Parser>,
    /// Live sessions by (pid, secret), for cancel requests.
    connections: Arc<ConnectionManager>,
}

impl Handler {
    /// What can stop the next statement of this session: a cancel request or its
    /// `statement_timeout`.
    async fn interrupt<C: ClientInfo>(
        &self,
        client: &C,
        settings: &HashMap<String, String>,
    ) -> Result<Interrupt, Error> {
        let cancel = match client.session_extensions().get::<SessionCancel>() {
            Some(handle) => {
                let rx = handle.0.start_query().await;
                Some(async move { rx.await.is_ok() }.boxed())
            }
            None => None,
        };
        let timeout = match settings.get(STATEMENT_TIMEOUT) {
            Some(v) => parse_timeout(v)?,
            None => None,
        };
        Ok(Interrupt::new(cancel, timeout))
    }

    /// Runs one statement, stopping it (and its result rows) when interrupted.
    async fn run<C: ClientInfo>(
        &self,
        client: &C,
        parsed: &Parsed,
        params: Option<ParamValues>,
        settings: &mut HashMap<String, String>,
    ) -> Result<Outcome, Error> {
        if client.transaction_status() == TransactionStatus::Error
            && !matches!(parsed.statement, Statement::Transaction(_))
        {
            return Err(Error::sql(
                blueshift_common::error::sqlstate::IN_FAILED_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        let mut interrupt = self.interrupt(client, settings).await?;
        // The session's transaction block, which the statement runs in.
        let slot = tx_slot(client);
        if client.transaction_status() == TransactionStatus::Error {
            // A statement of the block failed (perhaps while its rows were streamed, after
            // it returned): the block is aborted, and a COMMIT rolls it back.
            crate::session::tx::abort_slot(&slot);
        }
        let temp = temp_tables(client, &self.executor.leader);
        if let Statement::Cursor(stmt) = &parsed.statement {
            let run = self.cursor_statement(client, &parsed.text, stmt.clone(), params, settings);
            let run = crate::session::tx::TEMP_TABLES.scope(temp, run);
            return tokio::select! {
                r = crate::session::tx::TRANSACTION.scope(slot, run) => r,
                e = interrupt.fired() => Err(e.into()),
            };
        }
        let run = crate::session::tx::TEMP_TABLES
            .scope(temp, self.executor.execute(parsed, params, settings));
        let outcome = tokio::select! {
            r = crate::session::tx::TRANSACTION.scope(slot, run) => r?,
            e = interrupt.fired() => return Err(e.into()),
        };
        if let Outcome::Transaction {
            change: TxChange::End,
            ..
        } = &outcome
            && let Some(cursors) = client.session_extensions().get::<Cursors>()
        {
            cursors.end_transaction().await;
        }
        Ok(match outcome {
            Outcome::Rows { schema, stream } => Outcome::Rows {
                schema,
                stream: rows_until(stream, interrupt),
            },
            Outcome::CopyIn { columns, load } => {
                // The data arrives as CopyData messages, handled by the CopyHandler below.
                client
                    .session_extensions()
                    .insert(CopyInState(std::sync::Mutex::new(load)));
                Outcome::CopyIn {
                    columns,
                    load: None,
                }
            }
            other => other,
        })
    }
}

impl Handler {
    async fn cursor_statement<C: ClientInfo>(
        &self,
        client: &C,
        text: &str,
        stmt: CursorStatement,
        params: Option<ParamValues>,
        settings: &mut HashMap<String, String>,
    ) -> Result<Outcome, Error> {
        let cursors = match client.session_extensions().get::<Cursors>() {
            Some(c) => c,
            None => {
                client.session_extensions().insert(Cursors::default());
                client
                    .session_extensions()
                    .get::<Cursors>()
                    .ok_or_else(|| Error::sql(sqlstate::INTERNAL_ERROR, "no cursor store"))?
            }
        };
        match stmt {
            CursorStatement::Declare { name, hold, query } => {
                if !hold && !crate::sql::transaction::in_block(settings) {
                    return Err(Error::sql(
                        sqlstate::NO_ACTIVE_TRANSACTION,
                        "DECLARE CURSOR can only be used in transaction blocks",
                    ));
                }
                let query = Parsed {
                    text: text.to_string(),
                    redacted: text.to_string(),
                    statement: Statement::Query(query),
                };
                match self.executor.execute(&query, params, settings).await? {
                    Outcome::Rows { schema, stream } => {
                        cursors.declare(name, hold, schema, stream).await?;
                        Ok(Outcome::Command {
                            tag: "DECLARE CURSOR".to_string(),
                            rows: None,
                        })
                    }
                    _ => Err(Error::sql(
                        sqlstate::INVALID_CURSOR_DEFINITION,
                        "DECLARE CURSOR needs a query that returns rows",
                    )),
                }
            }
            CursorStatement::Fetch { name, count } => {
                let (schema, batches) = cursors.fetch(&name, count).await?;
                Ok(Outcome::Fetched { schema, batches })
            }
            CursorStatement::Close { name } => {
                cursors.close(name.as_deref()).await?;
                Ok(Outcome::Command {
                    tag: "CLOSE CURSOR".to_string(),
                    rows: None,
                })
            }
        }
    }
}

/// A session's transaction slot, kept with the connection (dropped with it: an open
/// block's changes are then discarded).
struct TxSlot(crate::session::tx::Slot);

/// A session's temporary tables, dropped with the connection.
struct SessionTemp(Arc<crate::session::tx::TempTables>);

/// The session's temporary-table list (created on first use).
pub(super) fn temp_tables<C: ClientInfo>(
    client: &C,
    leader: &Arc<LeaderState>,
) -> Arc<crate::session::tx::TempTables> {
    match client.session_extensions().get::<SessionTemp>() {
        Some(t) => t.0.clone(),
        None => {
            let t = Arc::new(crate::session::tx::TempTables::new(leader.clone()));
            client.session_extensions().insert(SessionTemp(t.clone()));
            t
        }
    }
}

/// The session's transaction slot (created on first use).
fn tx_slot<C: ClientInfo>(client: &C) -> crate::session::tx::Slot {
    match client.session_extensions().get::<TxSlot>() {
        Some(slot) => slot.0.clone(),
        None => {
            let slot = crate::session::tx::Slot::default();
            client.session_extensions().insert(TxSlot(slot.clone()));
            slot
        }
    }
}

fn settings_of<C: ClientInfo>(client: &C) -> HashMap<String, String> {
    client
        .metadata()
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(SETTING_PREFIX)
                .map(|k| (k.to_string(), v.clone()))
        })
        .collect()
}

fn store_settings<C: ClientInfo>(client: &mut C, settings: HashMap<String, String>) {
    let md = client.metadata_mut();
    md.retain(|k, _| !k.starts_with(SETTING_PREFIX));
    for (k, v) in settings {
        md.insert(format!("{SETTING_PREFIX}{k}"), v);
    }
}

#[async_trait]
impl SimpleQueryHandler for Handler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = match crate::sql::statement::parse(query) {
            Ok(s) => s,
            Err(e) => return Ok(vec![Response::Error(Box::new(error_info(&e)))]),
        };
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut settings = settings_of(client);
        let many = statements.len() > 1;
        let mut responses = Vec::with_capacity(statements.len());
        for stmt in statements {
            // Instrumented, not entered: a span guard held across an await moves between
            // worker threads with the task and corrupts the subscriber's span stack.
            // Never a password or credential in the logs.
            let span = tracing::info_span!("statement", sql = %truncate(&stmt.redacted));
            let result = async {
                match self.run(client, &stmt, None, &mut settings).await {
                    // Several statements run one after another, as in PostgreSQL: a
                    // statement's rows are complete (and its errors known) before the next
                    // one starts.
                    Ok(Outcome::Rows { schema, stream }) if many => {
                        materialize(schema, stream).await
                    }
                    other => other,
                }
            }
            .instrument(span.clone())
            .await;
            match result {
                Ok(outcome) => responses.push(into_response(outcome, &Format::UnifiedText)?),
                Err(e) => {
                    span.in_scope(|| {
                        tracing::debug!(code = %e.sqlstate(), error = %e.user_message(), "statement failed")
                    });
                    responses.push(Response::Error(Box::new(error_info(&e))));
                    break;
                }
            }
        }
        store_settings(client, settings);
        Ok(responses)
    }
}

/// Runs a statement's rows to the end, keeping them for the response.
async fn materialize(
    schema: SchemaRef,
    stream: datafusion::execution::SendableRecordBatchStream,
) -> Result<Outcome, Error> {
    use futures::TryStreamExt;
    let batches: Vec<arrow::array::RecordBatch> = stream.try_collect().await?;
    Ok(Outcome::batches(schema, batches))
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}
