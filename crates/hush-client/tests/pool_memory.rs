//! SmpClientPool over in-memory connections (a scriptable fake relay per connection) with
//! tokio's paused clock: lazy connect, reconnect with exponential backoff, resubscription
//! (batched), PING keepalive and the 3-missed rule, END/AUTH forgetting subscriptions, close.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use hush_client::{
    AuthAlgorithm, AuthKey, BackoffConfig, ClientConfig, ClientError, ConnectFuture, Connector,
    PoolConfig, PoolEvent, PoolEvents, ServerEvent, SmpClient, SmpClientPool, memory_pair,
};
use hush_proto::address::{ProtocolServer, TransportHost};
use hush_proto::encoding::ShortString;
use hush_proto::error::ErrorType;
use hush_proto::smp::{BrokerMsg, Command};
use hush_transport::TransportError;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

/// One fake connection: what the client sent (tags per block), a kill switch, a way to push.
struct Conn {
    blocks: Arc<Mutex<Vec<Vec<&'static str>>>>,
    kill: Arc<Notify>,
    push: mpsc::UnboundedSender<Vec<Vec<u8>>>,
}

#[derive(Default)]
struct FakeNet {
    attempts: Mutex<Vec<Instant>>,
    fail_next: AtomicUsize,
    silent_pings: AtomicBool,
    /// Entities the relay answers with `ERR AUTH` (besides ids starting with "gone").
    refuse: Mutex<Vec<Vec<u8>>>,
    conns: Mutex<Vec<Conn>>,
}

impl FakeNet {
    fn attempts(&self) -> Vec<Instant> {
        self.attempts.lock().unwrap().clone()
    }
    fn conn_count(&self) -> usize {
        self.conns.lock().unwrap().len()
    }
    fn kill(&self, i: usize) {
        self.conns.lock().unwrap()[i].kill.notify_one();
    }
    fn push(&self, i: usize, ts: Vec<Vec<u8>>) {
        self.conns.lock().unwrap()[i].push.send(ts).unwrap();
    }
    fn blocks(&self, i: usize) -> Vec<Vec<&'static str>> {
        self.conns.lock().unwrap()[i].blocks.lock().unwrap().clone()
    }
    fn count(&self, i: usize, tag: &str) -> usize {
        self.blocks(i)
            .iter()
            .flatten()
            .filter(|t| **t == tag)
            .count()
    }
}

struct FakeConnector(Arc<FakeNet>);

impl Connector for FakeConnector {
    fn connect<'a>(
        &'a self,
        server: &'a ProtocolServer,
        config: &'a ClientConfig,
    ) -> ConnectFuture<'a> {
        Box::pin(async move {
            let net = &self.0;
            net.attempts.lock().unwrap().push(Instant::now());
            if net
                .fail_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(ClientError::from(TransportError::Io(
                    std::io::ErrorKind::ConnectionRefused.into(),
                )));
            }
            let (src, sink, mut relay) = memory_pair(16384);
            let (client, events) =
                SmpClient::start(session(), src, sink, Some(server.clone()), config.clone());
            let blocks = Arc::new(Mutex::new(Vec::new()));
            let kill = Arc::new(Notify::new());
            let (push, mut pushed) = mpsc::unbounded_channel::<Vec<Vec<u8>>>();
            net.conns.lock().unwrap().push(Conn {
                blocks: blocks.clone(),
                kill: kill.clone(),
                push,
            });
            let net = net.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = kill.notified() => { relay.close(); return; }
                        Some(ts) = pushed.recv() => { let _ = relay.send_transmissions(&ts).await; }
                        ts = relay.recv_transmissions() => {
                            let Some(ts) = ts else { return };
                            let seen: Vec<Seen> = ts.iter().map(|t| parse_client(t)).collect();
                            blocks.lock().unwrap().push(seen.iter().map(|s| s.command.tag()).collect());
                            let answers: Vec<Vec<u8>> = seen
                                .iter()
                                .filter_map(|s| {
                                    if s.command == Command::Ping && net.silent_pings.load(Ordering::SeqCst) {
                                        return None;
                                    }
                                    let refused = net.refuse.lock().unwrap().contains(&s.entity_id);
                                    let m = if s.entity_id.starts_with(b"gone") || refused {
                                        BrokerMsg::Err(ErrorType::Auth)
                                    } else {
                                        default_answer(s)?
                                    };
                                    Some(server_t(&s.corr_id, &s.entity_id, &m))
                                })
                                .collect();
                            // SOKs are small: 255 per block at most.
                            for chunk in answers.chunks(200) {
                                if relay.send_transmissions(chunk).await.is_err() { return; }
                            }
                        }
                    }
                }
            });
            Ok((client, events))
        })
    }
}

fn server() -> ProtocolServer {
    ProtocolServer::smp(
        vec![TransportHost::Domain("relay.test".into())],
        Some(5223),
        vec![1; 32],
    )
    .unwrap()
}

fn pool_with(config: PoolConfig) -> (SmpClientPool, PoolEvents, Arc<FakeNet>) {
    let net = Arc::new(FakeNet::default());
    let (pool, ev) = SmpClientPool::new(Arc::new(FakeConnector(net.clone())), config);
    (pool, ev, net)
}

fn no_jitter(initial: u64, max: u64) -> BackoffConfig {
    BackoffConfig {
        initial: Duration::from_secs(initial),
        max: Duration::from_secs(max),
        multiplier: 2.0,
        jitter: 0.0,
    }
}

fn key() -> Arc<AuthKey> {
    Arc::new(AuthKey::generate(AuthAlgorithm::Ed25519).unwrap())
}

fn id(i: u32) -> Vec<u8> {
    let mut v = b"queue-".to_vec();
    v.extend(i.to_be_bytes());
    v
}

fn id24(i: u32) -> Vec<u8> {
    let mut v = vec![0u8; 24];
    v[..4].copy_from_slice(&i.to_be_bytes());
    v
}

/// Collects pool events until `f` returns true (fails after 2 virtual hours).
async fn until(ev: &mut PoolEvents, mut f: impl FnMut(&PoolEvent) -> bool) -> Vec<PoolEvent> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(7200);
    loop {
        let e = tokio::time::timeout_at(deadline, ev.recv())
            .await
            .expect("event did not come")
            .expect("pool events ended");
        let done = f(&e);
        got.push(e);
        if done {
            return got;
        }
    }
}

/// Nothing connects until the pool is used; then one connection serves every caller, and
/// server events arrive tagged with the relay.
#[tokio::test(start_paused = true)]
async fn lazy_connect_and_events() {
    let (pool, mut ev, net) = pool_with(PoolConfig::default());
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(net.attempts().len(), 0);
    let c1 = pool.client(&server()).await.unwrap();
    let c2 = pool.client(&server()).await.unwrap();
    assert_eq!(net.attempts().len(), 1);
    c1.ping().await.unwrap();
    c2.ping().await.unwrap();
    assert!(matches!(
        ev.recv().await.unwrap(),
        PoolEvent::Connected { .. }
    ));
    pool.subscribe(&server(), &id(1), key()).await.unwrap();
    assert_eq!(pool.subscription_count(&server()), (1, 0));
    net.push(
        0,
        vec![server_t(
            &[],
            &id(1),
            &BrokerMsg::Msg {
                msg_id: ShortString::new(vec![1; 24]).unwrap(),
                body: vec![2; 50],
            },
        )],
    );
    match ev.recv().await.unwrap() {
        PoolEvent::Event {
            server: s,
            event: ServerEvent::Message { rcv_id, .. },
        } => {
            assert_eq!(s, server());
            assert_eq!(rcv_id, id(1));
        }
        e => panic!("{e:?}"),
    }
    assert!(pool.connected_client(&server()).is_some());
    pool.close().await;
    assert!(matches!(
        pool.client(&server()).await,
        Err(ClientError::PoolClosed)
    ));
}

/// A dropped connection is re-opened after the backoff delay and every remembered SUB and
/// NSUB is sent again, batched (203 subscriptions in 2 blocks), reported as `Resubscribed`.
#[tokio::test(start_paused = true)]
async fn reconnect_resubscribes_batched() {
    let config = PoolConfig {
        backoff: BackoffConfig {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.5,
        },
        ..Default::default()
    };
    let (pool, mut ev, net) = pool_with(config);
    for i in 0..200 {
        pool.subscribe(&server(), &id(i), key()).await.unwrap();
    }
    for i in 0..3 {
        pool.subscribe_notifier(&server(), &id(1000 + i), key())
            .await
            .unwrap();
    }
    assert_eq!(pool.subscription_count(&server()), (200, 3));
    until(&mut ev, |e| matches!(e, PoolEvent::Connected { .. })).await;
    let killed_at = Instant::now();
    net.kill(0);
    let evs = until(&mut ev, |e| matches!(e, PoolEvent::Resubscribed { .. })).await;
    assert!(matches!(evs[0], PoolEvent::Disconnected { .. }), "{evs:?}");
    assert!(evs.iter().any(|e| matches!(e, PoolEvent::Connected { .. })));
    match evs.last().unwrap() {
        PoolEvent::Resubscribed {
            recipients,
            notifiers,
            failed,
            ..
        } => {
            assert_eq!((*recipients, *notifiers), (200, 3));
            assert!(failed.is_empty());
        }
        e => panic!("{e:?}"),
    }
    let attempts = net.attempts();
    assert_eq!(attempts.len(), 2);
    let delay = attempts[1] - killed_at;
    assert!(
        delay >= Duration::from_secs(1) && delay <= Duration::from_secs(2),
        "reconnect after {delay:?}"
    );
    assert_eq!(net.count(1, "SUB"), 200);
    assert_eq!(net.count(1, "NSUB"), 3);
    assert_eq!(net.blocks(1).len(), 2, "203 subscriptions fit 2 blocks");
    assert_eq!(pool.subscription_count(&server()), (200, 3));
    pool.close().await;
}

/// Failed connection attempts back off exponentially up to the maximum (jitter off); a
/// connection resets the backoff.
#[tokio::test(start_paused = true)]
async fn backoff_grows_and_caps() {
    let (pool, mut ev, net) = pool_with(PoolConfig {
        backoff: no_jitter(1, 8),
        ..Default::default()
    });
    net.fail_next.store(6, Ordering::SeqCst);
    // The subscription is remembered although the first attempt fails.
    let r = pool.subscribe(&server(), &id(1), key()).await;
    assert!(matches!(r, Err(ClientError::Transport(_))), "{r:?}");
    assert_eq!(pool.subscription_count(&server()), (1, 0));
    let evs = until(&mut ev, |e| matches!(e, PoolEvent::Resubscribed { .. })).await;
    let retries: Vec<u64> = evs
        .iter()
        .filter_map(|e| match e {
            PoolEvent::ConnectFailed { retry_in, .. } => retry_in.map(|d| d.as_secs()),
            _ => None,
        })
        .collect();
    assert_eq!(retries, vec![1, 2, 4, 8, 8, 8]);
    let a = net.attempts();
    let gaps: Vec<u64> = a.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
    assert_eq!(gaps, vec![1, 2, 4, 8, 8, 8]);
    // After a successful connection the next failure starts from the initial delay again.
    net.fail_next.store(1, Ordering::SeqCst);
    net.kill(0);
    let evs = until(&mut ev, |e| matches!(e, PoolEvent::Resubscribed { .. })).await;
    assert!(
        evs.iter().any(|e| matches!(
            e,
            PoolEvent::ConnectFailed { retry_in: Some(d), .. } if *d == Duration::from_secs(2)
        )),
        "{evs:?}"
    );
    pool.close().await;
}

/// A caller that needs the relay cuts a long backoff wait short.
#[tokio::test(start_paused = true)]
async fn demand_cuts_backoff() {
    let (pool, _ev, net) = pool_with(PoolConfig {
        backoff: no_jitter(30, 60),
        ..Default::default()
    });
    net.fail_next.store(1, Ordering::SeqCst);
    assert!(pool.subscribe(&server(), &id(1), key()).await.is_err());
    let t0 = Instant::now();
    let c = pool.client(&server()).await.unwrap();
    assert!(Instant::now() - t0 < Duration::from_secs(1));
    c.ping().await.unwrap();
    assert_eq!(net.attempts().len(), 2);
    pool.close().await;
}

/// PING only after `ping_interval` of silence; answered pings keep the connection.
#[tokio::test(start_paused = true)]
async fn pings_keep_alive() {
    let (pool, mut ev, net) = pool_with(PoolConfig::default());
    pool.subscribe(&server(), &id(1), key()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(599)).await;
    assert_eq!(net.count(0, "PING"), 0);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let pings = net.count(0, "PING");
    assert!((6..=7).contains(&pings), "{pings} pings in ~70 min");
    assert_eq!(net.attempts().len(), 1);
    while let Ok(e) = ev.try_recv() {
        assert!(!matches!(e, PoolEvent::Disconnected { .. }), "{e:?}");
    }
    pool.close().await;
}

/// Three unanswered PINGs in a row drop the connection (reason: timeout) and the pool
/// reconnects and resubscribes.
#[tokio::test(start_paused = true)]
async fn three_missed_pings_reconnect() {
    let config = PoolConfig {
        client: ClientConfig {
            command_timeout: Duration::from_secs(10),
            ..Default::default()
        },
        ping_interval: Duration::from_secs(600),
        max_missed_pings: 3,
        ..Default::default()
    };
    let (pool, mut ev, net) = pool_with(config);
    pool.subscribe(&server(), &id(1), key()).await.unwrap();
    let t0 = Instant::now();
    net.silent_pings.store(true, Ordering::SeqCst);
    let evs = until(&mut ev, |e| matches!(e, PoolEvent::Disconnected { .. })).await;
    let PoolEvent::Disconnected { reason, .. } = evs.last().unwrap() else {
        unreachable!()
    };
    assert!(matches!(reason, ClientError::Timeout), "{reason:?}");
    let after = Instant::now() - t0;
    // pings at ~600, ~1210, ~1820 s, the third times out at ~1830 s
    assert!(
        after >= Duration::from_secs(1800) && after <= Duration::from_secs(1900),
        "{after:?}"
    );
    assert_eq!(net.count(0, "PING"), 3);
    net.silent_pings.store(false, Ordering::SeqCst);
    until(&mut ev, |e| matches!(e, PoolEvent::Resubscribed { .. })).await;
    assert_eq!(net.conn_count(), 2);
    assert_eq!(net.count(1, "SUB"), 1);
    pool.close().await;
}

/// `END` forgets a subscription; a subscription the relay refuses with `AUTH` on
/// resubscription is reported and forgotten; a refused `subscribe` is not remembered.
#[tokio::test(start_paused = true)]
async fn end_and_auth_forget() {
    let (pool, mut ev, net) = pool_with(PoolConfig {
        backoff: no_jitter(1, 8),
        ..Default::default()
    });
    for i in 1..=3 {
        pool.subscribe(&server(), &id(i), key()).await.unwrap();
    }
    let r = pool.subscribe(&server(), b"gone-now", key()).await;
    assert!(matches!(r, Err(ClientError::Smp(ErrorType::Auth))));
    assert_eq!(pool.subscription_count(&server()), (3, 0));
    net.push(0, vec![server_t(&[], &id(1), &BrokerMsg::End)]);
    until(&mut ev, |e| {
        matches!(
            e,
            PoolEvent::Event {
                event: ServerEvent::End { .. },
                ..
            }
        )
    })
    .await;
    assert_eq!(pool.subscription_count(&server()), (2, 0));
    // id(2) was deleted while we were away: the relay refuses it after the reconnect.
    net.refuse.lock().unwrap().push(id(2));
    net.kill(0);
    let evs = until(&mut ev, |e| matches!(e, PoolEvent::Resubscribed { .. })).await;
    match evs.last().unwrap() {
        PoolEvent::Resubscribed {
            recipients, failed, ..
        } => {
            assert_eq!(*recipients, 2);
            assert_eq!(failed.len(), 1);
            assert_eq!(failed[0].0, id(2));
            assert!(matches!(failed[0].1, ClientError::Smp(ErrorType::Auth)));
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(pool.subscription_count(&server()), (1, 0));
    assert_eq!(net.count(1, "SUB"), 2);
    // Forgotten subscriptions are not sent again.
    pool.forget_subscription(&server(), &id(3));
    assert_eq!(pool.subscription_count(&server()), (0, 0));
    pool.close().await;
}

/// A subscription made while the relay is unreachable is sent once a connection is up.
#[tokio::test(start_paused = true)]
async fn subscribe_while_down() {
    let (pool, mut ev, net) = pool_with(PoolConfig {
        backoff: no_jitter(5, 5),
        ..Default::default()
    });
    net.fail_next.store(2, Ordering::SeqCst);
    assert!(pool.subscribe(&server(), &id(7), key()).await.is_err());
    let evs = until(&mut ev, |e| matches!(e, PoolEvent::Resubscribed { .. })).await;
    assert_eq!(
        evs.iter()
            .filter(|e| matches!(e, PoolEvent::ConnectFailed { .. }))
            .count(),
        2
    );
    assert_eq!(net.count(0, "SUB"), 1);
    pool.close().await;
}

/// Thousands of subscriptions are resubscribed in rounds (each with its own deadline), all
/// of them, blocks full.
#[tokio::test(start_paused = true)]
async fn resubscribe_in_chunks() {
    let (pool, mut ev, net) = pool_with(PoolConfig::default());
    let key = key();
    for i in 0..2500 {
        pool.subscribe(&server(), &id24(i), key.clone())
            .await
            .unwrap();
    }
    until(&mut ev, |e| matches!(e, PoolEvent::Connected { .. })).await;
    net.kill(0);
    let evs = until(&mut ev, |e| matches!(e, PoolEvent::Resubscribed { .. })).await;
    let PoolEvent::Resubscribed {
        recipients, failed, ..
    } = evs.last().unwrap()
    else {
        unreachable!()
    };
    assert_eq!(*recipients, 2500);
    assert!(failed.is_empty());
    assert_eq!(net.count(1, "SUB"), 2500);
    let sizes: Vec<usize> = net.blocks(1).iter().map(Vec::len).collect();
    // 2500 = 1080 + 1080 + 340: rounds of 8 full blocks (135 signed SUBs with 24-byte ids,
    // `batching.v18.SUB_per_block`), then 3 blocks.
    assert_eq!(sizes.len(), 8 + 8 + 3, "{sizes:?}");
    assert!(sizes.iter().all(|n| *n <= 135));
    pool.close().await;
}
