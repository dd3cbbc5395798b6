//! The PostgreSQL wire protocol on the leader (port 5439): startup and login, the simple and
//! extended query protocols, results as text or binary rows, errors as ErrorResponse with
//! the SQLSTATE of the error, and cancel requests (each statement runs under an
//! [`Interrupt`]). Statement execution itself lives in [`crate::session`].

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

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
use crate::sql::transaction::TxChange;
use crate::sql::{StatementKind, classify, split_statements};
use blueshift_common::error::sqlstate;
use cursors::Cursors;

mod cursors;
mod startup;

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

/// The `COPY ... FROM STDIN` a session is in the middle of.
struct CopyInState(std::sync::Mutex<Option<CopyInLoad>>);

impl CopyInState {
    fn take(&self) -> Option<CopyInLoad> {
        match self.0.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        }
    }

    fn sender(&self) -> Option<tokio::sync::mpsc::Sender<bytes::Bytes>> {
        match self.0.lock() {
            Ok(g) => g.as_ref().map(|l| l.data.clone()),
            Err(p) => p.into_inner().as_ref().map(|l| l.data.clone()),
        }
    }
}

#[async_trait]
impl CopyHandler for Handler {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let sender = client
            .session_extensions()
            .get::<CopyInState>()
            .and_then(|s| s.sender());
        // A closed channel means the load already failed; its error comes with CopyDone.
        if let Some(sender) = sender {
            let _ = sender.send(copy_data.data).await;
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let load = client
            .session_extensions()
            .get::<CopyInState>()
            .and_then(|s| s.take())
            .ok_or_else(|| {
                user_error(Error::sql(
                    blueshift_common::error::sqlstate::INTERNAL_ERROR,
                    "CopyDone without a COPY in progress",
                ))
            })?;
        // End of data: the parser sees EOF, the load commits.
        drop(load.data);
        let rows = load
            .task
            .await
            .map_err(|e| {
                user_error(Error::sql(
                    blueshift_common::error::sqlstate::INTERNAL_ERROR,
                    format!("COPY task failed: {e}"),
                ))
            })?
            .map_err(user_error)?;
        let tag = Tag::new("COPY").with_rows(rows as usize);
        client
            .send(PgWireBackendMessage::CommandComplete(tag.into()))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Abort before the data channel closes, so nothing is committed.
        if let Some(load) = client
            .session_extensions()
            .get::<CopyInState>()
            .and_then(|s| s.take())
        {
            load.task.abort();
        }
        user_error(Error::sql(
            blueshift_common::error::sqlstate::QUERY_CANCELED,
            format!("COPY from stdin failed: {}", fail.message),
        ))
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
        sql: &str,
        params: Option<ParamValues>,
        settings: &mut HashMap<String, String>,
    ) -> Result<Outcome, Error> {
        if client.transaction_status() == TransactionStatus::Error
            && classify(sql)? != StatementKind::Transaction
        {
            return Err(Error::sql(
                blueshift_common::error::sqlstate::IN_FAILED_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        let mut interrupt = self.interrupt(client, settings).await?;
        if let Some(stmt) = crate::sql::cursor::parse_cursor_statement(sql)? {
            return tokio::select! {
                r = self.cursor_statement(client, stmt, params, settings) => r,
                e = interrupt.fired() => Err(e.into()),
            };
        }
        let outcome = tokio::select! {
            r = self.executor.execute(sql, params, settings) => r?,
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

/// Turns an execution outcome into a pgwire response.
fn into_response(outcome: Outcome, format: &Format) -> PgWireResult<Response> {
    match outcome {
        Outcome::Command { tag, rows } => {
            let t = Tag::new(&tag);
            let t = match rows {
                Some(n) => t.with_rows(n as usize),
                None => t,
            };
            Ok(Response::Execution(t))
        }
        Outcome::Transaction { tag, change } => {
            let t = Tag::new(tag);
            Ok(match change {
                TxChange::Begin => Response::TransactionStart(t),
                TxChange::End => Response::TransactionEnd(t),
                TxChange::Within => Response::Execution(t),
            })
        }
        Outcome::CopyIn { columns, .. } => Ok(Response::CopyIn(CopyResponse::new(
            0,
            columns,
            futures::stream::empty(),
        ))),
        Outcome::CopyOut {
            copy,
            schema,
            stream,
        } => {
            let columns = schema.fields().len();
            let header = Arc::new(std::sync::Mutex::new(copy.header_line(&schema)));
            let unsent_header = header.clone();
            let take = |h: &std::sync::Mutex<Option<String>>| match h.lock() {
                Ok(mut g) => g.take(),
                Err(p) => p.into_inner().take(),
            };
            let data = stream
                .map(move |batch| {
                    let lines: Vec<PgWireResult<CopyData>> = match batch
                        .map_err(Error::from)
                        .and_then(|b| crate::sql::copy_out::text_values(&b))
                    {
                        Ok(rows) => rows
                            .iter()
                            .map(|row| {
                                // The header travels with the first row (pgwire counts
                                // messages as rows).
                                let mut line = take(&header).unwrap_or_default();
                                line.push_str(&copy.line(row));
                                Ok(CopyData::new(bytes::Bytes::from(line)))
                            })
                            .collect(),
                        Err(e) => vec![Err(user_error(e))],
                    };
                    futures::stream::iter(lines)
                })
                .flatten()
                // No rows: the header alone.
                .chain(futures::stream::iter(std::iter::from_fn(move || {
                    take(&unsent_header).map(|h| Ok(CopyData::new(bytes::Bytes::from(h))))
                })));
            Ok(Response::CopyOut(CopyResponse::new(0, columns, data)))
        }
        Outcome::Fetched { schema, batches } => {
            let mut response = match into_response(Outcome::batches(schema, batches), format)? {
                Response::Query(q) => q,
                _ => {
                    return Err(user_error(Error::sql(
                        sqlstate::INTERNAL_ERROR,
                        "FETCH without rows",
                    )));
                }
            };
            // pgwire appends the row count to the tag.
            response.set_command_tag("FETCH");
            Ok(Response::Query(response))
        }
        Outcome::Rows { schema, stream } => {
            let fields = Arc::new(arrow_schema_to_pg_fields(schema.as_ref(), format, None)?);
            let f2 = fields.clone();
            let rows = stream
                .map(move |batch| {
                    let rows: Vec<PgWireResult<pgwire::messages::data::DataRow>> = match batch {
                        Ok(b) => encode_recordbatch(f2.clone(), b).collect(),
                        Err(e) => vec![Err(user_error(e.into()))],
                    };
                    futures::stream::iter(rows)
                })
                .flatten();
            Ok(Response::Query(QueryResponse::new(fields, rows)))
        }
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
        let statements = match split_statements(query) {
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
            let span = tracing::info_span!("statement", sql = %truncate(&stmt));
            let _g = span.enter();
            let result = match self.run(client, &stmt, None, &mut settings).await {
                // Several statements run one after another, as in PostgreSQL: a statement's
                // rows are complete (and its errors known) before the next one starts.
                Ok(Outcome::Rows { schema, stream }) if many => materialize(schema, stream).await,
                other => other,
            };
            match result {
                Ok(outcome) => responses.push(into_response(outcome, &Format::UnifiedText)?),
                Err(e) => {
                    tracing::debug!(code = %e.sqlstate(), error = %e.user_message(), "statement failed");
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

/// A statement prepared through the extended protocol.
#[derive(Debug, Clone)]
pub struct Prepared {
    sql: String,
    param_types: Vec<Option<DataType>>,
    result: Option<SchemaRef>,
}

/// The portal with each parameter the client sent as `unknown` (OID 0 or 705) typed: by
/// inference when the plan knows its type, else as text. (arrow-pg decodes an unknown
/// parameter by guessing: `'{a,b}'` becomes an array and a NULL is dropped, which shifts
/// every later parameter.)
fn with_resolved_parameter_types(
    portal: &Portal<Prepared>,
    inferred: &[Option<&DataType>],
) -> PgWireResult<Portal<Prepared>> {
    let types = (0..portal.parameter_len())
        .map(|i| {
            let declared = portal.statement.parameter_types.get(i).cloned().flatten();
            match declared {
                Some(t) if t != Type::UNKNOWN => Some(t),
                _ if inferred.get(i).copied().flatten().is_some() => None,
                _ => Some(Type::TEXT),
            }
        })
        .collect();
    let statement = pgwire::api::stmt::StoredStatement::new(
        portal.statement.id.clone(),
        portal.statement.statement.clone(),
        types,
    );
    let formats = match &portal.parameter_format {
        Format::UnifiedText => vec![],
        Format::UnifiedBinary => vec![1],
        Format::Individual(codes) => codes.clone(),
    };
    let bind = pgwire::messages::extendedquery::Bind::new(
        Some(portal.name.clone()),
        Some(portal.statement.id.clone()),
        formats,
        portal.parameters.clone(),
        vec![],
    );
    Portal::try_new(&bind, Arc::new(statement))
}

/// The SQL type a declared parameter type casts to; `None` for types left to inference.
fn sql_type_of(t: &Type) -> Option<&'static str> {
    Some(match *t {
        Type::BOOL => "boolean",
        Type::INT2 => "smallint",
        Type::INT4 => "integer",
        Type::INT8 => "bigint",
        Type::FLOAT4 => "real",
        Type::FLOAT8 => "double precision",
        Type::NUMERIC => "numeric",
        Type::TEXT => "text",
        Type::VARCHAR => "varchar",
        Type::BPCHAR => "char",
        Type::DATE => "date",
        Type::TIMESTAMP => "timestamp",
        Type::TIMESTAMPTZ => "timestamptz",
        _ => return None,
    })
}

struct Parser {
    leader: Arc<LeaderState>,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let sql = sql.trim().trim_end_matches(';').to_string();
        if sql.is_empty() {
            return Ok(None);
        }
        let kind = classify(&sql).map_err(user_error)?;
        // Parameter types the client declared fix the parameters' types, as in PostgreSQL
        // (`select $1` with $1 int2 returns an int2).
        let sql = if matches!(kind, StatementKind::Query | StatementKind::Insert) {
            let declared: Vec<Option<&'static str>> = types
                .iter()
                .map(|t| t.as_ref().and_then(sql_type_of))
                .collect();
            crate::sql::compat::with_parameter_types(&sql, &declared).map_err(user_error)?
        } else {
            sql
        };
        let mut prepared = Prepared {
            sql: sql.clone(),
            param_types: Vec::new(),
            result: None,
        };
        if matches!(kind, StatementKind::Query | StatementKind::Insert) {
            let qc = query_context(&self.leader).map_err(user_error)?;
            let plan =
                crate::sql::compat::logical_plan(&qc.ctx.state(), &sql, &qc.empty_catalog_tables)
                    .await
                    .map_err(user_error)?;
            let ptypes = plan
                .get_parameter_types()
                .map_err(|e| user_error(e.into()))?;
            let n = ptypes.len().max(types.len());
            prepared.param_types = (1..=n)
                .map(|i| ptypes.get(&format!("${i}")).cloned().flatten())
                .collect();
            if kind == StatementKind::Query {
                prepared.result = Some(Arc::new(plan.schema().as_arrow().clone()));
            }
        } else if kind == StatementKind::Show
            && let Some(cmd) = crate::sql::show::parse_show_bound(&sql, None).map_err(user_error)?
        {
            prepared.result = Some(crate::sql::show::result_schema(cmd.objects.columns()));
            let placeholders = crate::sql::words(&sql)
                .map_err(user_error)?
                .iter()
                .filter(|t| {
                    matches!(
                        t,
                        datafusion::sql::sqlparser::tokenizer::Token::Placeholder(_)
                    )
                })
                .count();
            prepared.param_types = vec![Some(DataType::Utf8); placeholders.max(types.len())];
        } else if matches!(kind, StatementKind::Show | StatementKind::Explain) {
            prepared.result = Some(Arc::new(arrow::datatypes::Schema::new(vec![
                arrow::datatypes::Field::new("result", DataType::Utf8, true),
            ])));
        }
        Ok(Some(prepared))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        stmt.param_types
            .iter()
            .map(|t| match t {
                Some(dt) => into_pg_type(dt),
                None => Ok(Type::TEXT),
            })
            .collect()
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match &stmt.result {
            Some(s) => arrow_schema_to_pg_fields(s, format.unwrap_or(&Format::UnifiedText), None),
            None => Ok(vec![]),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let stmt = &portal.statement.statement;
        let params = if portal.parameters.is_empty() {
            None
        } else {
            let inferred: Vec<Option<&DataType>> =
                stmt.param_types.iter().map(|t| t.as_ref()).collect();
            let portal = with_resolved_parameter_types(portal, &inferred)?;
            let values: ParamValues =
                arrow_pg::datatypes::df::deserialize_parameters(&portal, &inferred)?;
            Some(values)
        };
        let mut settings = settings_of(client);
        let result = self.run(client, &stmt.sql, params, &mut settings).await;
        store_settings(client, settings);
        match result {
            Ok(outcome) => into_response(outcome, &portal.result_column_format),
            Err(e) => Err(user_error(e)),
        }
    }

    /// As pgwire's, except that a statement with parameters and no result columns (an
    /// INSERT) is described as ParameterDescription + NoData, as PostgreSQL does; pgwire
    /// sends an empty RowDescription, and pgjdbc then expects rows from `executeUpdate`.
    async fn on_describe<C>(
        &self,
        client: &mut C,
        message: pgwire::messages::extendedquery::Describe,
    ) -> PgWireResult<()>
    where
        C: ClientInfo
            + pgwire::api::ClientPortalStore
            + Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: pgwire::api::store::PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use pgwire::api::store::{Entry, PortalStore};
        if message.target_type == pgwire::messages::extendedquery::TARGET_TYPE_BYTE_STATEMENT {
            let name = message.name.as_deref().unwrap_or("");
            if let Some(Entry::Value(stmt)) = client.portal_store().get_statement(name) {
                let described = self.do_describe_statement(client, &stmt).await?;
                if described.fields.is_empty() {
                    client
                        .feed(PgWireBackendMessage::ParameterDescription(
                            pgwire::messages::data::ParameterDescription::new(
                                described.parameters.iter().map(|t| t.oid()).collect(),
                            ),
                        ))
                        .await?;
                    client
                        .send(PgWireBackendMessage::NoData(
                            pgwire::messages::data::NoData::new(),
                        ))
                        .await?;
                    return Ok(());
                }
                return pgwire::api::query::send_describe_response(client, &described).await;
            }
        }
        self._on_describe(client, message).await
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        stmt: &StoredStatement<Self::Statement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let param_types = self.parser.get_parameter_types(&stmt.statement)?;
        let param_types = stmt
            .parameter_types
            .iter()
            .cloned()
            .chain(std::iter::repeat(None))
            .zip(param_types)
            .map(|(given, inferred)| match given {
                Some(t) if t != Type::UNKNOWN => t,
                _ => inferred,
            })
            .collect();
        let fields = self.parser.get_result_schema(&stmt.statement, None)?;
        Ok(DescribeStatementResponse::new(param_types, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Self::Statement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let fields = self.parser.get_result_schema(
            &portal.statement.statement,
            Some(&portal.result_column_format),
        )?;
        Ok(DescribePortalResponse::new(fields))
    }
}
