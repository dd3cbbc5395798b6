//! Redshift's additions to the PostgreSQL catalog, which Redshift tools (sqlalchemy-redshift,
//! the Redshift JDBC driver) read:
//!
//! * `pg_class`: a real `relowner` (the table's creator; tables from before owners were
//!   recorded belong to the built-in user, the only user there was), `reldiststyle` (0 EVEN,
//!   1 KEY, 8 ALL, 9/10/11 AUTO(ALL/EVEN/KEY)), `relacl` (the GRANTs, as `aclitem` texts;
//!   NULL while there are none);
//! * `pg_attribute`: the declared type of VARCHAR(n), CHAR(n) and NUMERIC(p,s) columns
//!   (`atttypid`, `atttypmod`), `attisdistkey`, `attsortkeyord` (position in the sort key, 0
//!   if none), `attencodingtype` (0: segments are Parquet, Redshift's encodings do not
//!   apply);
//! * `pg_attrdef.adsrc` (no column has a default, so the table is empty);
//! * `format_encoding(int)` and `pg_get_viewdef(oid [, bool])` (NULL: a view's definition is
//!   listed by `pg_views` and `information_schema.views`, see [`super::views`]).
//!
//! The crate's tables are read once per statement and extended; OIDs are the crate's.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int16Array, Int32Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema};
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility};
use datafusion::prelude::SessionContext;

use blueshift_common::types::{DistStyle, TableDef};

use super::RoleSource;
use crate::catalog::Catalog;

pub(super) async fn collect(
    provider: Arc<dyn TableProvider>,
) -> DfResult<(Arc<Schema>, Vec<RecordBatch>)> {
    let ctx = SessionContext::new();
    let plan = provider.scan(&ctx.state(), None, &[], None).await?;
    let schema = plan.schema();
    let batches = datafusion::physical_plan::collect(plan, ctx.task_ctx()).await?;
    Ok((schema, batches))
}

pub(super) fn column<'a>(batch: &'a RecordBatch, name: &str) -> DfResult<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| DataFusionError::Internal(format!("pg_catalog table has no {name}")))
}

/// Computes one column of a batch.
type ColumnFn<'a> = &'a dyn Fn(&RecordBatch) -> DfResult<ArrayRef>;

/// The batches with the `replace`d columns recomputed and the `add`ed ones appended.
fn extend(
    schema: &Schema,
    batches: Vec<RecordBatch>,
    replace: &[(&str, ColumnFn<'_>)],
    add: &[(Field, ColumnFn<'_>)],
) -> DfResult<Arc<MemTable>> {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(add.iter().map(|(f, _)| f.clone()));
    let out_schema = Arc::new(Schema::new(fields));
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let mut columns = Vec::with_capacity(out_schema.fields().len());
        for (i, f) in schema.fields().iter().enumerate() {
            match replace.iter().find(|(n, _)| *n == f.name()) {
                Some((_, make)) => columns.push(make(&b)?),
                None => columns.push(b.column(i).clone()),
            }
        }
        for (_, make) in add {
            columns.push(make(&b)?);
        }
        out.push(RecordBatch::try_new(out_schema.clone(), columns)?);
    }
    Ok(Arc::new(MemTable::try_new(out_schema, vec![out])?))
}

/// Our tables by (schema, name).
fn tables_by_name(catalog: &Catalog) -> HashMap<(String, String), TableDef> {
    catalog
        .snapshot()
        .tables
        .values()
        .map(|t| ((t.schema.clone(), t.name.clone()), t.clone()))
        .collect()
}

/// Schema names by namespace OID, from the crate's `pg_namespace`.
pub(super) async fn namespaces(
    namespace: Arc<dyn TableProvider>,
) -> DfResult<HashMap<i32, String>> {
    let (_, batches) = collect(namespace).await?;
    let mut out = HashMap::new();
    for b in &batches {
        let oids = arrow::compute::cast(column(b, "oid")?, &DataType::Int32)?;
        let oids = oids.as_primitive::<Int32Type>();
        let names = column(b, "nspname")?.as_string::<i32>();
        for i in 0..b.num_rows() {
            out.insert(oids.value(i), names.value(i).to_string());
        }
    }
    Ok(out)
}

/// The (schema, name) of each `pg_class` row of a batch.
/// The OID and (schema, name) of every `pg_class` row.
pub(super) fn class_oids(
    batches: &[RecordBatch],
    namespaces: &HashMap<i32, String>,
) -> DfResult<Vec<(i32, (String, String))>> {
    let mut out = Vec::new();
    for b in batches {
        let oids = arrow::compute::cast(column(b, "oid")?, &DataType::Int32)?;
        let oids = oids.as_primitive::<Int32Type>();
        for (i, key) in class_names(b, namespaces)?.into_iter().enumerate() {
            out.push((oids.value(i), key));
        }
    }
    Ok(out)
}

pub(super) fn class_names(
    b: &RecordBatch,
    namespaces: &HashMap<i32, String>,
) -> DfResult<Vec<(String, String)>> {
    let names = column(b, "relname")?.as_string::<i32>();
    let ns = arrow::compute::cast(column(b, "relnamespace")?, &DataType::Int32)?;
    let ns = ns.as_primitive::<Int32Type>();
    Ok((0..b.num_rows())
        .map(|i| {
            (
                namespaces.get(&ns.value(i)).cloned().unwrap_or_default(),
                names.value(i).to_string(),
            )
        })
        .collect())
}

fn owner_oid(t: &TableDef, roles: &RoleSource) -> i32 {
    let roles = roles();
    let by_name = roles.iter().find(|r| r.name == t.owner).map(|r| r.oid);
    // No recorded owner: the table predates owners, when the built-in user was the only one.
    by_name
        .or_else(|| roles.first().map(|r| r.oid))
        .unwrap_or(10)
}

/// A table's `relacl` as PostgreSQL's `aclitem` texts (`grantee=privileges/grantor`, an
/// empty grantee for PUBLIC, `group g` for a group, `*` after a grantable privilege); the
/// owner's implicit entry first. None (NULL) while nothing was granted, as in PostgreSQL.
fn acl_items(state: &crate::catalog::CatalogState, t: &TableDef) -> Option<Vec<String>> {
    use crate::catalog::acl::{AclObject, Grantee, Privileges};
    let acl = state
        .acls
        .iter()
        .find(|a| a.object == AclObject::Relation(t.id))?;
    let owner = t.owner.clone();
    let mut items = vec![format!(
        "{owner}={}/{owner}",
        Privileges::TABLE_ALL.letters(Privileges::NONE)
    )];
    for e in &acl.entries {
        let grantee = match &e.grantee {
            Grantee::User(u) => u.clone(),
            Grantee::Group(g) => format!("group {g}"),
            Grantee::Public => String::new(),
        };
        let grantor = if e.grantor.is_empty() {
            &owner
        } else {
            &e.grantor
        };
        items.push(format!(
            "{grantee}={}/{grantor}",
            e.privileges.letters(e.grantable)
        ));
    }
    Some(items)
}

fn dist_style_code(t: &TableDef) -> i32 {
    match (&t.dist, t.dist_auto) {
        (DistStyle::Even, false) => 0,
        (DistStyle::Key { .. }, false) => 1,
        (DistStyle::All, false) => 8,
        (DistStyle::All, true) => 9,
        (DistStyle::Even, true) => 10,
        (DistStyle::Key { .. }, true) => 11,
    }
}

pub async fn pg_class(
    inner: Arc<dyn TableProvider>,
    namespace: Arc<dyn TableProvider>,
    catalog: &Catalog,
    roles: &RoleSource,
) -> DfResult<Arc<MemTable>> {
    let (schema, batches) = collect(inner).await?;
    let namespaces = namespaces(namespace).await?;
    let tables = tables_by_name(catalog);
    let lookup = |b: &RecordBatch| -> DfResult<Vec<Option<TableDef>>> {
        Ok(class_names(b, &namespaces)?
            .iter()
            .map(|key| tables.get(key).cloned())
            .collect())
    };
    let owner = |b: &RecordBatch| -> DfResult<ArrayRef> {
        Ok(Arc::new(Int32Array::from(
            lookup(b)?
                .iter()
                .map(|t| t.as_ref().map(|t| owner_oid(t, roles)).unwrap_or(0))
                .collect::<Vec<_>>(),
        )))
    };
    let diststyle = |b: &RecordBatch| -> DfResult<ArrayRef> {
        Ok(Arc::new(Int32Array::from(
            lookup(b)?
                .iter()
                .map(|t| t.as_ref().map(dist_style_code))
                .collect::<Vec<_>>(),
        )))
    };
    let acl_type = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
    let state = catalog.snapshot();
    let acl = |b: &RecordBatch| -> DfResult<ArrayRef> {
        let mut out = arrow::array::ListBuilder::new(arrow::array::StringBuilder::new());
        for t in lookup(b)? {
            match t.as_ref().and_then(|t| acl_items(&state, t)) {
                Some(items) => {
                    for item in items {
                        out.values().append_value(item);
                    }
                    out.append(true);
                }
                None => out.append(false),
            }
        }
        Ok(Arc::new(out.finish()))
    };
    extend(
        &schema,
        batches,
        &[("relowner", &owner)],
        &[
            (
                Field::new("reldiststyle", DataType::Int32, true),
                &diststyle,
            ),
            (Field::new("relacl", acl_type.clone(), true), &acl),
        ],
    )
}

pub async fn pg_attribute(
    inner: Arc<dyn TableProvider>,
    class: Arc<dyn TableProvider>,
    namespace: Arc<dyn TableProvider>,
    catalog: &Catalog,
) -> DfResult<Arc<MemTable>> {
    let (schema, batches) = collect(inner).await?;
    let (_, class_batches) = collect(class).await?;
    let namespaces = namespaces(namespace).await?;
    let tables = tables_by_name(catalog);
    let by_oid: HashMap<i32, TableDef> = class_oids(&class_batches, &namespaces)?
        .into_iter()
        .filter_map(|(oid, key)| tables.get(&key).map(|t| (oid, t.clone())))
        .collect();
    // (table, attnum) of each row
    let keys = |b: &RecordBatch| -> DfResult<Vec<(Option<TableDef>, i16)>> {
        let rel = arrow::compute::cast(column(b, "attrelid")?, &DataType::Int32)?;
        let rel = rel.as_primitive::<Int32Type>().clone();
        let num = arrow::compute::cast(column(b, "attnum")?, &DataType::Int16)?;
        let num = num.as_primitive::<arrow::datatypes::Int16Type>().clone();
        Ok((0..b.num_rows())
            .map(|i| (by_oid.get(&rel.value(i)).cloned(), num.value(i)))
            .collect())
    };
    let distkey = |b: &RecordBatch| -> DfResult<ArrayRef> {
        Ok(Arc::new(BooleanArray::from(
            keys(b)?
                .iter()
                .map(|(t, n)| {
                    t.as_ref().is_some_and(
                        |t| matches!(t.dist, DistStyle::Key { column } if column as i16 + 1 == *n),
                    )
                })
                .collect::<Vec<_>>(),
        )))
    };
    let sortkey = |b: &RecordBatch| -> DfResult<ArrayRef> {
        Ok(Arc::new(Int32Array::from(
            keys(b)?
                .iter()
                .map(|(t, n)| {
                    t.as_ref()
                        .and_then(|t| t.sort_key.iter().position(|c| *c as i16 + 1 == *n))
                        .map_or(0, |p| p as i32 + 1)
                })
                .collect::<Vec<_>>(),
        )))
    };
    let encoding = |b: &RecordBatch| -> DfResult<ArrayRef> {
        Ok(Arc::new(Int16Array::from(vec![0i16; b.num_rows()])))
    };
    // The declared type of our columns: VARCHAR(n) / CHAR(n) / NUMERIC(p,s) with their
    // modifiers (Arrow keeps only Utf8 and Decimal128), so `format_type` shows them.
    let declared = |b: &RecordBatch| -> DfResult<Vec<Option<(i32, i32)>>> {
        use blueshift_common::types::ColumnType;
        Ok(keys(b)?
            .iter()
            .map(|(t, n)| {
                let col = t.as_ref()?.columns.get(usize::try_from(*n - 1).ok()?)?;
                match col.ty {
                    ColumnType::Varchar { len } => Some((1043, len as i32 + 4)),
                    ColumnType::Char { len } => Some((1042, len as i32 + 4)),
                    ColumnType::Decimal { precision, scale } => Some((
                        1700,
                        ((i32::from(precision) << 16) | i32::from(scale as u8)) + 4,
                    )),
                    _ => None,
                }
            })
            .collect())
    };
    let replaced = |name: &'static str, pick: fn((i32, i32)) -> i32| {
        move |b: &RecordBatch| -> DfResult<ArrayRef> {
            let old = column(b, name)?;
            let old32 = arrow::compute::cast(old, &DataType::Int32)?;
            let old32 = old32.as_primitive::<Int32Type>();
            let values: Int32Array = declared(b)?
                .iter()
                .enumerate()
                .map(|(i, d)| match d {
                    Some(d) => Some(pick(*d)),
                    None => old32.is_valid(i).then(|| old32.value(i)),
                })
                .collect();
            Ok(arrow::compute::cast(&values, old.data_type())?)
        }
    };
    let typid = replaced("atttypid", |(oid, _)| oid);
    let typmod = replaced("atttypmod", |(_, m)| m);
    // A default or identity: psql's `\d` reads the column's pg_attrdef row only then.
    let hasdef = |b: &RecordBatch| -> DfResult<ArrayRef> {
        let old = column(b, "atthasdef")?;
        let ours: BooleanArray = keys(b)?
            .iter()
            .map(|(t, n)| {
                let col = t.as_ref()?.columns.get(usize::try_from(*n - 1).ok()?)?;
                Some(col.default.is_some() || col.identity.is_some())
            })
            .collect();
        let old = arrow::compute::cast(old, &DataType::Boolean)?;
        let old = old.as_boolean();
        let merged: BooleanArray = (0..b.num_rows())
            .map(|i| {
                if ours.is_valid(i) {
                    Some(ours.value(i))
                } else {
                    old.is_valid(i).then(|| old.value(i))
                }
            })
            .collect();
        Ok(arrow::compute::cast(
            &merged,
            column(b, "atthasdef")?.data_type(),
        )?)
    };
    extend(
        &schema,
        batches,
        &[
            ("atttypid", &typid),
            ("atttypmod", &typmod),
            ("atthasdef", &hasdef),
        ],
        &[
            (
                Field::new("attisdistkey", DataType::Boolean, false),
                &distkey,
            ),
            (
                Field::new("attsortkeyord", DataType::Int32, false),
                &sortkey,
            ),
            (
                Field::new("attencodingtype", DataType::Int16, false),
                &encoding,
            ),
        ],
    )
}

/// `pg_attrdef`: one row per column with a `DEFAULT` or an identity, `adbin` and `adsrc`
/// both the default's SQL text (`pg_get_expr(adbin, adrelid)` gives it back, as psql's
/// `\d` asks), an identity column's written as Redshift writes it:
/// `"identity"(relid, column index, 'seed,step'::text)`.
pub async fn pg_attrdef(
    inner: Arc<dyn TableProvider>,
    class: Arc<dyn TableProvider>,
    namespace: Arc<dyn TableProvider>,
    catalog: &Catalog,
) -> DfResult<Arc<MemTable>> {
    let inner_schema = inner.schema();
    let (_, class_batches) = collect(class).await?;
    let namespaces = namespaces(namespace).await?;
    let tables = tables_by_name(catalog);
    let (mut oids, mut relids, mut nums, mut texts) = (vec![], vec![], vec![], vec![]);
    let mut classes = class_oids(&class_batches, &namespaces)?;
    classes.sort();
    for (relid, key) in classes {
        let Some(t) = tables.get(&key) else {
            continue;
        };
        for (i, c) in t.columns.iter().enumerate() {
            let text = match (&c.default, &c.identity) {
                (Some(text), _) => text.clone(),
                (None, Some(id)) => {
                    format!(
                        "\"identity\"({relid}, {i}, '{},{}'::text)",
                        id.seed, id.step
                    )
                }
                (None, None) => continue,
            };
            // OIDs of their own range, above the crate's.
            oids.push(1_000_000 + relid.wrapping_mul(1000) + i as i32);
            relids.push(relid);
            nums.push(i as i16 + 1);
            texts.push(text);
        }
    }
    let mut fields: Vec<Field> = inner_schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("adsrc", DataType::Utf8, true));
    let schema = Arc::new(Schema::new(fields));
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let column: ArrayRef = match f.name().as_str() {
            "oid" => Arc::new(Int32Array::from(oids.clone())),
            "adrelid" => Arc::new(Int32Array::from(relids.clone())),
            "adnum" => Arc::new(Int16Array::from(nums.clone())),
            "adbin" | "adsrc" => Arc::new(StringArray::from(texts.clone())),
            _ => arrow::array::new_null_array(f.data_type(), texts.len()),
        };
        columns.push(arrow::compute::cast(&column, f.data_type())?);
    }
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// `pg_get_expr(text, relid [, pretty])`: the expression text itself. The only expressions
/// stored here are column defaults (`pg_attrdef.adbin`), kept as SQL text; the crate's
/// version answers `''` for everything.
pub fn pg_get_expr() -> ScalarUDF {
    let sig = datafusion::logical_expr::Signature::one_of(
        [DataType::Int32, DataType::Int64, DataType::UInt32]
            .into_iter()
            .flat_map(|oid| {
                [
                    datafusion::logical_expr::TypeSignature::Exact(vec![
                        DataType::Utf8,
                        oid.clone(),
                    ]),
                    datafusion::logical_expr::TypeSignature::Exact(vec![
                        DataType::Utf8,
                        oid,
                        DataType::Boolean,
                    ]),
                ]
            })
            .collect(),
        Volatility::Stable,
    );
    ScalarUDF::new_from_impl(PgGetExpr { sig })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PgGetExpr {
    sig: datafusion::logical_expr::Signature,
}

impl datafusion::logical_expr::ScalarUDFImpl for PgGetExpr {
    fn name(&self) -> &str {
        "pg_get_expr"
    }
    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.sig
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> DfResult<ColumnarValue> {
        Ok(args.args[0].clone())
    }
}

/// `format_encoding(int)`: the name of a column encoding; every column is `none`.
pub fn format_encoding() -> ScalarUDF {
    datafusion::logical_expr::create_udf(
        "format_encoding",
        vec![DataType::Int32],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let out: StringArray = (0..arrays[0].len())
                .map(|i| arrays[0].is_valid(i).then_some("none"))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// `pg_get_viewdef(oid [, pretty])`: NULL (OIDs are the pg_catalog crate's and are not
/// mapped back to views; `pg_views.definition` has the text).
pub fn pg_get_viewdef() -> ScalarUDF {
    ScalarUDF::new_from_impl(super::functions::NoDescription::new("pg_get_viewdef"))
}
