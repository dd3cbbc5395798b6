//! A bounded, in-memory history of events, newest last: what the `stl_*` views read
//! (`stl_retries`, `stl_load_errors`, `stl_connection_log`). Past `N` events the oldest is
//! forgotten. Per process; nothing is persisted.

use std::collections::VecDeque;
use std::sync::Mutex;

#[derive(Debug)]
pub struct History<T, const N: usize> {
    events: Mutex<VecDeque<T>>,
}

impl<T, const N: usize> Default for History<T, N> {
    fn default() -> Self {
        History {
            events: Mutex::new(VecDeque::new()),
        }
    }
}

impl<T: Clone, const N: usize> History<T, N> {
    fn events_guard(&self) -> std::sync::MutexGuard<'_, VecDeque<T>> {
        match self.events.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub fn push(&self, event: T) {
        let mut events = self.events_guard();
        if events.len() >= N {
            events.pop_front();
        }
        events.push_back(event);
    }

    /// Every event held, oldest first.
    pub fn events(&self) -> Vec<T> {
        self.events_guard().iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_goes_past_the_capacity() {
        let h: History<u32, 3> = History::default();
        for i in 0..5 {
            h.push(i);
        }
        assert_eq!(h.events(), vec![2, 3, 4]);
    }
}
