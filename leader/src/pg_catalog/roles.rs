//! Users as the catalog shows them: `pg_roles`, `pg_user`, `pg_get_userbyid(oid)`,
//! `current_user` / `session_user`.
//!
//! The built-in password-less users (configuration) come first with OIDs from 10 (10 is the
//! bootstrap superuser's OID in PostgreSQL); `CREATE USER` users keep the OID they were
//! created with. No password or secret is ever shown (`passwd` is `********` as in
//! PostgreSQL when one is set).

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::catalog::MemTable;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility};

/// One user as the catalog tables show it.
#[derive(Debug, Clone)]
pub struct RoleInfo {
    pub name: String,
    pub oid: i32,
    pub superuser: bool,
    pub create_db: bool,
    pub has_password: bool,
    /// `CONNECTION LIMIT`, -1 for none.
    pub connection_limit: i32,
}

/// The current users, read anew by each statement.
pub type RoleSource = Arc<dyn Fn() -> Vec<RoleInfo> + Send + Sync>;

fn nulls(n: usize, dt: DataType) -> ArrayRef {
    arrow::array::new_null_array(&dt, n)
}

pub fn pg_roles(roles: &[RoleInfo]) -> DfResult<Arc<MemTable>> {
    let n = roles.len();
    let b = |f: &dyn Fn(&RoleInfo) -> bool| -> ArrayRef {
        Arc::new(BooleanArray::from(roles.iter().map(f).collect::<Vec<_>>()))
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("rolname", DataType::Utf8, false),
        Field::new("rolsuper", DataType::Boolean, false),
        Field::new("rolinherit", DataType::Boolean, false),
        Field::new("rolcreaterole", DataType::Boolean, false),
        Field::new("rolcreatedb", DataType::Boolean, false),
        Field::new("rolcanlogin", DataType::Boolean, false),
        Field::new("rolreplication", DataType::Boolean, false),
        Field::new("rolconnlimit", DataType::Int32, false),
        Field::new("rolpassword", DataType::Utf8, true),
        Field::new(
            "rolvaliduntil",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("rolbypassrls", DataType::Boolean, false),
        Field::new("rolconfig", DataType::Utf8, true),
        Field::new("oid", DataType::Int32, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            roles.iter().map(|r| r.name.as_str()),
        )),
        b(&|r| r.superuser),
        b(&|_| true),
        b(&|r| r.superuser),
        b(&|r| r.create_db || r.superuser),
        b(&|_| true),
        b(&|_| false),
        Arc::new(Int32Array::from_iter_values(
            roles.iter().map(|r| r.connection_limit),
        )),
        Arc::new(StringArray::from_iter(
            roles.iter().map(|r| r.has_password.then_some("********")),
        )),
        nulls(
            n,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ),
        b(&|r| r.superuser),
        nulls(n, DataType::Utf8),
        Arc::new(Int32Array::from_iter_values(roles.iter().map(|r| r.oid))),
    ];
    Ok(Arc::new(MemTable::try_new(
        schema.clone(),
        vec![vec![RecordBatch::try_new(schema, columns)?]],
    )?))
}

pub fn pg_user(roles: &[RoleInfo]) -> DfResult<Arc<MemTable>> {
    let n = roles.len();
    let b = |f: &dyn Fn(&RoleInfo) -> bool| -> ArrayRef {
        Arc::new(BooleanArray::from(roles.iter().map(f).collect::<Vec<_>>()))
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("usename", DataType::Utf8, false),
        Field::new("usesysid", DataType::Int32, false),
        Field::new("usecreatedb", DataType::Boolean, false),
        Field::new("usesuper", DataType::Boolean, false),
        Field::new("userepl", DataType::Boolean, false),
        Field::new("usebypassrls", DataType::Boolean, false),
        Field::new("passwd", DataType::Utf8, true),
        Field::new(
            "valuntil",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("useconfig", DataType::Utf8, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            roles.iter().map(|r| r.name.as_str()),
        )),
        Arc::new(Int32Array::from_iter_values(roles.iter().map(|r| r.oid))),
        b(&|r| r.create_db || r.superuser),
        b(&|r| r.superuser),
        b(&|_| false),
        b(&|r| r.superuser),
        Arc::new(StringArray::from_iter(
            roles.iter().map(|r| r.has_password.then_some("********")),
        )),
        nulls(
            n,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ),
        nulls(n, DataType::Utf8),
    ];
    Ok(Arc::new(MemTable::try_new(
        schema.clone(),
        vec![vec![RecordBatch::try_new(schema, columns)?]],
    )?))
}

/// `pg_get_userbyid(oid)`: the user's name, or PostgreSQL's `unknown (OID=n)` for an OID
/// that is no user's (tables do not record an owner: their `relowner` is 0).
pub fn pg_get_userbyid(roles: Vec<RoleInfo>) -> ScalarUDF {
    datafusion::logical_expr::create_udf(
        "pg_get_userbyid",
        vec![DataType::Int32],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            use arrow::array::AsArray;
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let oids = arrays[0].as_primitive::<arrow::datatypes::Int32Type>();
            let out: StringArray = oids
                .iter()
                .map(|oid| {
                    oid.map(|oid| {
                        roles
                            .iter()
                            .find(|r| r.oid == oid)
                            .map(|r| r.name.clone())
                            .unwrap_or_else(|| format!("unknown (OID={oid})"))
                    })
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// `session_user` / `current_user` / `user`: the logged-in user of the statement's session.
pub fn current_user(name: &'static str, user: &str) -> ScalarUDF {
    super::functions::session_constant(name, user)
}
