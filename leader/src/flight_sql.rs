//! Arrow Flight SQL on the leader (port 8815): the same statements as the PostgreSQL port,
//! with results streamed as Arrow record batches, never converted to rows.
//!
//! * Login: `Handshake` with `authorization: Basic base64(user:password)` answers with a
//!   bearer token (in the `authorization` response header and the payload); later calls carry
//!   `authorization: Bearer <token>`. A token is 256 random bits, lives `flight_sql_token_ttl`
//!   (default 1 h), and dies with the secret it was issued against: a password change or
//!   `DROP USER` revokes every token of that user (checked on each call). The password-less
//!   built-in users may log in with an empty password, or send no credentials at all, from
//!   loopback only (as on port 5439).
//! * Queries: `GetFlightInfo(CommandStatementQuery)` plans the statement for its schema and
//!   returns a ticket that holds the SQL itself, so a ticket can be fetched again (each
//!   `DoGet` runs the query). A statement that is not a query (DDL, INSERT, COPY) runs at
//!   `GetFlightInfo` and its ticket returns nothing more.
//! * Updates: `DoPut(CommandStatementUpdate)` returns the affected row count.
//! * Prepared statements: `CreatePreparedStatement` returns the result and parameter
//!   schemas; `DoPut(CommandPreparedStatementQuery)` binds a parameter row; `GetFlightInfo` /
//!   `DoGet` run it; `DoPut(CommandPreparedStatementUpdate)` runs it once per parameter row;
//!   `ClosePreparedStatement` forgets it.
//! * Metadata: `GetCatalogs`, `GetDbSchemas`, `GetTables` (with table schemas), `GetTableTypes`,
//!   `GetSqlInfo`; `GetSchema` of any of these commands, a statement or a prepared statement.
//!
//! Errors carry the PostgreSQL message and SQLSTATE in the status message. Plain-text gRPC
//! only (no TLS on this port yet).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, SqlSupportedCaseSensitivity,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use base64::Engine;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::scalar::ScalarValue;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::LeaderState;
use crate::error::Error;
use crate::planner::{DEFAULT_CATALOG, query_context};
use crate::session::{Executor, Outcome, SESSION_USER};
use crate::sql::statement::{Ast, Parsed, QuestionMarks, Statement};

type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;

/// A ticket: the statement to run (and whether it already ran).
#[derive(serde::Serialize, serde::Deserialize)]
struct StatementTicket {
    sql: String,
    /// A non-query statement that ran at GetFlightInfo: nothing left to fetch.
    done: bool,
}

struct Prepared {
    parsed: Parsed,
    user: String,
    /// The bound parameter rows (a query takes at most one).
    params: Vec<ParamValues>,
    schema: SchemaRef,
    /// Returns rows; otherwise it runs at GetFlightInfo (once per parameter row), as clients
    /// need not fetch the (empty) result of an INSERT.
    is_query: bool,
}

/// What a bearer token stands for.
struct Token {
    user: String,
    expires: std::time::Instant,
    /// [`secret_of`] the user when the token was issued.
    secret: String,
}

/// What identifies a user's current password: the SCRAM StoredKey and the MD5 secret (a new
/// password, even the same one, has a new salt); `""` for a password-less built-in user;
/// `None` for no such user.
fn secret_of(leader: &LeaderState, user: &str) -> Option<String> {
    match leader.catalog.snapshot().users.get(user) {
        Some(u) if u.has_password() => Some(format!(
            "{}:{}",
            u.scram.as_ref().map_or("", |s| s.stored_key.as_str()),
            u.md5.as_deref().unwrap_or("")
        )),
        _ if leader.users.iter().any(|u| u == user) => Some(String::new()),
        _ => None,
    }
}

pub struct BlueshiftFlightSql {
    leader: Arc<LeaderState>,
    /// bearer token -> its session
    tokens: Mutex<HashMap<String, Token>>,
    prepared: Mutex<HashMap<String, Prepared>>,
    sql_info: SqlInfoData,
}

fn status(e: Error) -> Status {
    let msg = format!("{} (SQLSTATE {})", e.user_message(), e.sqlstate());
    match e.sqlstate().as_str() {
        "28P01" | "28000" => Status::unauthenticated(msg),
        "42501" => Status::permission_denied(msg),
        "57014" => Status::cancelled(msg),
        code if code.starts_with("42") || code.starts_with("22") || code == "0A000" => {
            Status::invalid_argument(msg)
        }
        _ => Status::internal(msg),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn ipc_schema(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes)
}

fn batches_stream(schema: SchemaRef, batches: Vec<RecordBatch>) -> DoGetStream {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter(batches.into_iter().map(Ok)))
        .map_err(Status::from);
    Box::pin(stream)
}

fn info_for(
    schema: &Schema,
    ticket: bytes::Bytes,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(e.to_string()))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// The FlightInfo of a command whose ticket is the command itself.
fn command_info<T: ProstMessageExt>(
    cmd: &T,
    schema: &Schema,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    info_for(
        schema,
        cmd.as_any().encode_to_vec().into(),
        request.into_inner(),
    )
}

impl BlueshiftFlightSql {
    pub fn new(leader: Arc<LeaderState>) -> Result<Self, Error> {
        let mut b = SqlInfoDataBuilder::new();
        b.append(SqlInfo::FlightSqlServerName, "Blueshift");
        b.append(SqlInfo::FlightSqlServerVersion, blueshift_common::VERSION);
        b.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
        b.append(SqlInfo::FlightSqlServerReadOnly, false);
        b.append(SqlInfo::FlightSqlServerSql, true);
        b.append(SqlInfo::FlightSqlServerSubstrait, false);
        b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        b.append(SqlInfo::FlightSqlServerCancel, false);
        b.append(SqlInfo::SqlDdlCatalog, false);
        b.append(SqlInfo::SqlDdlSchema, false);
        b.append(SqlInfo::SqlDdlTable, true);
        b.append(
            SqlInfo::SqlIdentifierCase,
            SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
        );
        b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        b.append(
            SqlInfo::SqlQuotedIdentifierCase,
            SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
        );
        b.append(SqlInfo::SqlAllTablesAreSelectable, true);
        b.append(SqlInfo::SqlNullOrdering, 1i32);
        b.append(SqlInfo::SqlSearchStringEscape, "\\");
        b.append(SqlInfo::SqlExtraNameCharacters, "");
        b.append(SqlInfo::SqlSupportsColumnAliasing, true);
        b.append(SqlInfo::SqlNullPlusNullIsNull, true);
        b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
        b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
        b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
        b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
        b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
        b.append(SqlInfo::SqlSchemaTerm, "schema");
        b.append(SqlInfo::SqlCatalogTerm, "database");
        b.append(SqlInfo::SqlProcedureTerm, "procedure");
        b.append(SqlInfo::SqlCatalogAtStart, true);
        b.append(SqlInfo::SqlSelectForUpdateSupported, false);
        b.append(SqlInfo::SqlStoredProceduresSupported, false);
        b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
        b.append(SqlInfo::SqlMaxColumnNameLength, 127i64);
        b.append(SqlInfo::SqlMaxTableNameLength, 127i64);
        b.append(SqlInfo::SqlTransactionsSupported, false);
        b.append(SqlInfo::SqlBatchUpdatesSupported, true);
        b.append(SqlInfo::SqlSavepointsSupported, false);
        b.append(SqlInfo::SqlNamedParametersSupported, false);
        let sql_info = b
            .build()
            .map_err(|e| Error::Config(format!("Flight SQL server info: {e}")))?;
        Ok(BlueshiftFlightSql {
            leader,
            tokens: Mutex::new(HashMap::new()),
            prepared: Mutex::new(HashMap::new()),
            sql_info,
        })
    }

    fn executor(&self) -> Executor {
        Executor {
            leader: self.leader.clone(),
        }
    }

    /// A password-less built-in user, for a request from loopback.
    fn trusted_from<T>(&self, request: &Request<T>) -> Option<String> {
        let loopback = request
            .remote_addr()
            .map(|a| a.ip().is_loopback())
            .unwrap_or(false);
        if !loopback || !self.leader.trust_loopback {
            return None;
        }
        let users = self.leader.catalog.snapshot().users.clone();
        self.leader
            .users
            .iter()
            .find(|u| users.get(*u).is_none_or(|d| !d.has_password()))
            .cloned()
    }

    /// The user a request acts as: its bearer token's, or a trusted built-in user.
    fn user<T>(&self, request: &Request<T>) -> Result<String, Status> {
        match request.metadata().get("authorization") {
            Some(v) => {
                let v = v
                    .to_str()
                    .map_err(|_| Status::unauthenticated("unreadable authorization header"))?;
                let token = v
                    .strip_prefix("Bearer ")
                    .ok_or_else(|| Status::unauthenticated("expected a bearer token"))?;
                let mut tokens = lock(&self.tokens);
                let Some(session) = tokens.get(token) else {
                    return Err(Status::unauthenticated(
                        "invalid token: log in again (Handshake)",
                    ));
                };
                if session.expires <= std::time::Instant::now() {
                    tokens.remove(token);
                    return Err(Status::unauthenticated("expired token: log in again"));
                }
                if secret_of(&self.leader, &session.user).as_ref() != Some(&session.secret) {
                    tokens.remove(token);
                    return Err(Status::unauthenticated(
                        "revoked token (the user's password changed or the user was dropped): \
                         log in again",
                    ));
                }
                Ok(session.user.clone())
            }
            None => self.trusted_from(request).ok_or_else(|| {
                Status::unauthenticated("log in first: Handshake with Basic authentication")
            }),
        }
    }

    fn settings(user: &str) -> HashMap<String, String> {
        HashMap::from([(SESSION_USER.to_string(), user.to_string())])
    }

    /// Parses a statement a client sent (exactly one).
    fn parse(sql: &str, questions: QuestionMarks) -> Result<Parsed, Error> {
        crate::sql::statement::parse_one(sql, questions)?.ok_or_else(|| {
            Error::sql(
                blueshift_common::error::sqlstate::SYNTAX_ERROR,
                "the statement is empty",
            )
        })
    }

    /// The logical plan of a query or INSERT as `user` would run it (nothing runs).
    async fn plan(&self, ast: &Ast, user: &str) -> Result<LogicalPlan, Error> {
        crate::session::CURRENT_USER
            .scope(user.to_string(), async {
                query_context(&self.leader)?.logical_plan(ast).await
            })
            .await
    }

    /// The result schema of a statement that returns rows (nothing runs).
    async fn plan_schema(&self, parsed: &Parsed, user: &str) -> Result<SchemaRef, Error> {
        let text = |name: &str| {
            Arc::new(Schema::new(vec![arrow::datatypes::Field::new(
                name,
                arrow::datatypes::DataType::Utf8,
                false,
            )]))
        };
        Ok(match &parsed.statement {
            Statement::Query(ast) => {
                let plan = self.plan(ast, user).await?;
                Arc::new(plan.schema().as_arrow().clone())
            }
            Statement::Explain { .. } => text("QUERY PLAN"),
            Statement::ShowSetting(name) => text(name),
            Statement::Show(cmd) => crate::sql::show::result_schema(cmd.objects.columns()),
            _ => Arc::new(Schema::empty()),
        })
    }

    /// Runs a statement and streams its rows as Flight data.
    async fn run(
        &self,
        parsed: &Parsed,
        user: &str,
        params: Option<ParamValues>,
    ) -> Result<DoGetStream, Status> {
        let mut settings = Self::settings(user);
        let outcome = self
            .executor()
            .execute(parsed, params, &mut settings)
            .await
            .map_err(status)?;
        Ok(match outcome {
            Outcome::Rows { schema, stream } => {
                let batches = stream.map_err(|e| {
                    arrow_flight::error::FlightError::Tonic(Box::new(status(e.into())))
                });
                Box::pin(
                    FlightDataEncoderBuilder::new()
                        .with_schema(schema)
                        .build(batches)
                        .map_err(Status::from),
                )
            }
            _ => batches_stream(Arc::new(Schema::empty()), vec![]),
        })
    }

    /// Runs a statement that returns no rows; its row count.
    async fn update(
        &self,
        parsed: &Parsed,
        user: &str,
        params: Option<ParamValues>,
    ) -> Result<i64, Status> {
        let mut settings = Self::settings(user);
        match self
            .executor()
            .execute(parsed, params, &mut settings)
            .await
            .map_err(status)?
        {
            Outcome::Command { rows, .. } => Ok(rows.map(|r| r as i64).unwrap_or(0)),
            Outcome::Rows { mut stream, .. } => {
                let mut n = 0;
                while let Some(b) = stream.next().await {
                    n += b.map_err(|e| status(e.into()))?.num_rows() as i64;
                }
                Ok(n)
            }
            _ => Ok(0),
        }
    }

    /// Runs a statement once per parameter row (once without parameters when there are
    /// none); the total row count.
    async fn update_each(
        &self,
        parsed: &Parsed,
        user: &str,
        rows: Vec<ParamValues>,
    ) -> Result<i64, Status> {
        if rows.is_empty() {
            return self.update(parsed, user, None).await;
        }
        let mut total = 0;
        for params in rows {
            total += self.update(parsed, user, Some(params)).await?;
        }
        Ok(total)
    }

    fn prepared_handle(handle: &[u8]) -> Result<String, Status> {
        String::from_utf8(handle.to_vec())
            .map_err(|_| Status::invalid_argument("bad prepared statement handle"))
    }

    /// The parameter rows of a DoPut, each as the values of one execution.
    async fn parameter_rows(
        request: Request<PeekableFlightDataStream>,
    ) -> Result<Vec<ParamValues>, Status> {
        let stream = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
            request
                .into_inner()
                .map_err(arrow_flight::error::FlightError::from),
        );
        let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(Status::from)?;
        let mut rows = Vec::new();
        for b in batches {
            for r in 0..b.num_rows() {
                let values = b
                    .columns()
                    .iter()
                    .map(|c| ScalarValue::try_from_array(c, r).map(Into::into))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                rows.push(ParamValues::List(values));
            }
        }
        Ok(rows)
    }
}

#[tonic::async_trait]
impl FlightSqlService for BlueshiftFlightSql {
    type FlightService = BlueshiftFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let remote = request
            .remote_addr()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let event = |kind: &'static str, user: &str| {
            let mut e = crate::pgwire::sessions::ConnectionEvent::new(kind, remote, user);
            e.database = self.leader.database.clone();
            e.method = "flight-sql";
            e
        };
        self.leader
            .auth_throttle
            .check(remote.ip())
            .map_err(status)?;
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let user = match header.as_deref().and_then(|h| h.strip_prefix("Basic ")) {
            Some(encoded) => {
                // With or without `=` padding (the Go Flight SQL client sends none).
                let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(encoded.trim().trim_end_matches('='))
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| Status::invalid_argument("malformed Basic credentials"))?;
                let (user, password) = decoded
                    .split_once(':')
                    .ok_or_else(|| Status::invalid_argument("malformed Basic credentials"))?;
                let stored = self.leader.catalog.snapshot().users.get(user).cloned();
                let ok = match stored {
                    Some(u) if u.has_password() => {
                        crate::auth::verify_password(&u, password, self.leader.md5_auth)
                    }
                    _ => {
                        // As much work as a real check: the answer's timing must not tell
                        // which users exist.
                        crate::auth::verify_nobody(password);
                        password.is_empty() && self.trusted_from(&request).as_deref() == Some(user)
                    }
                };
                if !ok {
                    tracing::info!(%user, "Flight SQL password authentication failed");
                    self.leader.auth_throttle.failed(remote.ip());
                    self.leader
                        .sessions
                        .record(event("authentication failure", user));
                    return Err(Status::unauthenticated(format!(
                        "password authentication failed for user \"{user}\" (SQLSTATE 28P01)"
                    )));
                }
                user.to_string()
            }
            None => self.trusted_from(&request).ok_or_else(|| {
                Status::unauthenticated("Basic authentication required (SQLSTATE 28000)")
            })?,
        };
        self.leader.sessions.record(event("authenticated", &user));
        let token = crate::auth::hex(&rand::random::<[u8; 32]>());
        let secret = secret_of(&self.leader, &user).unwrap_or_default();
        {
            let now = std::time::Instant::now();
            let mut tokens = lock(&self.tokens);
            // Expired tokens go as new ones come: the map holds live sessions only.
            tokens.retain(|_, t| t.expires > now);
            tokens.insert(
                token.clone(),
                Token {
                    user,
                    expires: now + self.leader.flight_sql_token_ttl,
                    secret,
                },
            );
        }
        let response = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(futures::stream::iter(vec![Ok(response)])));
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::internal("token is not a header value"))?;
        response.metadata_mut().insert("authorization", value);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let user = self.user(&request)?;
        let sql = query.query;
        let parsed = Self::parse(&sql, QuestionMarks::Operator).map_err(status)?;
        let (schema, done) = if parsed.statement.is_query() {
            (
                self.plan_schema(&parsed, &user).await.map_err(status)?,
                false,
            )
        } else {
            // Not a query: it runs now; the ticket has nothing more to return.
            self.update(&parsed, &user, None).await?;
            (Arc::new(Schema::empty()), true)
        };
        let ticket = TicketStatementQuery {
            statement_handle: serde_json::to_vec(&StatementTicket { sql, done })
                .map_err(|e| Status::internal(e.to_string()))?
                .into(),
        };
        info_for(
            &schema,
            ticket.as_any().encode_to_vec().into(),
            request.into_inner(),
        )
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let user = self.user(&request)?;
        let t: StatementTicket = serde_json::from_slice(&ticket.statement_handle)
            .map_err(|_| Status::invalid_argument("not a Blueshift statement ticket"))?;
        if t.done {
            return Ok(Response::new(batches_stream(
                Arc::new(Schema::empty()),
                vec![],
            )));
        }
        let parsed = Self::parse(&t.sql, QuestionMarks::Operator).map_err(status)?;
        Ok(Response::new(self.run(&parsed, &user, None).await?))
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let user = self.user(&request)?;
        let parsed = Self::parse(&command.query, QuestionMarks::Operator).map_err(status)?;
        self.update(&parsed, &user, None).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let user = self.user(&request)?;
        // ODBC-style `?` parameters (what ADBC and JDBC send) are `$1, $2, ...`.
        let parsed = Self::parse(&query.query, QuestionMarks::Parameters).map_err(status)?;
        let is_query = matches!(parsed.statement, Statement::Query(_));
        let (schema, parameters) =
            if let Statement::Query(ast) | Statement::Insert(ast) = &parsed.statement {
                let plan = self.plan(ast, &user).await.map_err(status)?;
                let types = plan.get_parameter_types().map_err(|e| status(e.into()))?;
                let mut names: Vec<&String> = types.keys().collect();
                names.sort_by_key(|n| n.trim_start_matches('$').parse::<usize>().unwrap_or(0));
                let params = Schema::new(
                    names
                        .iter()
                        .map(|n| {
                            arrow::datatypes::Field::new(
                                n.as_str(),
                                types[*n]
                                    .clone()
                                    .unwrap_or(arrow::datatypes::DataType::Utf8),
                                true,
                            )
                        })
                        .collect::<Vec<_>>(),
                );
                let schema = if is_query {
                    Arc::new(plan.schema().as_arrow().clone())
                } else {
                    Arc::new(Schema::empty())
                };
                (schema, params)
            } else {
                (
                    self.plan_schema(&parsed, &user).await.map_err(status)?,
                    Schema::empty(),
                )
            };
        let handle = uuid::Uuid::new_v4().simple().to_string();
        let result = ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.clone().into(),
            dataset_schema: ipc_schema(&schema)?,
            parameter_schema: ipc_schema(&parameters)?,
        };
        lock(&self.prepared).insert(
            handle,
            Prepared {
                is_query: parsed.statement.is_query(),
                parsed,
                user,
                params: Vec::new(),
                schema,
            },
        );
        Ok(result)
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let user = self.user(&request)?;
        let handle = Self::prepared_handle(&query.prepared_statement_handle)?;
        let rows = Self::parameter_rows(request).await?;
        let mut prepared = lock(&self.prepared);
        let p = prepared
            .get_mut(&handle)
            .filter(|p| p.user == user)
            .ok_or_else(|| Status::not_found("no such prepared statement"))?;
        if p.is_query && rows.len() > 1 {
            return Err(Status::invalid_argument(
                "a prepared query takes one parameter row (SQLSTATE 0A000)",
            ));
        }
        p.params = rows;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(query.prepared_statement_handle),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let user = self.user(&request)?;
        let handle = Self::prepared_handle(&cmd.prepared_statement_handle)?;
        let (schema, is_query, parsed, params) = lock(&self.prepared)
            .get(&handle)
            .filter(|p| p.user == user)
            .map(|p| {
                (
                    p.schema.clone(),
                    p.is_query,
                    p.parsed.clone(),
                    p.params.clone(),
                )
            })
            .ok_or_else(|| Status::not_found("no such prepared statement"))?;
        if !is_query {
            self.update_each(&parsed, &user, params).await?;
        }
        command_info(&cmd, &schema, request)
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let user = self.user(&request)?;
        let handle = Self::prepared_handle(&cmd.prepared_statement_handle)?;
        let (parsed, params, is_query, schema) = lock(&self.prepared)
            .get(&handle)
            .filter(|p| p.user == user)
            .map(|p| {
                (
                    p.parsed.clone(),
                    p.params.first().cloned(),
                    p.is_query,
                    p.schema.clone(),
                )
            })
            .ok_or_else(|| Status::not_found("no such prepared statement"))?;
        if !is_query {
            // It ran at GetFlightInfo.
            return Ok(Response::new(batches_stream(schema, vec![])));
        }
        Ok(Response::new(self.run(&parsed, &user, params).await?))
    }

    async fn do_put_prepared_statement_update(
        &self,
        cmd: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let user = self.user(&request)?;
        let handle = Self::prepared_handle(&cmd.prepared_statement_handle)?;
        let parsed = lock(&self.prepared)
            .get(&handle)
            .filter(|p| p.user == user)
            .map(|p| p.parsed.clone())
            .ok_or_else(|| Status::not_found("no such prepared statement"))?;
        let rows = Self::parameter_rows(request).await?;
        self.update_each(&parsed, &user, rows).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let user = self.user(&request)?;
        let handle = Self::prepared_handle(&query.prepared_statement_handle)?;
        let mut prepared = lock(&self.prepared);
        if prepared.get(&handle).is_some_and(|p| p.user == user) {
            prepared.remove(&handle);
        }
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        let schema = query.into_builder().schema();
        command_info(&query, &schema, request)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.user(&request)?;
        let mut builder = query.into_builder();
        builder.append(DEFAULT_CATALOG);
        let schema = builder.schema();
        let batch = builder.build().map_err(Status::from)?;
        Ok(Response::new(batches_stream(schema, vec![batch])))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        let schema = query.clone().into_builder().schema();
        command_info(&query, &schema, request)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.user(&request)?;
        let mut builder = query.into_builder();
        let mut schemas = self.leader.catalog.snapshot().schema_names();
        schemas.extend(crate::sql::names::SYSTEM_SCHEMAS.map(String::from));
        for schema in schemas {
            builder.append(DEFAULT_CATALOG, schema);
        }
        let schema = builder.schema();
        let batch = builder.build().map_err(Status::from)?;
        Ok(Response::new(batches_stream(schema, vec![batch])))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        let schema = query.clone().into_builder().schema();
        command_info(&query, &schema, request)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.user(&request)?;
        let mut builder = query.into_builder();
        let snapshot = self.leader.catalog.snapshot();
        let mut tables: Vec<_> = snapshot.tables.values().collect();
        tables.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
        for t in tables {
            builder
                .append(
                    DEFAULT_CATALOG,
                    &t.schema,
                    &t.name,
                    "TABLE",
                    &t.arrow_schema(),
                )
                .map_err(Status::from)?;
        }
        let mut views: Vec<_> = snapshot.views.values().collect();
        views.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
        for v in views {
            let fields: Vec<arrow::datatypes::Field> = v
                .columns
                .iter()
                .map(|c| arrow::datatypes::Field::new(&c.name, c.ty.to_arrow(), c.nullable))
                .collect();
            builder
                .append(
                    DEFAULT_CATALOG,
                    &v.schema,
                    &v.name,
                    "VIEW",
                    &arrow::datatypes::Schema::new(fields),
                )
                .map_err(Status::from)?;
        }
        let schema = builder.schema();
        let batch = builder.build().map_err(Status::from)?;
        Ok(Response::new(batches_stream(schema, vec![batch])))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        let schema = query.into_builder().schema();
        command_info(&query, &schema, request)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.user(&request)?;
        let mut builder = query.into_builder();
        builder.append("TABLE");
        builder.append("VIEW");
        let schema = builder.schema();
        let batch = builder.build().map_err(Status::from)?;
        Ok(Response::new(batches_stream(schema, vec![batch])))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        let schema = query.clone().into_builder(&self.sql_info).schema();
        command_info(&query, &schema, request)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.user(&request)?;
        let builder = query.into_builder(&self.sql_info);
        let schema = builder.schema();
        let batch = builder.build().map_err(Status::from)?;
        Ok(Response::new(batches_stream(schema, vec![batch])))
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<DoGetStream>, Status> {
        Err(Status::unimplemented(format!(
            "ticket type {} is not supported",
            message.type_url
        )))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// The Flight service: arrow-flight's Flight SQL dispatch, plus `GetSchema` (which that
/// dispatch cannot be given): the result schema of a statement, a prepared statement or a
/// metadata command, without running anything.
pub struct FlightSqlEndpoint(BlueshiftFlightSql);

type FsResult<T> = Result<Response<T>, Status>;

fn bad_command(e: arrow::error::ArrowError) -> Status {
    Status::invalid_argument(format!("malformed Flight SQL command: {e}"))
}

#[tonic::async_trait]
impl FlightService for FlightSqlEndpoint {
    type HandshakeStream = <BlueshiftFlightSql as FlightService>::HandshakeStream;
    type ListFlightsStream = <BlueshiftFlightSql as FlightService>::ListFlightsStream;
    type DoGetStream = <BlueshiftFlightSql as FlightService>::DoGetStream;
    type DoPutStream = <BlueshiftFlightSql as FlightService>::DoPutStream;
    type DoActionStream = <BlueshiftFlightSql as FlightService>::DoActionStream;
    type ListActionsStream = <BlueshiftFlightSql as FlightService>::ListActionsStream;
    type DoExchangeStream = <BlueshiftFlightSql as FlightService>::DoExchangeStream;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> FsResult<Self::HandshakeStream> {
        FlightService::handshake(&self.0, request).await
    }
    async fn list_flights(
        &self,
        request: Request<arrow_flight::Criteria>,
    ) -> FsResult<Self::ListFlightsStream> {
        FlightService::list_flights(&self.0, request).await
    }
    async fn get_flight_info(&self, request: Request<FlightDescriptor>) -> FsResult<FlightInfo> {
        FlightService::get_flight_info(&self.0, request).await
    }
    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> FsResult<arrow_flight::PollInfo> {
        FlightService::poll_flight_info(&self.0, request).await
    }
    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> FsResult<arrow_flight::SchemaResult> {
        let user = self.0.user(&request)?;
        let any = Any::decode(request.get_ref().cmd.clone())
            .map_err(|_| Status::invalid_argument("GetSchema needs a Flight SQL command"))?;
        let schema: SchemaRef =
            if let Some(q) = any.unpack::<CommandStatementQuery>().map_err(bad_command)? {
                let parsed =
                    BlueshiftFlightSql::parse(&q.query, QuestionMarks::Operator).map_err(status)?;
                self.0.plan_schema(&parsed, &user).await.map_err(status)?
            } else if let Some(p) = any
                .unpack::<CommandPreparedStatementQuery>()
                .map_err(bad_command)?
            {
                let handle = BlueshiftFlightSql::prepared_handle(&p.prepared_statement_handle)?;
                lock(&self.0.prepared)
                    .get(&handle)
                    .filter(|p| p.user == user)
                    .map(|p| p.schema.clone())
                    .ok_or_else(|| Status::not_found("no such prepared statement"))?
            } else if let Some(c) = any.unpack::<CommandGetTables>().map_err(bad_command)? {
                c.into_builder().schema()
            } else if let Some(c) = any.unpack::<CommandGetDbSchemas>().map_err(bad_command)? {
                c.into_builder().schema()
            } else if let Some(c) = any.unpack::<CommandGetCatalogs>().map_err(bad_command)? {
                c.into_builder().schema()
            } else if let Some(c) = any.unpack::<CommandGetTableTypes>().map_err(bad_command)? {
                c.into_builder().schema()
            } else if let Some(c) = any.unpack::<CommandGetSqlInfo>().map_err(bad_command)? {
                c.into_builder(&self.0.sql_info).schema()
            } else {
                return Err(Status::unimplemented(format!(
                    "GetSchema of {} is not supported",
                    any.type_url
                )));
            };
        let result: arrow_flight::SchemaResult =
            SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
                .try_into()
                .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
        Ok(Response::new(result))
    }
    async fn do_get(&self, request: Request<Ticket>) -> FsResult<Self::DoGetStream> {
        FlightService::do_get(&self.0, request).await
    }
    async fn do_put(
        &self,
        request: Request<Streaming<arrow_flight::FlightData>>,
    ) -> FsResult<Self::DoPutStream> {
        FlightService::do_put(&self.0, request).await
    }
    async fn do_action(&self, request: Request<Action>) -> FsResult<Self::DoActionStream> {
        FlightService::do_action(&self.0, request).await
    }
    async fn list_actions(
        &self,
        request: Request<arrow_flight::Empty>,
    ) -> FsResult<Self::ListActionsStream> {
        FlightService::list_actions(&self.0, request).await
    }
    async fn do_exchange(
        &self,
        request: Request<Streaming<arrow_flight::FlightData>>,
    ) -> FsResult<Self::DoExchangeStream> {
        FlightService::do_exchange(&self.0, request).await
    }
}

/// Serves Flight SQL on `listener` until the task is dropped.
pub async fn serve(
    leader: Arc<LeaderState>,
    listener: tokio::net::TcpListener,
) -> Result<(), Error> {
    let service = FlightSqlEndpoint(BlueshiftFlightSql::new(leader)?);
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?addr, "Flight SQL listening");
    tonic::transport::Server::builder()
        .add_service(
            FlightServiceServer::new(service)
                .max_decoding_message_size(blueshift_proto::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(blueshift_proto::MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming(blueshift_common::net::incoming_nodelay(listener))
        .await
        .map_err(|e| Error::Transport(e.to_string()))
}
