//! The SQLite store's write path never blocks a runtime thread: with the writer stalled (another
//! connection of a real file holds `BEGIN EXCLUSIVE`), on a `current_thread` runtime,
//!
//! (a) changes past the back-pressure cap ([`THROTTLE_BACKLOG`]) are appended at once (the
//!     state lock is never held across a wait for the disk), while [`Store::throttle`] (the
//!     back-pressure of relay events) and [`Store::sync`] (a command's reply) wait;
//! (b) another task on the same runtime keeps running meanwhile (a ticker counts);
//! (c) once the lock is released, everything is committed and nothing is lost (the file is
//!     reopened and counted).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hush_proto::ntf::{DeviceToken, PushProvider, TokenStatus};
use ntf_server::store::{Device, THROTTLE_BACKLOG, TokenRec};
use ntf_server::{Store, StoreMode};
use zeroize::Zeroizing;

fn token(n: u64) -> TokenRec {
    let mut id = vec![1u8; 24];
    id[16..].copy_from_slice(&n.to_be_bytes());
    TokenRec {
        id: id.clone(),
        device: Device::Token(DeviceToken {
            provider: PushProvider::ApnsTest,
            token: id,
        }),
        verify_key: vec![2; 44],
        client_dh_key: vec![4; 44],
        server_dh_key: Zeroizing::new([9; 32]),
        dh_secret: Zeroizing::new([3; 32]),
        status: TokenStatus::Active,
        reg_code: vec![7; 32],
        cron_interval: 0,
        cron_sent_at: 0,
        created_at: 100,
        was_active: true,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_stalled_writer_never_blocks_the_runtime_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ntf.db");
    let mode = StoreMode::Sqlite(path.clone());
    let store = Store::open(&mode).unwrap();
    store.put_token(token(0));
    store.sync().await.unwrap();
    assert_eq!(store.backlog(), 0);

    // Another connection takes the file's write lock: the writer stalls at its next BEGIN.
    let locker = rusqlite::Connection::open(&path).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();

    // (a) Past the cap, every change is appended at once: all of them are queued while nothing
    // can be committed.
    let n = THROTTLE_BACKLOG + 2_000;
    for i in 1..=n {
        store.put_token(token(i));
    }
    assert_eq!(store.backlog(), n, "appended without waiting for the disk");

    let ticks = Arc::new(AtomicU64::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            loop {
                ticks.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let throttle = tokio::spawn({
        let s = store.clone();
        async move { s.throttle().await }
    });
    let sync = tokio::spawn({
        let s = store.clone();
        async move { s.sync().await }
    });
    let t0 = ticks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // (b) The one runtime thread kept running the ticker while both waits pend.
    let ticked = ticks.load(Ordering::SeqCst) - t0;
    assert!(ticked >= 50, "ticker ran only {ticked} times in 300 ms");
    assert!(!throttle.is_finished(), "throttle returned past the cap");
    assert!(!sync.is_finished(), "sync returned before the commit");
    assert_eq!(
        store.backlog(),
        n,
        "nothing committed while the file is locked"
    );
    // More changes are still appended at once.
    store.put_token(token(n + 1));
    assert_eq!(store.backlog(), n + 1);

    // (c) Released: the writer commits everything, the waits end.
    locker.execute_batch("COMMIT").unwrap();
    drop(locker);
    tokio::time::timeout(Duration::from_secs(120), throttle)
        .await
        .expect("throttle never returned")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(120), sync)
        .await
        .expect("sync never returned")
        .unwrap()
        .unwrap();
    store.sync().await.unwrap();
    assert_eq!(store.backlog(), 0);
    ticker.abort();
    drop(store);

    let reopened = Store::open(&mode).unwrap();
    assert_eq!(
        reopened.counts().tokens as u64,
        n + 2,
        "every change is in the file"
    );
    assert!(reopened.token(&token(n + 1).id).is_some());
    assert!(reopened.token(&token(n / 2).id).is_some());
}
