//! Which server files `COPY table FROM '/path'` may read: superusers only (the leader reads
//! them with its own OS rights, so a file is as good as a privilege), and only under the
//! configured roots (`allowed_paths`), never under a denied one (the data dirs, which hold
//! the catalog and the TLS key). Paths are resolved to their canonical form before they are
//! compared, so `..` and symlinks cannot lead out of a root. `COPY FROM STDIN` reads the
//! client's data, not the server's, and is not affected.
//!
//! This module decides; reading the files is [`super::source`]'s job.

use std::path::{Component, Path, PathBuf};

use blueshift_common::error::sqlstate;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Default)]
pub struct FileAccess {
    /// Canonical roots COPY may read below.
    allowed: Vec<PathBuf>,
    /// Canonical roots it may never read below (even inside an allowed one).
    denied: Vec<PathBuf>,
}

/// The canonical form of `p` if it exists, else `p` as given (an absolute path).
fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn denied(msg: String) -> Error {
    Error::sql(sqlstate::INSUFFICIENT_PRIVILEGE, msg)
}

impl FileAccess {
    pub fn new(allowed: &[PathBuf], denied: &[PathBuf]) -> Self {
        FileAccess {
            allowed: allowed.iter().map(|p| canonical(p)).collect(),
            denied: denied.iter().map(|p| canonical(p)).collect(),
        }
    }

    /// Whether a COPY by a user (`superuser` or not) may read from `source` at all: checked
    /// before anything is listed, so that an error never tells whether a file outside the
    /// roots exists.
    pub fn check_source(&self, source: &str, superuser: bool) -> Result<()> {
        if !superuser {
            return Err(denied(
                "permission denied: only superusers may COPY from a file on the server \
                 (COPY ... FROM STDIN is open to users with INSERT on the table)"
                    .into(),
            ));
        }
        let path = Path::new(source);
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(denied(format!(
                "COPY source \"{source}\" may not contain \"..\""
            )));
        }
        // The part before any glob character must be under a root; each file found is
        // checked again once its links are resolved.
        let literal: PathBuf = path
            .components()
            .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
            .collect();
        self.check(&literal, source)
    }

    /// Whether a listed file may be read, its symlinks resolved.
    pub fn check_file(&self, file: &Path) -> Result<()> {
        self.check(&canonical(file), &file.display().to_string())
    }

    fn check(&self, path: &Path, shown: &str) -> Result<()> {
        // The deepest existing ancestor, resolved: a prefix the source names need not
        // exist as a file (`/data/part_` lists `/data/part_*`).
        let mut resolved = path.to_path_buf();
        let mut rest = Vec::new();
        while !resolved.exists() {
            match (resolved.file_name(), resolved.parent()) {
                (Some(name), Some(parent)) => {
                    rest.push(name.to_os_string());
                    resolved = parent.to_path_buf();
                }
                _ => break,
            }
        }
        let mut resolved = canonical(&resolved);
        for part in rest.into_iter().rev() {
            resolved.push(part);
        }
        if self.denied.iter().any(|d| resolved.starts_with(d)) {
            return Err(denied(format!(
                "permission denied: COPY may not read \"{shown}\": it is in a data directory \
                 of the cluster"
            )));
        }
        if self.allowed.is_empty() {
            return Err(denied(
                "permission denied: COPY from server files is off (no allowed_paths are \
                 configured); use COPY ... FROM STDIN, or set allowed_paths"
                    .into(),
            ));
        }
        if !self.allowed.iter().any(|a| resolved.starts_with(a)) {
            return Err(denied(format!(
                "permission denied: COPY may read server files only under allowed_paths ({}); \
                 \"{shown}\" is outside them",
                self.allowed
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_links_and_data_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let data = root.join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(root.join("ok.csv"), "1\n").unwrap();
        std::fs::write(data.join("catalog"), "x").unwrap();
        std::fs::write(dir.path().join("outside.csv"), "1\n").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside.csv"), root.join("link.csv")).unwrap();
        let access = FileAccess::new(std::slice::from_ref(&root), std::slice::from_ref(&data));
        let state = |r: Result<()>| r.err().map(|e| e.sqlstate());
        let ok = root.join("ok.csv");
        assert_eq!(state(access.check_source(ok.to_str().unwrap(), true)), None);
        assert_eq!(state(access.check_file(&ok)), None);
        // Not a superuser.
        assert_eq!(
            state(access.check_source(ok.to_str().unwrap(), false)).as_deref(),
            Some("42501")
        );
        // Outside, through `..`, through a link, in the data dir.
        for source in [
            "/etc/passwd".to_string(),
            format!("{}/../outside.csv", root.display()),
            format!("{}/catalog", data.display()),
            format!("{}/cat*", data.display()),
        ] {
            assert_eq!(
                state(access.check_source(&source, true)).as_deref(),
                Some("42501"),
                "{source}"
            );
        }
        assert_eq!(
            state(access.check_file(&root.join("link.csv"))).as_deref(),
            Some("42501")
        );
        // A prefix that is not a file is fine while it is under the root.
        assert_eq!(
            state(access.check_source(&format!("{}/o", root.display()), true)),
            None
        );
        // No roots: off.
        assert_eq!(
            state(FileAccess::new(&[], &[]).check_source(ok.to_str().unwrap(), true)).as_deref(),
            Some("42501")
        );
    }
}
