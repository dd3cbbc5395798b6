//! [`S3Server`]: a real S3-compatible server for tests, `moto_server` (PyPI `moto[server]`,
//! pinned in `tests/requirements.txt`) on loopback (or another local address) on an ephemeral
//! port, in its own process group, killed on drop. Buckets are created with a plain HTTP `PUT /bucket`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::paths;

/// Credentials moto accepts (any); the cluster gets them through the `AWS_*` environment.
pub const ACCESS_KEY_ID: &str = "blueshift-test";
pub const SECRET_ACCESS_KEY: &str = "blueshift-test-secret";
pub const REGION: &str = "us-east-1";

pub struct S3Server {
    child: Child,
    host: String,
    port: u16,
}

impl S3Server {
    /// Starts `moto_server` from the test venv on loopback and waits until it listens.
    pub fn start() -> Result<S3Server> {
        Self::start_on("127.0.0.1")
    }

    /// [`S3Server::start`] listening on `host` (an IPv4 address of this machine).
    pub fn start_on(host: &str) -> Result<S3Server> {
        let python = paths::python();
        let bin = python.with_file_name("moto_server");
        if !bin.is_file() {
            bail!(
                "moto_server is not at {} ({})",
                bin.display(),
                paths::SETUP_HINT
            );
        }
        let mut child = Command::new(&bin)
            .args(["-H", host, "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        // Werkzeug prints " * Running on http://HOST:PORT" on stdout or stderr.
        let running_on = format!("http://{host}:");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(|l| l.ok()) {
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        let port = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let _ = child.kill();
                bail!("moto_server did not report its port in 60 s: {seen:?}");
            }
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split(running_on.as_str()).nth(1) {
                        let digits: String =
                            rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                        if let Ok(port) = digits.parse::<u16>() {
                            break port;
                        }
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    bail!("moto_server exited or stayed silent: {seen:?}");
                }
            }
        };
        Ok(S3Server {
            child,
            host: host.to_string(),
            port,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// Creates `bucket` (HTTP `PUT /bucket`).
    pub fn create_bucket(&self, bucket: &str) -> Result<()> {
        let status = self.request("PUT", &format!("/{bucket}"))?;
        if !(200..300).contains(&status.0) {
            bail!("creating bucket {bucket}: HTTP {} {}", status.0, status.1);
        }
        Ok(())
    }

    /// Keys under `prefix` in `bucket` (ListObjectsV2, first 1000).
    pub fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let (code, body) =
            self.request("GET", &format!("/{bucket}?list-type=2&prefix={prefix}"))?;
        if code != 200 {
            bail!("listing {bucket}/{prefix}: HTTP {code} {body}");
        }
        Ok(body
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect())
    }

    /// One unsigned HTTP/1.1 request (moto does not check signatures); status and body.
    fn request(&self, method: &str, path: &str) -> Result<(u16, String)> {
        let mut stream = std::net::TcpStream::connect((self.host.as_str(), self.port))
            .context("connecting to moto_server")?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}:{}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.host, self.port
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let code = response
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((code, body))
    }

    /// The environment a cluster needs to use this server (`AWS_*`).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_ACCESS_KEY.into()),
            ("AWS_REGION".into(), REGION.into()),
            ("AWS_ENDPOINT_URL".into(), self.endpoint()),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) of the process group we created for the server.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}
