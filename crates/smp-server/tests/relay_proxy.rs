//! SMP proxying (§3.10): forwarded commands from another server's proxy (reference
//! `processForwardedCommand`: `RFWD` → `RRES`, both encryption layers, reversed nonces, only
//! `SEND`/`SKEY`/`LKEY`/`LGET` allowed), and the relay acting as proxy for its own clients
//! (`PRXY` → `PKEY`, `PFWD` → `PRES`) towards a second relay.

mod common;

use common::*;
use hush_crypto::{
    X25519Public, X25519Secret, cb_decrypt, cb_decrypt_no_pad, cb_encrypt, cb_encrypt_no_pad,
    cb_nonce,
};
use hush_proto::error::{CommandError, ErrorType};
use hush_proto::smp::{BrokerMsg, Command, check_server_transmission};
use hush_proto::transmission::{
    Transmission, batch_one, decode_batch, decode_transmission, encode_transmission,
};
use hush_transport::{ClientConfig, Protocol, TransportClient};

const FWD_VERSION: u16 = 17;

struct Proxy {
    c: TestClient,
}

impl Proxy {
    async fn connect(server: &TestServer) -> Proxy {
        let config = ClientConfig {
            proxy_server: true,
            ..ClientConfig::smp()
        };
        let conn = TransportClient::new(Protocol::Smp, config, None)
            .unwrap()
            .connect_addr(server.addr, &server.key_hash)
            .await
            .unwrap();
        assert!(
            !conn.info().encrypted,
            "proxy links have no block encryption"
        );
        Proxy {
            c: TestClient::from_conn(conn),
        }
    }

    /// Forwards one client transmission (signed with `key` for this relay session) and returns
    /// the relay's response transmission (corrId, entity, message).
    async fn forward(
        &mut self,
        key: Option<&AuthKey>,
        entity: &[u8],
        cmd: &Command,
    ) -> (Vec<u8>, Vec<u8>, BrokerMsg) {
        let relay_key = *self.c.conn.server_session_key().unwrap();
        let sess = self.c.conn.session_secret().unwrap().clone();
        let session_id = self.c.conn.session_id().to_vec();
        // client layer (E1)
        let cmd_key = X25519Secret::generate();
        let client_secret = cmd_key.dh(&relay_key);
        let fwd_corr = random_corr();
        let command = cmd.encode(FWD_VERSION);
        let auth = match key {
            Some(k) => {
                let a = hush_proto::transmission::authorized_bytes(
                    &session_id,
                    &fwd_corr,
                    entity,
                    &command,
                );
                k.authorize(&a, &fwd_corr, &relay_key)
            }
            None => Vec::new(),
        };
        let t = Transmission {
            authorization: &auth,
            corr_id: &fwd_corr,
            entity_id: entity,
            command: &command,
            ..Default::default()
        };
        let mut tb = Vec::new();
        encode_transmission(&mut tb, &t, FWD_VERSION, true).unwrap();
        let block = batch_one(&[&tb], 16384).unwrap();
        let e1 = cb_encrypt(&client_secret, &cb_nonce(&fwd_corr), &block, 16226).unwrap();
        // proxy layer (E2)
        let mut payload = vec![fwd_corr.len() as u8];
        payload.extend(&fwd_corr);
        payload.extend(FWD_VERSION.to_be_bytes());
        let k = cmd_key.public().to_spki_der();
        payload.push(k.len() as u8);
        payload.extend(&k);
        payload.extend(&e1);
        let rfwd_corr = random_corr();
        let e2 = cb_encrypt_no_pad(&sess, &cb_nonce(&rfwd_corr), &payload);
        let m = self.c.cmd_with_corr(&rfwd_corr, Command::RFwd(e2)).await;
        let BrokerMsg::RRes(f2) = m else {
            panic!("expected RRES, got {m:?}")
        };
        let mut n = cb_nonce(&rfwd_corr);
        n.reverse();
        let fr = cb_decrypt_no_pad(&sess, &n, &f2).unwrap();
        assert_eq!(fr[0] as usize, fwd_corr.len());
        assert_eq!(&fr[1..25], fwd_corr.as_slice());
        let mut n = cb_nonce(&fwd_corr);
        n.reverse();
        let content = cb_decrypt(&client_secret, &n, &fr[25..]).unwrap();
        assert_eq!(
            fr.len() - 25,
            16226 + 16,
            "padded to 16226 before encryption"
        );
        let items = decode_batch(&content).unwrap();
        assert_eq!(items.len(), 1);
        let t = decode_transmission(items[0], FWD_VERSION, true).unwrap();
        let m = check_server_transmission(&t, FWD_VERSION, &session_id).unwrap();
        (t.corr_id.to_vec(), t.entity_id.to_vec(), m)
    }
}

#[tokio::test]
async fn forwarded_send_skey_and_prohibited_commands() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let server = TestServer::start(test_config(&paths)).await;
    let mut r = server.connect().await;
    let q = new_queue(&mut r).await;
    let mut proxy = Proxy::connect(&server).await;

    // unsigned forwarded SEND to the unsecured queue
    let (_, e, m) = proxy
        .forward(None, &q.snd_id, &send_cmd(b"via proxy", false))
        .await;
    assert_eq!((e, m), (q.snd_id.clone(), BrokerMsg::Ok));
    let (id, body) = q.body(&r.event().await.1);
    assert_eq!(body, b"via proxy");
    assert_eq!(
        r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id)).await,
        BrokerMsg::Ok
    );

    // forwarded SKEY, then a signed (Ed25519 and authenticator) SEND
    let sk = AuthKey::x25519();
    let (_, _, m) = proxy
        .forward(Some(&sk), &q.snd_id, &Command::SKey(sk.public_der()))
        .await;
    assert_eq!(m, BrokerMsg::Ok);
    let (_, _, m) = proxy
        .forward(Some(&sk), &q.snd_id, &send_cmd(b"signed", true))
        .await;
    assert_eq!(m, BrokerMsg::Ok);
    assert_eq!(q.body(&r.event().await.1).1, b"signed");
    let (_, _, m) = proxy
        .forward(None, &q.snd_id, &send_cmd(b"unsigned", false))
        .await;
    assert_eq!(m, BrokerMsg::Err(ErrorType::Auth));

    // recipient commands are not allowed inside RFWD
    let (_, _, m) = proxy
        .forward(Some(&q.rcv_key), &q.rcv_id, &Command::Sub)
        .await;
    assert_eq!(m, BrokerMsg::Err(ErrorType::Cmd(CommandError::Prohibited)));

    // garbage RFWD → ERR CRYPTO; the connection goes on
    let m = proxy.c.cmd(None, &[], Command::RFwd(vec![7; 100])).await;
    assert_err(&m, ErrorType::Crypto);
    assert_eq!(proxy.c.cmd(None, &[], Command::Ping).await, BrokerMsg::Pong);
    let _ = X25519Public([0; 32]);
    server.stop().await;
}

/// Sends `cmd` to relay B through relay A acting as SMP proxy (PRXY → PKEY, PFWD → PRES), as
/// a client does for private message routing. Returns the relay's response.
async fn via_proxy(
    c: &mut TestClient,
    b: &TestServer,
    key: Option<&AuthKey>,
    entity: &[u8],
    cmd: &Command,
) -> BrokerMsg {
    let server = hush_proto::address::ProtocolServer::smp(
        vec!["127.0.0.1".parse().unwrap()],
        Some(b.addr.port()),
        b.key_hash.to_vec(),
    )
    .unwrap();
    let m = c
        .cmd(
            None,
            &[],
            Command::Prxy {
                server,
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
        panic!("expected PKEY, got {m:?}")
    };
    assert_eq!(version_range.max(), 17, "capped at the proxied version");
    let chain: Vec<Vec<u8>> = cert_chain
        .as_slice()
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect();
    assert_eq!(
        hush_crypto::fingerprint(&chain[1]),
        b.key_hash,
        "identity cert of B"
    );
    let relay_key =
        hush_crypto::verify_signed_x25519_key(&chain[0], signed_key.as_bytes()).unwrap();
    let v = version_range.max();
    // the client's transmission for B's session
    let fwd_corr = random_corr();
    let command = cmd.encode(v);
    let sid = session_id.as_bytes();
    let auth = match key {
        Some(k) => {
            let a = hush_proto::transmission::authorized_bytes(sid, &fwd_corr, entity, &command);
            k.authorize(&a, &fwd_corr, &relay_key)
        }
        None => Vec::new(),
    };
    let t = Transmission {
        authorization: &auth,
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
    let (rc, re, m) = c.recv().await;
    assert_eq!((rc.as_slice(), re.as_slice()), (pfwd_corr.as_slice(), sid));
    let BrokerMsg::PRes(f1) = m else {
        panic!("expected PRES, got {m:?}")
    };
    let mut n = cb_nonce(&pfwd_corr);
    n.reverse();
    let content = cb_decrypt(&secret, &n, &f1).unwrap();
    let items = decode_batch(&content).unwrap();
    assert_eq!(items.len(), 1);
    let t = decode_transmission(items[0], v, true).unwrap();
    assert_eq!(t.corr_id, fwd_corr.as_slice());
    check_server_transmission(&t, v, sid).unwrap()
}

#[tokio::test]
async fn relay_as_proxy_for_its_clients() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let a = TestServer::start(test_config(&init_dirs(dir_a.path()))).await;
    let b = TestServer::start(test_config(&init_dirs(dir_b.path()))).await;
    let mut r = b.connect().await;
    let q = new_queue(&mut r).await;
    let mut c = a.connect().await;
    let m = via_proxy(
        &mut c,
        &b,
        None,
        &q.snd_id,
        &send_cmd(b"private routing", false),
    )
    .await;
    assert_eq!(m, BrokerMsg::Ok);
    assert_eq!(q.body(&r.event().await.1).1, b"private routing");
    // errors from the destination come back inside PRES
    let m = via_proxy(&mut c, &b, None, &[1; 24], &send_cmd(b"x", false)).await;
    assert_eq!(m, BrokerMsg::Err(ErrorType::Auth));
    // an unknown proxy session
    let corr = random_corr();
    c.send(
        None,
        &corr,
        &[9; 32],
        &Command::PFwd {
            version: 17,
            key: dh_der(&X25519Secret::generate()),
            enc_transmission: vec![0; 64],
        },
    )
    .await;
    assert_err(
        &c.response_to(&corr).await,
        ErrorType::Proxy(hush_proto::error::ProxyError::NoSession),
    );
    // an unreachable destination
    let nowhere = hush_proto::address::ProtocolServer::smp(
        vec!["127.0.0.1".parse().unwrap()],
        Some(1),
        b.key_hash.to_vec(),
    )
    .unwrap();
    let m = c
        .cmd(
            None,
            &[],
            Command::Prxy {
                server: nowhere,
                basic_auth: None,
            },
        )
        .await;
    assert!(matches!(m, BrokerMsg::Err(ErrorType::Proxy(_))), "{m:?}");
    a.stop().await;
    b.stop().await;
}
