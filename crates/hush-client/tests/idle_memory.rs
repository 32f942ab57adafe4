//! Idle connections are cheap: after the handshake and some traffic, an idle SmpClient over
//! real TLS keeps no 16 KB block buffer. Measured with a counting global allocator (Rust heap
//! only: OpenSSL's own buffers are released by `SSL_MODE_RELEASE_BUFFERS` in hush-transport).
//! The far end is a bare hush-transport server in the same process, answering PINGs; its
//! per-connection state is counted too, so the bound is for client + server together.
#![allow(unsafe_code)] // a test/bench harness calling libc / allocator APIs; SAFETY at each use

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use hush_client::{ClientConfig, SmpClient};
use hush_crypto::{SignAlgorithm, generate_ca, generate_online_cert};
use hush_proto::address::{ProtocolServer, TransportHost};
use hush_proto::smp::{BrokerMsg, Command};
use hush_proto::transmission::{Layout as TLayout, Transmission, encode_transmission_with};
use hush_transport::{ServerIdentity, TransportServer};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// A relay stand-in that answers every PING with PONG and ignores the rest.
async fn serve(listener: tokio::net::TcpListener, server: TransportServer) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let server = server.clone();
        tokio::spawn(async move {
            let Ok(mut conn) = server.accept(tcp).await else {
                return;
            };
            let version = conn.version();
            while let Ok(block) = conn.recv().await {
                let Ok(block) = block else { continue };
                let mut out = Vec::new();
                if let Ok(ts) = block.transmissions() {
                    for t in ts {
                        let Ok(t) = hush_proto::transmission::decode_transmission_with(
                            t,
                            TLayout::smp(version),
                        ) else {
                            continue;
                        };
                        if Command::decode(t.command, version) == Ok(Command::Ping) {
                            let pong = BrokerMsg::Pong.encode(version);
                            let mut b = Vec::new();
                            let _ = encode_transmission_with(
                                &mut b,
                                &Transmission::new(t.corr_id, &[], &pong),
                                TLayout::smp(version),
                            );
                            out.push(b);
                        }
                    }
                }
                drop(block);
                if !out.is_empty() && conn.send(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_holds_no_block_buffer() {
    const N: usize = 20;
    let ca = generate_ca(SignAlgorithm::Ed25519, "idle test CA").unwrap();
    let leaf = generate_online_cert(&ca, SignAlgorithm::Ed25519, "localhost").unwrap();
    let fp = hush_crypto::fingerprint(&ca.cert_der);
    let identity = ServerIdentity::new(leaf, ca.cert_der.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(serve(listener, TransportServer::smp(identity).unwrap()));
    let server = ProtocolServer::smp(
        vec![TransportHost::Ipv4([127, 0, 0, 1])],
        Some(port),
        fp.to_vec(),
    )
    .unwrap();

    // Warm up (lazy statics, OpenSSL contexts, tokio internals) with one connection.
    let (c, e) = SmpClient::connect(&server, ClientConfig::default())
        .await
        .unwrap();
    c.ping().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let before = LIVE.load(Ordering::SeqCst);
    let mut conns = Vec::new();
    for _ in 0..N {
        let (c, e) = SmpClient::connect(&server, ClientConfig::default())
            .await
            .unwrap();
        // Some traffic: every block buffer used for it must be gone once idle.
        c.ping().await.unwrap();
        c.ping().await.unwrap();
        conns.push((c, e));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = LIVE.load(Ordering::SeqCst);
    let per_conn = (after - before) / N as isize;
    println!("idle connection: {per_conn} bytes of Rust heap (client + server side)");
    assert!(
        per_conn < 16 * 1024,
        "an idle connection keeps {per_conn} bytes: a 16 KB block buffer is held"
    );
    for (c, _) in &conns {
        assert!(!c.is_closed());
    }
    drop((c, e));
}
