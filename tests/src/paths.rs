//! Where the tests find the things they drive: the workspace, the `blueshift` binary, the
//! Python interpreter of the test venv, and the shared data cache under `target/`.

use std::path::{Path, PathBuf};

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` if set, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// The `blueshift` binary under test: `BLUESHIFT_BIN`, else `<target>/debug/blueshift`.
pub fn blueshift_bin() -> PathBuf {
    std::env::var_os("BLUESHIFT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug").join("blueshift"))
}

/// The Python interpreter with `duckdb` and `tpchgen-cli` installed: `BLUESHIFT_PYTHON`, else
/// `<workspace>/.venv/bin/python` (what `tests/run-all.sh` creates).
pub fn python() -> PathBuf {
    std::env::var_os("BLUESHIFT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv").join("bin").join("python"))
}

/// A hint printed when a tool the tests need is missing.
pub const SETUP_HINT: &str = "run `tests/run-all.sh` from the workspace root once (it creates \
    .venv with tests/requirements.txt and builds the blueshift binary), or set BLUESHIFT_BIN / \
    BLUESHIFT_PYTHON";

/// Quotes `s` as a SQL string literal (single quotes doubled).
pub fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
