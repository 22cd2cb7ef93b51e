//! Go's `RFC3339Nano` timestamps (fraction without trailing zeros).

use chrono::{DateTime, Timelike, Utc};

/// `2024-06-04T14:38:31.83753Z`, as Go marshals a UTC `time.Time`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.nanosecond() % 1_000_000_000;
    if nanos == 0 {
        format!("{base}Z")
    } else {
        let frac = format!("{nanos:09}");
        format!("{base}.{}Z", frac.trim_end_matches('0'))
    }
}

/// The current time in that form.
pub fn now() -> String {
    rfc3339(Utc::now())
}
