//! hush-agent: a SimpleX-compatible client library (reference protocols.md §6).

pub mod agent;
pub mod envelope;
pub mod ratchet;
pub mod store;

pub use agent::{Agent, AgentConfig, AgentError, AgentEvent, AgentEvents, MsgIntegrity};
pub use store::{ConnId, ConnStatus};
