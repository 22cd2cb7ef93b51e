//! Ollama emulator (placeholder).
#![forbid(unsafe_code)]
