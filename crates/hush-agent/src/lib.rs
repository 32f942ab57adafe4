//! hush-agent: a SimpleX-compatible client library (reference protocols.md §6).

pub mod envelope;
pub mod ratchet;
