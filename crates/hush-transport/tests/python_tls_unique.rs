//! Cross-check of tls-unique with an independent TLS client: Python's `ssl` module
//! (`SSLSocket.get_channel_binding('tls-unique')`) against our server's `peer_finished()`.
//! python3 is part of the machine profile; if it is missing this test fails.

use std::process::Stdio;

use hush_crypto::{SignAlgorithm, generate_ca, generate_online_cert};
use hush_transport::ServerIdentity;
use hush_transport::tls::{self, TlsServer};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

const SCRIPT: &str = r#"
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["smp/1"])
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
t = ctx.wrap_socket(s)
print(t.get_channel_binding("tls-unique").hex())
print(t.selected_alpn_protocol())
print(t.version(), t.cipher()[0])
sys.stdout.flush()
t.close()
"#;

#[tokio::test]
async fn tls_unique_matches_python_ssl() {
    for alg in [SignAlgorithm::Ed25519, SignAlgorithm::Ed448] {
        let ca = generate_ca(alg, "CA").unwrap();
        let leaf = generate_online_cert(&ca, alg, "leaf").unwrap();
        let id = ServerIdentity::new(leaf, ca.cert_der.clone()).unwrap();
        let server = TlsServer::new(&id, tls::SMP_SERVER_ALPN).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let py = std::process::Command::new("python3")
            .arg("-c")
            .arg(SCRIPT)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 must be installed for this cross-check");
        let (tcp, _) = listener.accept().await.unwrap();
        let mut stream = server.accept(tcp).await.unwrap();
        let ours = tls::tls_unique(stream.ssl(), false);
        let alpn = tls::alpn(stream.ssl());
        let out = tokio::task::spawn_blocking(move || py.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 3, "{stdout}");
        assert_eq!(lines[0], hex::encode(&ours), "tls-unique ({alg:?})");
        assert_eq!(ours.len(), 32);
        assert_eq!(lines[1], "smp/1");
        assert_eq!(alpn.as_deref(), Some(&b"smp/1"[..]));
        assert_eq!(lines[2], "TLSv1.3 TLS_CHACHA20_POLY1305_SHA256");
    }
}
