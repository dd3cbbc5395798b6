//! The extended query protocol: Parse (with the client's declared parameter types),
//! Describe (parameter types inferred from the plan; NoData for statements without rows),
//! Bind (parameters decoded by their declared or inferred types) and Execute.

use super::*;
use crate::sql::statement::QuestionMarks;
use datafusion::sql::sqlparser::ast::DataType as SqlType;

/// A statement prepared through the extended protocol.
#[derive(Debug, Clone)]
pub struct Prepared {
    parsed: Parsed,
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
fn sql_type_of(t: &Type) -> Option<SqlType> {
    use datafusion::sql::sqlparser::ast::{ExactNumberInfo, TimezoneInfo};
    Some(match *t {
        Type::BOOL => SqlType::Boolean,
        Type::INT2 => SqlType::SmallInt(None),
        Type::INT4 => SqlType::Integer(None),
        Type::INT8 => SqlType::BigInt(None),
        Type::FLOAT4 => SqlType::Real,
        Type::FLOAT8 => SqlType::DoublePrecision,
        Type::NUMERIC => SqlType::Numeric(ExactNumberInfo::None),
        Type::TEXT => SqlType::Text,
        Type::VARCHAR => SqlType::Varchar(None),
        Type::BPCHAR => SqlType::Char(None),
        Type::DATE => SqlType::Date,
        Type::TIMESTAMP => SqlType::Timestamp(None, TimezoneInfo::None),
        Type::TIMESTAMPTZ => SqlType::Timestamp(None, TimezoneInfo::WithTimeZone),
        _ => return None,
    })
}

pub(super) struct Parser {
    pub(super) leader: Arc<LeaderState>,
}

impl Parser {
    /// The logical plan of a statement with the parameter types the client declared fixed
    /// (as in PostgreSQL: `select $1` with $1 int2 returns an int2), planned as the
    /// session's transaction block sees the catalog (a table it created).
    async fn plan_with_declared_types<C: ClientInfo>(
        &self,
        client: &C,
        ast: &mut crate::sql::statement::Ast,
        types: &[Option<Type>],
    ) -> PgWireResult<datafusion::logical_expr::LogicalPlan> {
        let declared: Vec<Option<SqlType>> = types
            .iter()
            .map(|t| t.as_ref().and_then(sql_type_of))
            .collect();
        crate::sql::compat::with_parameter_types(ast, &declared);
        let leader = self.leader.clone();
        // As the session's user (privileges are checked on the plan).
        let user = crate::session::effective_user(&super::settings_of(client));
        let plan = crate::session::CURRENT_USER.scope(user, async {
            query_context(&leader)?.logical_plan(ast).await
        });
        // As the statement will run: in the session's block, seeing its temporary tables.
        let plan = crate::session::tx::TEMP_TABLES.scope(super::temp_tables(client, &leader), plan);
        crate::session::tx::TRANSACTION
            .scope(tx_slot(client), plan)
            .await
            .map_err(user_error)
    }
}

/// The type of each parameter `$1..$n` a plan infers (`None`: unknown), at least `declared`
/// of them.
fn parameter_types(
    plan: &datafusion::logical_expr::LogicalPlan,
    declared: usize,
) -> PgWireResult<Vec<Option<DataType>>> {
    let inferred = plan
        .get_parameter_types()
        .map_err(|e| user_error(e.into()))?;
    let n = inferred.len().max(declared);
    Ok((1..=n)
        .map(|i| inferred.get(&format!("${i}")).cloned().flatten())
        .collect())
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let Some(parsed) =
            crate::sql::statement::parse_one(sql, QuestionMarks::Operator).map_err(user_error)?
        else {
            return Ok(None);
        };
        let mut prepared = Prepared {
            parsed,
            param_types: Vec::new(),
            result: None,
        };
        match &mut prepared.parsed.statement {
            Statement::Query(ast) | Statement::Insert(ast) => {
                let plan = self.plan_with_declared_types(client, ast, types).await?;
                prepared.param_types = parameter_types(&plan, types.len())?;
                if matches!(**ast, crate::sql::statement::Ast::Query(_)) {
                    prepared.result = Some(Arc::new(plan.schema().as_arrow().clone()));
                }
            }
            Statement::Delete(ast) | Statement::Update(ast) => {
                // Parameter types as DataFusion's own DELETE / UPDATE plan infers them; when
                // it cannot plan the statement (UPDATE ... FROM), they stay undeclared and
                // are read as text.
                if let Ok(plan) = self.plan_with_declared_types(client, ast, types).await
                    && let Ok(inferred) = parameter_types(&plan, types.len())
                {
                    prepared.param_types = inferred;
                }
            }
            Statement::Show(cmd) => {
                prepared.result = Some(crate::sql::show::result_schema(cmd.objects.columns()));
                prepared.param_types =
                    vec![Some(DataType::Utf8); cmd.parameter_count().max(types.len())];
            }
            Statement::ShowSetting(_) | Statement::Explain { .. } => {
                prepared.result = Some(Arc::new(arrow::datatypes::Schema::new(vec![
                    arrow::datatypes::Field::new("result", DataType::Utf8, true),
                ])));
            }
            _ => {}
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
        let result = self.run(client, &stmt.parsed, params, &mut settings).await;
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
