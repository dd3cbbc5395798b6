//! HTTP requests to the admin endpoints (`/health`, `/ready`), made with Python's
//! `urllib` (the venv's interpreter): a client nobody here wrote.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::paths;

const GET: &str = r#"
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
        status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
sys.stdout.write(str(status) + "\n" + body.decode())
"#;

/// `GET http://127.0.0.1:<port><path>`: the status code and the body as JSON.
pub fn get_json(port: u16, path: &str) -> Result<(u16, serde_json::Value)> {
    get(Command::new(paths::python()), port, path)
}

/// [`get_json`] from inside `host`'s network namespace (its own loopback).
pub fn get_json_in(
    host: &crate::netns::Host,
    port: u16,
    path: &str,
) -> Result<(u16, serde_json::Value)> {
    get(host.command(paths::python()), port, path)
}

fn get(mut python: Command, port: u16, path: &str) -> Result<(u16, serde_json::Value)> {
    let url = format!("http://127.0.0.1:{port}{path}");
    let out = python
        .arg("-c")
        .arg(GET)
        .arg(&url)
        .output()
        .with_context(|| {
            format!(
                "running {} ({})",
                paths::python().display(),
                paths::SETUP_HINT
            )
        })?;
    if !out.status.success() {
        bail!("GET {url} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (status, body) = text.split_once('\n').unwrap_or((text.as_str(), ""));
    let status: u16 = status
        .trim()
        .parse()
        .with_context(|| format!("GET {url}: {text}"))?;
    let body = serde_json::from_str(body).with_context(|| format!("GET {url}: body {body:?}"))?;
    Ok((status, body))
}
