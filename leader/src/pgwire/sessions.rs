//! Who is logged in on this leader replica's PostgreSQL port, counted for `max_connections`
//! and each user's `CONNECTION LIMIT` (as PostgreSQL counts them: per server, here per
//! replica). A session holds a [`SessionSlot`] from login to disconnect; dropping it gives
//! the place back. Superusers are not bound by a `CONNECTION LIMIT` and have
//! [`SUPERUSER_RESERVED`] places beyond `max_connections`, so an operator can still log in to
//! a full cluster.
//!
//! The same place keeps `stl_connection_log`: logins started, authenticated and failed, and
//! sessions ended with their duration, on the PostgreSQL and Flight SQL ports (the most
//! recent [`LOG_EVENTS`], in memory, per replica).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use blueshift_common::error::sqlstate;

use crate::error::Error;

/// Sessions superusers may open beyond `max_connections` (PostgreSQL's
/// `superuser_reserved_connections`).
pub const SUPERUSER_RESERVED: usize = 3;

/// The default `max_connections` (Redshift's limit of user connections).
pub const DEFAULT_MAX_CONNECTIONS: usize = 500;

/// Events `stl_connection_log` keeps.
pub const LOG_EVENTS: usize = 10_000;

#[derive(Debug, Default)]
pub struct Sessions {
    counts: Mutex<Counts>,
    log: crate::history::History<ConnectionEvent, LOG_EVENTS>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_user: HashMap<String, usize>,
}

/// One row of `stl_connection_log`.
#[derive(Debug, Clone)]
pub struct ConnectionEvent {
    /// `initiating session`, `authenticated`, `authentication failure` or `disconnecting
    /// session` (Redshift's words).
    pub event: &'static str,
    pub time: chrono::DateTime<chrono::Utc>,
    pub remote: SocketAddr,
    /// The session's process id (0 before it has one).
    pub pid: i32,
    pub database: String,
    pub user: String,
    /// `scram-sha-256`, `md5`, `trust` (a password-less built-in user) or `flight-sql`.
    pub method: &'static str,
    /// Of a `disconnecting session`: how long the session lasted, microseconds.
    pub duration_us: i64,
    pub tls: bool,
    pub application_name: String,
}

impl ConnectionEvent {
    pub fn new(event: &'static str, remote: SocketAddr, user: &str) -> Self {
        ConnectionEvent {
            event,
            time: chrono::Utc::now(),
            remote,
            pid: 0,
            database: String::new(),
            user: user.to_string(),
            method: "",
            duration_us: 0,
            tls: false,
            application_name: String::new(),
        }
    }
}

/// A session's place; given back on drop (which logs the disconnection).
#[derive(Debug)]
pub struct SessionSlot {
    sessions: Arc<Sessions>,
    user: String,
    login: ConnectionEvent,
    since: Instant,
}

impl Sessions {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        match self.counts.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Adds an event to `stl_connection_log`.
    pub fn record(&self, event: ConnectionEvent) {
        self.log.push(event);
    }

    /// `stl_connection_log`, oldest first.
    pub fn log(&self) -> Vec<ConnectionEvent> {
        self.log.events()
    }

    /// A place for a new session of `user`, or the 53300 error PostgreSQL gives; `login`
    /// (its `authenticated` event) is logged once admitted.
    pub fn admit(
        self: &Arc<Self>,
        user: &str,
        superuser: bool,
        max_connections: usize,
        user_limit: Option<u32>,
        login: ConnectionEvent,
    ) -> Result<SessionSlot, Error> {
        let mut counts = self.counts();
        let cap = if superuser {
            max_connections + SUPERUSER_RESERVED
        } else {
            max_connections
        };
        if counts.total >= cap {
            return Err(Error::sql(
                sqlstate::TOO_MANY_CONNECTIONS,
                if superuser {
                    "sorry, too many clients already".to_string()
                } else {
                    format!(
                        "sorry, too many clients already (max_connections = {max_connections}; \
                         the remaining {SUPERUSER_RESERVED} are reserved for superusers)"
                    )
                },
            ));
        }
        let mine = counts.by_user.get(user).copied().unwrap_or(0);
        if let Some(limit) = user_limit.filter(|_| !superuser)
            && mine >= limit as usize
        {
            return Err(Error::sql(
                sqlstate::TOO_MANY_CONNECTIONS,
                format!("too many connections for role \"{user}\" (CONNECTION LIMIT {limit})"),
            ));
        }
        counts.total += 1;
        *counts.by_user.entry(user.to_string()).or_default() += 1;
        drop(counts);
        self.record(login.clone());
        Ok(SessionSlot {
            sessions: self.clone(),
            user: user.to_string(),
            login,
            since: Instant::now(),
        })
    }

    /// Sessions open now.
    pub fn total(&self) -> usize {
        self.counts().total
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        {
            let mut counts = self.sessions.counts();
            counts.total = counts.total.saturating_sub(1);
            if let Some(n) = counts.by_user.get_mut(&self.user) {
                *n -= 1;
                if *n == 0 {
                    counts.by_user.remove(&self.user);
                }
            }
        }
        let mut event = self.login.clone();
        event.event = "disconnecting session";
        event.time = chrono::Utc::now();
        event.duration_us = self.since.elapsed().as_micros() as i64;
        self.sessions.record(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(user: &str) -> ConnectionEvent {
        ConnectionEvent::new("authenticated", ([127, 0, 0, 1], 5000).into(), user)
    }

    #[test]
    fn limits_and_reserved_places() {
        let s = Arc::new(Sessions::default());
        let admit = |user: &str, superuser: bool, limit: Option<u32>| {
            s.admit(user, superuser, 3, limit, login(user))
        };
        let a1 = admit("a", false, Some(1)).unwrap();
        let e = admit("a", false, Some(1)).unwrap_err();
        assert_eq!(e.sqlstate(), "53300");
        assert!(
            e.user_message()
                .contains("too many connections for role \"a\"")
        );
        let _b1 = admit("b", false, None).unwrap();
        let _b2 = admit("b", false, None).unwrap();
        assert_eq!(admit("c", false, None).unwrap_err().sqlstate(), "53300");
        // Superusers: no CONNECTION LIMIT, and SUPERUSER_RESERVED more places.
        let supers: Vec<_> = (0..SUPERUSER_RESERVED)
            .map(|_| admit("root", true, Some(1)).unwrap())
            .collect();
        assert!(admit("root", true, None).is_err());
        drop(supers);
        drop(a1);
        assert_eq!(s.total(), 2);
        drop(admit("a", false, Some(1)).unwrap());
        assert_eq!(s.total(), 2, "the slot was given back at once");
        let log = s.log();
        let events = |e: &str| log.iter().filter(|x| x.event == e).count();
        // Admitted: a, b, b, 3 superusers, a again; all but the two b's ended.
        assert_eq!(events("authenticated"), 7);
        assert_eq!(events("disconnecting session"), 5);
    }
}
