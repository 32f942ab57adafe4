//! The pattern against the hush relay: per pair, a recipient connection that created (and so
//! subscribed) a queue, and a sender connection sending unsigned `SEND`s to it (the queue is not
//! secured; the relay still encrypts each `MSG` for the recipient). The recipient decrypts each
//! `MSG`, records it, and `ACK`s it (the relay delivers the next message of a queue after the ACK).

use std::sync::Arc;
use std::time::Duration;

use hush_client::{ClientConfig, NewQueueParams, RcvMsgBody, ServerEvent, TlsConnector};
use hush_proto::address::ServerWithAuth;
use tokio::sync::{Semaphore, watch};

use super::{Clock, RunResult, Samples, ThroughputOptions, finish, stopped};
use crate::LoadError;

pub const SYSTEM: &str = "hush relay";
/// The guarantees column for a relay whose store is described by `store`.
pub fn guarantees(store: &str) -> String {
    format!(
        "TLS 1.3 + SMP block encryption, 16 KB blocks, SEND answered after the store accepted it ({store}), MSG encrypted per message for the recipient, next MSG only after ACK"
    )
}

pub async fn run(
    server: Arc<ServerWithAuth>,
    opts: &ThroughputOptions,
    size: usize,
) -> Result<RunResult, LoadError> {
    let connector = TlsConnector::new()?;
    let config = ClientConfig {
        command_timeout: Duration::from_secs(30),
        event_buffer: 1024,
        send_buffer: 256,
    };
    let mut pairs = Vec::with_capacity(opts.pairs);
    for _ in 0..opts.pairs {
        let (rcv, events) = connector.connect_to(&server.server, &config).await?;
        let q = rcv
            .create_queue(NewQueueParams {
                basic_auth: server.auth.clone(),
                ..NewQueueParams::default()
            })
            .await?;
        let (snd, snd_events) = connector.connect_to(&server.server, &config).await?;
        pairs.push((rcv, events, q, snd, snd_events));
    }
    let clock = Clock::new(opts.warmup, opts.duration);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    let mut keep = Vec::new();
    for (rcv, mut events, q, snd, snd_events) in pairs {
        let window = Arc::new(Semaphore::new(opts.window.max(1)));
        keep.push((rcv.clone(), snd.clone(), snd_events));
        {
            let (clock, window, mut stop) = (clock.clone(), window.clone(), stop_rx.clone());
            let q = q.clone();
            receivers.push(tokio::spawn(async move {
                let mut samples = Samples::default();
                loop {
                    let ev = tokio::select! {
                        _ = stopped(&mut stop) => break,
                        ev = events.recv() => ev,
                    };
                    let Some(ev) = ev else {
                        return Err(LoadError::Relay("recipient connection closed".into()));
                    };
                    let ServerEvent::Message { rcv_id, msg } = ev else {
                        continue;
                    };
                    let mut next = Some(msg);
                    while let Some(m) = next {
                        let d = m.decrypt(&q.rcv_dh_secret)?;
                        match &d.body {
                            RcvMsgBody::Message { body, .. } => samples.record(&clock, body)?,
                            RcvMsgBody::Quota { .. } => {
                                return Err(LoadError::proto(SYSTEM, "queue quota reached"));
                            }
                        }
                        window.add_permits(1);
                        next = rcv.ack(&rcv_id, &q.rcv_key, &d.msg_id).await?;
                    }
                }
                Ok(samples)
            }));
        }
        // W sender tasks: each takes a window permit, then sends and waits for OK.
        for _ in 0..opts.window.max(1) {
            let (clock, window, mut stop) = (clock.clone(), window.clone(), stop_rx.clone());
            let (snd, snd_id) = (snd.clone(), q.snd_id.clone());
            senders.push(tokio::spawn(async move {
                loop {
                    let permit = tokio::select! {
                        _ = stopped(&mut stop) => return Ok(()),
                        p = window.acquire() => p,
                    };
                    match permit {
                        Ok(p) => p.forget(),
                        Err(_) => return Ok(()),
                    }
                    let payload = clock.payload(size);
                    snd.send(&snd_id, None, false, &payload).await?;
                }
            }));
        }
    }
    let finished = finish(&clock, opts.hush_pid, stop_tx, receivers, senders).await;
    for (rcv, snd, _) in &keep {
        rcv.abort();
        snd.abort();
    }
    let (samples, cpu) = finished?;
    Ok(RunResult::from_samples(
        SYSTEM,
        guarantees(&opts.hush_store),
        size,
        &clock,
        samples,
        cpu,
    ))
}
