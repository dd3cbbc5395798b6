//! Executing one statement for a client session: the dispatch from statement kind to the
//! code that runs it (DDL and COPY here, queries through DataFusion and the distributed
//! planner), independent of the wire protocol that carried it.
//!
//! * [`settings`]: `SET` / `SHOW` of settings, the statement's user and settings as
//!   task-locals, `set_config` changes;
//! * [`metadata`]: Redshift's `SHOW DATABASES | SCHEMAS | TABLES | COLUMNS` listings;
//! * [`users`]: `CREATE` / `ALTER` / `DROP USER`;
//! * [`cluster`]: `ALTER CLUSTER REMOVE REPLICA n`;
//! * [`alter`]: `ALTER TABLE ... RENAME TO | ADD COLUMN | DROP COLUMN`;
//! * [`views`]: `CREATE [OR REPLACE] VIEW`;
//! * [`schemas`]: `CREATE` / `DROP SCHEMA`;
//! * [`drop`]: `DROP TABLE | VIEW [CASCADE]`;
//! * [`tx`]: transaction blocks (snapshot isolation, one catalog command at COMMIT);
//! * [`dml`]: `DELETE`, `UPDATE`, `MERGE`, `TRUNCATE` (segments rewritten, swapped in one
//!   command).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use blueshift_common::error::sqlstate;
use blueshift_common::types::ColumnDef;
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
use crate::sql::copy::CopyStatement;
use crate::sql::copy_out::CopyOut;
use crate::sql::ddl::CreateTable;
use crate::sql::statement::{Ast, Parsed, Statement};

mod alter;
mod append;
mod cluster;
mod comments;
mod dml;
mod drop;
mod grants;
mod insert;
pub use insert::settle_defaults as settle_insert_defaults;
mod metadata;
pub mod retry;
mod schemas;
mod settings;
pub mod tx;
mod users;
mod views;

pub use settings::{
    AUTHORIZATION_USER, CURRENT_USER, SESSION_USER, SETTINGS, SettingChanges, StatementSettings,
    current_user, default_setting, effective_user, search_path, statement_settings,
};
use settings::{set, show_setting};

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
/// routes and (once the data ends with CopyDone) commits it, answering the row count.
/// Dropped without [`CopyChunk::Done`] (the client disconnected), the load fails and
/// commits nothing.
pub struct CopyInLoad {
    pub data: tokio::sync::mpsc::Sender<CopyChunk>,
    pub task: tokio::task::JoinHandle<Result<u64>>,
}

/// What the client sent during `COPY ... FROM STDIN`.
pub enum CopyChunk {
    /// A CopyData message.
    Data(bytes::Bytes),
    /// CopyDone: the data is complete. Only this ends the data; a channel that closes
    /// without it means the client went away.
    Done,
}

/// The client's COPY data as a blocking `Read` for the parser thread: EOF at
/// [`CopyChunk::Done`], an error if the channel closes before it.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<CopyChunk>,
    current: bytes::Bytes,
    done: bool,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(CopyChunk::Data(chunk)) => self.current = chunk,
                Some(CopyChunk::Done) => self.done = true,
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "the client disconnected before the end of the COPY data",
                    ));
                }
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
        parsed: &Parsed,
        params: Option<ParamValues>,
        settings: &mut HashMap<String, String>,
    ) -> Result<Outcome> {
        let memory_limit = match settings.get(crate::limits::SETTING) {
            Some(v) => crate::limits::parse_bytes(v)?,
            None => self.leader.query_memory_limit,
        };
        let user = settings::effective_user(settings);
        let view = StatementSettings {
            settings: settings.clone(),
            changes: Arc::new(SettingChanges::default()),
        };
        let changes = view.changes.clone();
        let run = crate::limits::QUERY_MEMORY_LIMIT
            .scope(memory_limit, self.dispatch(parsed, params, settings));
        let outcome = SETTINGS.scope(view, CURRENT_USER.scope(user, run)).await;
        // `set_config(...)` calls, evaluated while the statement was planned.
        for (name, value) in changes.apply() {
            settings.insert(name, value);
        }
        outcome
    }

    /// Parses SQL text made inside the process (the demo data set's DDL) and runs each of
    /// its statements.
    pub async fn execute_sql(
        &self,
        sql: &str,
        settings: &mut HashMap<String, String>,
    ) -> Result<()> {
        for parsed in crate::sql::statement::parse(sql)? {
            self.execute(&parsed, None, settings).await?;
        }
        Ok(())
    }

    async fn dispatch(
        &self,
        parsed: &Parsed,
        params: Option<ParamValues>,
        settings: &mut HashMap<String, String>,
    ) -> Result<Outcome> {
        let is_control = matches!(parsed.statement, Statement::Transaction(_));
        if !is_control && tx::aborted() {
            return Err(tx::in_failed_block());
        }
        // Linearizable reads: before the statement pins a catalog version, this replica
        // applies every commit acknowledged anywhere before it began (a block reads the
        // version it began at; a group of one has nothing to wait for).
        if !is_control && !tx::in_block() {
            self.leader.catalog.read_barrier().await?;
        }
        let outcome = match &parsed.statement {
            Statement::CreateTable(ct) => self.create_table(ct).await,
            Statement::DropTable(stmt) => self.drop_relations(stmt, drop::Kind::Table).await,
            Statement::DropView(stmt) => self.drop_relations(stmt, drop::Kind::View).await,
            Statement::CreateView(cv) => self.create_view(cv).await,
            Statement::Schema(stmt) => self.schema_statement(stmt).await,
            Statement::Comment(c) => self.comment(c).await,
            Statement::AlterTable(stmt) => self.alter_table(stmt).await,
            Statement::AppendFrom(stmt) => self.append_from(stmt).await,
            Statement::CopyFrom(copy) => self.copy_from(copy).await,
            Statement::CopyTo(copy) => self.copy_to(&parsed.text, copy).await,
            Statement::Insert(ast) => self.insert(ast, params).await,
            Statement::Delete(ast) => self.delete(ast, params).await,
            Statement::Update(ast) => self.update(ast, params).await,
            Statement::Merge(ast) => self.merge(ast, params).await,
            Statement::Truncate(names) => self.truncate(names).await,
            Statement::Query(ast) => self.query(&parsed.text, ast, params).await,
            Statement::Explain { analyze, statement } => self.explain(*analyze, statement).await,
            Statement::Set(stmt) if stmt.name == "authorization" => {
                self.set_authorization(stmt, settings)
            }
            Statement::Set(stmt) => set(stmt, settings),
            Statement::ShowSetting(name) => show_setting(name, settings),
            Statement::Show(cmd) => self.show(cmd, params),
            Statement::Transaction(stmt) => match tx::current() {
                Some(slot) => {
                    let tag = tx::control(&self.leader, &slot, stmt).await;
                    // The block ends (or begins) in the session's settings either way: a
                    // COMMIT that fails has rolled the block back.
                    let change = crate::sql::transaction::execute(stmt, settings);
                    tag.map(|tag| Outcome::Transaction { tag, change })
                }
                None => Err(Error::sql(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "transaction blocks need a session: use the PostgreSQL protocol",
                )),
            },
            Statement::User(stmt) => self.user_statement(stmt).await,
            Statement::Cluster(stmt) => self.cluster_statement(stmt).await,
            Statement::Grant(stmt) => self.grant_statement(stmt).await,
            Statement::Group(stmt) => self.group_statement(stmt).await,
            Statement::NoOp(tag) => Ok(command(tag)),
            Statement::Cursor(_) => Err(Error::sql(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "cursors are available over the PostgreSQL protocol only",
            )),
            Statement::Unsupported(keyword) => Err(Error::sql(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("{keyword} statements are not supported yet"),
            )),
        };
        if outcome.is_err() && !is_control {
            // A statement that fails inside a block aborts the block (25P02 until it ends).
            tx::abort();
        }
        outcome
    }

    /// The statement's user's privileges at catalog version `snapshot`.
    fn access<'a>(
        &'a self,
        snapshot: &'a crate::catalog::CatalogState,
    ) -> crate::privileges::Access<'a> {
        crate::privileges::Access::new(snapshot, &self.leader.users, &current_user())
    }

    /// 42501 unless the user may write `table` with `p` (and use its schema).
    fn require_write(
        &self,
        snapshot: &crate::catalog::CatalogState,
        table: &blueshift_common::types::TableDef,
        p: crate::catalog::acl::Privileges,
    ) -> Result<()> {
        let access = self.access(snapshot);
        access.require_schema(&table.schema, crate::catalog::acl::Privileges::USAGE)?;
        access.require_relation(crate::catalog::Relation::Table(table), p)
    }

    fn scheduler(&self) -> Arc<SchedulerHandle> {
        Arc::new(SchedulerHandle(self.leader.scheduler.clone()))
    }

    /// Plans a query into a distributed physical plan.
    pub async fn plan_query(
        &self,
        qc: &QueryContext,
        ast: &Ast,
        params: Option<ParamValues>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        crate::sql::guard::refuse_known_wrong_answers(ast)?;
        let mut df = qc.dataframe(ast).await?;
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

    /// Plans a query on the live nodes and starts it; gives its stream and query id.
    async fn start_query(
        &self,
        ast: &Ast,
        params: Option<ParamValues>,
    ) -> Result<(SchemaRef, SendableRecordBatchStream, String)> {
        let qc = query_context(&self.leader)?;
        let plan = self.plan_query(&qc, ast, params).await?;
        let schema = plan.schema();
        let stream = execute_stream(plan, qc.ctx.task_ctx())?;
        Ok((schema, stream, qc.query_id))
    }

    /// A query, run again on the remaining nodes if it loses one ([`retry`]).
    async fn query(&self, sql: &str, ast: &Ast, params: Option<ParamValues>) -> Result<Outcome> {
        let (schema, stream, query_id) = self.start_query(ast, params.clone()).await?;
        // A retry plans again outside this statement's task, so it takes the statement's
        // user, settings and memory limit along.
        let leader = self.leader.clone();
        let ast = ast.clone();
        let view = statement_settings();
        let user = current_user();
        let memory_limit = crate::limits::current();
        let slot = tx::current();
        let temp = tx::TEMP_TABLES.try_with(Arc::clone).ok();
        let replan: retry::Replan = Box::new(move || {
            let executor = Executor {
                leader: leader.clone(),
            };
            let ast = ast.clone();
            let params = params.clone();
            let run = crate::limits::QUERY_MEMORY_LIMIT.scope(memory_limit, async move {
                let (_, stream, id) = executor.start_query(&ast, params).await?;
                Ok((stream, id))
            });
            let run = SETTINGS.scope(view.clone(), CURRENT_USER.scope(user.clone(), run));
            // A retry reads what the first attempt read: its transaction block's state and
            // its session's temporary tables.
            let run: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>> =
                match temp.clone() {
                    Some(temp) => Box::pin(tx::TEMP_TABLES.scope(temp, run)),
                    None => Box::pin(run),
                };
            match slot.clone() {
                Some(slot) => Box::pin(tx::TRANSACTION.scope(slot, run)),
                None => run,
            }
        });
        let stream = retry::retrying(
            self.leader.clone(),
            sql.to_string(),
            schema.clone(),
            stream,
            query_id,
            replan,
        );
        Ok(Outcome::Rows { schema, stream })
    }

    async fn explain(&self, analyze: bool, statement: &Statement) -> Result<Outcome> {
        let qc = query_context(&self.leader)?;
        let plan = match statement {
            Statement::Query(ast) => self.plan_query(&qc, ast, None).await?,
            Statement::Insert(ast) => {
                let (_, input) = self.insert_input(&qc, ast, None).await?;
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

    async fn create_table(&self, ct: &CreateTable) -> Result<Outcome> {
        let mut ct = ct.clone();
        let leader = &self.leader;
        let path = search_path();
        let snapshot = tx::snapshot(leader);
        let schema = if ct.temporary {
            // Always the session's own schema (Redshift takes no schema for a temp table).
            if let Some(s) = &ct.name.schema {
                return Err(Error::sql(
                    sqlstate::INVALID_TABLE_DEFINITION,
                    format!(
                        "cannot create temporary relation in non-temporary schema \"{s}\": \
                         a temporary table goes in its session's schema"
                    ),
                ));
            }
            tx::temp_schema().ok_or_else(|| {
                Error::sql(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "temporary tables need a session: use the PostgreSQL protocol",
                )
            })?
        } else {
            snapshot.creation_schema(&ct.name, &path)?
        };
        use crate::catalog::acl::Privileges;
        if ct.temporary {
            if !self
                .access(&snapshot)
                .on_database()
                .0
                .contains(Privileges::TEMP)
            {
                return Err(crate::privileges::denied("database", &self.leader.database));
            }
        } else {
            self.access(&snapshot)
                .require_schema(&schema, Privileges::CREATE)?;
        }
        let target = crate::sql::names::RelationName::qualified(&schema, &ct.name.name);
        let exists = |s: &crate::catalog::CatalogState| s.relation(&target, &[]).is_some();
        if ct.if_not_exists && exists(&snapshot) {
            return Ok(command("CREATE TABLE"));
        }
        if let Some(parent) = ct.like.clone() {
            let def = snapshot.table(&parent, &path)?;
            ct = ct.like_table(def)?;
        }
        let id = leader.catalog.allocate_table_id().await?;
        if ct.temporary {
            tx::note_temporary(id)?;
        }
        let duplicate = || {
            Error::sql(
                sqlstate::DUPLICATE_TABLE,
                format!("relation \"{}\" already exists", target.name),
            )
        };
        let Some(query) = ct.query.take() else {
            if ct.columns.iter().any(|c| c.default.is_some()) {
                // Each default must compute a value of its column's type.
                let state = query_context(leader)?.ctx.state();
                for c in &ct.columns {
                    crate::planner::defaults::default_value(&state, c)?;
                }
            }
            let def = ct.clone().into_def(id, schema.clone(), &current_user());
            tx::execute(leader, |s| {
                if exists(s) {
                    return Err(duplicate());
                }
                Ok(Command::CreateTable(def.clone()))
            })
            .await?;
            return Ok(command("CREATE TABLE"));
        };
        // CREATE TABLE ... AS SELECT: plan the query, create the table from its schema,
        // load its rows; the table only becomes visible with its rows.
        let qc = query_context(leader)?;
        let plan = self.plan_query(&qc, &Ast::Query(query), None).await?;
        let schema_ref = plan.schema();
        let columns = schema_ref
            .fields()
            .iter()
            .map(|f| {
                blueshift_common::types::ColumnType::from_arrow(f.data_type())
                    .map(|ty| ColumnDef::new(f.name().to_ascii_lowercase(), ty, true))
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
        if exists(&tx::snapshot(leader)) {
            return Err(duplicate());
        }
        // The rows are loaded for a table no one else can see yet; one command then creates
        // it with its segments, so a failed or cancelled load leaves no table behind.
        let def = ct.into_def(id, schema.clone(), &current_user());
        let (rows, segments) = self
            .route_stream(&def, execute_stream(plan, qc.ctx.task_ctx())?)
            .await?;
        tx::execute(leader, |s| {
            if exists(s) {
                return Err(duplicate());
            }
            let mut commands = vec![Command::CreateTable(def.clone())];
            if !segments.is_empty() {
                commands.push(Command::CommitSegments {
                    table_id: def.id,
                    segments: segments.clone(),
                });
            }
            Ok(Command::Transaction {
                base_version: s.version,
                commands,
            })
        })
        .await?;
        Ok(Outcome::Command {
            tag: "SELECT".into(),
            rows: Some(rows),
        })
    }

    async fn copy_to(&self, sql: &str, copy: &CopyOut) -> Result<Outcome> {
        let outcome = self.query(sql, &copy.query()?, None).await?;
        let Outcome::Rows { schema, stream } = outcome else {
            return Err(Error::sql(sqlstate::INTERNAL_ERROR, "COPY TO without rows"));
        };
        Ok(Outcome::CopyOut {
            copy: copy.clone(),
            schema,
            stream,
        })
    }

    async fn copy_from(&self, stmt: &CopyStatement) -> Result<Outcome> {
        let snapshot = tx::snapshot(&self.leader);
        let table = snapshot.table(&stmt.table, &search_path())?.clone();
        self.require_write(&snapshot, &table, crate::catalog::acl::Privileges::INSERT)?;
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
        let columns = identity_columns(&table, columns, stmt.options.explicit_ids)?;
        let defaults = self.load_defaults(&table, columns.as_deref())?;
        let map = self.leader.membership.slice_map(snapshot.slices)?;
        let width = columns
            .as_ref()
            .map(Vec::len)
            .unwrap_or(table.columns.len());
        let spec = ReadSpec {
            table: table.clone(),
            columns,
            defaults,
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
                done: false,
            };
            let reader =
                tokio::task::spawn_blocking(move || read_stdin(spec, Box::new(source), tx));
            let executor = Executor {
                leader: self.leader.clone(),
            };
            let slices = snapshot.slices;
            // The load commits into the statement's transaction block, if any.
            let slot = tx::current();
            let task = tokio::spawn(async move {
                let load = executor.route_and_commit(table, slices, map, rx, reader);
                match slot {
                    Some(slot) => tx::TRANSACTION.scope(slot, load).await,
                    None => load.await,
                }
            });
            return Ok(Outcome::CopyIn {
                columns: width,
                load: Some(CopyInLoad { data, task }),
            });
        }
        // Server files: superusers only, under allowed_paths, never in a data dir.
        let superuser = self.access(&snapshot).is_superuser();
        let access = &self.leader.file_access;
        access.check_source(&stmt.source, superuser)?;
        let files = list_files(&stmt.source)?;
        for f in &files {
            access.check_file(f)?;
        }
        let reader = tokio::task::spawn_blocking(move || read_files(spec, files, tx));
        let rows = self
            .route_and_commit(table, snapshot.slices, map, rx, reader)
            .await?;
        Ok(Outcome::Command {
            tag: "COPY".into(),
            rows: Some(rows),
        })
    }

    /// The `DEFAULT` of each table column a load has no values for, evaluated once.
    fn load_defaults(
        &self,
        table: &blueshift_common::types::TableDef,
        columns: Option<&[usize]>,
    ) -> Result<Vec<Option<datafusion::common::ScalarValue>>> {
        let loaded = |i: usize| columns.is_none_or(|c| c.contains(&i));
        if !table
            .columns
            .iter()
            .enumerate()
            .any(|(i, c)| c.default.is_some() && !loaded(i))
        {
            return Ok(vec![]);
        }
        let qc = query_context(&self.leader)?;
        let state = qc.ctx.state();
        table
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if loaded(i) {
                    Ok(None)
                } else {
                    crate::planner::defaults::default_value(&state, c)
                }
            })
            .collect()
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
        // Keeps GC off the segments this load writes until it commits or fails.
        let _pin = self.leader.pins.pin();
        let mut router = Router::new(table.clone(), slices, map, self.leader.scheduler.clone());
        while let Some(batch) = rx.recv().await {
            let batch = crate::load::identity::fill(&self.leader, &table, batch?).await?;
            router.push(batch).await?;
        }
        reader
            .await
            .map_err(|e| Error::sql(sqlstate::INTERNAL_ERROR, format!("reader failed: {e}")))?;
        let rows = router.rows();
        let segments = router.finish().await?;
        self.commit(&table, segments).await?;
        tracing::info!(table = %table.name, rows, "COPY committed");
        Ok(rows)
    }

    async fn commit(
        &self,
        table: &blueshift_common::types::TableDef,
        segments: Vec<blueshift_common::types::Segment>,
    ) -> Result<()> {
        if segments.is_empty() {
            return Ok(());
        }
        tx::execute(&self.leader, |s| {
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
        })
        .await?;
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
        stream: SendableRecordBatchStream,
    ) -> Result<u64> {
        let _pin = self.leader.pins.pin();
        let (rows, segments) = self.route_stream(table, stream).await?;
        self.commit(table, segments).await?;
        Ok(rows)
    }

    /// Routes the rows of a stream into new segments of the table (not committed).
    async fn route_stream(
        &self,
        table: &blueshift_common::types::TableDef,
        stream: SendableRecordBatchStream,
    ) -> Result<(u64, Vec<blueshift_common::types::Segment>)> {
        let mut router = self.router(table, tx::snapshot(&self.leader).slices)?;
        route_rows(&self.leader, &mut router, table, stream, "inserted row").await?;
        let rows = router.rows();
        let segments = router.finish().await?;
        Ok((rows, segments))
    }

    /// A router writing new segments of `table` to the live nodes.
    fn router(&self, table: &blueshift_common::types::TableDef, slices: u32) -> Result<Router> {
        let map = self.leader.membership.slice_map(slices)?;
        Ok(Router::new(
            table.clone(),
            slices,
            map,
            self.leader.scheduler.clone(),
        ))
    }

    async fn insert_input(
        &self,
        qc: &QueryContext,
        ast: &Ast,
        params: Option<ParamValues>,
    ) -> Result<(blueshift_common::types::TableDef, Arc<dyn ExecutionPlan>)> {
        crate::sql::guard::refuse_known_wrong_answers(ast)?;
        let mut df = qc.dataframe(ast).await?;
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
        let def = qc
            .catalog
            .table(
                &crate::sql::names::RelationName::from_reference(&table_name),
                &search_path(),
            )?
            .clone();
        self.require_write(&qc.catalog, &def, crate::catalog::acl::Privileges::INSERT)?;
        let df = DataFrame::new(state, Arc::unwrap_or_clone(input));
        let plan = self.plan_dataframe(qc, df).await?;
        Ok((def, plan))
    }

    async fn insert(&self, ast: &Ast, params: Option<ParamValues>) -> Result<Outcome> {
        let qc = query_context(&self.leader)?;
        let (def, plan) = self.insert_input(&qc, ast, params).await?;
        let rows = self
            .load_stream(&def, execute_stream(plan, qc.ctx.task_ctx())?)
            .await?;
        Ok(Outcome::Command {
            tag: "INSERT 0".into(),
            rows: Some(rows),
        })
    }
}

/// The table columns a COPY loads, as Redshift has it for an IDENTITY column: without a
/// column list, every column but the identity one (unless `EXPLICIT_IDS`); a list may name
/// the identity column only with `EXPLICIT_IDS` (a `GENERATED BY DEFAULT` one also without).
fn identity_columns(
    table: &blueshift_common::types::TableDef,
    columns: Option<Vec<usize>>,
    explicit_ids: bool,
) -> Result<Option<Vec<usize>>> {
    let Some((identity, how)) = table.identity_column() else {
        return Ok(columns);
    };
    let name = &table.columns[identity].name;
    match columns {
        None if explicit_ids => Ok(None),
        None => Ok(Some(
            (0..table.columns.len())
                .filter(|i| *i != identity)
                .collect(),
        )),
        Some(list) => {
            let named = list.contains(&identity);
            if named && !explicit_ids && !how.by_default {
                Err(Error::sql(
                    sqlstate::GENERATED_ALWAYS,
                    format!("cannot COPY into IDENTITY column \"{name}\" without EXPLICIT_IDS"),
                ))
            } else if !named && explicit_ids {
                Err(Error::sql(
                    sqlstate::SYNTAX_ERROR,
                    format!("EXPLICIT_IDS needs the IDENTITY column \"{name}\" in the column list"),
                ))
            } else {
                Ok(Some(list))
            }
        }
    }
}

/// Feeds a stream of rows in `table`'s column order into `router`, each cast to the
/// table's types (`what` names a bad row in the error).
async fn route_rows(
    leader: &LeaderState,
    router: &mut Router,
    table: &blueshift_common::types::TableDef,
    mut stream: SendableRecordBatchStream,
    what: &str,
) -> Result<()> {
    let mapping: Vec<Option<usize>> = (0..table.columns.len()).map(Some).collect();
    while let Some(batch) = stream.next().await {
        let batch = coerce_batch(&batch?, table, &mapping, &[], false)
            .map_err(|mut bad| bad.remove(0).into_error(what))?;
        let batch = crate::load::identity::fill(leader, table, batch).await?;
        router.push(batch).await?;
    }
    Ok(())
}
