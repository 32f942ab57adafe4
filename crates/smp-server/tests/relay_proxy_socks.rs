//! The relay as SMP proxy (`PRXY`/`PFWD`) reaching the destination relay through a SOCKS5
//! proxy (`[PROXY] socks_proxy`, Tor): the destination's address has a name that does not
//! resolve and an `.onion` host, which only the test proxy maps to the destination on
//! 127.0.0.1 — the test fails if the proxy is bypassed. `host_mode = onion` picks the onion
//! host; with `socks_mode = onion` a destination with only a public name is connected directly
//! (and fails here, as the name does not resolve).
//!
//! Also: `RFWD` whose forwarded block decodes to no transmission is answered `RRES` holding an
//! encrypted `ERR BLOCK` with empty corrId and entity (reference `tDecodeServer` →
//! `tError "" PEBlock`); several transmissions get a plain `ERR BLOCK`.

mod common;

use common::*;
use hush_crypto::{
    X25519Secret, cb_decrypt, cb_decrypt_no_pad, cb_encrypt, cb_encrypt_no_pad, cb_nonce,
};
use hush_proto::address::{ProtocolServer, TransportHost};
use hush_proto::error::ErrorType;
use hush_proto::smp::{BrokerMsg, Command, check_server_transmission};
use hush_proto::transmission::{
    Transmission, batch_one, decode_batch, decode_transmission, encode_transmission,
};
use hush_transport::socks::testing::MappingProxy;
use hush_transport::{
    ClientConfig, HostMode, NetworkConfig, Protocol, SocksProxy, TransportClient,
};

const ONION: &str = "hushrelayproxyaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.onion";

/// PRXY → PKEY, then `cmd` for `entity` in PFWD → PRES; returns the destination's answer.
async fn via_proxy(
    c: &mut TestClient,
    destination: ProtocolServer,
    entity: &[u8],
    cmd: &Command,
) -> Result<BrokerMsg, BrokerMsg> {
    let m = c
        .cmd(
            None,
            &[],
            Command::Prxy {
                server: destination,
                basic_auth: None,
            },
        )
        .await;
    let BrokerMsg::PKey {
        session_id,
        version_range,
        cert_chain,
        signed_key,
    } = m
    else {
        return Err(m);
    };
    let leaf = cert_chain.as_slice()[0].as_bytes().to_vec();
    let relay_key = hush_crypto::verify_signed_x25519_key(&leaf, signed_key.as_bytes()).unwrap();
    let v = version_range.max();
    let fwd_corr = random_corr();
    let command = cmd.encode(v);
    let t = Transmission {
        authorization: &[],
        corr_id: &fwd_corr,
        entity_id: entity,
        command: &command,
        ..Default::default()
    };
    let mut tb = Vec::new();
    encode_transmission(&mut tb, &t, v, true).unwrap();
    let block = batch_one(&[&tb], 16384).unwrap();
    let cmd_key = X25519Secret::generate();
    let secret = cmd_key.dh(&relay_key);
    let pfwd_corr = random_corr();
    let e1 = cb_encrypt(&secret, &cb_nonce(&pfwd_corr), &block, 16226).unwrap();
    let sid = session_id.as_bytes();
    c.send(
        None,
        &pfwd_corr,
        sid,
        &Command::PFwd {
            version: v,
            key: dh_der(&cmd_key),
            enc_transmission: e1,
        },
    )
    .await;
    let m = c.response_to(&pfwd_corr).await;
    let BrokerMsg::PRes(f1) = m else {
        panic!("expected PRES, got {m:?}")
    };
    let mut n = cb_nonce(&pfwd_corr);
    n.reverse();
    let content = cb_decrypt(&secret, &n, &f1).unwrap();
    let items = decode_batch(&content).unwrap();
    let t = decode_transmission(items[0], v, true).unwrap();
    Ok(check_server_transmission(&t, v, sid).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_proxy_reaches_the_destination_through_socks() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let b = TestServer::start(test_config(&init_dirs(dir_b.path()))).await;
    let socks = MappingProxy::start(
        [
            (ONION.to_string(), b.addr),
            ("relay.invalid".to_string(), b.addr),
        ]
        .into(),
    )
    .await
    .unwrap();
    let mut config_a = test_config(&init_dirs(dir_a.path()));
    // [PROXY] socks_proxy = 127.0.0.1:<port>, host_mode = onion (socks_mode onion: default)
    config_a.proxy.network = NetworkConfig {
        socks_proxy: Some(SocksProxy::new(socks.addr)),
        host_mode: HostMode::Onion,
        ..NetworkConfig::default()
    };
    let a = TestServer::start(config_a).await;
    let mut r = b.connect().await;
    let q = new_queue(&mut r).await;
    let mut c = a.connect().await;

    let both = ProtocolServer::smp(
        vec![
            TransportHost::Domain("relay.invalid".into()),
            TransportHost::Onion(ONION.into()),
        ],
        Some(b.addr.port()),
        b.key_hash.to_vec(),
    )
    .unwrap();
    let m = via_proxy(&mut c, both, &q.snd_id, &send_cmd(b"via tor", false))
        .await
        .unwrap();
    assert_eq!(m, BrokerMsg::Ok);
    assert_eq!(q.body(&r.event().await.1).1, b"via tor");
    let reqs = socks.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(
        (reqs[0].host.as_str(), reqs[0].port),
        (ONION, b.addr.port())
    );

    // socks_mode = onion: a destination with a public name only goes direct (not resolvable
    // here: a proxy error), the SOCKS proxy sees nothing
    let public = ProtocolServer::smp(
        vec![TransportHost::Domain("relay.invalid".into())],
        Some(b.addr.port()),
        b.key_hash.to_vec(),
    )
    .unwrap();
    let e = via_proxy(&mut c, public, &q.snd_id, &send_cmd(b"x", false))
        .await
        .unwrap_err();
    assert!(matches!(e, BrokerMsg::Err(ErrorType::Proxy(_))), "{e:?}");
    assert_eq!(socks.requests().len(), 1);
    a.stop().await;
    b.stop().await;
}

/// `RFWD` from a proxy connection whose client layer holds `block`; returns the answer:
/// `Ok((corrId, entity, message))` decrypted from `RRES`, `Err(message)` otherwise.
async fn rfwd(
    p: &mut TestClient,
    block: &[u8],
) -> Result<(Vec<u8>, Vec<u8>, BrokerMsg), BrokerMsg> {
    const V: u16 = 17;
    let relay_key = *p.conn.server_session_key().unwrap();
    let sess = p.conn.session_secret().unwrap().clone();
    let session_id = p.conn.session_id().to_vec();
    let cmd_key = X25519Secret::generate();
    let client_secret = cmd_key.dh(&relay_key);
    let fwd_corr = random_corr();
    let e1 = cb_encrypt(&client_secret, &cb_nonce(&fwd_corr), block, 16226).unwrap();
    let mut payload = vec![fwd_corr.len() as u8];
    payload.extend(&fwd_corr);
    payload.extend(V.to_be_bytes());
    let k = cmd_key.public().to_spki_der();
    payload.push(k.len() as u8);
    payload.extend(&k);
    payload.extend(&e1);
    let rfwd_corr = random_corr();
    let e2 = cb_encrypt_no_pad(&sess, &cb_nonce(&rfwd_corr), &payload);
    let m = p.cmd_with_corr(&rfwd_corr, Command::RFwd(e2)).await;
    let BrokerMsg::RRes(f2) = m else {
        return Err(m);
    };
    let mut n = cb_nonce(&rfwd_corr);
    n.reverse();
    let fr = cb_decrypt_no_pad(&sess, &n, &f2).unwrap();
    assert_eq!(&fr[1..25], fwd_corr.as_slice());
    let mut n = cb_nonce(&fwd_corr);
    n.reverse();
    let content = cb_decrypt(&client_secret, &n, &fr[25..]).unwrap();
    let items = decode_batch(&content).unwrap();
    assert_eq!(items.len(), 1);
    let t = decode_transmission(items[0], V, true).unwrap();
    let m = check_server_transmission(&t, V, &session_id).unwrap();
    Ok((t.corr_id.to_vec(), t.entity_id.to_vec(), m))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfwd_without_a_transmission_is_answered_inside_rres() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(test_config(&init_dirs(dir.path()))).await;
    let mut r = server.connect().await;
    let q = new_queue(&mut r).await;
    let conn = TransportClient::new(
        Protocol::Smp,
        ClientConfig {
            proxy_server: true,
            ..ClientConfig::smp()
        },
        None,
    )
    .unwrap()
    .connect_addr(server.addr, &server.key_hash)
    .await
    .unwrap();
    let mut p = TestClient::from_conn(conn);

    // blocks that decode to no transmission: a count with nothing after it, a count of 0,
    // a transmission length beyond the block
    for block in [vec![3u8], vec![0u8], vec![1, 0x40, 0]] {
        let (corr, entity, m) = rfwd(&mut p, &block).await.expect("RRES");
        assert_eq!((corr.as_slice(), entity.as_slice()), (&[][..], &[][..]));
        assert_err(&m, ErrorType::Block);
    }
    // two transmissions: refused with a plain ERR BLOCK (reference `throwE BLOCK`)
    let one = {
        let command = send_cmd(b"x", false).encode(17);
        let corr = random_corr();
        let t = Transmission {
            authorization: &[],
            corr_id: &corr,
            entity_id: &q.snd_id,
            command: &command,
            ..Default::default()
        };
        let mut tb = Vec::new();
        encode_transmission(&mut tb, &t, 17, true).unwrap();
        tb
    };
    let two = batch_one(&[&one, &one], 16384).unwrap();
    let m = rfwd(&mut p, &two).await.expect_err("plain ERR");
    assert_err(&m, ErrorType::Block);
    // one transmission still works on the same connection
    let single = batch_one(&[&one], 16384).unwrap();
    let (_, e, m) = rfwd(&mut p, &single).await.unwrap();
    assert_eq!((e, m), (q.snd_id.clone(), BrokerMsg::Ok));
    server.stop().await;
}
