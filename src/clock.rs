//! The wall clock, read in one place. Pure code never calls this: `now` is passed in.

use std::sync::Arc;

use crate::model::time::Timestamp;

/// A source of `now`; tests substitute their own.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The system's wall clock.
pub fn system() -> Clock {
    Arc::new(now)
}

/// The current wall-clock time.
pub fn now() -> Timestamp {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Timestamp(millis)
}
