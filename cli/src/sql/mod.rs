//! `blueshift sql`: a psql-style client for any Blueshift (or PostgreSQL) server.
//!
//! Interactive with line editing and history (`~/.blueshift_history`), statements over
//! several lines (run at the `;`), or with `-c COMMAND` / `-f FILE`. Backslash commands:
//! `\dt [pattern]`, `\d [table]`, `\x`, `\timing`, `\copy`, `\q`, `\?`. Results as an aligned
//! table (`\x`: one record per block), `--csv` or `--json`. A statement running for more than
//! a second shows a live progress line (rows so far, elapsed time) when stderr is a terminal;
//! Ctrl-C cancels the running statement (a cancel request), not the client.
//!
//! It speaks the PostgreSQL protocol through tokio-postgres, in plain text: it must not
//! depend on server internals.

mod output;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use blueshift_leader::sql::{Token, is_blank, keyword, tokenize};
use clap::Args;
use futures::{SinkExt, StreamExt};
use tokio_postgres::{NoTls, SimpleQueryMessage};

use output::{Format, ResultSet, render};

#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct SqlArgs {
    /// Server host.
    #[arg(short = 'h', long, env = "PGHOST", default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(short = 'p', long, env = "PGPORT", default_value_t = 5439)]
    port: u16,
    /// User name.
    #[arg(
        short = 'U',
        long = "username",
        env = "PGUSER",
        default_value = "blueshift"
    )]
    user: String,
    /// Database.
    #[arg(
        short = 'd',
        long = "dbname",
        env = "PGDATABASE",
        default_value = "dev"
    )]
    database: String,
    /// Run this command (SQL or a backslash command) and exit; may be repeated.
    #[arg(short = 'c', long = "command")]
    commands: Vec<String>,
    /// Run the commands in this file and exit.
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Print results as CSV.
    #[arg(long, conflicts_with = "json")]
    csv: bool,
    /// Print results as JSON (one array of objects per result).
    #[arg(long)]
    json: bool,
    /// Expanded output (one record per block), like `\x`.
    #[arg(short = 'x', long)]
    expanded: bool,
    /// Print how long each statement took, like `\timing`.
    #[arg(long)]
    timing: bool,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

/// The password comes from `PGPASSWORD` (as with psql).
fn password() -> Option<String> {
    std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty())
}

struct Session {
    client: tokio_postgres::Client,
    database: String,
    format: Format,
    expanded: bool,
    timing: bool,
    progress: bool,
}

pub async fn run(args: SqlArgs) -> Result<()> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&args.host)
        .port(args.port)
        .user(&args.user)
        .dbname(&args.database)
        .application_name("blueshift sql")
        .connect_timeout(Duration::from_secs(30));
    if let Some(p) = password() {
        config.password(p);
    }
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| anyhow::anyhow!("{}", describe(&e)))
        .with_context(|| format!("cannot connect to {}:{}", args.host, args.port))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("connection lost: {}", describe(&e));
        }
    });
    let mut session = Session {
        client,
        database: args.database.clone(),
        format: if args.csv {
            Format::Csv
        } else if args.json {
            Format::Json
        } else {
            Format::Aligned
        },
        expanded: args.expanded,
        timing: args.timing,
        progress: std::io::stderr().is_terminal(),
    };
    if !args.commands.is_empty() || args.file.is_some() {
        let mut failed = false;
        for c in &args.commands {
            // Like psql: a -c string is one command (SQL or one backslash command).
            let ok = if c.trim_start().starts_with('\\') {
                session.meta(c.trim()).await
            } else {
                session.statement(c).await
            };
            failed |= !ok;
        }
        if let Some(f) = &args.file {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))?;
            let mut input = Input::default();
            for line in text.lines() {
                for action in input.feed(line) {
                    failed |= !session.act(action).await;
                }
            }
            if let Some(rest) = input.finish() {
                failed |= !session.statement(&rest).await;
            }
        }
        if failed {
            bail!("a command failed");
        }
        return Ok(());
    }
    interactive(session).await
}

/// What a line of input asks for.
enum Action {
    Statement(String),
    Meta(String),
}

/// Lines collected until a statement is complete (ends with `;` outside quotes).
#[derive(Default)]
struct Input {
    buffer: String,
}

impl Input {
    fn feed(&mut self, line: &str) -> Vec<Action> {
        if self.buffer.trim().is_empty() && line.trim_start().starts_with('\\') {
            return vec![Action::Meta(line.trim().to_string())];
        }
        if !self.buffer.is_empty() {
            self.buffer.push('\n');
        }
        self.buffer.push_str(line);
        match tokenize(&self.buffer) {
            Ok(tokens) => {
                let last = tokens.iter().rev().find(|t| !is_blank(t));
                if matches!(last, Some(Token::SemiColon)) {
                    vec![Action::Statement(std::mem::take(&mut self.buffer))]
                } else {
                    vec![]
                }
            }
            // An unterminated quote: the statement goes on.
            Err(_) => vec![],
        }
    }

    fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.buffer);
        (!rest.trim().is_empty()).then_some(rest)
    }

    fn pending(&self) -> bool {
        !self.buffer.trim().is_empty()
    }
}

async fn interactive(mut session: Session) -> Result<()> {
    use rustyline::error::ReadlineError;
    let mut editor = rustyline::DefaultEditor::new()?;
    let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".blueshift_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!(
        "blueshift sql: connected to {}. \\? for help, \\q to quit.",
        session.database
    );
    let mut input = Input::default();
    loop {
        let prompt = if input.pending() {
            format!("{}-# ", session.database)
        } else {
            format!("{}=# ", session.database)
        };
        let line = tokio::task::block_in_place(|| editor.readline(&prompt));
        match line {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                for action in input.feed(&line) {
                    if matches!(&action, Action::Meta(m) if m == "\\q") {
                        save_history(&mut editor, &history);
                        return Ok(());
                    }
                    session.act(action).await;
                }
            }
            // Ctrl-C at the prompt drops the statement being typed.
            Err(ReadlineError::Interrupted) => {
                input = Input::default();
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    save_history(&mut editor, &history);
    Ok(())
}

fn save_history(editor: &mut rustyline::DefaultEditor, history: &Option<PathBuf>) {
    if let Some(h) = history {
        let _ = editor.save_history(h);
    }
}

fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("ERROR:  {} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

impl Session {
    async fn act(&mut self, action: Action) -> bool {
        match action {
            Action::Statement(s) => self.statement(&s).await,
            Action::Meta(m) => self.meta(&m).await,
        }
    }

    /// Runs SQL (one or several statements) and prints each result; false on an error.
    async fn statement(&mut self, sql: &str) -> bool {
        let started = Instant::now();
        let result = self.stream(sql, started).await;
        if self.progress {
            eprint!("\r\x1b[K");
        }
        let ok = match result {
            Ok(()) => true,
            Err(e) => {
                eprintln!("{e}");
                false
            }
        };
        if self.timing {
            println!("Time: {:.3} ms", started.elapsed().as_secs_f64() * 1000.0);
        }
        ok
    }

    async fn stream(&mut self, sql: &str, started: Instant) -> std::result::Result<(), String> {
        let rows_seen = Arc::new(AtomicU64::new(0));
        let ticker = self.progress.then(|| {
            let rows = rows_seen.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tick.tick().await;
                    let elapsed = started.elapsed();
                    if elapsed > Duration::from_secs(1) {
                        eprint!(
                            "\r\x1b[K{} rows, {:.1} s (Ctrl-C cancels)",
                            rows.load(Ordering::Relaxed),
                            elapsed.as_secs_f64()
                        );
                    }
                }
            })
        });
        let result = self.stream_results(sql, &rows_seen).await;
        if let Some(t) = ticker {
            t.abort();
        }
        result
    }

    async fn stream_results(
        &mut self,
        sql: &str,
        rows_seen: &AtomicU64,
    ) -> std::result::Result<(), String> {
        let stream = self
            .client
            .simple_query_raw(sql)
            .await
            .map_err(|e| describe(&e))?;
        futures::pin_mut!(stream);
        let mut current: Option<ResultSet> = None;
        let mut cancelled = false;
        loop {
            let next = tokio::select! {
                m = stream.next() => m,
                _ = tokio::signal::ctrl_c(), if !cancelled => {
                    cancelled = true;
                    // The server answers the running statement with 57014.
                    let _ = self.client.cancel_token().cancel_query(NoTls).await;
                    continue;
                }
            };
            let Some(message) = next else { break };
            match message.map_err(|e| describe(&e))? {
                SimpleQueryMessage::RowDescription(columns) => {
                    current = Some(ResultSet {
                        columns: columns.iter().map(|c| c.name().to_string()).collect(),
                        rows: Vec::new(),
                    });
                }
                SimpleQueryMessage::Row(row) => {
                    rows_seen.fetch_add(1, Ordering::Relaxed);
                    let values = (0..row.len()).map(|i| row.get(i).map(str::to_string));
                    match current.as_mut() {
                        Some(rs) => rs.rows.push(values.collect()),
                        None => {
                            current = Some(ResultSet {
                                columns: row
                                    .columns()
                                    .iter()
                                    .map(|c| c.name().to_string())
                                    .collect(),
                                rows: vec![values.collect()],
                            })
                        }
                    }
                }
                SimpleQueryMessage::CommandComplete(n) => {
                    if self.progress {
                        eprint!("\r\x1b[K");
                    }
                    match current.take() {
                        Some(rs) => {
                            print!("{}", render(&rs, self.format, self.expanded));
                            if self.format == Format::Aligned {
                                println!();
                            }
                        }
                        None if self.format == Format::Aligned => {
                            if n > 0 {
                                println!("OK, {n} rows");
                            } else {
                                println!("OK");
                            }
                        }
                        None => {}
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A backslash command; false on an error.
    async fn meta(&mut self, command: &str) -> bool {
        let (name, arg) = match command.split_once(char::is_whitespace) {
            Some((n, a)) => (n, a.trim()),
            None => (command, ""),
        };
        let toggle = |current: bool| match arg {
            "on" => true,
            "off" => false,
            _ => !current,
        };
        match name {
            "\\q" => std::process::exit(0),
            "\\?" => {
                println!(
                    "  \\dt [PATTERN]      list tables\n  \\d [TABLE]         describe a table (all tables without one)\n  \\x [on|off]        expanded output\n  \\timing [on|off]   show statement times\n  \\copy ...          COPY between a local file and a table: \\copy t from 'f.csv' with (format csv)\n  \\q                 quit"
                );
                true
            }
            "\\x" => {
                self.expanded = toggle(self.expanded);
                println!(
                    "Expanded display is {}.",
                    if self.expanded { "on" } else { "off" }
                );
                true
            }
            "\\timing" => {
                self.timing = toggle(self.timing);
                println!("Timing is {}.", if self.timing { "on" } else { "off" });
                true
            }
            "\\dt" | "\\d" if arg.is_empty() || name == "\\dt" => {
                let like = if arg.is_empty() {
                    String::new()
                } else {
                    format!(" LIKE '{}'", arg.replace('*', "%").replace('\'', "''"))
                };
                self.listing(
                    &format!("SHOW TABLES FROM SCHEMA \"{}\".public{like}", self.database),
                    &["schema_name", "table_name", "table_type", "dist_style"],
                )
                .await
            }
            "\\d" => {
                let table = arg.trim_matches('"');
                let (schema, table) = table.split_once('.').unwrap_or(("public", table));
                self.listing(
                    &format!(
                        "SHOW COLUMNS FROM TABLE \"{}\".\"{schema}\".\"{table}\"",
                        self.database
                    ),
                    &[
                        "column_name",
                        "data_type",
                        "is_nullable",
                        "sort_key",
                        "dist_key",
                    ],
                )
                .await
            }
            "\\copy" => match self.copy(arg).await {
                Ok(msg) => {
                    println!("{msg}");
                    true
                }
                Err(e) => {
                    eprintln!("{e:#}");
                    false
                }
            },
            other => {
                eprintln!("invalid command {other}; \\? lists the commands");
                false
            }
        }
    }

    /// Runs a SHOW and prints the named columns of its result.
    async fn listing(&mut self, sql: &str, columns: &[&str]) -> bool {
        let messages = match self.client.simple_query(sql).await {
            Ok(m) => m,
            Err(e) => {
                eprintln!("{}", describe(&e));
                return false;
            }
        };
        let mut rs = ResultSet {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        };
        for m in messages {
            if let SimpleQueryMessage::Row(row) = m {
                rs.rows.push(
                    columns
                        .iter()
                        .map(|c| row.try_get(*c).ok().flatten().map(str::to_string))
                        .collect(),
                );
            }
        }
        if rs.rows.is_empty() && self.format == Format::Aligned {
            println!("Did not find any matching relations.");
            return true;
        }
        print!("{}", render(&rs, self.format, self.expanded));
        true
    }

    /// `\copy table [(cols)] from 'file' [options]` or `\copy {table | (query)} to 'file'
    /// [options]`: COPY ... FROM STDIN / TO STDOUT with the data read or written here.
    async fn copy(&mut self, arg: &str) -> Result<String> {
        let tokens = tokenize(arg).map_err(|e| anyhow::anyhow!("{}", e.user_message()))?;
        let mut depth = 0i32;
        let mut direction = None;
        for (i, t) in tokens.iter().enumerate() {
            match t {
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                t if depth == 0 => match keyword(t).as_deref() {
                    Some("FROM") => {
                        direction = Some((i, true));
                        break;
                    }
                    Some("TO") => {
                        direction = Some((i, false));
                        break;
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        let Some((at, from)) = direction else {
            bail!("\\copy needs FROM 'file' or TO 'file'");
        };
        // The file name: a quoted string, or the next run of non-blank characters.
        let head: String = tokens[..at].iter().map(|t| t.to_string()).collect();
        let after: String = tokens[at + 1..].iter().map(|t| t.to_string()).collect();
        let after = after.trim_start();
        let (path, tail) = match after.strip_prefix('\'') {
            Some(quoted) => {
                let end = quoted
                    .find('\'')
                    .context("\\copy: unterminated file name")?;
                (quoted[..end].to_string(), quoted[end + 1..].to_string())
            }
            None => {
                let end = after.find(char::is_whitespace).unwrap_or(after.len());
                (after[..end].to_string(), after[end..].to_string())
            }
        };
        if path.is_empty() {
            bail!("\\copy needs a file name");
        }
        if from {
            let sql = format!("COPY {} FROM STDIN {}", head.trim(), tail.trim());
            let data = tokio::fs::read(&path)
                .await
                .with_context(|| format!("cannot read {path}"))?;
            let sink = self
                .client
                .copy_in::<_, bytes::Bytes>(&sql)
                .await
                .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
            futures::pin_mut!(sink);
            sink.send(bytes::Bytes::from(data))
                .await
                .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
            let n = sink
                .finish()
                .await
                .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
            Ok(format!("COPY {n}"))
        } else {
            let sql = format!("COPY {} TO STDOUT {}", head.trim(), tail.trim());
            let stream = self
                .client
                .copy_out(&sql)
                .await
                .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
            futures::pin_mut!(stream);
            let mut file = tokio::fs::File::create(&path)
                .await
                .with_context(|| format!("cannot create {path}"))?;
            let mut bytes = 0usize;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
                bytes += chunk.len();
                tokio::io::AsyncWriteExt::write_all(&mut file, &chunk).await?;
            }
            tokio::io::AsyncWriteExt::flush(&mut file).await?;
            Ok(format!("wrote {bytes} bytes to {path}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_run_at_the_semicolon_outside_quotes() {
        let mut input = Input::default();
        assert!(input.feed("select 'a;").is_empty());
        assert!(input.feed("b' from t").is_empty());
        let actions = input.feed("where x = 1;");
        assert!(
            matches!(&actions[..], [Action::Statement(s)] if s == "select 'a;\nb' from t\nwhere x = 1;")
        );
        assert!(matches!(&input.feed("\\dt")[..], [Action::Meta(m)] if m == "\\dt"));
        assert!(input.feed("select 1").is_empty());
        assert_eq!(input.finish().as_deref(), Some("select 1"));
    }
}
