//! A hybrid logical clock for write timestamps (Kulkarni et al., 2014),
//! in microseconds as Cassandra's timestamps are.
//!
//! A coordinator stamps a write that carries no client timestamp with
//! `max(wall clock, last stamp + 1, highest stamp seen from others + 1)`:
//! stamps never go backwards on one node, and a node whose wall clock runs
//! behind still stamps after every write it has seen, so it cannot make a
//! newer write lose to an older one that it knew of.

use std::sync::atomic::{AtomicI64, Ordering};

pub struct Hlc {
    last: AtomicI64,
    wall: Box<dyn Fn() -> i64 + Send + Sync>,
}

impl Hlc {
    /// `wall` gives microseconds since the epoch.
    pub fn new(wall: impl Fn() -> i64 + Send + Sync + 'static) -> Hlc {
        Hlc {
            last: AtomicI64::new(0),
            wall: Box::new(wall),
        }
    }

    /// The system clock's microseconds.
    pub fn system() -> Hlc {
        Hlc::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as i64)
                .unwrap_or(0)
        })
    }

    /// A new timestamp, greater than every one this clock gave or saw.
    pub fn now(&self) -> i64 {
        let wall = (self.wall)();
        let mut prev = self.last.load(Ordering::Relaxed);
        loop {
            let next = wall.max(prev + 1);
            match self
                .last
                .compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(p) => prev = p,
            }
        }
    }

    /// Takes in a timestamp seen on a write from elsewhere (a replica's
    /// answer, a client's timestamp), so later stamps here come after it.
    pub fn observe(&self, ts: i64) {
        self.last.fetch_max(ts, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_wall_clock_still_stamps_after_what_it_saw() {
        let c = Hlc::new(|| 1_000);
        assert_eq!(c.now(), 1_000);
        assert_eq!(c.now(), 1_001);
        c.observe(5_000);
        assert_eq!(c.now(), 5_001);
    }
}
