//! Catalog functions `datafusion-pg-catalog` does not have, or that need our state:
//! `current_database()`, `to_regtype(text)`, `json_build_object(...)`,
//! `pg_collation_is_visible(oid)`, `current_setting`, `set_config`, and the description
//! functions (always NULL: no object has
//! a comment).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray};
use arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

/// `current_database()` / `current_catalog`: the database the client logged in to.
pub fn current_database(name: &str) -> ScalarUDF {
    session_constant("current_database", name)
}

/// A function without arguments that returns a value fixed for the statement's session
/// (`current_database()`, `current_user`, ...).
pub fn session_constant(name: &str, value: &str) -> ScalarUDF {
    let value = value.to_string();
    datafusion::logical_expr::create_udf(
        name,
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_args: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(
                datafusion::scalar::ScalarValue::Utf8(Some(value.clone())),
            ))
        }),
    )
}

/// `col_description(oid, int)`, `obj_description(oid [, catalog])`,
/// `shobj_description(oid, catalog)`: always NULL, as no object has a comment.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct NoDescription {
    name: &'static str,
    signature: Signature,
}

impl NoDescription {
    pub fn new(name: &'static str) -> Self {
        NoDescription {
            name,
            signature: Signature::one_of(
                vec![TypeSignature::Any(1), TypeSignature::Any(2)],
                Volatility::Stable,
            ),
        }
    }
}

impl ScalarUDFImpl for NoDescription {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let nulls: ArrayRef = Arc::new(StringArray::new_null(args.number_rows));
        debug_assert_eq!(nulls.len(), args.number_rows);
        Ok(ColumnarValue::Array(nulls))
    }
}

/// `to_regtype(text)`: the OID of the named type, NULL when there is none (as PostgreSQL).
/// Names are resolved like the parser does: SQL spellings (`integer`, `character varying`,
/// `timestamp with time zone`), an optional `pg_catalog.` qualifier, `[]` for arrays.
#[derive(Debug)]
pub struct ToRegtype {
    signature: Signature,
    oids: std::collections::HashMap<String, i32>,
}

impl PartialEq for ToRegtype {
    fn eq(&self, other: &Self) -> bool {
        self.oids == other.oids
    }
}
impl Eq for ToRegtype {}
impl std::hash::Hash for ToRegtype {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.oids.len().hash(state);
    }
}

/// SQL spellings of type names and the `pg_type.typname` they mean.
const TYPE_ALIASES: [(&str, &str); 16] = [
    ("integer", "int4"),
    ("int", "int4"),
    ("bigint", "int8"),
    ("smallint", "int2"),
    ("boolean", "bool"),
    ("real", "float4"),
    ("double precision", "float8"),
    ("float", "float8"),
    ("decimal", "numeric"),
    ("character varying", "varchar"),
    ("character", "bpchar"),
    ("char", "bpchar"),
    ("timestamp without time zone", "timestamp"),
    ("timestamp with time zone", "timestamptz"),
    ("time without time zone", "time"),
    ("time with time zone", "timetz"),
];

impl ToRegtype {
    pub fn new(pg_type: &[arrow::array::RecordBatch]) -> DfResult<Self> {
        use arrow::array::AsArray;
        let mut oids = std::collections::HashMap::new();
        for b in pg_type {
            let (Some(oid), Some(name)) = (b.column_by_name("oid"), b.column_by_name("typname"))
            else {
                return Err(DataFusionError::Internal(
                    "pg_type has no oid/typname columns".into(),
                ));
            };
            let oid = arrow::compute::cast(oid, &DataType::Int32)?;
            let name = arrow::compute::cast(name, &DataType::Utf8)?;
            let (oid, name) = (
                oid.as_primitive::<arrow::datatypes::Int32Type>(),
                name.as_string::<i32>(),
            );
            for i in 0..b.num_rows() {
                if oid.is_valid(i) && name.is_valid(i) {
                    oids.insert(name.value(i).to_string(), oid.value(i));
                }
            }
        }
        Ok(ToRegtype {
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Stable),
            oids,
        })
    }

    fn lookup(&self, name: &str) -> Option<i32> {
        let mut n = name.trim().to_ascii_lowercase();
        if let Some(rest) = n.strip_prefix("pg_catalog.") {
            n = rest.to_string();
        }
        // Type modifiers do not change the type: `varchar(20)`, `numeric(10,2)`.
        if let Some(open) = n.find('(')
            && let Some(close) = n.rfind(')')
        {
            n = format!("{}{}", n[..open].trim_end(), &n[close + 1..]);
        }
        let (base, array) = match n.strip_suffix("[]") {
            Some(b) => (b.trim_end().to_string(), true),
            None => (n, false),
        };
        let base = TYPE_ALIASES
            .iter()
            .find(|(alias, _)| *alias == base)
            .map(|(_, t)| t.to_string())
            .unwrap_or(base);
        let typname = if array { format!("_{base}") } else { base };
        self.oids.get(&typname).copied()
    }
}

impl ScalarUDFImpl for ToRegtype {
    fn name(&self) -> &str {
        "to_regtype"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int32)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        use arrow::array::AsArray;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let names = arrays[0].as_string::<i32>();
        let out: arrow::array::Int32Array = names
            .iter()
            .map(|n| n.and_then(|n| self.lookup(n)))
            .collect();
        if let [ColumnarValue::Scalar(_)] = args.args.as_slice() {
            return Ok(ColumnarValue::Scalar(
                datafusion::scalar::ScalarValue::try_from_array(&out, 0)?,
            ));
        }
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `json_build_object(k1, v1, k2, v2, ...)`: a JSON object as text (keys as strings; values
/// as JSON numbers, booleans, strings or null by their type), like PostgreSQL's.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonBuildObject {
    signature: Signature,
}

impl JsonBuildObject {
    pub fn new() -> Self {
        JsonBuildObject {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        if !args.len().is_multiple_of(2) {
            return Err(DataFusionError::Plan(
                "argument list must have even number of elements".into(),
            ));
        }
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut out = arrow::array::StringBuilder::new();
        for row in 0..args.number_rows {
            let mut obj = serde_json::Map::new();
            for pair in arrays.chunks(2) {
                let key = datafusion::scalar::ScalarValue::try_from_array(&pair[0], row)?;
                if key.is_null() {
                    return Err(DataFusionError::Execution(
                        "null value not allowed for object key".into(),
                    ));
                }
                let value = datafusion::scalar::ScalarValue::try_from_array(&pair[1], row)?;
                obj.insert(key.to_string(), json_value(&value));
            }
            out.append_value(serde_json::Value::Object(obj).to_string());
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

fn json_value(v: &datafusion::scalar::ScalarValue) -> serde_json::Value {
    use datafusion::scalar::ScalarValue as S;
    if v.is_null() {
        return serde_json::Value::Null;
    }
    match v {
        S::Boolean(Some(b)) => serde_json::Value::Bool(*b),
        S::Int8(_)
        | S::Int16(_)
        | S::Int32(_)
        | S::Int64(_)
        | S::UInt8(_)
        | S::UInt16(_)
        | S::UInt32(_)
        | S::UInt64(_)
        | S::Float32(_)
        | S::Float64(_)
        | S::Decimal128(..) => {
            serde_json::from_str(&v.to_string()).unwrap_or(serde_json::Value::String(v.to_string()))
        }
        other => serde_json::Value::String(other.to_string()),
    }
}

/// `pg_collation_is_visible(oid)` / `pg_type_is_visible(oid)`: every collation and type lives
/// in `pg_catalog` (there are no user-defined ones), which is always on the search path.
pub fn pg_collation_is_visible() -> ScalarUDF {
    always_visible("pg_collation_is_visible")
}

pub fn pg_type_is_visible() -> ScalarUDF {
    always_visible("pg_type_is_visible")
}

/// `pg_is_other_temp_schema(oid)`: false. Temporary tables live in ordinary schemas here
/// (there is no per-session temporary schema), so no schema is another session's.
pub fn pg_is_other_temp_schema() -> ScalarUDF {
    constant_flag("pg_is_other_temp_schema", false)
}

fn always_visible(name: &str) -> ScalarUDF {
    constant_flag(name, true)
}

/// A function of one OID that is `value` for every non-NULL argument.
fn constant_flag(name: &str, value: bool) -> ScalarUDF {
    datafusion::logical_expr::create_udf(
        name,
        vec![DataType::Int32],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let out: arrow::array::BooleanArray = (0..arrays[0].len())
                .map(|i| arrays[0].is_valid(i).then_some(value))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// `current_database()` in FROM (`SELECT current_database FROM current_database()`, as
/// `redshift_connector` lists catalogs): one row, one column `current_database`.
#[derive(Debug)]
pub struct CurrentDatabaseTable {
    pub name: String,
}

impl datafusion::catalog::TableFunctionImpl for CurrentDatabaseTable {
    fn call(
        &self,
        args: &[datafusion::logical_expr::Expr],
    ) -> DfResult<Arc<dyn datafusion::catalog::TableProvider>> {
        if !args.is_empty() {
            return Err(DataFusionError::Plan(
                "current_database() takes no arguments".into(),
            ));
        }
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("current_database", DataType::Utf8, false),
        ]));
        let batch = arrow::array::RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec![self.name.clone()]))],
        )?;
        Ok(Arc::new(datafusion::catalog::MemTable::try_new(
            schema,
            vec![vec![batch]],
        )?))
    }
}

/// `current_setting(name [, missing_ok])`: the session's value of a setting (as `SHOW`).
pub fn current_setting(settings: std::collections::HashMap<String, String>) -> ScalarUDF {
    datafusion::logical_expr::create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            use arrow::array::AsArray;
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let names = arrays[0].as_string::<i32>();
            let mut out = arrow::array::StringBuilder::new();
            for name in names.iter() {
                match name {
                    None => out.append_null(),
                    Some(n) => {
                        let n = n.to_ascii_lowercase();
                        let v = settings
                            .get(&n)
                            .cloned()
                            .or_else(|| crate::session::default_setting(&n))
                            .ok_or_else(|| {
                                crate::error::Error::sql(
                                    blueshift_common::error::sqlstate::UNDEFINED_OBJECT,
                                    format!("unrecognized configuration parameter \"{n}\""),
                                )
                            })?;
                        out.append_value(v);
                    }
                }
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}

/// `set_config(name, value, is_local)`: sets a session setting (as `SET`), returns the value.
pub fn set_config(changes: Arc<crate::session::SettingChanges>) -> ScalarUDF {
    datafusion::logical_expr::create_udf(
        "set_config",
        vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            use arrow::array::AsArray;
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let (names, values) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
            let mut out = arrow::array::StringBuilder::new();
            for i in 0..names.len() {
                if names.is_null(i) {
                    out.append_null();
                    continue;
                }
                let value = if values.is_null(i) {
                    ""
                } else {
                    values.value(i)
                };
                changes.record(names.value(i).to_ascii_lowercase(), value.to_string())?;
                out.append_value(value);
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}
