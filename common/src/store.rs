//! The segment store: where Parquet segments live. A local directory by default
//! (`file:///abs/dir`), the same store for every node, so any node can read any slice.
//! Both leader and compute register it with DataFusion under [`SEGMENT_STORE_URL`], and
//! segment paths in the catalog are relative to it.

use std::sync::Arc;

use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;

use crate::error::{Error, Result, sqlstate};

/// The URL under which DataFusion finds the segment store.
pub const SEGMENT_STORE_URL: &str = "blueshift://segments";

pub fn segment_store_url() -> Result<ObjectStoreUrl> {
    Ok(ObjectStoreUrl::parse(SEGMENT_STORE_URL)?)
}

/// Opens the store named by `url` (today: `file:///abs/dir`, created if missing).
pub fn open_store(url: &str) -> Result<Arc<dyn ObjectStore>> {
    let parsed = url::Url::parse(url).map_err(|e| {
        Error::sql(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("invalid store URL {url:?}: {e}"),
        )
    })?;
    match parsed.scheme() {
        "file" => {
            let path = parsed.to_file_path().map_err(|_| {
                Error::sql(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    format!("store URL {url:?} is not an absolute file path"),
                )
            })?;
            std::fs::create_dir_all(&path)?;
            Ok(Arc::new(LocalFileSystem::new_with_prefix(&path)?))
        }
        other => Err(Error::sql(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!("segment store scheme {other:?} is not supported yet (use file:///path)"),
        )),
    }
}

/// Makes the segment store at `url` visible to DataFusion scans in `runtime`.
pub fn register_store(runtime: &RuntimeEnv, url: &str) -> Result<Arc<dyn ObjectStore>> {
    let store = open_store(url)?;
    let key = url::Url::parse(SEGMENT_STORE_URL).map_err(|e| {
        Error::sql(
            sqlstate::INTERNAL_ERROR,
            format!("bad segment store URL: {e}"),
        )
    })?;
    runtime.register_object_store(&key, store.clone());
    Ok(store)
}

/// `file://` URL for a local directory.
pub fn file_url(dir: &std::path::Path) -> Result<String> {
    let abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()?.join(dir)
    };
    url::Url::from_directory_path(&abs)
        .map(|u| u.to_string())
        .map_err(|_| {
            Error::sql(
                sqlstate::INVALID_PARAMETER_VALUE,
                format!("cannot make a URL of {}", abs.display()),
            )
        })
}
