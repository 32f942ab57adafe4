//! Shared test harness for the relay tests: start a relay (in-process via `server::start`, or the
//! real binary), and a small SMP client over hush-transport that signs commands with hush-crypto.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hush_crypto::{
    DhSecret, Ed448Secret, Ed25519Secret, X25519Public, X25519Secret, cb_authenticate,
};
use hush_proto::encoding::{Large, ShortString};
use hush_proto::error::ErrorType;
use hush_proto::smp::{
    BrokerMsg, Command, MsgFlags, NewNtfCreds, NewQueueReq, PublicKeyDer, QueueIdsKeys,
    QueueLinkData, QueueMode, QueueReqData, SubscriptionMode, check_server_transmission,
};
use hush_proto::transmission::{Transmission, authorized_bytes, encode_transmission};
use hush_transport::{ClientConnection, TransportClient};
use smp_server::ServerPaths;
use smp_server::config::Config;
use smp_server::server::RelayOptions;
use smp_server::testing::{self, TestRelay};

pub const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Servers

/// Creates config + data dirs with certificates and an ini under `dir` (as `smp-server init`).
pub fn init_dirs(dir: &Path) -> ServerPaths {
    testing::init_dirs(dir).unwrap()
}

/// The loaded config, listening on 127.0.0.1:0, no metrics endpoint.
pub fn test_config(paths: &ServerPaths) -> Config {
    testing::loopback_config(paths, 0).unwrap()
}

pub fn fingerprint(paths: &ServerPaths) -> [u8; 32] {
    smp_server::init::check_fingerprint(paths).unwrap()
}

/// An in-process relay.
pub struct TestServer {
    pub addr: SocketAddr,
    pub key_hash: [u8; 32],
    pub config: Config,
    pub control_addr: Option<SocketAddr>,
    relay: TestRelay,
}

impl TestServer {
    pub async fn start(config: Config) -> TestServer {
        Self::start_with(config, RelayOptions::default()).await
    }

    pub async fn start_with(config: Config, options: RelayOptions) -> TestServer {
        let relay = TestRelay::start(config, options).await.unwrap();
        TestServer {
            addr: relay.addr,
            key_hash: relay.fingerprint,
            config: relay.config.clone(),
            control_addr: relay.control_addr,
            relay,
        }
    }

    pub async fn connect(&self) -> TestClient {
        TestClient::connect(self.addr, &self.key_hash).await
    }

    /// Graceful stop; waits for the relay to finish.
    pub async fn stop(mut self) {
        self.relay.stop().await.unwrap();
    }

    /// The running relay's metrics.
    pub fn metrics(&self) -> &smp_server::Metrics {
        &self.relay.metrics
    }
}

/// The real binary, started with `start` on a config dir prepared by [`init_dirs`] (port 0).
/// Killed (SIGKILL) when dropped, so a failing test leaves no server behind.
pub struct BinaryServer {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    pub key_hash: [u8; 32],
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_smp-server"))
}

/// Rewrites the ini so the binary listens on 127.0.0.1:0 without a metrics endpoint.
pub fn ini_for_binary(paths: &ServerPaths, extra: &[(&str, &str, &str)]) {
    let ini = paths.ini_file();
    let text = std::fs::read_to_string(&ini).unwrap();
    let mut out = String::new();
    let mut section = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            section = t.trim_matches(|c| c == '[' || c == ']').to_string();
        }
        let key = t.split('=').next().unwrap_or("").trim();
        let skip = (section == "TRANSPORT" && (key == "port" || key == "bind"))
            || (section == "METRICS" && key == "enable")
            || extra.iter().any(|(s, k, _)| *s == section && *k == key);
        if !skip {
            out.push_str(line);
            out.push('\n');
        }
        if t.starts_with('[') {
            match section.as_str() {
                "TRANSPORT" => out.push_str("port = 0\nbind = 127.0.0.1\n"),
                "METRICS" => out.push_str("enable = off\n"),
                _ => {}
            }
            for (s, k, v) in extra {
                if *s == section {
                    out.push_str(&format!("{k} = {v}\n"));
                }
            }
        }
    }
    std::fs::write(&ini, out).unwrap();
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl BinaryServer {
    pub fn start(paths: &ServerPaths) -> BinaryServer {
        use std::io::BufRead;
        let mut child = std::process::Command::new(binary())
            .arg("--config-dir")
            .arg(&paths.config_dir)
            .arg("--data-dir")
            .arg(&paths.data_dir)
            .arg("start")
            .arg("--log-level")
            .arg("warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("smp-server exited before listening")
                .unwrap();
            if let Some(a) = line.strip_prefix("Listening on ") {
                break a.trim().parse().unwrap();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        BinaryServer {
            child,
            addr,
            key_hash: fingerprint(paths),
        }
    }

    pub fn sigkill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn sigterm(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        // Deliver SIGTERM to our own child with the `kill` command (no libc binding needed).
        std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }

    pub async fn connect(&self) -> TestClient {
        TestClient::connect(self.addr, &self.key_hash).await
    }
}

// ---------------------------------------------------------------------------------------------
// Keys

/// A command-authorization key of any of the three kinds the relay accepts.
#[derive(Clone)]
pub enum AuthKey {
    Ed25519(Ed25519Secret),
    Ed448(std::sync::Arc<Ed448Secret>),
    X25519(X25519Secret),
}

impl AuthKey {
    pub fn ed25519() -> AuthKey {
        AuthKey::Ed25519(Ed25519Secret::generate())
    }
    pub fn ed448() -> AuthKey {
        AuthKey::Ed448(std::sync::Arc::new(Ed448Secret::generate().unwrap()))
    }
    pub fn x25519() -> AuthKey {
        AuthKey::X25519(X25519Secret::generate())
    }

    pub fn public_der(&self) -> PublicKeyDer {
        let der = match self {
            AuthKey::Ed25519(k) => k.public().to_spki_der(),
            AuthKey::Ed448(k) => k.public().unwrap().to_spki_der(),
            AuthKey::X25519(k) => k.public().to_spki_der(),
        };
        PublicKeyDer::auth_key(der).unwrap()
    }

    /// The authorization bytes for `authorized` (signature, or authenticator with the server's
    /// session key and the corrId).
    pub fn authorize(
        &self,
        authorized: &[u8],
        corr_id: &[u8],
        server_key: &X25519Public,
    ) -> Vec<u8> {
        match self {
            AuthKey::Ed25519(k) => k.sign(authorized).to_vec(),
            AuthKey::Ed448(k) => k.sign(authorized).unwrap(),
            AuthKey::X25519(k) => cb_authenticate(server_key, k, corr_id, authorized).to_vec(),
        }
    }
}

pub fn dh_der(k: &X25519Secret) -> PublicKeyDer {
    PublicKeyDer::dh_key(k.public().to_spki_der()).unwrap()
}

pub fn ss(b: &[u8]) -> ShortString {
    ShortString::new(b.to_vec()).unwrap()
}

pub fn random_corr() -> Vec<u8> {
    use rand::RngCore;
    let mut c = vec![0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut c);
    c
}

// ---------------------------------------------------------------------------------------------
// Client

pub type Received = (Vec<u8>, Vec<u8>, BrokerMsg);

/// A minimal SMP client.
pub struct TestClient {
    pub conn: ClientConnection,
    pending: VecDeque<Received>,
}

impl TestClient {
    pub async fn connect(addr: SocketAddr, key_hash: &[u8]) -> TestClient {
        let conn = TransportClient::smp()
            .unwrap()
            .connect_addr(addr, key_hash)
            .await
            .unwrap();
        assert_eq!(conn.version(), 18);
        TestClient {
            conn,
            pending: VecDeque::new(),
        }
    }

    /// Wraps an already established connection (e.g. one made as an SMP proxy).
    pub fn from_conn(conn: ClientConnection) -> TestClient {
        TestClient {
            conn,
            pending: VecDeque::new(),
        }
    }

    pub fn version(&self) -> u16 {
        self.conn.version()
    }

    /// Encodes one transmission (authorized with `key` if given).
    pub fn transmission(
        &self,
        key: Option<&AuthKey>,
        corr: &[u8],
        entity: &[u8],
        command: &[u8],
    ) -> Vec<u8> {
        let auth = match key {
            Some(k) => {
                let authorized = authorized_bytes(self.conn.session_id(), corr, entity, command);
                let server_key = self
                    .conn
                    .server_session_key()
                    .copied()
                    .unwrap_or(X25519Public([9; 32]));
                k.authorize(&authorized, corr, &server_key)
            }
            None => Vec::new(),
        };
        let t = Transmission {
            authorization: &auth,
            // on the wire only below v7
            session_id: self.conn.session_id(),
            corr_id: corr,
            entity_id: entity,
            command,
            ..Default::default()
        };
        let mut out = Vec::new();
        encode_transmission(&mut out, &t, self.version(), true).unwrap();
        out
    }

    /// Sends raw encoded transmissions (batched into blocks).
    pub async fn send_raw(&mut self, ts: Vec<Vec<u8>>) {
        let too_large = self.conn.send(&ts).await.unwrap();
        assert!(too_large.is_empty());
    }

    /// Sends one command.
    pub async fn send(&mut self, key: Option<&AuthKey>, corr: &[u8], entity: &[u8], cmd: &Command) {
        let t = self.transmission(key, corr, entity, &cmd.encode(self.version()));
        self.send_raw(vec![t]).await;
    }

    async fn read_block(&mut self) -> Vec<Received> {
        let block = tokio::time::timeout(WAIT, self.conn.recv())
            .await
            .expect("timed out waiting for the server")
            .expect("connection closed")
            .expect("bad block from server");
        let v = self.version();
        let sid = self.conn.session_id().to_vec();
        block
            .transmissions()
            .unwrap()
            .into_iter()
            .map(|t| {
                let t = hush_proto::transmission::decode_transmission(t, v, true).unwrap();
                assert!(
                    t.authorization.is_empty(),
                    "server transmissions are unauthorized"
                );
                let m = check_server_transmission(&t, v, &sid).unwrap();
                (t.corr_id.to_vec(), t.entity_id.to_vec(), m)
            })
            .collect()
    }

    /// The next transmission from the server, in order.
    pub async fn recv(&mut self) -> Received {
        if let Some(r) = self.pending.pop_front() {
            return r;
        }
        let mut v = self.read_block().await;
        let first = v.remove(0);
        self.pending.extend(v);
        first
    }

    /// The raw next block's transmissions (bytes), for wire-level tests.
    pub async fn recv_raw(&mut self) -> Vec<Vec<u8>> {
        assert!(self.pending.is_empty());
        let block = tokio::time::timeout(WAIT, self.conn.recv())
            .await
            .expect("timed out")
            .expect("closed")
            .expect("bad block");
        block
            .transmissions()
            .unwrap()
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect()
    }

    /// Asserts that nothing arrives for `d`.
    pub async fn expect_nothing(&mut self, d: Duration) {
        assert!(self.pending.is_empty(), "unexpected: {:?}", self.pending);
        if let Ok(r) = tokio::time::timeout(d, self.conn.recv()).await {
            panic!("unexpected transmission: {r:?}");
        }
    }

    /// Sends a command with a fresh corrId and returns the response carrying it (events before it
    /// are kept for [`TestClient::recv`]).
    pub async fn cmd(&mut self, key: Option<&AuthKey>, entity: &[u8], cmd: Command) -> BrokerMsg {
        let corr = random_corr();
        self.send(key, &corr, entity, &cmd).await;
        self.response_to(&corr).await
    }

    /// Sends an unauthorized command with the given corrId and returns its response.
    pub async fn cmd_with_corr(&mut self, corr: &[u8], cmd: Command) -> BrokerMsg {
        self.send(None, corr, &[], &cmd).await;
        self.response_to(corr).await
    }

    pub async fn response_to(&mut self, corr: &[u8]) -> BrokerMsg {
        if let Some(i) = self.pending.iter().position(|r| r.0 == corr) {
            return self.pending.remove(i).unwrap().2;
        }
        loop {
            let batch = self.read_block().await;
            let mut found = None;
            for r in batch {
                if found.is_none() && r.0 == corr {
                    found = Some(r.2);
                } else {
                    self.pending.push_back(r);
                }
            }
            if let Some(m) = found {
                return m;
            }
        }
    }

    /// Like [`TestClient::cmd`] but returns `None` instead of panicking when the connection fails
    /// (for crash tests). Assumes no events arrive on this connection.
    pub async fn try_cmd(
        &mut self,
        key: Option<&AuthKey>,
        entity: &[u8],
        cmd: Command,
    ) -> Option<BrokerMsg> {
        let corr = random_corr();
        let t = self.transmission(key, &corr, entity, &cmd.encode(self.version()));
        self.conn.send(&[t]).await.ok()?;
        let v = self.version();
        let sid = self.conn.session_id().to_vec();
        loop {
            let block = tokio::time::timeout(WAIT, self.conn.recv())
                .await
                .ok()?
                .ok()?
                .ok()?;
            for t in block.transmissions().ok()? {
                let t = hush_proto::transmission::decode_transmission(t, v, true).ok()?;
                let m = check_server_transmission(&t, v, &sid).ok()?;
                if t.corr_id == corr.as_slice() {
                    return Some(m);
                }
            }
        }
    }

    /// The next event (empty corrId).
    pub async fn event(&mut self) -> (Vec<u8>, BrokerMsg) {
        let (corr, e, m) = self.recv().await;
        assert!(corr.is_empty(), "expected an event, got a response {m:?}");
        (e, m)
    }
}

pub fn err(m: &BrokerMsg) -> Option<&ErrorType> {
    match m {
        BrokerMsg::Err(e) => Some(e),
        _ => None,
    }
}

#[track_caller]
pub fn assert_err(m: &BrokerMsg, e: ErrorType) {
    assert_eq!(m, &BrokerMsg::Err(e));
}

// ---------------------------------------------------------------------------------------------
// Queues

/// A queue as its recipient knows it.
#[derive(Clone)]
pub struct Queue {
    pub rcv_key: AuthKey,
    pub dh: X25519Secret,
    pub rcv_id: Vec<u8>,
    pub snd_id: Vec<u8>,
    pub ids: QueueIdsKeys,
    pub ntf: Option<(AuthKey, X25519Secret)>,
}

/// What a `MSG` decrypts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plain {
    Msg {
        ts: i64,
        notification: bool,
        body: Vec<u8>,
    },
    Quota {
        ts: i64,
    },
}

impl Queue {
    pub fn rcv_dh_secret(&self) -> DhSecret {
        let srv = X25519Public::from_spki_der(self.ids.srv_dh_key.as_bytes()).unwrap();
        self.dh.dh(&srv)
    }

    pub fn decrypt(&self, msg: &BrokerMsg) -> (Vec<u8>, Plain) {
        let BrokerMsg::Msg { msg_id, body } = msg else {
            panic!("expected MSG, got {msg:?}");
        };
        assert_eq!(body.len(), 16122, "every MSG body is 16122 bytes");
        let plain =
            hush_crypto::decrypt_rcv_msg_body(&self.rcv_dh_secret(), msg_id.as_bytes(), body)
                .unwrap();
        let p = if let Some(rest) = plain.strip_prefix(b"QUOTA ") {
            Plain::Quota {
                ts: i64::from_be_bytes(rest[..8].try_into().unwrap()),
            }
        } else {
            let ts = i64::from_be_bytes(plain[..8].try_into().unwrap());
            let flag = plain[8];
            assert!(flag == b'T' || flag == b'F');
            assert_eq!(plain[9], b' ');
            Plain::Msg {
                ts,
                notification: flag == b'T',
                body: plain[10..].to_vec(),
            }
        };
        (msg_id.as_bytes().to_vec(), p)
    }

    /// Decrypts and returns (msg id, body), asserting it is a normal message.
    pub fn body(&self, msg: &BrokerMsg) -> (Vec<u8>, Vec<u8>) {
        match self.decrypt(msg) {
            (id, Plain::Msg { body, .. }) => (id, body),
            (_, p) => panic!("expected a message, got {p:?}"),
        }
    }

    pub fn notifier_id(&self) -> Vec<u8> {
        self.ids
            .server_ntf_creds
            .as_ref()
            .unwrap()
            .notifier_id
            .as_bytes()
            .to_vec()
    }
}

/// Options for [`new_queue`].
#[derive(Clone, Copy)]
pub struct NewOpts {
    pub mode: Option<QueueMode>,
    pub subscribe: bool,
    pub ntf: bool,
}

impl Default for NewOpts {
    fn default() -> Self {
        NewOpts {
            mode: Some(QueueMode::Messaging),
            subscribe: true,
            ntf: false,
        }
    }
}

pub fn new_request(
    key: &AuthKey,
    dh: &X25519Secret,
    o: NewOpts,
    ntf: Option<(&AuthKey, &X25519Secret)>,
) -> Command {
    Command::New(NewQueueReq {
        rcv_auth_key: key.public_der(),
        rcv_dh_key: dh_der(dh),
        basic_auth: None,
        sub_mode: if o.subscribe {
            SubscriptionMode::Subscribe
        } else {
            SubscriptionMode::OnlyCreate
        },
        queue_req_data: o.mode.map(|m| match m {
            QueueMode::Messaging => QueueReqData::Messaging(None),
            QueueMode::Contact => QueueReqData::Contact(None),
        }),
        ntf_creds: ntf.map(|(k, d)| NewNtfCreds {
            ntf_auth_key: k.public_der(),
            rcv_ntf_dh_key: dh_der(d),
        }),
    })
}

pub async fn new_queue_with(c: &mut TestClient, key: AuthKey, o: NewOpts) -> Queue {
    let dh = X25519Secret::generate();
    let ntf = o
        .ntf
        .then(|| (AuthKey::ed25519(), X25519Secret::generate()));
    let cmd = new_request(&key, &dh, o, ntf.as_ref().map(|(k, d)| (k, d)));
    let corr = random_corr();
    c.send(Some(&key), &corr, &[], &cmd).await;
    let r = c.response_to(&corr).await;
    let BrokerMsg::Ids(ids) = r else {
        panic!("expected IDS, got {r:?}");
    };
    assert_eq!(ids.queue_mode, o.mode);
    assert_eq!(ids.rcv_id.len(), 24);
    assert_eq!(ids.snd_id.len(), 24);
    assert_eq!(ids.server_ntf_creds.is_some(), o.ntf);
    Queue {
        rcv_key: key,
        dh,
        rcv_id: ids.rcv_id.as_bytes().to_vec(),
        snd_id: ids.snd_id.as_bytes().to_vec(),
        ids,
        ntf,
    }
}

pub async fn new_queue(c: &mut TestClient) -> Queue {
    new_queue_with(c, AuthKey::ed25519(), NewOpts::default()).await
}

pub fn send_cmd(body: &[u8], notification: bool) -> Command {
    Command::Send {
        flags: MsgFlags { notification },
        body: body.to_vec(),
    }
}

pub fn ack(id: &[u8]) -> Command {
    Command::Ack(ss(id))
}

pub fn link_data(fixed: &[u8], user: &[u8]) -> QueueLinkData {
    QueueLinkData {
        fixed: Large::new(fixed.to_vec()).unwrap(),
        user: Large::new(user.to_vec()).unwrap(),
    }
}

/// Path to a shared vector file; missing files fail loudly.
pub fn vectors(name: &str) -> serde_json::Value {
    let path = format!(
        "{}/../../../shared/vectors/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("vector file {path} missing or unreadable: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// Sends `cmds` (key, entity, command) pipelined in chunks of 50 and returns the responses in
/// order.
pub async fn pipelined(
    c: &mut TestClient,
    cmds: Vec<(Option<AuthKey>, Vec<u8>, Command)>,
) -> Vec<BrokerMsg> {
    let mut out = Vec::new();
    for chunk in cmds.chunks(50) {
        let mut corrs = Vec::new();
        let mut ts = Vec::new();
        for (key, entity, cmd) in chunk {
            let corr = random_corr();
            ts.push(c.transmission(key.as_ref(), &corr, entity, &cmd.encode(c.version())));
            corrs.push(corr);
        }
        c.send_raw(ts).await;
        for corr in corrs {
            out.push(c.response_to(&corr).await);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// The test database: `HUSH_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`.
pub fn pg_url() -> String {
    std::env::var("HUSH_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// The relay's ini as an operator writes it for the PostgreSQL store ([`pg_url`], `schema`,
/// `pool_size` connections).
pub fn ini_for_postgres(paths: &ServerPaths, schema: &Schema, pool_size: usize) {
    let (url, pool) = (pg_url(), pool_size.to_string());
    ini_for_binary(
        paths,
        &[
            ("STORE_LOG", "store_queues", "database"),
            ("STORE_LOG", "db_connection", &url),
            ("STORE_LOG", "db_schema", &schema.0),
            ("STORE_LOG", "db_pool_size", &pool),
        ],
    );
}

/// A fresh schema name (`hush_<tag>_<pid>_<nanos>`); the schema is dropped (CASCADE) when the
/// guard goes out of scope.
pub struct Schema(pub String);

impl Schema {
    pub fn new(tag: &str) -> Schema {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Schema(format!("hush_{tag}_{}_{nanos}", std::process::id()))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let name = self.0.clone();
        // Own thread + runtime: Drop runs inside the test's runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (client, conn) =
                    tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await
            })
        })
        .join();
    }
}
