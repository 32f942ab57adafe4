//! §8.1 "Syntax" end to end, driven by the `smp_syntax.*` vectors of commands.json, and bad input:
//! garbage/short/undecryptable blocks, bad authorization sizes, commands from the wrong party. The
//! relay keeps serving the connection and the others.

mod common;

use std::time::Duration;

use common::*;
use hush_proto::error::{CommandError, ErrorType};
use hush_proto::smp::{BrokerMsg, Command};

fn hex_field(v: &serde_json::Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn smp_syntax_vectors_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let server = TestServer::start(test_config(&paths)).await;
    let all = vectors("commands");
    let cases: Vec<&serde_json::Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["name"].as_str().unwrap().starts_with("smp_syntax."))
        .collect();
    assert_eq!(cases.len(), 31, "all smp_syntax vectors");
    let mut c = server.connect().await;
    for v in &cases {
        let name = v["name"].as_str().unwrap();
        assert_eq!(v["inputs"]["smp_version"], 18, "{name}");
        let block = hex_field(&v["inputs"]["block_content_hex"]);
        c.conn.send_block(&block).await.unwrap();
        let got = c.recv_raw().await;
        assert_eq!(got.len(), 1, "{name}");
        let expected = hex_field(&v["expected"]["transmission_hex"]);
        assert_eq!(
            hex::encode(&got[0]),
            hex::encode(&expected),
            "{name}: expected {}",
            v["expected"]["response_ascii"]
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn bad_blocks_and_wrong_parties() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let server = TestServer::start(test_config(&paths)).await;
    let mut other = server.connect().await;
    let q = new_queue(&mut other).await;
    let mut c = server.connect().await;
    let block_err = (vec![], vec![], BrokerMsg::Err(ErrorType::Block));

    // garbage content (count 0 / trailing bytes / truncated item)
    for content in [
        vec![0u8],
        vec![1, 0, 5, 1, 2],
        b"garbage that is no batch".to_vec(),
        vec![2, 0, 1, 7],
    ] {
        c.conn.send_block(&content).await.unwrap();
        assert_eq!(c.recv().await, block_err, "content {content:?}");
    }
    // an undecryptable block: ERR BLOCK, the chain advances, the connection continues
    c.conn
        .writer_mut()
        .send_block_tampered(&[1, 0, 0], |b| b[20] ^= 0xff)
        .await
        .unwrap();
    assert_eq!(c.recv().await, block_err);
    // an unparsable transmission inside a valid batch
    c.send_raw(vec![vec![200, 1, 2]]).await;
    assert_eq!(c.recv().await, block_err);
    // authorization of a bad size: ERR BLOCK with the corrId, empty entity
    let corr = random_corr();
    let mut t = vec![65u8];
    t.extend([7u8; 65]);
    t.push(b'0');
    t.push(corr.len() as u8);
    t.extend(&corr);
    t.push(q.rcv_id.len() as u8);
    t.extend(&q.rcv_id);
    t.extend(b"SUB");
    c.send_raw(vec![t]).await;
    assert_eq!(
        c.recv().await,
        (corr, vec![], BrokerMsg::Err(ErrorType::Block))
    );

    // commands from the wrong party
    let sk = AuthKey::ed25519();
    assert_err(
        &c.cmd(None, &q.rcv_id, send_cmd(b"x", false)).await,
        ErrorType::Auth,
    );
    assert_err(
        &c.cmd(Some(&q.rcv_key), &q.snd_id, Command::Sub).await,
        ErrorType::Auth,
    );
    assert_err(
        &c.cmd(Some(&sk), &q.rcv_id, Command::SKey(sk.public_der()))
            .await,
        ErrorType::Auth,
    );
    assert_err(
        &c.cmd(Some(&q.rcv_key), &q.rcv_id, Command::NSub).await,
        ErrorType::Auth,
    );
    // a broker message from a client
    let corr = random_corr();
    let t = c.transmission(None, &corr, &[], b"PONG");
    c.send_raw(vec![t]).await;
    assert_err(
        &c.response_to(&corr).await,
        ErrorType::Cmd(CommandError::Unknown),
    );

    // the connection still works, and so does the other one
    assert_eq!(c.cmd(None, &[], Command::Ping).await, BrokerMsg::Pong);
    assert_eq!(
        c.cmd(None, &q.snd_id, send_cmd(b"still ok", false)).await,
        BrokerMsg::Ok
    );
    assert_eq!(q.body(&other.event().await.1).1, b"still ok");

    // not even TLS: the relay drops the socket and keeps serving
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    raw.write_all(&[0x55; 600]).await.unwrap();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(10), raw.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(_)) | Ok(Err(_))),
        "socket answered or closed"
    );
    assert_eq!(other.cmd(None, &[], Command::Ping).await, BrokerMsg::Pong);
    server.stop().await;
}
