//! Failed logins per source address, on the PostgreSQL and Flight SQL ports alike: an
//! address that failed `limit` times within [`WINDOW`] is refused (28000, before any
//! password is checked) until its oldest failure in the window ages out. A guessing client
//! gets `limit` tries a minute; everyone else is not slowed at all. Counted per leader
//! replica, in memory; loopback is not exempt (a local proxy would make every client one
//! address: raise the limit there, or set it to 0 for none).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use blueshift_common::error::sqlstate;

use crate::error::Error;

/// How long a failure counts.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The default limit of failures per address per [`WINDOW`].
pub const DEFAULT_LIMIT: u32 = 20;

/// Addresses remembered at most (the oldest failures are forgotten first beyond it).
const MAX_ADDRESSES: usize = 100_000;

#[derive(Debug)]
pub struct Throttle {
    limit: u32,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl Throttle {
    /// `limit` failures per address per [`WINDOW`]; 0: no limit.
    pub fn new(limit: u32) -> Self {
        Throttle {
            limit,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, VecDeque<Instant>>> {
        match self.failures.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Whether `ip` may try to log in now.
    pub fn check(&self, ip: IpAddr) -> Result<(), Error> {
        self.check_at(ip, Instant::now())
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), Error> {
        if self.limit == 0 {
            return Ok(());
        }
        let mut all = self.failures();
        let Some(times) = all.get_mut(&ip) else {
            return Ok(());
        };
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            times.pop_front();
        }
        if times.len() < self.limit as usize {
            return Ok(());
        }
        let wait = times
            .front()
            .map_or(WINDOW, |t| WINDOW.saturating_sub(now.duration_since(*t)));
        Err(Error::sql(
            sqlstate::INVALID_AUTHORIZATION,
            format!(
                "too many failed logins from {ip} ({} in {} s): try again in {} s",
                self.limit,
                WINDOW.as_secs(),
                wait.as_secs().max(1)
            ),
        ))
    }

    /// A login from `ip` failed.
    pub fn failed(&self, ip: IpAddr) {
        self.failed_at(ip, Instant::now());
    }

    fn failed_at(&self, ip: IpAddr, now: Instant) {
        if self.limit == 0 {
            return;
        }
        let mut all = self.failures();
        if all.len() >= MAX_ADDRESSES && !all.contains_key(&ip) {
            all.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < WINDOW)
            });
        }
        let times = all.entry(ip).or_default();
        times.push_back(now);
        // Only the last `limit` failures matter.
        while times.len() > self.limit as usize {
            times.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_its_limit_until_the_window_passes() {
        let t = Throttle::new(3);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let start = Instant::now();
        for i in 0..3 {
            assert!(t.check_at(ip, start).is_ok(), "attempt {i}");
            t.failed_at(ip, start + Duration::from_secs(i));
        }
        let e = t.check_at(ip, start + Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.sqlstate(), "28000");
        assert!(
            e.user_message().contains("try again in 55 s"),
            "{}",
            e.user_message()
        );
        assert!(
            t.check_at(other, start).is_ok(),
            "other addresses are not slowed"
        );
        // The first failure ages out: one more try.
        assert!(t.check_at(ip, start + WINDOW).is_ok());
        assert!(Throttle::new(0).check_at(ip, start).is_ok());
    }
}
