//! hush-agent: a SimpleX-compatible client library — duplex connections over SMP relays with
//! per-queue e2e encryption and a double ratchet (reference `protocols.md` §6).
//!
//! Layers, bottom up:
//!
//! * [`ratchet`] — the double ratchet with header encryption exactly as §6.4 (X448, X3DH
//!   "SimpleXX3DH", HKDF-SHA512 root/chain KDFs, AES-256-GCM with 16-byte IVs, 88-byte padded
//!   headers with the e2e-v3 KEM slot encoded as "no KEM", at most 512 skipped keys per chain),
//!   transactional (a bad message changes nothing) and serialisable.
//! * [`envelope`] — the `SEND` body (`ClientMsgEnvelope`, crypto_box padded to 15904/16000),
//!   agent envelopes (`C`/`M`/`I`/`R`) and messages (`I`/`D`/`R`/`M` with sequential ids and
//!   previous-message hashes; HELLO, A_MSG, receipts, QCONT, EREADY).
//! * [`store`] — the client database (SQLite file, versioned schema): connections, queues,
//!   keys and secrets, ratchet states, the outbox, received messages awaiting the
//!   application's acknowledgement, contact requests.
//! * [`agent`] — [`Agent`]: the async API for a chat application or a bot.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use hush_agent::{Agent, AgentConfig, AgentEvent};
//! use hush_proto::address::ProtocolServer;
//!
//! let relay = ProtocolServer::parse("smp://LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI=@127.0.0.1:5223")?;
//! let (alice, mut alice_events) = Agent::open("alice.db", AgentConfig::new(relay.clone())).await?;
//! let (bob, mut bob_events) = Agent::open("bob.db", AgentConfig::new(relay)).await?;
//!
//! // Alice makes a one-time invitation link and gives it to Bob out of band.
//! let (alice_conn, link) = alice.create_invitation(b"Alice").await?;
//! let bob_conn = bob.join(&link, b"Bob").await?;
//! // ... both receive AgentEvent::Connected ...
//!
//! alice.send(alice_conn, b"hello Bob")?;
//! while let Some(ev) = bob_events.recv().await {
//!     if let AgentEvent::Message { conn, msg_id, body, .. } = ev {
//!         assert_eq!((conn, body.as_slice()), (bob_conn, &b"hello Bob"[..]));
//!         bob.ack(conn, msg_id).await?; // the relay then delivers the next message
//!         break;
//!     }
//! }
//! # let _ = &mut alice_events;
//! # Ok(()) }
//! ```
//!
//! Delivery guarantees: [`Agent::send`] commits the encrypted message to the outbox before it
//! returns; it is sent (and retried across reconnects and restarts) until the relay accepts it.
//! A received application message is emitted as [`AgentEvent::Message`] and kept until
//! [`Agent::ack`]; if the process stops before that, it is emitted again after the restart.
//! The ratchet decrypts every message exactly once; relay redeliveries and repeated `SEND`s
//! are recognised and dropped ([`AgentEvent::Duplicate`]).
//!
//! Also there: `A_QCONT` after a full queue, delivery receipts ([`Agent::ack_with_receipt`]
//! → [`AgentEvent::Receipt`]; receipts and QCONT go without the notification flag, so they
//! wake no phone), a contact request and the later confirmation with different conn info
//! ([`Agent::join_with_request`]: the chat app's `x.contact`, then `x.info`), app-approved
//! confirmations
//! ([`AgentConfig::auto_accept_confirmations`] off + [`Agent::allow_connection`]), notifier
//! credentials (`NKEY`/`NDEL`) kept per receive queue for a notification server.
//!
//! Queue rotation ([`Agent::switch_queue`], both roles: `QADD`/`QKEY`/`QUSE`/`QTEST`) and
//! ratchet re-synchronisation ([`Agent::sync_ratchet`]: `R` envelopes, `EREADY`) follow the
//! reference agent; progress is reported as [`AgentEvent::Switch`] and
//! [`AgentEvent::RatchetSync`].
//!
//! The sntrup761 (PQ) KEM in the ratchet, negotiated as the reference
//! ([`AgentConfig`] `pq_propose` off, `pq_accept` on). Short links (`/i#`, `/a#`):
//! [`shortlink`] and [`Agent::create_invitation_with_short_link`] / [`Agent::join`].
//!
//! Not implemented: the legacy (non-sender-secured, `KEY` + `HELLO`) connection procedure,
//! SMP proxies, automatic re-synchronisation (only [`Agent::sync_ratchet`]).

pub mod agent;
pub mod envelope;
pub mod ratchet;
pub mod shortlink;
pub mod store;

pub use agent::{
    Agent, AgentConfig, AgentError, AgentEvent, AgentEvents, MsgIntegrity, QueueDirection,
    RatchetSyncState, SwitchPhase,
};
pub use store::{ConnId, ConnStatus};

pub use agent::shortlink_agent::{CreatedLink, ShortLinkData};
