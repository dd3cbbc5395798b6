//! The segment store: where Parquet segments live, shared by every node so any node can read
//! any slice. Two kinds:
//!
//! * `file:///abs/dir`, the default (one machine): a local directory. A segment is written to
//!   a temporary file, fsynced, linked to its final name (which fails if the name exists:
//!   write-once) and the directory fsynced, so a committed segment survives a power cut.
//! * `s3://bucket/prefix`: any S3-compatible store through `object_store`'s S3 client, with
//!   endpoint, region, path-style and credentials from [`S3Options`] or the standard
//!   `AWS_*` environment variables. A segment is one PUT with `If-None-Match: *`
//!   (conditional create), so it is never overwritten.
//!
//! Leader and compute register the store with DataFusion under [`SEGMENT_STORE_URL`]; segment
//! paths in the catalog are relative to the store's root. This module must not cache or
//! count reads: that is the compute node's segment cache, layered on top.

use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, sqlstate};

/// The URL under which DataFusion finds the segment store.
pub const SEGMENT_STORE_URL: &str = "blueshift://segments";

pub fn segment_store_url() -> Result<ObjectStoreUrl> {
    Ok(ObjectStoreUrl::parse(SEGMENT_STORE_URL)?)
}

/// Settings of an `s3://` store beyond the URL. Each one left `None` comes from the standard
/// environment variables (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ALLOW_HTTP`,
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, ...).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Options {
    /// E.g. `http://127.0.0.1:9000` for an S3-compatible server.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Allow `http://` endpoints.
    pub allow_http: Option<bool>,
    /// `bucket.host/key` requests instead of path-style `host/bucket/key` (the default).
    pub virtual_hosted_style: Option<bool>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &secret(&self.secret_access_key))
            .field("session_token", &secret(&self.session_token))
            .finish()
    }
}

impl S3Options {
    /// The settings the leader tells registering compute nodes: no credentials (each node
    /// takes its own from its configuration or environment).
    pub fn to_proto(&self) -> blueshift_proto::v1::StoreOptions {
        blueshift_proto::v1::StoreOptions {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            allow_http: self.allow_http,
            virtual_hosted_style: self.virtual_hosted_style,
        }
    }

    /// The settings a compute node was told by the leader.
    pub fn from_proto(options: blueshift_proto::v1::StoreOptions) -> S3Options {
        S3Options {
            endpoint: options.endpoint,
            region: options.region,
            allow_http: options.allow_http,
            virtual_hosted_style: options.virtual_hosted_style,
            ..Default::default()
        }
    }

    /// `self`, with every setting it leaves out taken from `fallback`.
    pub fn or(&self, fallback: &S3Options) -> S3Options {
        S3Options {
            endpoint: self.endpoint.clone().or_else(|| fallback.endpoint.clone()),
            region: self.region.clone().or_else(|| fallback.region.clone()),
            allow_http: self.allow_http.or(fallback.allow_http),
            virtual_hosted_style: self.virtual_hosted_style.or(fallback.virtual_hosted_style),
            access_key_id: self
                .access_key_id
                .clone()
                .or_else(|| fallback.access_key_id.clone()),
            secret_access_key: self
                .secret_access_key
                .clone()
                .or_else(|| fallback.secret_access_key.clone()),
            session_token: self
                .session_token
                .clone()
                .or_else(|| fallback.session_token.clone()),
        }
    }
}

/// What backs a [`SegmentStore`].
#[derive(Debug, Clone)]
enum Kind {
    /// A local directory (absolute path of the store's root).
    File(PathBuf),
    S3,
}

/// The opened segment store.
#[derive(Clone)]
pub struct SegmentStore {
    url: String,
    kind: Kind,
    store: Arc<dyn ObjectStore>,
}

impl fmt::Debug for SegmentStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentStore({})", self.url)
    }
}

fn bad_url(url: &str, why: impl fmt::Display) -> Error {
    Error::sql(
        sqlstate::INVALID_PARAMETER_VALUE,
        format!("invalid store URL {url:?}: {why}"),
    )
}

impl SegmentStore {
    /// Opens the store named by `url`: `file:///abs/dir` (created if missing) or
    /// `s3://bucket[/prefix]` with `s3` (unset settings from the environment).
    pub fn open(url: &str, s3: &S3Options) -> Result<SegmentStore> {
        let parsed = url::Url::parse(url).map_err(|e| bad_url(url, e))?;
        match parsed.scheme() {
            "file" => {
                let path = parsed
                    .to_file_path()
                    .map_err(|_| bad_url(url, "not an absolute file path"))?;
                std::fs::create_dir_all(&path)?;
                Ok(SegmentStore {
                    url: url.to_string(),
                    store: Arc::new(LocalFileSystem::new_with_prefix(&path)?),
                    kind: Kind::File(path),
                })
            }
            "s3" | "s3a" => {
                let bucket = parsed
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| bad_url(url, "no bucket (use s3://bucket/prefix)"))?;
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Some(v) = &s3.endpoint {
                    builder = builder.with_endpoint(v);
                }
                if let Some(v) = &s3.region {
                    builder = builder.with_region(v);
                }
                if let Some(v) = s3.allow_http {
                    builder = builder.with_allow_http(v);
                }
                if let Some(v) = s3.virtual_hosted_style {
                    builder = builder.with_virtual_hosted_style_request(v);
                }
                if let Some(v) = &s3.access_key_id {
                    builder = builder.with_access_key_id(v);
                }
                if let Some(v) = &s3.secret_access_key {
                    builder = builder.with_secret_access_key(v);
                }
                if let Some(v) = &s3.session_token {
                    builder = builder.with_token(v);
                }
                let s3_store = builder.build().map_err(|e| bad_url(url, e))?;
                let prefix = parsed.path().trim_matches('/');
                let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                    Arc::new(s3_store)
                } else {
                    Arc::new(PrefixStore::new(s3_store, prefix))
                };
                Ok(SegmentStore {
                    url: url.to_string(),
                    kind: Kind::S3,
                    store,
                })
            }
            other => Err(Error::sql(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "segment store scheme {other:?} is not supported (use file:///path or \
                     s3://bucket/prefix)"
                ),
            )),
        }
    }

    /// The store itself, for reads.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// Writes a new segment at `path`, durably and only once: it fails if `path` exists.
    /// When this returns, the segment survives a crash of this process and of the machine
    /// (for `file://`, the file and its directory entry are fsynced).
    pub async fn put_once(&self, path: &str, data: Bytes) -> Result<()> {
        match &self.kind {
            Kind::File(root) => {
                let target = root.join(path);
                tokio::task::spawn_blocking(move || write_file_once(&target, &data))
                    .await
                    .map_err(|e| Error::sql(sqlstate::INTERNAL_ERROR, e.to_string()))?
            }
            Kind::S3 => {
                let opts = PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                };
                match self
                    .store
                    .put_opts(&Path::from(path), data.into(), opts)
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(object_store::Error::AlreadyExists { .. }) => Err(exists(path)),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Every object under `prefix` (recursively).
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let prefix = Path::from(prefix);
        match self.store.list(Some(&prefix)).try_collect().await {
            Ok(objects) => Ok(objects),
            // Nothing was ever written under the prefix.
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the object at `path`; one that is already gone is not an error.
    pub async fn delete(&self, path: &Path) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes `store` (this store, or a cache over it) the one DataFusion scans in `runtime`
    /// read segments from.
    pub fn register_with(runtime: &RuntimeEnv, store: Arc<dyn ObjectStore>) -> Result<()> {
        let key = url::Url::parse(SEGMENT_STORE_URL).map_err(|e| {
            Error::sql(
                sqlstate::INTERNAL_ERROR,
                format!("bad segment store URL: {e}"),
            )
        })?;
        runtime.register_object_store(&key, store);
        Ok(())
    }
}

fn exists(path: &str) -> Error {
    Error::sql(
        sqlstate::INTERNAL_ERROR,
        format!("segment {path} already exists in the store (segments are written once)"),
    )
}

/// Durable write-once of a local file: temp file in the same directory, fsync, hard link to
/// the final name (atomic, and it fails if the name exists), unlink the temp name, fsync the
/// directory; directories created on the way are fsynced into their parents.
fn write_file_once(target: &FsPath, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = target
        .parent()
        .ok_or_else(|| Error::sql(sqlstate::INTERNAL_ERROR, "segment path has no directory"))?;
    create_dir_all_durable(dir)?;
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("segment");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        drop(file);
        match std::fs::hard_link(&tmp, target) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(exists(&target.display().to_string()))
            }
            Err(e) => Err(e.into()),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    result?;
    sync_dir(dir)
}

/// `create_dir_all`, fsyncing each new directory's parent so the new entry is durable.
fn create_dir_all_durable(dir: &FsPath) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_all_durable(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// fsync of a directory: makes the names created or renamed in it durable.
pub fn sync_dir(dir: &FsPath) -> Result<()> {
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_segments_are_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            SegmentStore::open(&file_url(dir.path()).unwrap(), &S3Options::default()).unwrap();
        store
            .put_once(
                "tables/1/slice-0000/a-0000.parquet",
                Bytes::from_static(b"one"),
            )
            .await
            .unwrap();
        let again = store
            .put_once(
                "tables/1/slice-0000/a-0000.parquet",
                Bytes::from_static(b"two"),
            )
            .await;
        assert!(
            again.is_err(),
            "a second write of the same segment must fail"
        );
        let body = store
            .object_store()
            .get(&Path::from("tables/1/slice-0000/a-0000.parquet"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&body[..], b"one");
        // No temp files are left beside the segment.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("tables/1/slice-0000"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let listed = store.list("tables").await.unwrap();
        assert_eq!(listed.len(), 1);
    }

    #[test]
    fn secrets_are_not_printed_or_shipped() {
        let o = S3Options {
            secret_access_key: Some("hunter2".into()),
            access_key_id: Some("AK".into()),
            endpoint: Some("http://x".into()),
            ..Default::default()
        };
        assert!(!format!("{o:?}").contains("hunter2"));
        // What the leader sends has no credential fields at all; the rest survives the trip.
        let public = S3Options::from_proto(o.to_proto());
        assert_eq!(public.endpoint.as_deref(), Some("http://x"));
        assert!(public.secret_access_key.is_none() && public.access_key_id.is_none());
        let merged = S3Options::default().or(&o);
        assert_eq!(merged.secret_access_key.as_deref(), Some("hunter2"));
    }

    #[test]
    fn unknown_schemes_and_bucketless_urls_are_refused() {
        assert!(SegmentStore::open("gs://b/p", &S3Options::default()).is_err());
        assert!(SegmentStore::open("s3:///p", &S3Options::default()).is_err());
        assert!(SegmentStore::open("not a url", &S3Options::default()).is_err());
    }
}
