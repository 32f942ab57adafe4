//! Metrics: reference names in the exposition, and the HTTP endpoint scraped over a real socket.

use std::time::Duration;

use smp_server::metrics::{self, Metrics, ProxyOutcome, SendError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The value of the sample line `name_and_labels <value>` in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn exposition_uses_reference_names() {
    let m = Metrics::new();
    m.queues_created.inc_by(3);
    m.queues_secured.inc();
    m.queue_deleted(true);
    m.queue_deleted(false);
    m.queue_deleted(false);
    m.messages_sent.inc_by(7);
    m.send_error(SendError::Quota);
    m.messages_received.inc_by(5);
    m.messages_expired.inc();
    m.subscription_successes.inc_by(2);
    m.clients_total.set(4);
    m.socket_accepted(5223);
    m.socket_accepted(5223);
    m.socket_closed(5223);
    m.relay_session(true, ProxyOutcome::ErrorConnect);
    m.relay_session(false, ProxyOutcome::Request);
    m.delivery_ack_confirmed_time.observe(2.0);
    let text = m.encode();

    // Counters keep the reference's exact names (no `_total` suffix) and values.
    let expected: &[(&str, f64)] = &[
        ("simplex_smp_queues_created", 3.0),
        ("simplex_smp_queues_secured", 1.0),
        ("simplex_smp_queues_deleted{type=\"all\"}", 3.0),
        ("simplex_smp_queues_deleted{type=\"new\"}", 2.0),
        ("simplex_smp_queues_deleted{type=\"secured\"}", 1.0),
        ("simplex_smp_messages_sent", 7.0),
        ("simplex_smp_messages_sent_errors{type=\"quota\"}", 1.0),
        ("simplex_smp_messages_sent_errors{type=\"auth\"}", 0.0),
        ("simplex_smp_messages_received", 5.0),
        ("simplex_smp_messages_expired", 1.0),
        ("simplex_smp_subscribtion_successes", 2.0),
        ("simplex_smp_subscribtion_errors{type=\"duplicate\"}", 0.0),
        ("simplex_smp_clients_total", 4.0),
        ("simplex_smp_sockets_accepted{port=\"5223\"}", 2.0),
        ("simplex_smp_sockets_closed{port=\"5223\"}", 1.0),
        ("simplex_smp_sockets_active{port=\"5223\"}", 1.0),
        (
            "simplex_smp_relay_sessions_errors{source=\"all\",type=\"connect\"}",
            1.0,
        ),
        (
            "simplex_smp_relay_sessions_errors{source=\"own\",type=\"connect\"}",
            1.0,
        ),
        ("simplex_smp_relay_sessions_requests{source=\"all\"}", 1.0),
        ("simplex_smp_relay_sessions_requests{source=\"own\"}", 0.0),
        ("simplex_smp_messages_ntf_errors{type=\"lost\"}", 0.0),
        ("simplex_smp_subscription_ntf_requests", 0.0),
        ("simplex_smp_delivery_ack_confirmed_time_count", 1.0),
        (
            "simplex_smp_delivery_ack_confirmed_time_bucket{le=\"5.0\"}",
            1.0,
        ),
    ];
    for (series, v) in expected {
        assert_eq!(sample(&text, series), Some(*v), "{series} in\n{text}");
    }
    assert!(!text.contains("simplex_smp_queues_created_total"));
    assert!(text.contains("# TYPE simplex_smp_clients_total gauge\n"));
    assert!(text.contains("# TYPE simplex_smp_queues_created unknown\n"));
    assert!(text.contains("# TYPE simplex_smp_delivery_ack_confirmed_time histogram\n"));
    assert!(text.contains("simplex_smp_info{version=\""), "{text}");
    // Every metric family the reference names in §7.5 is present.
    for family in [
        "simplex_smp_queues_",
        "simplex_smp_subscribtion_",
        "simplex_smp_messages_",
        "simplex_smp_relay_",
        "simplex_smp_delivery_ack_",
        "simplex_smp_sockets_",
        "simplex_smp_clients_total",
        "simplex_smp_info",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(family)),
            "missing family {family}"
        );
    }
}

async fn start() -> (std::net::SocketAddr, Metrics, smp_server::ShutdownTrigger) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let m = Metrics::new();
    let (trigger, shutdown) = smp_server::shutdown_channel();
    tokio::spawn(metrics::serve(listener, m.clone(), shutdown));
    (addr, m, trigger)
}

async fn request(addr: std::net::SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("response timed out")
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn scrape_over_a_real_socket() {
    let (addr, m, trigger) = start().await;
    m.queues_created.inc_by(42);
    m.clients_total.set(9);
    let resp = request(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n",
    )
    .await;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    assert_eq!(
        header("content-type").as_deref(),
        Some(metrics::CONTENT_TYPE)
    );
    assert!(metrics::CONTENT_TYPE.starts_with("application/openmetrics-text; version=1.0.0"));
    let len: usize = header("content-length").unwrap().parse().unwrap();
    assert_eq!(len, body.len());
    assert_eq!(sample(body, "simplex_smp_queues_created"), Some(42.0));
    assert_eq!(sample(body, "simplex_smp_clients_total"), Some(9.0));

    // Values move between scrapes.
    m.queues_created.inc();
    let resp = request(addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
    assert_eq!(sample(&resp, "simplex_smp_queues_created"), Some(43.0));

    // HEAD: headers only.
    let resp = request(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 200 OK"));
    assert!(resp.ends_with("\r\n\r\n"));
    trigger.trigger();
}

#[tokio::test]
async fn bad_requests_get_errors_not_panics() {
    let (addr, _m, trigger) = start().await;
    // (request, answer's start; "" = closed without an answer)
    let cases: &[(&[u8], &str)] = &[
        (b"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404 "),
        (b"GET /metricsx HTTP/1.1\r\n\r\n", "HTTP/1.1 404 "),
        (b"POST /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 405 "),
        (b"GET /metrics\r\n\r\n", "HTTP/1.1 400 "),
        (b"GET /metrics HTTP/2\r\n\r\n", "HTTP/1.1 400 "),
        (b"\xff\xfe /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "),
        (b"GET /metrics HTTP/1.1\r\nHost: x", ""), // EOF before the blank line
    ];
    for (raw, status) in cases {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(raw).await.unwrap();
        s.shutdown().await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        let out = String::from_utf8_lossy(&out);
        assert!(
            if status.is_empty() {
                out.is_empty()
            } else {
                out.starts_with(status)
            },
            "{:?} -> {out}",
            String::from_utf8_lossy(raw)
        );
    }
    // An oversized request head is cut off with 431 (and the server keeps serving).
    let mut big = b"GET /metrics HTTP/1.1\r\nX-Junk: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', metrics::MAX_REQUEST_HEAD * 4));
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(&big).await; // the server may close before we finish writing
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 431 "),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let resp = request(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 200 OK"));
    trigger.trigger();
}

#[tokio::test]
async fn shutdown_stops_the_endpoint() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (trigger, shutdown) = smp_server::shutdown_channel();
    let task = tokio::spawn(metrics::serve(listener, Metrics::new(), shutdown));
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("serve did not stop")
        .unwrap();
}
