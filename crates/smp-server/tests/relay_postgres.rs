//! The relay on PostgreSQL (`[STORE_LOG] store_queues = database`): a message sent before a
//! restart is delivered after it, from the database (no SQLite file is written); an unreachable
//! database stops the start with an error naming the database. Needs PostgreSQL at
//! `HUSH_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`): the tests FAIL if it
//! is down, they never skip.

mod common;

use common::*;
use hush_proto::smp::{BrokerMsg, Command};
use smp_server::config::STORE_FILE;
use smp_server::server::RelayOptions;
use smp_server::testing::TestRelay;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_survives_a_restart_on_postgres() {
    let schema = Schema::new("relay_restart");
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    // Configured as an operator would: the keys in smp-server.ini.
    ini_for_postgres(&paths, &schema, 3);
    let cfg = test_config(&paths);
    let db = cfg.store.database.clone().expect("store_queues = database");
    assert_eq!((db.schema.as_str(), db.pool_size), (schema.0.as_str(), 3));

    let server = TestServer::start(cfg.clone()).await;
    let mut r = server.connect().await;
    let mut s = server.connect().await;
    let q = new_queue_with(
        &mut r,
        AuthKey::ed25519(),
        NewOpts {
            subscribe: false,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(b"kept in postgres", false))
            .await,
        BrokerMsg::Ok
    );
    drop((r, s));
    server.stop().await;

    let server = TestServer::start(cfg).await;
    let mut r = server.connect().await;
    let corr = random_corr();
    r.send(Some(&q.rcv_key), &corr, &q.rcv_id, &Command::Sub)
        .await;
    assert_eq!(r.response_to(&corr).await, BrokerMsg::Sok(None));
    let (entity, msg) = r.event().await;
    assert_eq!(entity, q.rcv_id);
    let (id, body) = q.body(&msg);
    assert_eq!(body, b"kept in postgres");
    assert_eq!(
        r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id)).await,
        BrokerMsg::Ok
    );
    drop(r);
    server.stop().await;
    // The data went to PostgreSQL, not to the embedded store.
    assert!(!paths.data_dir.join(STORE_FILE).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_database_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    ini_for_binary(
        &paths,
        &[
            ("STORE_LOG", "store_queues", "database"),
            (
                "STORE_LOG",
                "db_connection",
                "postgres://postgres@127.0.0.1:1/test",
            ),
        ],
    );
    let cfg = test_config(&paths);
    let err = TestRelay::start(cfg, RelayOptions::default())
        .await
        .expect_err("a relay without its database must not start");
    let msg = err.to_string();
    assert!(msg.contains("PostgreSQL database"), "{msg}");
    assert!(msg.contains("db_connection"), "{msg}");
}

/// PostgreSQL itself is up (so the tests above fail rather than pass vacuously if it is not).
#[tokio::test]
async fn postgres_is_reachable() {
    let (client, conn) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
        .await
        .expect(
            "PostgreSQL must be running at HUSH_TEST_PG_URL / 127.0.0.1:5432 (tests do not skip)",
        );
    tokio::spawn(conn);
    client.simple_query("SELECT 1").await.unwrap();
}
