//! Who is logged in on this leader replica's PostgreSQL port, counted for `max_connections`
//! and each user's `CONNECTION LIMIT` (as PostgreSQL counts them: per server, here per
//! replica). A session holds a [`SessionSlot`] from login to disconnect; dropping it gives
//! the place back. Superusers are not bound by a `CONNECTION LIMIT` and have
//! [`SUPERUSER_RESERVED`] places beyond `max_connections`, so an operator can still log in to
//! a full cluster.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use blueshift_common::error::sqlstate;

use crate::error::Error;

/// Sessions superusers may open beyond `max_connections` (PostgreSQL's
/// `superuser_reserved_connections`).
pub const SUPERUSER_RESERVED: usize = 3;

/// The default `max_connections` (Redshift's limit of user connections).
pub const DEFAULT_MAX_CONNECTIONS: usize = 500;

#[derive(Debug, Default)]
pub struct Sessions {
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_user: HashMap<String, usize>,
}

/// A session's place; given back on drop.
#[derive(Debug)]
pub struct SessionSlot {
    sessions: Arc<Sessions>,
    user: String,
}

impl Sessions {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        match self.counts.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// A place for a new session of `user`, or the 53300 error PostgreSQL gives.
    pub fn admit(
        self: &Arc<Self>,
        user: &str,
        superuser: bool,
        max_connections: usize,
        user_limit: Option<u32>,
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
        Ok(SessionSlot {
            sessions: self.clone(),
            user: user.to_string(),
        })
    }

    /// Sessions open now.
    pub fn total(&self) -> usize {
        self.counts().total
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut counts = self.sessions.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                counts.by_user.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_reserved_places() {
        let s = Arc::new(Sessions::default());
        let a1 = s.admit("a", false, 3, Some(1)).unwrap();
        let e = s.admit("a", false, 3, Some(1)).unwrap_err();
        assert_eq!(e.sqlstate(), "53300");
        assert!(
            e.user_message()
                .contains("too many connections for role \"a\"")
        );
        let _b1 = s.admit("b", false, 3, None).unwrap();
        let _b2 = s.admit("b", false, 3, None).unwrap();
        assert_eq!(
            s.admit("c", false, 3, None).unwrap_err().sqlstate(),
            "53300"
        );
        // Superusers: no CONNECTION LIMIT, and SUPERUSER_RESERVED more places.
        let supers: Vec<_> = (0..SUPERUSER_RESERVED)
            .map(|_| s.admit("root", true, 3, Some(1)).unwrap())
            .collect();
        assert!(s.admit("root", true, 3, None).is_err());
        drop(supers);
        drop(a1);
        assert_eq!(s.total(), 2);
        s.admit("a", false, 3, Some(1)).unwrap();
        assert_eq!(s.total(), 2, "the slot was dropped at once");
    }
}
