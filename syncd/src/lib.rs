//! syncd (placeholder until the syncd issue lands).
#![forbid(unsafe_code)]
