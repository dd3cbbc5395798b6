//! `pg_description`: the crate's rows (PostgreSQL's built-in objects) and the comments of
//! `COMMENT ON` ([`crate::catalog::CommentTarget`]), keyed by the OIDs the crate's
//! `pg_class` and `pg_namespace` give our relations and schemas (objsubid: the column's
//! position, as `pg_attribute.attnum`).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::error::Result as DfResult;

use super::redshift::{class_oids, collect, namespaces};
use crate::catalog::{Catalog, CommentTarget};

/// `pg_class`'s and `pg_namespace`'s own OIDs, the `classoid` of a description.
const PG_CLASS_OID: i32 = 1259;
const PG_NAMESPACE_OID: i32 = 2615;

pub async fn pg_description(
    inner: Arc<dyn TableProvider>,
    class: Arc<dyn TableProvider>,
    namespace: Arc<dyn TableProvider>,
    catalog: &Catalog,
) -> DfResult<Arc<MemTable>> {
    let (schema, mut batches) = collect(inner).await?;
    let state = catalog.snapshot();
    if state.comments.is_empty() {
        return Ok(Arc::new(MemTable::try_new(schema, vec![batches])?));
    }
    let namespaces = namespaces(namespace).await?;
    let schema_oids: HashMap<&str, i32> = namespaces
        .iter()
        .map(|(oid, name)| (name.as_str(), *oid))
        .collect();
    let (_, class_batches) = collect(class).await?;
    let class_oids: HashMap<(String, String), i32> = class_oids(&class_batches, &namespaces)?
        .into_iter()
        .map(|(oid, key)| (key, oid))
        .collect();
    // (schema, name, columns) of each relation id.
    let relation = |id: u64| {
        state
            .tables
            .get(&id)
            .map(|t| (t.schema.clone(), t.name.clone(), &t.columns))
            .or_else(|| {
                state
                    .views
                    .get(&id)
                    .map(|v| (v.schema.clone(), v.name.clone(), &v.columns))
            })
    };
    let (mut objoid, mut classoid, mut objsubid, mut text) = (vec![], vec![], vec![], vec![]);
    for c in &state.comments {
        let row = match &c.target {
            CommentTarget::Relation(id) => relation(*id)
                .and_then(|(s, n, _)| class_oids.get(&(s, n)).map(|oid| (*oid, PG_CLASS_OID, 0))),
            CommentTarget::Column {
                relation: id,
                column,
            } => relation(*id).and_then(|(s, n, cols)| {
                let attnum = cols.iter().position(|col| col.name == *column)? as i32 + 1;
                class_oids
                    .get(&(s, n))
                    .map(|oid| (*oid, PG_CLASS_OID, attnum))
            }),
            CommentTarget::Schema(name) => schema_oids
                .get(name.as_str())
                .map(|oid| (*oid, PG_NAMESPACE_OID, 0)),
        };
        if let Some((o, k, n)) = row {
            objoid.push(o);
            classoid.push(k);
            objsubid.push(n);
            text.push(c.text.clone());
        }
    }
    let ours: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from(objoid)),
        Arc::new(Int32Array::from(classoid)),
        Arc::new(Int32Array::from(objsubid)),
        Arc::new(StringArray::from(text)),
    ];
    let columns = ["objoid", "classoid", "objsubid", "description"]
        .iter()
        .zip(ours)
        .map(|(name, array)| {
            let field = schema.field_with_name(name)?;
            Ok(arrow::compute::cast(&array, field.data_type())?)
        })
        .collect::<DfResult<Vec<_>>>()?;
    batches.push(RecordBatch::try_new(schema.clone(), columns)?);
    Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
}
