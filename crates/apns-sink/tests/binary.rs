//! The `apns-sink` binary: starts, writes its certificate, serves the read API.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

#[test]
fn apns_sink_binary_starts_and_serves_the_read_api() {
    let dir = tempfile::tempdir().unwrap();
    let key = push_server::jwt::Es256Key::generate().unwrap();
    std::fs::write(dir.path().join("key.p8"), key.to_pkcs8_pem().unwrap()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_apns-sink"))
        .args([
            "start",
            "--listen",
            "127.0.0.1:0",
            "--read-listen",
            "127.0.0.1:0",
            "--jwt-key",
            "key.p8",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut read_url = None;
    for _ in 0..3 {
        let l = lines.next().unwrap().unwrap();
        if let Some(u) = l.strip_prefix("read API on ") {
            read_url = Some(u.to_string());
        }
    }
    let read_url = read_url.unwrap();
    assert!(dir.path().join("apns-sink.crt").exists());
    let addr = read_url
        .trim_start_matches("http://")
        .trim_end_matches("/received")
        .to_string();
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    child.kill().unwrap();
    let _ = child.wait();
}
