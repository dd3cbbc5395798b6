//! Executing one statement for a client session: the dispatch from statement kind to the
//! code that runs it (DDL and COPY here, queries through DataFusion and the distributed
//! planner), independent of the wire protocol that carried it.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use blueshift_common::error::sqlstate;
use blueshift_common::types::{ColumnDef, DistStyle};
use datafusion::common::ParamValues;
use datafusion::dataframe::DataFrame;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{DmlStatement, LogicalPlan, WriteOp};
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use futures::StreamExt;

use crate::LeaderState;
use crate::catalog::Command;
use crate::error::{Error, Result};
use crate::load::coerce::coerce_batch;
use crate::load::router::Router;
use crate::load::source::{ReadSpec, list_files, read_files, read_stdin};
use crate::planner::{QueryContext, analyze_lines, explain_lines, query_context};
use crate::scheduler::DistributedQueryExec;
use crate::scheduler::SchedulerHandle;
use crate::sql::copy::parse_copy;
use crate::sql::ddl::{parse_create_table, parse_drop_table};
use crate::sql::{StatementKind, classify, keyword, words};

/// What a statement produced.
pub enum Outcome {
    Rows {
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
    },
    /// A command tag such as `CREATE TABLE` or `COPY 42`.
    Command { tag: String, rows: Option<u64> },
    /// `COPY ... TO STDOUT`: the rows to send in the COPY sub-protocol.
    CopyOut {
        copy: crate::sql::copy_out::CopyOut,
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
    },
    /// Rows a `FETCH` took from a cursor.
    Fetched {
        schema: SchemaRef,
        batches: Vec<arrow::array::RecordBatch>,
    },
    /// A transaction-control statement and what it does to the session's block.
    Transaction {
        tag: &'static str,
        change: crate::sql::transaction::TxChange,
    },
    /// `COPY ... FROM STDIN`: the client now sends `columns` columns of rows into `load`.
    CopyIn {
        columns: usize,
        load: Option<CopyInLoad>,
    },
}

/// A `COPY ... FROM STDIN` in progress: the client's data goes into `data`; `task` parses,
/// routes and (once the data ends) commits it, answering the row count.
pub struct CopyInLoad {
    pub data: tokio::sync::mpsc::Sender<bytes::Bytes>,
    pub task: tokio::task::JoinHandle<Result<u64>>,
}

/// The client's COPY data as a blocking `Read` for the parser thread; EOF when the sender
/// is dropped (CopyDone).
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    current: bytes::Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

impl Outcome {
    /// Rows already computed (EXPLAIN, SHOW, collected results).
    pub fn batches(schema: SchemaRef, batches: Vec<arrow::array::RecordBatch>) -> Outcome {
        let stream = datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
            schema.clone(),
            futures::stream::iter(batches.into_iter().map(Ok)),
        );
        Outcome::Rows {
            schema,
            stream: Box::pin(stream),
        }
    }
}

/// The session setting that holds the logged-in user (set at startup; `SET` cannot write
/// keys that start with NUL).
pub const SESSION_USER: &str = "\u{0}user";

tokio::task_local! {
    /// The user whose statement runs (for `current_user` and the catalog functions).
    pub static CURRENT_USER: String;
}

/// The session settings a statement sees (`current_setting`), and the changes its
/// `set_config` calls ask for.
#[derive(Clone, Default)]
pub struct StatementSettings {
    pub settings: HashMap<String, String>,
    pub changes: Arc<SettingChanges>,
}

/// `set_config(name, value, is_local)` calls of one statement. They are evaluated while the
/// statement is planned (constant arguments) and applied to the session when planning ends;
/// a call evaluated later (arguments that vary by row) fails rather than change nothing.
#[derive(Default)]
pub struct SettingChanges {
    pending: std::sync::Mutex<Vec<(String, String)>>,
    applied: std::sync::atomic::AtomicBool,
}

impl SettingChanges {
    pub fn record(&self, name: String, value: String) -> Result<()> {
        if self.applied.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::sql(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "set_config needs constant arguments (use SET for per-row values)",
            ));
        }
        match self.pending.lock() {
            Ok(mut g) => g.push((name, value)),
            Err(p) => p.into_inner().push((name, value)),
        }
        Ok(())
    }

    fn apply(&self) -> Vec<(String, String)> {
        self.applied
            .store(true, std::sync::atomic::Ordering::SeqCst);
        match self.pending.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }
}

tokio::task_local! {
    /// What the statement being run sees of its session's settings.
    pub static SETTINGS: StatementSettings;
}

/// The settings of the statement being planned (empty outside a statement).
pub fn statement_settings() -> StatementSettings {
    SETTINGS.try_with(|s| s.clone()).unwrap_or_default()
}

/// The user of the statement being planned ("" outside a statement).
pub fn current_user() -> String {
    CURRENT_USER.try_with(|u| u.clone()).unwrap_or_default()
}

fn command(tag: &str) -> Outcome {
    Outcome::Command {
        tag: tag.to_string(),
        rows: None,
    }
}

pub struct Executor {
    pub leader: Arc<LeaderState>,
}

impl Executor {
    pub async fn execute(
        &self,
        sql: &str,
        params: Option<ParamValues>,
        settings: &mut HashMap<String, String>,
    ) -> Result<Outcome> {
        let memory_limit = match settings.get(crate::limits::SETTING) {
            Some(v) => crate::limits::parse_bytes(v)?,
            None => self.leader.query_memory_limit,
        };
        let user = settings.get(SESSION_USER).cloned().unwrap_or_default();
        let view = StatementSettings {
            settings: settings.clone(),
            changes: Arc::new(SettingChanges::default()),
        };
        let changes = view.changes.clone();
        let run = crate::limits::QUERY_MEMORY_LIMIT
            .scope(memory_limit, self.dispatch(sql, params, settings));
        let outcome = SETTINGS.scope(view, CURRENT_USER.scope(user, run)).await;
        // `set_config(...)` calls, evaluated while the statement was planned.
        for (name, value) in changes.apply() {
            settings.insert(name, value);
        }
        outcome
    }

    async fn dispatch(
        &self,
        sql: &str,
        params: Option<ParamValues>,
        settings: &mut HashMap<String, String>,
    ) -> Result<Outcome> {
        let kind = classify(sql)?;
        let outcome = match kind {
            StatementKind::CreateTable => self.create_table(sql).await,
            StatementKind::DropTable => self.drop_table(sql),
            StatementKind::Copy => self.copy(sql).await,
            StatementKind::Insert => self.insert(sql, params).await,
            StatementKind::Query => self.query(sql, params).await,
            StatementKind::Explain => self.explain(sql).await,
            StatementKind::Set => set(sql, settings),
            StatementKind::Show => self.show(sql, params, settings),
            StatementKind::Transaction => {
                let (tag, change) = crate::sql::transaction::execute(sql, settings)?;
                Ok(Outcome::Transaction { tag, change })
            }
            StatementKind::User => self.user_statement(sql, settings),
            StatementKind::Other => {
                let ws = words(sql)?;
                let k = ws.first().and_then(keyword).unwrap_or_default();
                match k.as_str() {
                    "DISCARD" | "DEALLOCATE" => Ok(command(&k)),
                    "DELETE" | "UPDATE" | "ALTER" | "VACUUM" | "ANALYZE" | "TRUNCATE" | "GRANT"
                    | "REVOKE" | "CREATE" | "DROP" | "UNLOAD" | "MERGE" | "CALL" | "PREPARE"
                    | "EXECUTE" | "LOCK" | "COMMENT" | "DECLARE" | "FETCH" | "CLOSE" | "LISTEN"
                    | "NOTIFY" => Err(Error::sql(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        format!("{k} statements are not supported yet"),
                    )),
                    _ => {
                        let near = ws.first().map(|t| t.to_string()).unwrap_or_default();
                        Err(Error::sql(
                            sqlstate::SYNTAX_ERROR,
                            format!("syntax error at or near \"{near}\""),
                        ))
                    }
                }
            }
        };
        if outcome.is_ok()
            && matches!(
                kind,
                StatementKind::CreateTable
                    | StatementKind::DropTable
                    | StatementKind::Copy
                    | StatementKind::Insert
            )
        {
            crate::sql::transaction::note_write(settings);
        }
        outcome
    }

    /// CREATE / ALTER / DROP USER: superusers only, except a user changing their own
    /// password.
    fn user_statement(&self, sql: &str, settings: &HashMap<String, String>) -> Result<Outcome> {
        use crate::sql::users::{Password, UserStatement, parse_user_statement};
        let me = settings.get(SESSION_USER).cloned().unwrap_or_default();
        let snapshot = self.leader.catalog.snapshot();
        let superuser =
            self.leader.users.contains(&me) || snapshot.users.get(&me).is_some_and(|u| u.superuser);
        let Some(stmt) = parse_user_statement(sql)? else {
            return Err(Error::sql(sqlstate::SYNTAX_ERROR, "not a user statement"));
        };
        let own_password = matches!(&stmt, UserStatement::Alter { name, options }
            if *name == me && options.superuser.is_none() && options.create_db.is_none());
        if !superuser && !own_password {
            return Err(Error::sql(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                "permission denied: only superusers may create, alter or drop users",
            ));
        }
        let apply_password = |u: &mut crate::auth::UserDef, p: &Option<Password>| -> Result<()> {
            match p {
                Some(Password::Set(p)) => (u.scram, u.md5) = crate::auth::secrets(&u.name, p)?,
                Some(Password::Disable) => (u.scram, u.md5) = (None, None),
                None => {}
            }
            Ok(())
        };
        let (commands, tag) = match stmt {
            UserStatement::Create { name, options } => {
                let mut u = crate::auth::UserDef {
                    name,
                    id: snapshot
                        .users
                        .values()
                        .map(|u| u.id)
                        .max()
                        .unwrap_or(99)
                        .max(99)
                        + 1,
                    superuser: options.superuser.unwrap_or(false),
                    create_db: options.create_db.unwrap_or(false),
                    scram: None,
                    md5: None,
                };
                apply_password(&mut u, &options.password)?;
                (vec![Command::CreateUser(u)], "CREATE USER")
            }
            UserStatement::Alter { name, options } => {
                let (mut u, exists) = match snapshot.users.get(&name) {
                    Some(u) => (u.clone(), true),
                    // The built-in password-less users get an entry once given a password.
                    None if self.leader.users.contains(&name) => (
                        crate::auth::UserDef {
                            name: name.clone(),
                            id: 10
                                + self
                                    .leader
                                    .users
                                    .iter()
                                    .position(|u| *u == name)
                                    .unwrap_or(0) as u32,
                            superuser: true,
                            create_db: true,
                            scram: None,
                            md5: None,
                        },
                        false,
                    ),
                    None => {
                        return Err(Error::sql(
                            sqlstate::UNDEFINED_OBJECT,
                            format!("user \"{name}\" does not exist"),
                        ));
                    }
                };
                if let Some(s) = options.superuser {
                    u.superuser = s;
                }
                if let Some(c) = options.create_db {
                    u.create_db = c;
                }
                apply_password(&mut u, &options.password)?;
                let cmd = if exists {
                    Command::AlterUser(u)
                } else {
                    Command::CreateUser(u)
                };
                (vec![cmd], "ALTER USER")
            }
            UserStatement::Drop { names, if_exists } => {
                let mut cmds = Vec::new();
                for name in names {
                    if name == me {
                        return Err(Error::sql(
                            sqlstate::OBJECT_IN_USE,
                            "current user cannot be dropped",
                        ));
                    }
                    if snapshot.users.contains_key(&name) {
                        cmds.push(Command::DropUser { name });
                    } else if !if_exists {
                        return Err(Error::sql(
                            sqlstate::UNDEFINED_OBJECT,
                            format!("user \"{name}\" does not exist"),
                        ));
                    }
                }
                (cmds, "DROP USER")
            }
        };
        for c in commands {
            self.leader.catalog.execute(|_| Ok(c))?;
        }
        Ok(command(tag))
    }

    fn scheduler(&self) -> Arc<SchedulerHandle> {
        Arc::new(SchedulerHandle(self.leader.scheduler.clone()))
    }

    /// Plans a query into a distributed physical plan.
    pub async fn plan_query(
        &self,
        qc: &QueryContext,
        sql: &str,
        params: Option<ParamValues>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        crate::sql::guard::refuse_known_wrong_answers(sql)?;
        let mut df = qc.dataframe(sql).await?;
        if let Some(p) = params {
            df = df.with_param_values(p)?;
        }
        self.plan_dataframe(qc, df).await
    }

    async fn plan_dataframe(
        &self,
        qc: &QueryContext,
        df: DataFrame,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = df.create_physical_plan().await?;
        Ok(qc.distribute(plan, self.scheduler())?)
    }

    async fn query(&self, sql: &str, params: Option<ParamValues>) -> Result<Outcome> {
        let qc = query_context(&self.leader)?;
        let plan = self.plan_query(&qc, sql, params).await?;
        let schema = plan.schema();
        let stream = execute_stream(plan, qc.ctx.task_ctx())?;
        Ok(Outcome::Rows { schema, stream })
    }

    async fn explain(&self, sql: &str) -> Result<Outcome> {
        let ws = words(sql)?;
        let mut skip = 1;
        let mut analyze = false;
        while let Some(k) = ws.get(skip).and_then(keyword) {
            match k.as_str() {
                "VERBOSE" => skip += 1,
                "ANALYZE" => {
                    analyze = true;
                    skip += 1;
                }
                _ => break,
            }
        }
        let inner = crate::sql::untokenize_words(&ws[skip..]);
        let qc = query_context(&self.leader)?;
        let plan = match classify(&inner)? {
            StatementKind::Query => self.plan_query(&qc, &inner, None).await?,
            StatementKind::Insert => {
                let (_, input) = self.insert_input(&qc, &inner, None).await?;
                input
            }
            _ => {
                return Err(Error::sql(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "EXPLAIN supports SELECT and INSERT statements",
                ));
            }
        };
        let lines = match (analyze, plan.downcast_ref::<DistributedQueryExec>()) {
            (true, Some(query)) => {
                if !matches!(classify(&inner)?, StatementKind::Query) {
                    return Err(Error::sql(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "EXPLAIN ANALYZE supports SELECT statements",
                    ));
                }
                let analysis = query.analyze(qc.ctx.task_ctx()).await?;
                analyze_lines(query, &analysis)
            }
            (true, None) => {
                return Err(Error::sql(
                    sqlstate::INTERNAL_ERROR,
                    "EXPLAIN ANALYZE of a plan that is not distributed",
                ));
            }
            (false, _) => explain_lines(&plan),
        };
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("QUERY PLAN", arrow::datatypes::DataType::Utf8, false),
        ]));
        let batch = arrow::array::RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(arrow::array::StringArray::from(lines))],
        )?;
        Ok(Outcome::batches(schema, vec![batch]))
    }

    async fn create_table(&self, sql: &str) -> Result<Outcome> {
        let mut ct = parse_create_table(sql)?;
        let leader = &self.leader;
        if ct.if_not_exists
            && leader
                .catalog
                .snapshot()
                .table_by_name("public", &ct.name)
                .is_some()
        {
            return Ok(command("CREATE TABLE"));
        }
        let Some(query) = ct.query.take() else {
            leader.catalog.execute(|s| {
                if s.table_by_name("public", &ct.name).is_some() {
                    return Err(Error::sql(
                        sqlstate::DUPLICATE_TABLE,
                        format!("relation \"{}\" already exists", ct.name),
                    ));
                }
                Ok(Command::CreateTable(
                    ct.clone().into_def(s.next_table_id, &current_user()),
                ))
            })?;
            return Ok(command("CREATE TABLE"));
        };
        // CREATE TABLE ... AS SELECT: plan the query, create the table from its schema,
        // load its rows; the table only becomes visible with its rows.
        let qc = query_context(leader)?;
        let plan = self.plan_query(&qc, &query.to_string(), None).await?;
        let schema = plan.schema();
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                blueshift_common::types::ColumnType::from_arrow(f.data_type())
                    .map(|ty| ColumnDef {
                        name: f.name().to_ascii_lowercase(),
                        ty,
                        nullable: true,
                    })
                    .ok_or_else(|| {
                        Error::sql(
                            sqlstate::FEATURE_NOT_SUPPORTED,
                            format!(
                                "column \"{}\" has type {} which a table cannot store yet",
                                f.name(),
                                f.data_type()
                            ),
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let ct = ct.with_columns(columns)?;
        let name = ct.name.clone();
        let snapshot = leader.catalog.snapshot();
        if snapshot.table_by_name("public", &name).is_some() {
            return Err(Error::sql(
                sqlstate::DUPLICATE_TABLE,
                format!("relation \"{name}\" already exists"),
            ));
        }
        // The table is created first (so segments have an id to belong to) and dropped again
        // if the load fails.
        let state = leader.catalog.execute(|s| {
            Ok(Command::CreateTable(
                ct.clone().into_def(s.next_table_id, &current_user()),
            ))
        })?;
        let def = state
            .table_by_name("public", &name)
            .cloned()
            .ok_or_else(|| Error::sql(sqlstate::INTERNAL_ERROR, "created table vanished"))?;
        let result = self
            .load_stream(&def, execute_stream(plan, qc.ctx.task_ctx())?)
            .await;
        match result {
            Ok(rows) => Ok(Outcome::Command {
                tag: "SELECT".into(),
                rows: Some(rows),
            }),
            Err(e) => {
                let _ = leader
                    .catalog
                    .execute(|_| Ok(Command::DropTable { id: def.id }));
                Err(e)
            }
        }
    }

    fn drop_table(&self, sql: &str) -> Result<Outcome> {
        let (names, if_exists) = parse_drop_table(sql)?;
        for name in names {
            let found = self
                .leader
                .catalog
                .snapshot()
                .table_by_name("public", &name)
                .map(|t| t.id);
            match found {
                Some(id) => {
                    self.leader
                        .catalog
                        .execute(|_| Ok(Command::DropTable { id }))?;
                }
                None if if_exists => {}
                None => {
                    return Err(Error::sql(
                        sqlstate::UNDEFINED_TABLE,
                        format!("table \"{name}\" does not exist"),
                    ));
                }
            }
        }
        Ok(command("DROP TABLE"))
    }

    async fn copy(&self, sql: &str) -> Result<Outcome> {
        if let Some(copy) = crate::sql::copy_out::parse_copy_to(sql)? {
            let outcome = self.query(&copy.query(), None).await?;
            let Outcome::Rows { schema, stream } = outcome else {
                return Err(Error::sql(sqlstate::INTERNAL_ERROR, "COPY TO without rows"));
            };
            return Ok(Outcome::CopyOut {
                copy,
                schema,
                stream,
            });
        }
        let stmt = parse_copy(sql)?;
        let snapshot = self.leader.catalog.snapshot();
        let table = snapshot
            .table_by_name("public", &stmt.table)
            .cloned()
            .ok_or_else(|| {
                Error::sql(
                    sqlstate::UNDEFINED_TABLE,
                    format!("relation \"{}\" does not exist", stmt.table),
                )
            })?;
        let columns = match &stmt.columns {
            Some(cols) => Some(
                cols.iter()
                    .map(|c| {
                        table.column_index(c).ok_or_else(|| {
                            Error::sql(
                                sqlstate::UNDEFINED_COLUMN,
                                format!(
                                    "column \"{c}\" of relation \"{}\" does not exist",
                                    table.name
                                ),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
            None => None,
        };
        let map = self.leader.membership.slice_map(snapshot.slices)?;
        let width = columns
            .as_ref()
            .map(Vec::len)
            .unwrap_or(table.columns.len());
        let spec = ReadSpec {
            table: table.clone(),
            columns,
            options: stmt.options.clone(),
            query_id: uuid::Uuid::new_v4().simple().to_string(),
            errors: self.leader.load_errors.clone(),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        if stmt.stdin {
            let (data, data_rx) = tokio::sync::mpsc::channel(16);
            let source = ChannelReader {
                rx: data_rx,
                current: bytes::Bytes::new(),
            };
            let reader =
                tokio::task::spawn_blocking(move || read_stdin(spec, Box::new(source), tx));
            let executor = Executor {
                leader: self.leader.clone(),
            };
            let slices = snapshot.slices;
            let task = tokio::spawn(async move {
                executor
                    .route_and_commit(table, slices, map, rx, reader)
                    .await
            });
            return Ok(Outcome::CopyIn {
                columns: width,
                load: Some(CopyInLoad { data, task }),
            });
        }
        let files = list_files(&stmt.source)?;
        let reader = tokio::task::spawn_blocking(move || read_files(spec, files, tx));
        let rows = self
            .route_and_commit(table, snapshot.slices, map, rx, reader)
            .await?;
        Ok(Outcome::Command {
            tag: "COPY".into(),
            rows: Some(rows),
        })
    }

    /// Routes a load's batches to the slices and commits them as one catalog command once
    /// the reader has finished without error.
    async fn route_and_commit(
        &self,
        table: blueshift_common::types::TableDef,
        slices: u32,
        map: crate::cluster::SliceMap,
        mut rx: tokio::sync::mpsc::Receiver<Result<arrow::array::RecordBatch>>,
        reader: tokio::task::JoinHandle<()>,
    ) -> Result<u64> {
        let mut router = Router::new(table.clone(), slices, map, self.leader.scheduler.clone());
        while let Some(batch) = rx.recv().await {
            router.push(batch?).await?;
        }
        reader
            .await
            .map_err(|e| Error::sql(sqlstate::INTERNAL_ERROR, format!("reader failed: {e}")))?;
        let rows = router.rows();
        let segments = router.finish().await?;
        self.commit(&table, segments)?;
        tracing::info!(table = %table.name, rows, "COPY committed");
        Ok(rows)
    }

    fn commit(
        &self,
        table: &blueshift_common::types::TableDef,
        segments: Vec<blueshift_common::types::Segment>,
    ) -> Result<()> {
        if segments.is_empty() {
            return Ok(());
        }
        self.leader.catalog.execute(|s| {
            if !s.tables.contains_key(&table.id) {
                return Err(Error::sql(
                    sqlstate::UNDEFINED_TABLE,
                    format!(
                        "table \"{}\" was dropped while rows were being loaded",
                        table.name
                    ),
                ));
            }
            Ok(Command::CommitSegments {
                table_id: table.id,
                segments,
            })
        })?;
        Ok(())
    }

    /// Loads batches whose columns are in the table's order (e.g. generated data).
    pub async fn load_batches(
        &self,
        table: &blueshift_common::types::TableDef,
        batches: Box<
            dyn Iterator<
                    Item = std::result::Result<arrow::array::RecordBatch, arrow::error::ArrowError>,
                > + Send,
        >,
    ) -> Result<u64> {
        let schema = table.arrow_schema();
        let stream = futures::stream::iter(batches.map(|b| b.map_err(Into::into)));
        self.load_stream(
            table,
            Box::pin(
                datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, stream),
            ),
        )
        .await
    }

    /// Routes the rows of a stream (already of the table's column order) into the table.
    async fn load_stream(
        &self,
        table: &blueshift_common::types::TableDef,
        mut stream: SendableRecordBatchStream,
    ) -> Result<u64> {
        let snapshot = self.leader.catalog.snapshot();
        let map = self.leader.membership.slice_map(snapshot.slices)?;
        let mut router = Router::new(
            table.clone(),
            snapshot.slices,
            map,
            self.leader.scheduler.clone(),
        );
        let mapping: Vec<Option<usize>> = (0..table.columns.len()).map(Some).collect();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let batch = coerce_batch(&batch, table, &mapping, false)
                .map_err(|mut bad| bad.remove(0).into_error("inserted row"))?;
            router.push(batch).await?;
        }
        let rows = router.rows();
        let segments = router.finish().await?;
        self.commit(table, segments)?;
        Ok(rows)
    }

    async fn insert_input(
        &self,
        qc: &QueryContext,
        sql: &str,
        params: Option<ParamValues>,
    ) -> Result<(blueshift_common::types::TableDef, Arc<dyn ExecutionPlan>)> {
        crate::sql::guard::refuse_known_wrong_answers(sql)?;
        let mut df = qc.dataframe(sql).await?;
        if let Some(p) = params {
            df = df.with_param_values(p)?;
        }
        let (state, plan) = df.into_parts();
        let LogicalPlan::Dml(DmlStatement {
            table_name,
            op: WriteOp::Insert(_),
            input,
            ..
        }) = plan
        else {
            return Err(Error::sql(
                sqlstate::SYNTAX_ERROR,
                "expected INSERT INTO ... VALUES / SELECT",
            ));
        };
        let name = table_name.table().to_string();
        let def = qc
            .catalog
            .table_by_name("public", &name)
            .cloned()
            .ok_or_else(|| {
                Error::sql(
                    sqlstate::UNDEFINED_TABLE,
                    format!("relation \"{name}\" does not exist"),
                )
            })?;
        let df = DataFrame::new(state, Arc::unwrap_or_clone(input));
        let plan = self.plan_dataframe(qc, df).await?;
        Ok((def, plan))
    }

    async fn insert(&self, sql: &str, params: Option<ParamValues>) -> Result<Outcome> {
        let qc = query_context(&self.leader)?;
        let (def, plan) = self.insert_input(&qc, sql, params).await?;
        let rows = self
            .load_stream(&def, execute_stream(plan, qc.ctx.task_ctx())?)
            .await?;
        Ok(Outcome::Command {
            tag: "INSERT 0".into(),
            rows: Some(rows),
        })
    }
}

/// Settings every session reports, before any `SET`.
pub fn default_setting(name: &str) -> Option<String> {
    Some(match name {
        "server_version" => blueshift_common::PG_SERVER_VERSION.to_string(),
        "server_version_num" => "150004".into(),
        "search_path" => "$user, public".into(),
        "timezone" => "UTC".into(),
        "datestyle" => "ISO, MDY".into(),
        "client_encoding" | "server_encoding" => "UTF8".into(),
        "standard_conforming_strings" | "integer_datetimes" => "on".into(),
        "transaction_isolation" | "transaction isolation level" => "serializable".into(),
        "statement_timeout" => "0".into(),
        "max_identifier_length" => "127".into(),
        "intervalstyle" => "postgres".into(),
        _ => return None,
    })
}

fn set(sql: &str, settings: &mut HashMap<String, String>) -> Result<Outcome> {
    let ws = words(sql)?;
    let is_reset = ws.first().and_then(keyword).as_deref() == Some("RESET");
    let mut i = 1;
    if matches!(
        ws.get(1).and_then(keyword).as_deref(),
        Some("SESSION" | "LOCAL")
    ) {
        i += 1;
    }
    let name = ws
        .get(i)
        .map(|t| t.to_string().to_ascii_lowercase())
        .ok_or_else(|| Error::sql(sqlstate::SYNTAX_ERROR, "SET needs a setting name"))?;
    if is_reset {
        settings.remove(&name);
        return Ok(command("RESET"));
    }
    let mut rest = &ws[(i + 1).min(ws.len())..];
    if let Some(first) = rest.first()
        && (first == &datafusion::sql::sqlparser::tokenizer::Token::Eq
            || keyword(first).as_deref() == Some("TO"))
    {
        rest = &rest[1..];
    }
    let value = rest
        .iter()
        .map(|t| match t {
            datafusion::sql::sqlparser::tokenizer::Token::SingleQuotedString(s) => s.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    if name == crate::interrupt::STATEMENT_TIMEOUT {
        crate::interrupt::parse_timeout(&value)?;
    }
    if name == crate::limits::SETTING {
        crate::limits::parse_bytes(&value)?;
    }
    settings.insert(name, value);
    Ok(command("SET"))
}

impl Executor {
    /// `SHOW` of a setting, or one of Redshift's metadata listings.
    fn show(
        &self,
        sql: &str,
        params: Option<ParamValues>,
        settings: &HashMap<String, String>,
    ) -> Result<Outcome> {
        let values: Vec<String> = match &params {
            Some(ParamValues::List(values)) => values
                .iter()
                .map(|v| match &v.value {
                    datafusion::scalar::ScalarValue::Utf8(Some(s)) => Ok(s.clone()),
                    v if v.is_null() => Err(Error::sql(
                        sqlstate::INVALID_PARAMETER_VALUE,
                        "a SHOW parameter cannot be NULL",
                    )),
                    v => Ok(v.to_string()),
                })
                .collect::<Result<_>>()?,
            _ => Vec::new(),
        };
        match crate::sql::show::parse_show_bound(sql, Some(&values))? {
            Some(cmd) => self.show_objects(&cmd),
            None => show_setting(sql, settings),
        }
    }

    fn show_objects(&self, cmd: &crate::sql::show::ShowCommand) -> Result<Outcome> {
        use crate::sql::show::{ShowObjects, like_matches};
        let db = self.leader.database.clone();
        let snapshot = self.leader.catalog.snapshot();
        let text = |v: &str| Some(v.to_string());
        // (name the LIKE pattern applies to, the row's cells)
        let rows: Vec<(String, Vec<Cell>)> = match &cmd.objects {
            ShowObjects::Databases => {
                vec![(
                    db.clone(),
                    vec![
                        Cell::Text(text(&db)),
                        Cell::Text(text("blueshift")),
                        Cell::Text(text("local")),
                        Cell::Text(None),
                        Cell::Text(None),
                        Cell::Text(text("Serializable")),
                    ],
                )]
            }
            ShowObjects::Schemas { database } => {
                if *database == db {
                    vec![(
                        crate::planner::DEFAULT_SCHEMA.to_string(),
                        vec![
                            Cell::Text(text(&db)),
                            Cell::Text(text(crate::planner::DEFAULT_SCHEMA)),
                            Cell::Text(text("blueshift")),
                            Cell::Text(text("local")),
                            Cell::Text(None),
                            Cell::Text(None),
                            Cell::Text(None),
                        ],
                    )]
                } else {
                    Vec::new()
                }
            }
            ShowObjects::Tables { database, schema } => snapshot
                .tables
                .values()
                .filter(|t| *database == db && t.schema == *schema)
                .map(|t| {
                    (
                        t.name.clone(),
                        vec![
                            Cell::Text(text(&db)),
                            Cell::Text(text(&t.schema)),
                            Cell::Text(text(&t.name)),
                            Cell::Text(text("TABLE")),
                            Cell::Text(None),
                            Cell::Text(None),
                            // Owners and change times are not recorded.
                            Cell::Text(None),
                            Cell::Text(None),
                            Cell::Text(None),
                            Cell::Text(Some(dist_style(t))),
                            Cell::Text(text("REGULAR TABLE")),
                        ],
                    )
                })
                .collect(),
            ShowObjects::Columns {
                database,
                schema,
                table,
            } => snapshot
                .table_by_name(schema, table)
                .filter(|_| *database == db)
                .map(|t| {
                    t.columns
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            use blueshift_common::types::ColumnType as T;
                            let (len, precision, scale) = match c.ty {
                                T::Char { len } | T::Varchar { len } => {
                                    (Some(len as i32), None, None)
                                }
                                T::Decimal { precision, scale } => {
                                    (None, Some(i32::from(precision)), Some(i32::from(scale)))
                                }
                                T::SmallInt => (None, Some(16), Some(0)),
                                T::Integer => (None, Some(32), Some(0)),
                                T::BigInt => (None, Some(64), Some(0)),
                                _ => (None, None, None),
                            };
                            (
                                c.name.clone(),
                                vec![
                                    Cell::Text(text(&db)),
                                    Cell::Text(text(&t.schema)),
                                    Cell::Text(text(&t.name)),
                                    Cell::Text(text(&c.name)),
                                    Cell::Int(Some(i as i32 + 1)),
                                    Cell::Text(None),
                                    Cell::Text(text(if c.nullable { "YES" } else { "NO" })),
                                    Cell::Text(Some(c.ty.sql_name())),
                                    Cell::Int(len),
                                    Cell::Int(precision),
                                    Cell::Int(scale),
                                    Cell::Text(None),
                                    Cell::Text(
                                        t.sort_key.contains(&i).then(|| "COMPOUND".to_string()),
                                    ),
                                    Cell::Int(Some(
                                        t.sort_key
                                            .iter()
                                            .position(|k| *k == i)
                                            .map_or(0, |p| p as i32 + 1),
                                    )),
                                    Cell::Int(Some(i32::from(
                                        t.dist == DistStyle::Key { column: i },
                                    ))),
                                    // Segments are Parquet; Redshift's column encodings do
                                    // not apply.
                                    Cell::Text(None),
                                    Cell::Text(None),
                                ],
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        let rows: Vec<Vec<Cell>> = rows
            .into_iter()
            .filter(|(name, _)| cmd.like.as_ref().is_none_or(|p| like_matches(p, name)))
            .map(|(_, cells)| cells)
            .take(cmd.limit.unwrap_or(usize::MAX))
            .collect();
        cells_outcome(cmd.objects.columns(), rows)
    }
}

/// `DISTSTYLE` as `SHOW TABLES` reports it: `KEY(col)`, `EVEN`, `ALL`, or `AUTO(...)` when
/// Blueshift chose it.
fn dist_style(t: &blueshift_common::types::TableDef) -> String {
    let style = match &t.dist {
        DistStyle::Key { column } => format!(
            "KEY({})",
            t.columns
                .get(*column)
                .map(|c| c.name.as_str())
                .unwrap_or("?")
        ),
        other => other.name().to_string(),
    };
    if t.dist_auto {
        format!("AUTO({style})")
    } else {
        style
    }
}

/// One value of a metadata listing.
enum Cell {
    Text(Option<String>),
    Int(Option<i32>),
}

/// A listing with `columns` (name, integer?) and `rows`.
fn cells_outcome(columns: &[(&str, bool)], rows: Vec<Vec<Cell>>) -> Result<Outcome> {
    use arrow::array::{ArrayRef, Int32Array, StringArray};
    let schema = crate::sql::show::result_schema(columns);
    let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
    let is_int: Vec<bool> = columns.iter().map(|(_, i)| *i).collect();
    let columns: Vec<ArrayRef> = (0..names.len())
        .map(|i| -> ArrayRef {
            if is_int[i] {
                Arc::new(Int32Array::from(
                    rows.iter()
                        .map(|r| match r.get(i) {
                            Some(Cell::Int(v)) => *v,
                            _ => None,
                        })
                        .collect::<Vec<_>>(),
                ))
            } else {
                Arc::new(StringArray::from(
                    rows.iter()
                        .map(|r| match r.get(i) {
                            Some(Cell::Text(v)) => v.clone(),
                            _ => None,
                        })
                        .collect::<Vec<_>>(),
                ))
            }
        })
        .collect();
    let batch = arrow::array::RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Outcome::batches(schema, vec![batch]))
}

fn show_setting(sql: &str, settings: &HashMap<String, String>) -> Result<Outcome> {
    let ws = words(sql)?;
    let name = ws[1..]
        .iter()
        .map(|t| t.to_string().to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    let value = settings
        .get(&name)
        .cloned()
        .or_else(|| default_setting(&name))
        .ok_or_else(|| {
            Error::sql(
                "42704",
                format!("unrecognized configuration parameter \"{name}\""),
            )
        })?;
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new(name, arrow::datatypes::DataType::Utf8, false),
    ]));
    let batch = arrow::array::RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(arrow::array::StringArray::from(vec![value]))],
    )?;
    Ok(Outcome::batches(schema, vec![batch]))
}
