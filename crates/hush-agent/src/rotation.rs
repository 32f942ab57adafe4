//! Queue rotation (reference `switchConnection` and the `QADD`/`QKEY`/`QUSE`/`QTEST` agent
//! messages), both roles. A child module of [`crate::agent`]: it uses the agent's internals.
//!
//! ```text
//! recipient R (switching its receive queue)          sender S
//! switch_queue: NEW queue q' ─ QADD(q' URI, old addr) ──▶ new send queue s' (inactive),
//!                                                      ◀── QKEY(q' info + S's dh key, S's auth key)
//! e2e secret of q', KEY q' ─── QUSE(q' addr) ──────────▶ s' active; QTEST(q' addr) on s'
//!                                                         (after the old queue's outbox is
//!                                                         empty); when sent, old queue removed
//! first message on q': held until the old queue is empty at the relay (QUE size 0), then the
//! old queue is deleted (DEL) and the held message processed, so nothing is lost or reordered.
//! ```
//!
//! Differences from the reference, on purpose: the sender starts using the new queue only
//! once everything queued on the old one was accepted by the relay, and the recipient deletes
//! the old queue only once it is empty (the reference deletes it at the first message on the
//! new queue). Only one queue per direction is switched at a time; `QADD` without a replaced
//! queue is refused as in the reference.

use super::*;
use crate::store::{RcvSwitch, SndSwitch};

/// Old receive queue: `QADD` queued, waiting for `QKEY`.
const SENDING_QADD: &str = "sending_qadd";
/// Old receive queue: new queue secured, `QUSE` queued, waiting for the first message on it.
const SENDING_QUSE: &str = "sending_quse";
/// Old receive queue: a message arrived on the new queue; deleted once empty.
const DRAINING: &str = "draining";
/// Old send queue: `QKEY` queued, waiting for `QUSE`.
const SENDING_QKEY: &str = "sending_qkey";
/// Old send queue: `QTEST` queued on the new queue.
const SENDING_QTEST: &str = "sending_qtest";

/// Which of a connection's queues a [`AgentEvent::Switch`] is about (reference `QueueDirection`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueDirection {
    /// Our receive queue (we started the switch).
    Rcv,
    /// Our send queue (the peer switches its receive queue).
    Snd,
}

/// Progress of a queue switch (reference `SwitchPhase`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchPhase {
    /// Rcv: new queue created and `QADD` queued. Snd: `QADD` received, `QKEY` queued.
    Started,
    /// Rcv: `QKEY` received (the new queue's e2e key is agreed).
    Confirmed,
    /// Rcv: new queue secured (`KEY`), `QUSE` queued. Snd: `QUSE` received, `QTEST` queued.
    Secured,
    /// Rcv: old queue deleted. Snd: `QTEST` sent and the old queue removed.
    Completed,
}

fn same_addr(server: &ProtocolServer, id: &[u8], addr: &SndQAddr) -> bool {
    server.same_address(&addr.server) && id == addr.sender_id.as_slice()
}

fn check_sync(tx: &Tx<'_>, conn: ConnId, what: &'static str) -> Result<(), AgentError> {
    if tx.ratchet_sync(conn)?.send_prohibited() {
        return Err(AgentError::State(what));
    }
    Ok(())
}

/// The `qiSize` of a `QUE` answer.
fn queue_size(info_json: &str) -> Option<u64> {
    let rest = &info_json[info_json.find("\"qiSize\":")? + 9..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn switch_event(conn: ConnId, direction: QueueDirection, phase: SwitchPhase) -> AgentEvent {
    AgentEvent::Switch {
        conn,
        direction,
        phase,
    }
}

impl Agent {
    /// Rotates the receive queue of a connected duplex connection (reference
    /// `switchConnection`): creates a new queue on the configured relay and sends `QADD`;
    /// the rest happens as the peer answers ([`AgentEvent::Switch`] reports each phase).
    pub async fn switch_queue(&self, conn: ConnId) -> Result<(), AgentError> {
        let check = |tx: &Tx<'_>| -> Result<RcvQueue, AgentError> {
            let c = tx.connection(conn)?;
            if c.mode != ConnMode::Invitation || c.status != ConnStatus::Connected {
                return Err(AgentError::State(
                    "switch: not a connected duplex connection",
                ));
            }
            check_sync(tx, conn, "switch: ratchet is not synchronized")?;
            let mut rqs = tx.rcv_queues_of(conn)?;
            if rqs.len() != 1 {
                return Err(AgentError::State("switch: already switching"));
            }
            Ok(rqs.remove(0))
        };
        self.with_tx_a(check)?;
        let (q, e2e) = self.new_rcv_queue(SmpQueueMode::Messaging).await?;
        let uri = self.queue_uri(&q, &e2e);
        let res = self.with_tx_a(|tx| {
            let old = check(tx)?;
            let rq = self.rcv_queue_record(conn, &q, &e2e);
            tx.add_rcv_queue(&rq)?;
            tx.set_rcv_switch(
                &rq.server,
                &rq.rcv_id,
                &RcvSwitch {
                    replaces_rcv_id: Some(old.rcv_id.clone()),
                    ..RcvSwitch::default()
                },
            )?;
            tx.set_rcv_switch(
                &old.server,
                &old.rcv_id,
                &RcvSwitch {
                    status: Some(SENDING_QADD.into()),
                    ..RcvSwitch::default()
                },
            )?;
            let replaced = SndQAddr {
                server: old.server.clone(),
                sender_id: old.snd_id.clone(),
            };
            let (_, sq) = Self::enqueue(
                tx,
                conn,
                AMessage::QAdd(vec![(uri, Some(replaced))]),
                OutboxKind::Control,
            )?;
            Ok((rq, sq))
        });
        let (rq, sq) = match res {
            Ok(x) => x,
            Err(e) => {
                if let Ok(c) = self.inner.pool.client(&self.inner.config.server).await {
                    let _ = c.delete(&q.rcv_id, &q.rcv_key).await;
                }
                return Err(e);
            }
        };
        self.subscribe_queue(&rq).await?;
        self.wake(sq);
        self.emit(switch_event(
            conn,
            QueueDirection::Rcv,
            SwitchPhase::Started,
        ));
        Ok(())
    }

    /// Sender side: `QADD` — a new send queue (inactive until `QUSE`) and `QKEY` back.
    pub(super) fn on_qadd(
        tx: &Tx<'_>,
        conn: ConnId,
        qs: Vec<(SmpQueueUri, Option<SndQAddr>)>,
    ) -> Result<Processed, AgentError> {
        check_sync(tx, conn, "QADD: ratchet is not synchronized")?;
        let (uri, replaced) = qs
            .into_iter()
            .next()
            .ok_or(AgentError::State("QADD: no queue"))?;
        let replaced = replaced.ok_or(AgentError::Unsupported(
            "QADD: adding a queue without switching",
        ))?;
        let smp_v = uri
            .client_versions
            .compatible_version(&smp_client_version::RANGE)
            .ok_or(AgentError::Version("smp client"))?;
        let dh = X25519Public::from_spki_der(&uri.dh_public_key)
            .map_err(|_| AgentError::Key("QADD: dh key"))?;
        let sqs = tx.snd_queues_of(conn)?;
        let new_addr = SndQAddr {
            server: uri.server.clone(),
            sender_id: uri.sender_id.clone(),
        };
        if sqs
            .iter()
            .any(|sq| same_addr(&sq.server, &sq.snd_id, &new_addr))
        {
            return Err(AgentError::State("QADD: queue address is already used"));
        }
        let old = sqs
            .iter()
            .find(|sq| same_addr(&sq.server, &sq.snd_id, &replaced))
            .ok_or(AgentError::State("QADD: replaced queue not found"))?;
        // an earlier, unfinished switch of the same queue is superseded
        for sq in &sqs {
            if tx.snd_switch(sq.snd_queue_id)?.replaces_id == Some(old.snd_queue_id) {
                tx.delete_snd_queue(sq.snd_queue_id)?;
            }
        }
        let snd_key = AuthKey::generate(AuthAlgorithm::Ed25519)?;
        let snd_e2e = X25519Secret::generate();
        let new_id = tx.add_snd_queue(&SndQueue {
            snd_queue_id: 0,
            conn_id: conn,
            server: uri.server.clone(),
            snd_id: uri.sender_id.clone(),
            snd_key: snd_key.clone(),
            e2e_priv: snd_e2e.clone(),
            e2e_secret: snd_e2e.dh(&dh),
            secured: false,
            smp_client_version: smp_v,
        })?;
        tx.set_snd_switch(
            new_id,
            &SndSwitch {
                status: None,
                replaces_id: Some(old.snd_queue_id),
                active: false,
            },
        )?;
        let info = SmpQueueInfo {
            client_version: smp_v,
            server: uri.server,
            sender_id: uri.sender_id,
            dh_public_key: snd_e2e.public(),
            queue_mode: uri.queue_mode,
        };
        let key = snd_key.public_der()?.as_bytes().to_vec();
        let (_, sq_id) = Self::enqueue(
            tx,
            conn,
            AMessage::QKey(vec![(info, key)]),
            OutboxKind::Control,
        )?;
        let mut sw = tx.snd_switch(old.snd_queue_id)?;
        sw.status = Some(SENDING_QKEY.into());
        tx.set_snd_switch(old.snd_queue_id, &sw)?;
        Ok(Processed {
            events: vec![switch_event(
                conn,
                QueueDirection::Snd,
                SwitchPhase::Started,
            )],
            ack: true,
            wake: Some(sq_id),
        })
    }

    /// Recipient side: `QKEY` — the new queue's e2e secret; `KEY` follows (async, after the
    /// transaction: [`Agent::secure_switched_queues`]).
    pub(super) fn on_qkey(
        tx: &Tx<'_>,
        conn: ConnId,
        qs: Vec<(SmpQueueInfo, Vec<u8>)>,
    ) -> Result<Processed, AgentError> {
        check_sync(tx, conn, "QKEY: ratchet is not synchronized")?;
        let (info, key) = qs
            .into_iter()
            .next()
            .ok_or(AgentError::State("QKEY: no queue"))?;
        if !smp_client_version::RANGE.contains(info.client_version) {
            return Err(AgentError::Version("smp client"));
        }
        hush_proto::smp::PublicKeyDer::auth_key(key.clone())
            .map_err(|_| AgentError::Key("QKEY: sender key"))?;
        let rqs = tx.rcv_queues_of(conn)?;
        let addr = SndQAddr {
            server: info.server.clone(),
            sender_id: info.sender_id.clone(),
        };
        let new = rqs
            .iter()
            .find(|rq| same_addr(&rq.server, &rq.snd_id, &addr))
            .ok_or(AgentError::State("QKEY: queue address not found"))?;
        let mut sw = tx.rcv_switch(&new.server, &new.rcv_id)?;
        let old_id = sw
            .replaces_rcv_id
            .clone()
            .ok_or(AgentError::State("QKEY: not a queue being added"))?;
        if new.e2e_secret.is_some() || sw.sender_key.is_some() {
            return Err(AgentError::State("QKEY: queue already secured"));
        }
        let old = rqs
            .iter()
            .find(|rq| rq.rcv_id == old_id)
            .ok_or(AgentError::State("QKEY: replaced queue not found"))?;
        if tx.rcv_switch(&old.server, &old.rcv_id)?.status.as_deref() != Some(SENDING_QADD) {
            return Err(AgentError::State("QKEY: unexpected switch status"));
        }
        tx.set_rcv_e2e_secret(
            &new.server,
            &new.rcv_id,
            &new.e2e_priv.dh(&info.dh_public_key),
        )?;
        sw.sender_key = Some(key);
        tx.set_rcv_switch(&new.server, &new.rcv_id, &sw)?;
        Ok(Processed::ack(vec![switch_event(
            conn,
            QueueDirection::Rcv,
            SwitchPhase::Confirmed,
        )]))
    }

    /// Recipient side, after `QKEY`: `KEY` on the new queue with the sender's key, then `QUSE`.
    pub(super) async fn secure_switched_queues(&self, conn: ConnId) -> Result<(), AgentError> {
        let rqs = self.with_tx(|tx| tx.rcv_queues_of(conn))?;
        for rq in rqs {
            let sw = self.with_tx(|tx| tx.rcv_switch(&rq.server, &rq.rcv_id))?;
            let Some(key) = sw.sender_key.clone() else {
                continue;
            };
            let der = hush_proto::smp::PublicKeyDer::auth_key(key)
                .map_err(|_| AgentError::Key("QKEY: sender key"))?;
            let client = self.inner.pool.client(&rq.server).await?;
            client.secure_queue(&rq.rcv_id, &rq.rcv_key, &der).await?;
            let sq = self.with_tx_a(|tx| {
                let mut sw = tx.rcv_switch(&rq.server, &rq.rcv_id)?;
                sw.sender_key = None;
                tx.set_rcv_switch(&rq.server, &rq.rcv_id, &sw)?;
                if let Some(old_id) = &sw.replaces_rcv_id
                    && let Some(old) = tx
                        .rcv_queues_of(conn)?
                        .into_iter()
                        .find(|q| &q.rcv_id == old_id)
                {
                    tx.set_rcv_switch(
                        &old.server,
                        &old.rcv_id,
                        &RcvSwitch {
                            status: Some(SENDING_QUSE.into()),
                            ..RcvSwitch::default()
                        },
                    )?;
                }
                let addr = SndQAddr {
                    server: rq.server.clone(),
                    sender_id: rq.snd_id.clone(),
                };
                Self::enqueue(
                    tx,
                    conn,
                    AMessage::QUse(vec![(addr, true)]),
                    OutboxKind::Control,
                )
                .map(|(_, sq)| sq)
            })?;
            self.wake(sq);
            self.emit(switch_event(
                conn,
                QueueDirection::Rcv,
                SwitchPhase::Secured,
            ));
        }
        Ok(())
    }

    /// Sender side: `QUSE` — the new send queue becomes the current one and gets `QTEST`.
    pub(super) fn on_quse(
        tx: &Tx<'_>,
        conn: ConnId,
        qs: Vec<(SndQAddr, bool)>,
    ) -> Result<Processed, AgentError> {
        check_sync(tx, conn, "QUSE: ratchet is not synchronized")?;
        let (addr, _primary) = qs
            .into_iter()
            .next()
            .ok_or(AgentError::State("QUSE: no queue"))?;
        let new = tx
            .snd_queues_of(conn)?
            .into_iter()
            .find(|sq| same_addr(&sq.server, &sq.snd_id, &addr))
            .ok_or(AgentError::State("QUSE: queue address not found"))?;
        let sw = tx.snd_switch(new.snd_queue_id)?;
        let old_id = sw
            .replaces_id
            .ok_or(AgentError::State("QUSE: not a queue being switched to"))?;
        let mut old_sw = tx.snd_switch(old_id)?;
        if old_sw.status.as_deref() != Some(SENDING_QKEY) || sw.active {
            return Err(AgentError::State("QUSE: unexpected switch status"));
        }
        // the recipient secured the queue with our key (KEY): no SKEY
        tx.set_snd_secured(new.snd_queue_id)?;
        tx.set_snd_switch(
            new.snd_queue_id,
            &SndSwitch {
                status: None,
                replaces_id: Some(old_id),
                active: true,
            },
        )?;
        old_sw.status = Some(SENDING_QTEST.into());
        old_sw.active = false;
        tx.set_snd_switch(old_id, &old_sw)?;
        // the current send queue is now the new one
        let (_, sq) = Self::enqueue(tx, conn, AMessage::QTest(vec![addr]), OutboxKind::Control)?;
        Ok(Processed {
            events: vec![switch_event(
                conn,
                QueueDirection::Snd,
                SwitchPhase::Secured,
            )],
            ack: true,
            wake: Some(sq),
        })
    }

    /// Delivery hook: a new send queue waits until its predecessor's outbox is empty.
    pub(super) fn replaced_queue_busy(tx: &Tx<'_>, sq_id: i64) -> Result<bool, StoreError> {
        match tx.snd_switch(sq_id)?.replaces_id {
            Some(old) => Ok(tx.outbox_count(old)? > 0),
            None => Ok(false),
        }
    }

    /// Delivery hook: the first message sent on a switched-to queue (`QTEST`) completes the
    /// switch — the old send queue (its outbox is empty) is removed.
    pub(super) fn after_sent(
        tx: &Tx<'_>,
        sq: &SndQueue,
        events: &mut Vec<AgentEvent>,
    ) -> Result<(), StoreError> {
        let mut sw = tx.snd_switch(sq.snd_queue_id)?;
        if let (Some(old), true) = (sw.replaces_id, sw.active) {
            if tx.outbox_count(old)? == 0 {
                tx.delete_snd_queue(old)?;
            }
            sw.replaces_id = None;
            tx.set_snd_switch(sq.snd_queue_id, &sw)?;
            events.push(switch_event(
                sq.conn_id,
                QueueDirection::Snd,
                SwitchPhase::Completed,
            ));
        }
        Ok(())
    }

    /// Receive hook: a message on a new queue whose predecessor still exists is held (not
    /// processed, not acknowledged) until the old queue is empty and deleted. Returns the
    /// message back when it is not held.
    pub(super) fn hold_for_switch(
        &self,
        q: &RcvQueue,
        raw: RawMsg,
    ) -> Result<Option<RawMsg>, StoreError> {
        let old = self.with_tx(|tx| {
            let sw = tx.rcv_switch(&q.server, &q.rcv_id)?;
            let Some(old_id) = sw.replaces_rcv_id else {
                return Ok(None);
            };
            let old = tx
                .rcv_queues_of(q.conn_id)?
                .into_iter()
                .find(|rq| rq.rcv_id == old_id);
            if let Some(old) = &old {
                tx.set_rcv_switch(
                    &old.server,
                    &old.rcv_id,
                    &RcvSwitch {
                        status: Some(DRAINING.into()),
                        ..RcvSwitch::default()
                    },
                )?;
            } else {
                // already gone: the new queue is the only one
                tx.set_rcv_switch(&q.server, &q.rcv_id, &RcvSwitch::default())?;
            }
            Ok(old)
        })?;
        if old.is_none() {
            return Ok(Some(raw));
        }
        let first = lock(&self.inner.held)
            .insert((q.server.to_text(), q.rcv_id.clone()), raw)
            .is_none();
        if first {
            let a = self.clone();
            let q = q.clone();
            let t = tokio::spawn(async move { a.drain_old_queue(q).await });
            lock(&self.inner.tasks).push(t);
        }
        Ok(None)
    }

    /// Waits until the old receive queue is empty at the relay (the application acknowledged
    /// everything from it), deletes it, then processes the message held on the new queue.
    async fn drain_old_queue(&self, new: RcvQueue) {
        let stop = self.inner.stop.subscribe();
        loop {
            if *stop.borrow() {
                return;
            }
            let old = self.with_tx(|tx| {
                let sw = tx.rcv_switch(&new.server, &new.rcv_id)?;
                Ok(match sw.replaces_rcv_id {
                    Some(id) => tx
                        .rcv_queues_of(new.conn_id)?
                        .into_iter()
                        .find(|rq| rq.rcv_id == id),
                    None => None,
                })
            });
            let old = match old {
                Ok(Some(old)) => old,
                Ok(None) => break,
                Err(StoreError::NotFound(_)) => return, // connection deleted
                Err(_) => {
                    tokio::time::sleep(self.inner.config.retry_interval).await;
                    continue;
                }
            };
            let empty = match self.inner.pool.client(&old.server).await {
                Ok(c) => match c.queue_info(&old.rcv_id, &old.rcv_key).await {
                    Ok(info) => queue_size(&info) == Some(0),
                    Err(e) => e.is_permanent(), // the queue is gone (AUTH)
                },
                Err(_) => false,
            };
            if !empty {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            self.inner
                .pool
                .forget_subscription(&old.server, &old.rcv_id);
            if let Ok(c) = self.inner.pool.client(&old.server).await {
                let _ = c.delete(&old.rcv_id, &old.rcv_key).await;
            }
            let done = self.with_tx(|tx| {
                tx.delete_rcv_queue(&old.server, &old.rcv_id)?;
                tx.set_rcv_switch(&new.server, &new.rcv_id, &RcvSwitch::default())
            });
            if done.is_ok() {
                self.emit(switch_event(
                    new.conn_id,
                    QueueDirection::Rcv,
                    SwitchPhase::Completed,
                ));
            }
            break;
        }
        let held = lock(&self.inner.held).remove(&(new.server.to_text(), new.rcv_id.clone()));
        let mut next = held;
        while let Some(m) = next.take() {
            next = Box::pin(self.handle_msg(&new.server, &new.rcv_id, m)).await;
        }
    }

    /// After a restart: `KEY` not done yet after `QKEY`; old queues to drain.
    pub(super) async fn resume_switches(&self) {
        let Ok(queues) = self.with_tx(|tx| tx.all_rcv_queues()) else {
            return;
        };
        let mut to_secure = HashSet::new();
        for q in queues {
            let Ok(sw) = self.with_tx(|tx| tx.rcv_switch(&q.server, &q.rcv_id)) else {
                continue;
            };
            if sw.sender_key.is_some() {
                to_secure.insert(q.conn_id);
            }
        }
        for conn in to_secure {
            if let Err(e) = self.secure_switched_queues(conn).await {
                self.emit(AgentEvent::Error {
                    conn: Some(conn),
                    error: format!("switch: {e}"),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::queue_size;

    #[test]
    fn que_size() {
        assert_eq!(
            queue_size("{\"qiSnd\":true,\"qiNtf\":false,\"qiSize\":0}"),
            Some(0)
        );
        assert_eq!(
            queue_size("{\"qiSnd\":true,\"qiSize\":12,\"qiMsg\":{}}"),
            Some(12)
        );
        assert_eq!(queue_size("{\"qiSnd\":true}"), None);
    }
}
