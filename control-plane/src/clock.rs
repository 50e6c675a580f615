//! Wall-clock time as stored in the database: milliseconds since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `now` (milliseconds since the epoch) plus `duration`, or `None` where that leaves i64.
pub fn after(now: i64, duration: std::time::Duration) -> Option<i64> {
    i64::try_from(duration.as_millis())
        .ok()
        .and_then(|ms| now.checked_add(ms))
}

pub fn to_timestamp(millis: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: (millis.rem_euclid(1000) * 1_000_000) as i32,
    }
}
