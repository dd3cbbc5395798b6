//! A session's settings as statements see them: `SET` / `RESET` / `SHOW`, the defaults every
//! session reports, the logged-in user, and the task-locals through which a statement's
//! planning reads them (`current_user`, `current_setting`) and `set_config` changes them.

use std::collections::HashMap;
use std::sync::Arc;

use blueshift_common::error::sqlstate;

use super::{Outcome, command};
use crate::error::{Error, Result};
use crate::sql::settings::SetStatement;

/// The session setting that holds the logged-in user (set at startup; `SET` cannot write
/// keys that start with NUL).
pub const SESSION_USER: &str = "\u{0}user";

/// The session setting that holds the user of `SET SESSION AUTHORIZATION` (absent: the
/// logged-in user).
pub const AUTHORIZATION_USER: &str = "\u{0}authorization";

/// The user the session's statements run as: the one `SET SESSION AUTHORIZATION` chose,
/// else the logged-in one.
pub fn effective_user(settings: &HashMap<String, String>) -> String {
    settings
        .get(AUTHORIZATION_USER)
        .or_else(|| settings.get(SESSION_USER))
        .cloned()
        .unwrap_or_default()
}

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

/// `set_config(name, value, is_local)` calls of one statement. They take effect when their
/// arguments are constants: DataFusion then evaluates them while planning, inside the
/// statement's task, and the session applies them when planning ends. A call evaluated
/// while rows stream (arguments that vary by row) runs in another task and fails, always,
/// rather than change the session at a time nobody can predict.
#[derive(Default)]
pub struct SettingChanges {
    pending: std::sync::Mutex<Vec<(String, String)>>,
}

impl SettingChanges {
    pub fn record(self: &Arc<Self>, name: String, value: String) -> Result<()> {
        let planning = SETTINGS
            .try_with(|s| Arc::ptr_eq(&s.changes, self))
            .unwrap_or(false);
        if !planning {
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

    pub(super) fn apply(&self) -> Vec<(String, String)> {
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

/// The search path of the statement being planned, `$user` replaced by its user, after the
/// session's temporary schema (PostgreSQL's implicit `pg_temp` first: a temporary table
/// shadows a permanent one of the same name).
pub fn search_path() -> Vec<String> {
    let settings = statement_settings();
    let value = settings
        .settings
        .get("search_path")
        .cloned()
        .or_else(|| default_setting("search_path"))
        .unwrap_or_default();
    let mut path = crate::sql::names::search_path(&value, &current_user());
    if let Some(temp) = super::tx::temp_schema() {
        path.insert(0, temp);
    }
    path
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
        crate::auth::PASSWORD_ENCRYPTION => "scram-sha-256".into(),
        _ => return None,
    })
}

pub(super) fn set(stmt: &SetStatement, settings: &mut HashMap<String, String>) -> Result<Outcome> {
    let name = stmt.name.clone();
    let Some(value) = stmt.value.clone() else {
        settings.remove(&name);
        return Ok(command("RESET"));
    };
    if name == crate::interrupt::STATEMENT_TIMEOUT {
        crate::interrupt::parse_timeout(&value)?;
    }
    if name == crate::limits::SETTING {
        crate::limits::parse_bytes(&value)?;
    }
    if name == crate::auth::PASSWORD_ENCRYPTION {
        // Checked again (against the cluster's md5_auth) when a password is set.
        crate::auth::PasswordEncryption::parse(&value, true)?;
    }
    settings.insert(name, value);
    Ok(command("SET"))
}

pub(super) fn show_setting(name: &str, settings: &HashMap<String, String>) -> Result<Outcome> {
    let name = name.to_string();
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
