//! End-to-end test rig (placeholder).
#![forbid(unsafe_code)]
