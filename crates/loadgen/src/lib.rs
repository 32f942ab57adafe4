//! loadgen: load generator and benchmarks for hush (design §5: Mosquitto and NATS as
//! side-by-side baselines; figures go into BENCHMARKS.md).
//!
//! * [`idle::run_idle`] — N idle TLS connections to a relay, each with subscribed queues; reads
//!   the relay's VmRSS/RssAnon from `/proc/<pid>/status` before/after/settled.
//! * [`throughput::run_all`] — the same closed-loop pattern (M pairs, W messages in flight per
//!   pair) against the hush relay, Mosquitto (MQTT QoS 1) and NATS core; messages/s and
//!   end-to-end latency p50/p99, with ratios ([`throughput::render_table`]).
//! * [`tlsfloor`] — OpenSSL's own cost per idle server-side TLS 1.3 connection, with hush's
//!   settings and variants (in a child process).
//! * [`abuse`] — bounded abuse scenarios (TNEW/SNEW floods at an ntf-server, stalled TLS
//!   handshakes and a `NEW` flood at a relay, a `register` flood at a push-server) with a
//!   well-behaved client measured alongside (RELIABILITY.md).
//! * [`queues`] — a relay with many stored queues: create N (pipelined `NEW`s, progress bar),
//!   restart the relay (SIGTERM / SIGKILL), time from `exec` to the first `SUB` answered, RSS.
//! * [`fsync`] — the disk's commit latency distribution (paced 4 KiB rewrite + fsync).
//! * [`relay::SpawnedRelay`] — the real `smp-server` binary started in its own process.

pub mod abuse;
pub mod error;
pub mod fsync;
pub mod idle;
pub mod procfs;
pub mod queues;
pub mod relay;
pub mod throughput;
pub mod tlsfloor;

pub use error::LoadError;
