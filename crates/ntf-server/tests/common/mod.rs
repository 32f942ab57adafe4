//! Test harness: a real smp-server relay, apns-sink behind an in-process push-server, the
//! ntf-server, an NTF client over real TLS, and a "device" that decrypts pushes and fetches
//! messages with hush-client.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use apns_sink::{Received, SinkConfig, SinkHandle};
use hush_client::{AuthAlgorithm, AuthKey, ClientConfig, NewQueueParams, NotifierCreds, SmpClient};
use hush_crypto::{DhSecret, Ed25519Secret, X25519Public, X25519Secret};
use hush_proto::address::ProtocolServer;
use hush_proto::encoding::base64url_decode;
use hush_proto::ntf::{
    DeviceToken, NtfCommand, NtfResponse, PnMessageData, PrivateKeyDer, PublicKeyDer, PushProvider,
    SmpQueueNtf, decode_ntf_transmission, encode_ntf_transmission,
};
use hush_proto::transmission::{Transmission, authorized_bytes};
use hush_transport::{ClientConnection, TransportClient};
use ntf_server::{Config, NtfServer, Paths, PolicyMode};
use push_server::jwt::{Es256Key, SigFormat};
use push_server::outbox::Outbox;
use push_server::provider::Providers;
use push_server::provider::apns::{ApnsConfig, ApnsProvider};
use push_server::service::{PushService, ServiceConfig};
use push_server::{ApnsEnv, InProcessGateway};
use smp_server::ShutdownTrigger;
use smp_server::server::RelayOptions;
use smp_server::testing::TestRelay;

pub const WAIT: Duration = Duration::from_secs(20);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

// ---------------------------------------------------------------------------------------------
// relay

/// An in-process relay (`smp_server::testing`) and its address.
pub struct Relay {
    pub addr: SocketAddr,
    pub server: ProtocolServer,
    relay: TestRelay,
}

/// `smp-server init` into `smp-config/` + `smp-data/` under `dir` (next to the ntf-server's
/// directories); the config listens on a free loopback port.
pub fn relay_config(dir: &Path) -> smp_server::Config {
    let paths = smp_server::ServerPaths {
        config_dir: dir.join("smp-config"),
        data_dir: dir.join("smp-data"),
    };
    smp_server::testing::init(&paths).unwrap();
    smp_server::testing::loopback_config(&paths, 0).unwrap()
}

impl Relay {
    pub async fn start(config: smp_server::Config) -> Relay {
        Self::start_with_flush(config, Duration::from_millis(50)).await
    }

    /// With the relay's NMSG flush interval (reference: 1.5 s).
    pub async fn start_with_flush(config: smp_server::Config, flush: Duration) -> Relay {
        Self::start_with_delivery(
            config,
            smp_server::server::notify::NtfDelivery::Fixed { interval: flush },
        )
        .await
    }

    /// With the relay's NMSG delivery mode (`[NOTIFICATIONS] delivery`).
    pub async fn start_with_delivery(
        mut config: smp_server::Config,
        delivery: smp_server::server::notify::NtfDelivery,
    ) -> Relay {
        config.notifications.delivery = delivery;
        let options = RelayOptions {
            shutdown_grace: Duration::from_secs(5),
            ..RelayOptions::default()
        };
        let relay = TestRelay::start(config, options).await.unwrap();
        Relay {
            addr: relay.addr,
            server: ProtocolServer::parse(&relay.address()).unwrap(),
            relay,
        }
    }

    /// Stops the relay; the returned config starts it again on the same port with the same data.
    pub async fn stop(mut self) -> smp_server::Config {
        let _ = self.relay.stop().await;
        self.relay.restart_config()
    }

    pub async fn client(&self) -> SmpClient {
        SmpClient::connect(&self.server, ClientConfig::default())
            .await
            .unwrap()
            .0
    }
}

// ---------------------------------------------------------------------------------------------
// push side: apns-sink + in-process push-server

pub struct Push {
    pub sink: SinkHandle,
    pub service: PushService,
    pub gw: Arc<InProcessGateway>,
    _stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

pub async fn push() -> Push {
    push_on(None).await
}

/// [`push`] with the apns-sink served on `sink_rt` (its own threads: the benchmark tells the
/// sink's CPU apart from the ntf-server's and push-server's); `None` = the current runtime.
pub async fn push_on(sink_rt: Option<tokio::runtime::Handle>) -> Push {
    let key = Es256Key::generate().unwrap();
    let mut cfg = SinkConfig::new("127.0.0.1:0".parse().unwrap(), key.public_pem().unwrap());
    cfg.topics = vec!["chat.simplex.app".into()];
    let sink = match sink_rt {
        Some(rt) => rt.spawn(apns_sink::start(cfg)).await.unwrap().unwrap(),
        None => apns_sink::start(cfg).await.unwrap(),
    };
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("sink.crt");
    std::fs::write(&ca_file, &sink.cert_pem).unwrap();
    let apns = ApnsConfig {
        label: "apns_test",
        host: "127.0.0.1".into(),
        port: sink.addr.port(),
        topic: "chat.simplex.app".into(),
        team_id: "5NN7GUYB6T".into(),
        key_id: "KEYID12345".into(),
        key,
        sig_format: SigFormat::Der,
        jwt_refresh: Duration::from_secs(30 * 60),
        allow_short_refresh: false,
        ca_file: Some(ca_file),
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        max_payload: 4096,
    };
    let providers =
        Providers::new().with_apns(ApnsEnv::Test, Arc::new(ApnsProvider::new(apns).unwrap()));
    let outbox = Outbox::open(&dir.path().join("outbox.sqlite"), false).unwrap();
    let service = PushService::new(
        outbox,
        providers,
        push_server::HandleKey::generate(),
        push_server::metrics::Metrics::new(),
        ServiceConfig {
            retry_base: Duration::from_millis(50),
            retry_max: Duration::from_millis(500),
            poll_interval: Duration::from_millis(100),
            ..ServiceConfig::default()
        },
    );
    let (tx, rx) = tokio::sync::watch::channel(false);
    service.spawn_dispatcher(rx);
    let gw = Arc::new(InProcessGateway::new(service.clone(), "ntf1"));
    Push {
        sink,
        service,
        gw,
        _stop: tx,
        _dir: dir,
    }
}

impl Push {
    /// Pushes the sink accepted for `token`.
    pub fn received(&self, token: &str) -> Vec<Received> {
        self.sink.received_for(token)
    }

    /// Waits until at least `n` pushes for `token` arrived; returns them.
    pub async fn wait_pushes(&self, token: &str, n: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let r = self.received(token);
            if r.len() >= n {
                return r;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {n} pushes (got {})",
                r.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ntf-server

pub struct Ntf {
    pub addr: SocketAddr,
    pub fingerprint: [u8; 32],
    pub config: Config,
    pub core: Arc<ntf_server::Core<InProcessGateway>>,
    trigger: Option<ShutdownTrigger>,
    task: Option<tokio::task::JoinHandle<Result<(), ntf_server::RunError>>>,
}

pub fn ntf_config(dir: &Path, store: bool, policy: PolicyMode) -> Config {
    let paths = Paths {
        config_dir: dir.join("ntf-config"),
        data_dir: dir.join("ntf-data"),
    };
    if !paths.ini_file().exists() {
        ntf_server::init::init(&ntf_server::init::InitOptions {
            paths: paths.clone(),
            common_name: "127.0.0.1".into(),
            sign_algorithm: hush_crypto::SignAlgorithm::Ed448,
            port: 443,
            control: None,
            store_log: store,
            force: false,
        })
        .unwrap();
    }
    let (mut c, w) = Config::load(paths).unwrap();
    assert!(w.is_empty(), "{w:?}");
    c.store_enable = store;
    c.ports = vec![0];
    c.bind = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    match policy {
        PolicyMode::Reference => c.policy_reference = true,
        PolicyMode::Budget(b) => {
            c.policy_reference = false;
            c.budget = b;
        }
    }
    c.reconnect_initial = Duration::from_millis(100);
    c.reconnect_max = Duration::from_millis(500);
    c.feedback_interval = Duration::from_millis(100);
    // the test relays listen on 127.0.0.1
    c.relay_destinations = hush_server_common::DestinationPolicy::Loopback;
    c
}

impl Ntf {
    pub async fn start(config: Config, push: &Push) -> Ntf {
        let (trigger, shutdown) = smp_server::shutdown_channel();
        let s: NtfServer<InProcessGateway> =
            ntf_server::start(config.clone(), push.gw.clone(), shutdown)
                .await
                .unwrap();
        let addr = s.addrs[0];
        let mut config = config;
        config.ports = vec![addr.port()];
        let fingerprint = s.fingerprint;
        let core = s.core.clone();
        let task = tokio::spawn(s.wait());
        Ntf {
            addr,
            fingerprint,
            config,
            core,
            trigger: Some(trigger),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) -> Config {
        if let Some(t) = self.trigger.take() {
            t.trigger();
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("ntf-server did not stop")
                .unwrap()
                .unwrap();
        }
        self.config.clone()
    }

    pub async fn client(&self) -> NtfClient {
        NtfClient::connect(self.addr, &self.fingerprint).await
    }
}

// ---------------------------------------------------------------------------------------------
// NTF client

pub struct NtfClient {
    pub conn: ClientConnection,
}

impl NtfClient {
    pub async fn connect(addr: SocketAddr, fp: &[u8; 32]) -> NtfClient {
        let conn = TransportClient::ntf()
            .unwrap()
            .connect_addr(addr, fp)
            .await
            .unwrap();
        assert_eq!(conn.version(), 3);
        NtfClient { conn }
    }

    /// Sends one raw transmission (already encoded) and returns the raw response transmission.
    pub async fn raw(&mut self, t: Vec<u8>) -> Vec<u8> {
        self.conn.send(&[t]).await.unwrap();
        let block = tokio::time::timeout(WAIT, self.conn.recv())
            .await
            .expect("no response")
            .unwrap()
            .unwrap();
        let ts = block.transmissions().unwrap();
        assert_eq!(ts.len(), 1);
        ts[0].to_vec()
    }

    /// Sends `cmd` for `entity`, authorized with any key kind (Ed25519/Ed448 signature or X25519
    /// authenticator with the server's session key); returns (entity, response).
    pub async fn cmd_auth(
        &mut self,
        key: &AuthKey,
        entity: &[u8],
        command: &[u8],
    ) -> (Vec<u8>, NtfResponse) {
        let corr = hush_crypto::random_nonce();
        let authorized = authorized_bytes(self.conn.session_id(), &corr, entity, command);
        let auth = key
            .authorize(self.conn.server_session_key(), &corr, &authorized)
            .unwrap();
        let t = Transmission {
            authorization: &auth,
            corr_id: &corr,
            entity_id: entity,
            command,
            ..Default::default()
        };
        let mut out = Vec::new();
        encode_ntf_transmission(&mut out, &t, 3).unwrap();
        let resp = self.raw(out).await;
        let r = decode_ntf_transmission(&resp, 3).unwrap();
        (
            r.entity_id.to_vec(),
            NtfResponse::parse(r.command, 3).unwrap(),
        )
    }

    /// Sends `cmd` for `entity`, signed with `key`; returns (entity, response).
    pub async fn cmd(
        &mut self,
        key: Option<&Ed25519Secret>,
        entity: &[u8],
        cmd: &NtfCommand,
    ) -> (Vec<u8>, NtfResponse) {
        let command = cmd.encode_checked(3).unwrap();
        let corr = hush_crypto::random_nonce();
        let auth = key
            .map(|k| {
                k.sign(&authorized_bytes(
                    self.conn.session_id(),
                    &corr,
                    entity,
                    &command,
                ))
                .to_vec()
            })
            .unwrap_or_default();
        let t = Transmission {
            authorization: &auth,
            corr_id: &corr,
            entity_id: entity,
            command: &command,
            ..Default::default()
        };
        let mut out = Vec::new();
        encode_ntf_transmission(&mut out, &t, 3).unwrap();
        let resp = self.raw(out).await;
        let r = decode_ntf_transmission(&resp, 3).unwrap();
        assert_eq!(r.corr_id, corr);
        (
            r.entity_id.to_vec(),
            NtfResponse::parse(r.command, 3).unwrap(),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// device

pub enum PushContent {
    Verification(Vec<u8>),
    Messages(Vec<PnMessageData>),
    CheckMessages,
}

/// A device: APNs token (hex), token key, DH key, and after registration the token id and
/// the push secret.
pub struct Device {
    pub token_hex: String,
    pub key: Ed25519Secret,
    pub dh: X25519Secret,
    pub token_id: Vec<u8>,
    pub dh_secret: Option<DhSecret>,
    /// Split mode: the push handle registered instead of the token.
    pub handle: Option<String>,
}

impl Device {
    pub fn new(n: u8) -> Device {
        Device {
            token_hex: hex::encode([n; 32]),
            key: Ed25519Secret::generate(),
            dh: X25519Secret::generate(),
            token_id: Vec::new(),
            dh_secret: None,
            handle: None,
        }
    }

    pub fn device_token(&self) -> DeviceToken {
        DeviceToken {
            provider: PushProvider::ApnsTest,
            token: self.token_hex.as_bytes().to_vec(),
        }
    }

    pub fn tnew(&self) -> NtfCommand {
        NtfCommand::Tnew {
            token: self.device_token(),
            verify_key: PublicKeyDer::auth_key(self.key.public().to_spki_der()).unwrap(),
            dh_key: PublicKeyDer::dh_key(self.dh.public().to_spki_der()).unwrap(),
        }
    }

    /// TNEW bytes (with the `PH` provider when the device uses a push handle).
    pub fn tnew_bytes(&self) -> Vec<u8> {
        let mut b = self.tnew().encode_checked(3).unwrap();
        if let Some(h) = &self.handle {
            let mut c = b"TNEW TPH".to_vec();
            c.push(h.len() as u8);
            c.extend_from_slice(h.as_bytes());
            // skip "TNEW TAT" + shortString token of the APNs form
            let rest = &b[8 + 1 + self.token_hex.len()..];
            c.extend_from_slice(rest);
            b = c;
        }
        b
    }

    /// Decodes a push received by the sink.
    pub fn decode(&self, r: &Received) -> PushContent {
        let v: serde_json::Value = serde_json::from_str(&r.payload).unwrap();
        let nd = &v["notificationData"];
        if nd["checkMessages"] == true {
            return PushContent::CheckMessages;
        }
        let nonce: [u8; 24] = base64url_decode(nd["nonce"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let dh = self.dh_secret.as_ref().expect("no push secret yet");
        if let Some(e) = nd["verification"].as_str() {
            let ct = base64url_decode(e).unwrap();
            return PushContent::Verification(hush_crypto::cb_decrypt(dh, &nonce, &ct).unwrap());
        }
        let ct = base64url_decode(nd["message"].as_str().unwrap()).unwrap();
        let plain = hush_crypto::cb_decrypt(dh, &nonce, &ct).unwrap();
        PushContent::Messages(
            hush_proto::ntf::parse_pn_messages(std::str::from_utf8(&plain).unwrap()).unwrap(),
        )
    }

    /// The push target token the sink sees.
    pub fn sink_token(&self) -> &str {
        &self.token_hex
    }
}

/// TNEW → IDTKN, verification push → TVFY → ACTIVE. Returns the verification code.
pub async fn register(ntf: &mut NtfClient, push: &Push, d: &mut Device) -> Vec<u8> {
    let before = push.received(d.sink_token()).len();
    let (entity, r) = tnew(ntf, d).await;
    assert!(entity.is_empty());
    let NtfResponse::TknId {
        token_id,
        server_dh_key,
    } = r
    else {
        panic!("TNEW: {r:?}")
    };
    d.token_id = token_id;
    let srv = X25519Public::from_spki_der(server_dh_key.as_bytes()).unwrap();
    d.dh_secret = Some(d.dh.dh(&srv));
    let pushes = push.wait_pushes(d.sink_token(), before + 1).await;
    let last = pushes.last().unwrap();
    assert_eq!(last.push_type.as_deref(), Some("background"));
    assert_eq!(last.priority, Some(5));
    let PushContent::Verification(code) = d.decode(last) else {
        panic!("expected a verification push")
    };
    assert_eq!(code.len(), 32);
    let (_, r) = ntf
        .cmd(
            Some(&d.key),
            &d.token_id,
            &NtfCommand::Tvfy { code: code.clone() },
        )
        .await;
    assert_eq!(r, NtfResponse::Ok);
    let (_, r) = ntf.cmd(Some(&d.key), &d.token_id, &NtfCommand::Tchk).await;
    assert_eq!(r, NtfResponse::Tkn(hush_proto::ntf::TokenStatus::Active));
    code
}

pub async fn tnew(ntf: &mut NtfClient, d: &Device) -> (Vec<u8>, NtfResponse) {
    let command = d.tnew_bytes();
    let corr = hush_crypto::random_nonce();
    let auth = d
        .key
        .sign(&authorized_bytes(
            ntf.conn.session_id(),
            &corr,
            b"",
            &command,
        ))
        .to_vec();
    let t = Transmission {
        authorization: &auth,
        corr_id: &corr,
        entity_id: b"",
        command: &command,
        ..Default::default()
    };
    let mut out = Vec::new();
    encode_ntf_transmission(&mut out, &t, 3).unwrap();
    let resp = ntf.raw(out).await;
    let r = decode_ntf_transmission(&resp, 3).unwrap();
    (
        r.entity_id.to_vec(),
        NtfResponse::parse(r.command, 3).unwrap(),
    )
}

/// A receive queue with notifier credentials (created without subscribing, so the device can
/// GET from the same connection).
pub struct Queue {
    pub q: hush_client::NewQueue,
    pub ntf: NotifierCreds,
    pub server: ProtocolServer,
}

impl Queue {
    pub async fn new(smp: &SmpClient, server: &ProtocolServer) -> Queue {
        let q = smp
            .create_queue(NewQueueParams {
                subscribe: false,
                ..NewQueueParams::default()
            })
            .await
            .unwrap();
        let ntf = smp
            .enable_notifications(&q.rcv_id, &q.rcv_key, AuthAlgorithm::Ed25519)
            .await
            .unwrap();
        Queue {
            q,
            ntf,
            server: server.clone(),
        }
    }

    /// Notifier credentials in `NEW` (v17).
    pub async fn new_with_creds(smp: &SmpClient, server: &ProtocolServer) -> Queue {
        let mut q = smp
            .create_queue(NewQueueParams {
                subscribe: false,
                notifier: Some(AuthAlgorithm::Ed25519),
                ..NewQueueParams::default()
            })
            .await
            .unwrap();
        let ntf = q.notifier.take().expect("no notifier creds in IDS");
        Queue {
            q,
            ntf,
            server: server.clone(),
        }
    }

    pub fn queue_ntf(&self) -> SmpQueueNtf {
        SmpQueueNtf {
            server: self.server.clone(),
            notifier_id: self.ntf.notifier_id.clone(),
        }
    }

    pub fn snew(&self, token_id: &[u8]) -> NtfCommand {
        NtfCommand::Snew {
            token_id: token_id.to_vec(),
            queue: self.queue_ntf(),
            notifier_key: notifier_pkcs8(&self.ntf.notifier_key),
        }
    }
}

pub fn notifier_pkcs8(k: &AuthKey) -> PrivateKeyDer {
    let der = match k {
        AuthKey::Ed25519(k) => k.to_pkcs8_der().to_vec(),
        AuthKey::Ed448(k) => k.to_pkcs8_der().unwrap().to_vec(),
        AuthKey::X25519(k) => k.to_pkcs8_der(),
    };
    PrivateKeyDer::new(der).unwrap()
}

/// SNEW → IDSUB, then waits until SCHK says ACTIVE.
pub async fn subscribe(ntf: &mut NtfClient, d: &Device, q: &Queue) -> Vec<u8> {
    let (_, r) = ntf.cmd(Some(&d.key), b"", &q.snew(&d.token_id)).await;
    let NtfResponse::SubId { sub_id } = r else {
        panic!("SNEW: {r:?}")
    };
    wait_sub(ntf, d, &sub_id, hush_proto::ntf::SubStatus::Active).await;
    sub_id
}

pub async fn wait_sub(
    ntf: &mut NtfClient,
    d: &Device,
    sub_id: &[u8],
    want: hush_proto::ntf::SubStatus,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, r) = ntf.cmd(Some(&d.key), sub_id, &NtfCommand::Schk).await;
        if r == NtfResponse::Sub(want.clone()) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscription not {want:?}: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends a message with the notification flag; returns nothing (the relay answers OK).
pub async fn send(smp: &SmpClient, q: &Queue, body: &[u8]) {
    smp.send(&q.q.snd_id, None, true, body).await.unwrap();
}

/// The device handles a message push: checks the newest item names the queue, decrypts its
/// meta, GETs the message and compares msgId and timestamp, then ACKs. Returns the body.
pub async fn fetch_and_check(smp: &SmpClient, q: &Queue, item: &PnMessageData) -> Vec<u8> {
    assert_eq!(item.queue, q.queue_ntf());
    let meta =
        hush_client::decrypt_nmsg(&q.ntf.rcv_ntf_dh_secret, &item.nonce, &item.enc_meta).unwrap();
    let raw = smp
        .get(&q.q.rcv_id, &q.q.rcv_key)
        .await
        .unwrap()
        .expect("queue empty");
    let m = raw.decrypt(&q.q.rcv_dh_secret).unwrap();
    assert_eq!(
        m.msg_id, meta.msg_id,
        "msgId from the push = msgId of the MSG"
    );
    let hush_client::RcvMsgBody::Message { ts, body, flags } = m.body else {
        panic!("quota marker")
    };
    assert_eq!(
        ts, meta.ts,
        "timestamp from the push = timestamp of the MSG"
    );
    assert!(flags.notification);
    smp.ack(&q.q.rcv_id, &q.q.rcv_key, &m.msg_id).await.unwrap();
    body
}

/// The message items of the newest message push for the device.
pub fn last_message_items(d: &Device, r: &[Received]) -> Vec<PnMessageData> {
    for p in r.iter().rev() {
        if let PushContent::Messages(items) = d.decode(p) {
            return items;
        }
    }
    panic!("no message push")
}

pub async fn wait_message_push(
    push: &Push,
    d: &Device,
    n_before: usize,
) -> (Received, Vec<PnMessageData>) {
    let r = push.wait_pushes(d.sink_token(), n_before + 1).await;
    let last = r.last().unwrap().clone();
    match d.decode(&last) {
        PushContent::Messages(items) => (last, items),
        _ => panic!("expected a message push"),
    }
}
