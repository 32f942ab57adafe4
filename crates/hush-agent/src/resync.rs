//! Ratchet re-synchronisation (reference `synchronizeRatchet`, `newRatchetKey`, the `R`
//! envelope `AgentRatchetKey` and `EREADY`). A child module of [`crate::agent`].
//!
//! * A message that does not decrypt moves the connection's [`RatchetSyncState`] as the
//!   reference's `cryptoErrToSyncState`: a header that decrypts with no known key or too many
//!   skipped messages → `Required` (sending is refused), a body that fails authentication →
//!   `Allowed`. [`AgentEvent::RatchetSync`] reports it.
//! * [`Agent::sync_ratchet`] (when allowed/required, or forced) sends an `R` envelope with two
//!   new X448 keys, encrypted only with the send queue's per-queue e2e key, and moves to
//!   `Started`.
//! * Receiving the peer's `R`: the side that had not started answers with its own `R`; both
//!   sides then re-initialise the ratchet by X3DH over the two key pairs. Who plays the
//!   joiner (sending first) is decided by comparing SHA-256(k1 ‖ k2) of the raw public keys:
//!   the side with the smaller-or-equal hash initialises as the receiving side. The sending
//!   side sends `EREADY` (its last received message id) at once; the receiving side answers
//!   `EREADY` when that arrives (its ratchet could not send before). State `Agreed`, then
//!   `Ok` at the first message that decrypts.
//! * Each peer key pair is used once (its hash is stored); a repeated `R` is ignored.

use super::*;
use crate::ratchet::{x3dh_inviter, x3dh_joiner};
use crate::store::RatchetSyncState;

/// SHA-256 of the two raw X448 public keys (reference `rkHash`).
pub(super) fn rk_hash(k1: &X448Public, k2: &X448Public) -> Vec<u8> {
    let mut b = Vec::with_capacity(112);
    b.extend_from_slice(&k1.0);
    b.extend_from_slice(&k2.0);
    sha256(&b).to_vec()
}

/// The state a decryption error moves the connection to (reference `cryptoErrToSyncState`);
/// `None` for errors that say nothing about the ratchet.
pub(super) fn error_sync_state(e: &RatchetError) -> Option<RatchetSyncState> {
    match e {
        RatchetError::Header | RatchetError::TooManySkipped(_) => Some(RatchetSyncState::Required),
        RatchetError::Decrypt => Some(RatchetSyncState::Allowed),
        _ => None,
    }
}

impl Agent {
    /// The connection's ratchet synchronisation state.
    pub fn ratchet_sync_state(&self, conn: ConnId) -> Result<RatchetSyncState, AgentError> {
        Ok(self.with_tx(|tx| tx.ratchet_sync(conn))?)
    }

    /// Starts ratchet re-synchronisation (reference `synchronizeRatchet`): allowed when a
    /// decryption error made it `Allowed` or `Required` (agent version ≥ 3), or with `force`.
    /// Returns the new state (`Started`).
    pub fn sync_ratchet(&self, conn: ConnId, force: bool) -> Result<RatchetSyncState, AgentError> {
        if *self.inner.stop.borrow() {
            return Err(AgentError::Closed);
        }
        let sq = self.with_tx_a(|tx| {
            let c = tx.connection(conn)?;
            if c.mode != ConnMode::Invitation || c.status != ConnStatus::Connected {
                return Err(AgentError::State("sync: not a connected duplex connection"));
            }
            let st = tx.ratchet_sync(conn)?;
            let allowed = c.agent_version >= 3
                && matches!(st, RatchetSyncState::Allowed | RatchetSyncState::Required);
            if !(allowed || force) {
                return Err(AgentError::State("sync: not allowed"));
            }
            let (k1, k2) = (gen_x448()?, gen_x448()?);
            let sq = Self::enqueue_ratchet_key(tx, conn, &k1, &k2, CURRENT_E2E_VERSION)?;
            tx.set_x3dh_keys(conn, &k1, &k2)?;
            tx.set_ratchet_sync(conn, RatchetSyncState::Started)?;
            Ok(sq)
        })?;
        self.wake(sq);
        self.emit(AgentEvent::RatchetSync {
            conn,
            state: RatchetSyncState::Started,
            error: None,
        });
        Ok(RatchetSyncState::Started)
    }

    /// Queues an `R` envelope (`AgentRatchetKey` with `AgentRatchetInfo ""`) on the current
    /// send queue: per-queue e2e only, it takes the next message id. Returns the queue id.
    fn enqueue_ratchet_key(
        tx: &Tx<'_>,
        conn: ConnId,
        k1: &X448Secret,
        k2: &X448Secret,
        e2e_version: u16,
    ) -> Result<i64, AgentError> {
        let c = tx.connection(conn)?;
        let sq = tx
            .current_snd_queue(conn)?
            .ok_or(AgentError::State("no send queue"))?;
        let info = AgentMessage::RatchetInfo(Vec::new()).encode()?;
        let env = AgentMsgEnvelope::RatchetKey {
            agent_version: AGENT_VERSION,
            e2e: E2eRatchetParams {
                version: e2e_version,
                key1: x448_public(k1)?,
                key2: x448_public(k2)?,
                kem: None,
            },
            info: info.clone(),
        }
        .encode()?;
        let sealed = ClientMsgEnvelope::seal(
            &sq.e2e_secret,
            sq.smp_client_version,
            None,
            &ClientMessage {
                header: PrivHeader::Empty,
                body: env,
            },
        )?
        .encode();
        let msg_id = c.last_snd_id + 1;
        tx.push_outbox(conn, sq.snd_queue_id, msg_id, OutboxKind::Control, &sealed)?;
        tx.set_last_snd(conn, msg_id, &sha256(&info))?;
        Ok(sq.snd_queue_id)
    }

    /// The peer's `R` envelope (reference `newRatchetKey`).
    pub(super) fn on_ratchet_key(
        tx: &Tx<'_>,
        conn: ConnId,
        e2e: E2eRatchetParams,
    ) -> Result<Processed, AgentError> {
        let c = tx.connection(conn)?;
        if c.mode != ConnMode::Invitation || c.status != ConnStatus::Connected {
            return Err(AgentError::State(
                "ratchet key: not a connected duplex connection",
            ));
        }
        let rk_rcv = rk_hash(&e2e.key1, &e2e.key2);
        if !tx.add_ratchet_key_hash(conn, &rk_rcv)? {
            return Ok(Processed::ack(vec![AgentEvent::Duplicate { conn }]));
        }
        if !supported_e2e_versions().contains(e2e.version) {
            return Err(AgentError::Version("e2e"));
        }
        let mut wake = None;
        let (k1, k2) = match tx.ratchet_sync(conn)? {
            RatchetSyncState::Ok | RatchetSyncState::Allowed | RatchetSyncState::Required => {
                let (k1, k2) = (gen_x448()?, gen_x448()?);
                wake = Some(Self::enqueue_ratchet_key(tx, conn, &k1, &k2, e2e.version)?);
                (k1, k2)
            }
            RatchetSyncState::Started => c
                .x3dh_keys
                .ok_or(AgentError::State("sync: own keys missing"))?,
            RatchetSyncState::Agreed => {
                // a second re-sync before the first completed: start over
                tx.set_ratchet_sync(conn, RatchetSyncState::Required)?;
                return Ok(Processed::ack(vec![AgentEvent::RatchetSync {
                    conn,
                    state: RatchetSyncState::Required,
                    error: Some("ratchet sync".into()),
                }]));
            }
        };
        let versions = RatchetVersions {
            current: e2e.version,
            max_supported: CURRENT_E2E_VERSION,
        };
        let receiving = rk_hash(&x448_public(&k1)?, &x448_public(&k2)?) <= rk_rcv;
        let ratchet = if receiving {
            let init = x3dh_inviter(&k1, &k2, &e2e.key1, &e2e.key2)?;
            Ratchet::init_inviter(versions, k2, &init)
        } else {
            let init = x3dh_joiner(&k1, &k2, &e2e.key1, &e2e.key2)?;
            Ratchet::init_joiner(versions, &e2e.key2, gen_x448()?, &init)?
        };
        tx.set_ratchet(conn, &ratchet)?;
        tx.set_ratchet_sync(conn, RatchetSyncState::Agreed)?;
        if !receiving {
            let (_, sq) = Self::enqueue(
                tx,
                conn,
                AMessage::EReady(c.last_rcv_id),
                OutboxKind::Control,
            )?;
            wake = Some(sq);
        }
        Ok(Processed {
            events: vec![AgentEvent::RatchetSync {
                conn,
                state: RatchetSyncState::Agreed,
                error: None,
            }],
            ack: true,
            wake,
        })
    }

    /// A message decrypted: a connection in `Allowed`/`Required`/`Agreed` is in sync again.
    pub(super) fn sync_ok_after_decrypt(
        tx: &Tx<'_>,
        conn: ConnId,
    ) -> Result<Option<AgentEvent>, StoreError> {
        let st = tx.ratchet_sync(conn)?;
        if matches!(st, RatchetSyncState::Ok | RatchetSyncState::Started) {
            return Ok(None);
        }
        tx.set_ratchet_sync(conn, RatchetSyncState::Ok)?;
        Ok(Some(AgentEvent::RatchetSync {
            conn,
            state: RatchetSyncState::Ok,
            error: None,
        }))
    }

    /// The peer's `EREADY`: if our ratchet could not send before this message (we
    /// re-initialised as the receiving side), answer with our own `EREADY`.
    pub(super) fn on_eready(
        tx: &Tx<'_>,
        conn: ConnId,
        could_send: bool,
        last_msg_id: i64,
        last_rcv_id: i64,
    ) -> Result<Processed, AgentError> {
        let mut wake = None;
        if !could_send {
            let (_, sq) =
                Self::enqueue(tx, conn, AMessage::EReady(last_rcv_id), OutboxKind::Control)?;
            wake = Some(sq);
        }
        Ok(Processed {
            events: vec![AgentEvent::EReady { conn, last_msg_id }],
            ack: true,
            wake,
        })
    }

    /// A message on a connected duplex connection failed to decrypt: move the sync state as
    /// the reference (only from `Ok`, `Allowed` or `Required`).
    pub(super) fn sync_on_decrypt_error(&self, conn: ConnId, e: &RatchetError) {
        let Some(new) = error_sync_state(e) else {
            return;
        };
        let changed = self.with_tx(|tx| {
            let c = tx.connection(conn)?;
            if c.mode != ConnMode::Invitation || c.status != ConnStatus::Connected {
                return Ok(false);
            }
            let st = tx.ratchet_sync(conn)?;
            if !matches!(
                st,
                RatchetSyncState::Ok | RatchetSyncState::Allowed | RatchetSyncState::Required
            ) {
                return Ok(false);
            }
            tx.set_ratchet_sync(conn, new)?;
            Ok(true)
        });
        if let Ok(true) = changed {
            self.emit(AgentEvent::RatchetSync {
                conn,
                state: new,
                error: Some(e.to_string()),
            });
        }
    }
}
