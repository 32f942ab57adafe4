//! The periodic-push knobs (`[POLICY] cron_sweep`, `cron_min_minutes`, `cron_minute_seconds`):
//! a shorter minimum is accepted, and with a shortened minute the server's own sweep task sends
//! background `checkMessages` pushes at the registered interval (no store manipulation).

mod common;

use std::time::{Duration, Instant};

use common::*;
use hush_proto::error::ErrorType;
use hush_proto::ntf::{NtfCommand, NtfResponse};
use ntf_server::PolicyMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shortened_periodic_interval_pushes_check_messages_from_the_sweep() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let push = push().await;
    let mut cfg = ntf_config(dir.path(), false, PolicyMode::Reference);
    cfg.cron_min_minutes = 5;
    cfg.cron_minute = Duration::from_millis(200);
    cfg.cron_sweep = Duration::from_millis(100);
    let ntf = Ntf::start(cfg, &push).await;
    let mut c = ntf.client().await;
    let mut d = Device::new(41);
    register(&mut c, &push, &mut d).await;
    let base = push.received(d.sink_token()).len();

    // the minimum is configurable: 4 < 5 → QUOTA, 5 → OK
    let (_, r) = c
        .cmd(Some(&d.key), &d.token_id, &NtfCommand::Tcrn { minutes: 4 })
        .await;
    assert_eq!(r, NtfResponse::Err(ErrorType::Quota));
    let started = Instant::now();
    let (_, r) = c
        .cmd(Some(&d.key), &d.token_id, &NtfCommand::Tcrn { minutes: 5 })
        .await;
    assert_eq!(r, NtfResponse::Ok);

    // 5 "minutes" of 200 ms = 1 s: the sweep (every 100 ms) pushes once a second (TCRN times
    // have 1 s resolution, so pushes fall on whole seconds): 3 or 4 in 3.3 s
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let got = push.received(d.sink_token());
    let n = got.len() - base;
    assert!((2..=4).contains(&n), "{n} periodic pushes in 3.3 s");
    for p in &got[base..] {
        assert!(matches!(d.decode(p), PushContent::CheckMessages));
        assert_eq!(p.push_type.as_deref(), Some("background"));
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}
