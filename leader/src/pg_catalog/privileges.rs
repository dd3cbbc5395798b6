//! The privilege inquiry functions, answered from the statement's catalog version by
//! [`crate::privileges`]: `has_table_privilege([user,] table, privilege)`,
//! `has_schema_privilege([user,] schema, privilege)`, `has_database_privilege([user,]
//! database, privilege)`, `has_column_privilege([user,] table, column, privilege)` and
//! `has_any_column_privilege([user,] table, privilege)`.
//!
//! Users are names or role OIDs; tables are names (`t`, `s.t`, resolved through the search
//! path). A table given by OID, a relation, schema or user that does not exist gives NULL
//! (PostgreSQL errors for unknown names; NULL keeps catalog queries that probe every row
//! running). `privilege` may list several, comma-separated: true if any is held (as in
//! PostgreSQL); `WITH GRANT OPTION` asks for the grant option.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, StringArray};
use arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use super::RoleSource;
use crate::catalog::CatalogState;
use crate::catalog::acl::Privileges;
use crate::privileges::Access;
use crate::sql::names::RelationName;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Table,
    Schema,
    Database,
    Column,
    AnyColumn,
}

impl Kind {
    /// Arguments after the optional user.
    fn object_args(self) -> usize {
        match self {
            Kind::Column => 3,
            _ => 2,
        }
    }
}

/// What the functions read: the statement's catalog version and its user.
#[derive(Clone)]
pub struct PrivilegeSource {
    pub catalog: Arc<CatalogState>,
    pub builtin: Arc<Vec<String>>,
    pub user: String,
    pub search_path: Vec<String>,
    pub database: String,
    pub roles: RoleSource,
}

struct HasPrivilege {
    name: &'static str,
    kind: Kind,
    signature: Signature,
    source: PrivilegeSource,
}

impl std::fmt::Debug for HasPrivilege {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HasPrivilege")
            .field("name", &self.name)
            .finish()
    }
}

impl PartialEq for HasPrivilege {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for HasPrivilege {}

impl std::hash::Hash for HasPrivilege {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

/// The five functions over `source`.
pub fn udfs(source: PrivilegeSource) -> Vec<ScalarUDF> {
    [
        ("has_table_privilege", Kind::Table),
        ("has_schema_privilege", Kind::Schema),
        ("has_database_privilege", Kind::Database),
        ("has_column_privilege", Kind::Column),
        ("has_any_column_privilege", Kind::AnyColumn),
    ]
    .into_iter()
    .map(|(name, kind)| {
        let n = kind.object_args();
        ScalarUDF::new_from_impl(HasPrivilege {
            name,
            kind,
            signature: Signature::one_of(
                vec![TypeSignature::Any(n), TypeSignature::Any(n + 1)],
                Volatility::Stable,
            ),
            source: source.clone(),
        })
    })
    .collect()
}

/// Each argument as text (NULL stays NULL), one value per row.
fn texts(args: &[ColumnarValue], rows: usize) -> DfResult<Vec<StringArray>> {
    args.iter()
        .map(|a| {
            let array = a.to_array(rows)?;
            let text = arrow::compute::cast(&array, &DataType::Utf8)?;
            text.as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .ok_or_else(|| DataFusionError::Internal("cast to Utf8".into()))
        })
        .collect()
}

fn is_integer(a: &ColumnarValue) -> bool {
    a.data_type().is_integer()
}

impl ScalarUDFImpl for HasPrivilege {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let with_user = args.args.len() > self.kind.object_args();
        let user_is_oid = with_user && is_integer(&args.args[0]);
        let objects_from = usize::from(with_user);
        let table_is_oid = matches!(self.kind, Kind::Table | Kind::Column | Kind::AnyColumn)
            && is_integer(&args.args[objects_from]);
        let text = texts(&args.args, rows)?;
        let roles = (self.source.roles)();
        let s = &self.source;
        let out: BooleanArray = (0..rows)
            .map(|row| {
                let value = |i: usize| (!text[i].is_null(row)).then(|| text[i].value(row));
                let user = if with_user {
                    let u = value(0)?;
                    if user_is_oid {
                        let oid: i32 = u.parse().ok()?;
                        roles.iter().find(|r| r.oid == oid)?.name.clone()
                    } else {
                        u.to_string()
                    }
                } else {
                    s.user.clone()
                };
                if with_user && !s.catalog.users.contains_key(&user) && !s.builtin.contains(&user) {
                    return None;
                }
                let access = Access::new(&s.catalog, &s.builtin, &user);
                let privilege_arg = value(args.args.len() - 1)?;
                let mut any = false;
                for part in privilege_arg.split(',') {
                    let grant_option = part.to_ascii_uppercase().contains("WITH GRANT OPTION");
                    let p = Privileges::from_name(part)?;
                    let held =
                        self.held(&access, objects_from, &value, table_is_oid, p, grant_option)?;
                    any |= held;
                }
                Some(any)
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    }
}

impl HasPrivilege {
    fn held<'v>(
        &self,
        access: &Access<'_>,
        from: usize,
        value: &dyn Fn(usize) -> Option<&'v str>,
        table_is_oid: bool,
        p: Privileges,
        grant_option: bool,
    ) -> Option<bool> {
        let s = &self.source;
        let pick = |(held, grantable): (Privileges, Privileges)| {
            if grant_option {
                grantable.contains(p)
            } else {
                held.contains(p)
            }
        };
        match self.kind {
            Kind::Schema => {
                let schema = value(from)?;
                if !s.catalog.schema_exists(schema)
                    && !crate::sql::names::SYSTEM_SCHEMAS.contains(&schema)
                {
                    return None;
                }
                Some(pick(access.on_schema(schema)))
            }
            Kind::Database => {
                let db = value(from)?;
                if db != s.database {
                    return None;
                }
                Some(pick(access.on_database()))
            }
            Kind::Table | Kind::Column | Kind::AnyColumn => {
                if table_is_oid {
                    return None;
                }
                let name = relation_name(value(from)?);
                let Some(rel) = s.catalog.relation(&name, &s.search_path) else {
                    // System tables and catalog views: readable by everyone.
                    return Some(p == Privileges::SELECT);
                };
                match self.kind {
                    Kind::Table => Some(pick(access.on_relation(rel))),
                    Kind::Column => {
                        let column = value(from + 1)?.to_string();
                        Some(access.has_on_columns(rel, p, &[column]))
                    }
                    _ => Some(access.has_on_columns(rel, p, &[])),
                }
            }
        }
    }
}

/// `t`, `s.t` or `"Quoted"` as a relation name.
fn relation_name(text: &str) -> RelationName {
    let parts: Vec<String> = text
        .split('.')
        .map(|p| {
            let p = p.trim();
            match p.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
                Some(quoted) => quoted.replace("\"\"", "\""),
                None => p.to_lowercase(),
            }
        })
        .collect();
    match parts.as_slice() {
        [s, t] | [_, s, t] => RelationName::qualified(s.clone(), t.clone()),
        _ => RelationName::bare(text.trim().to_lowercase()),
    }
}
