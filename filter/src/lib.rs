//! ollama-lb filter (placeholder until the filter issue lands).
#![forbid(unsafe_code)]
