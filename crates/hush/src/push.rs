//! Per-contact notification modes (design §1) and the push device simulator.
//!
//! * `connected`: `hush daemon` keeps the relay connection and notifies at once.
//! * `push` (instant, the iOS design): the profile registers a device with the ntf-server
//!   (`TNEW`, the verification push read back from apns-sink, `TVFY`), creates notifier
//!   credentials for the contact's receive queues at the relay (`NKEY`, through hush-agent) and
//!   hands them to the ntf-server (`SNEW`). The ntf-server subscribes as notifier and turns each
//!   `NMSG` into an APNs push (provider `AT` → the bundled apns-sink).
//! * `periodic`: the device asks for background wake-ups every 20 minutes (`TCRN 20`).
//! * `off`: nothing.
//!
//! `hush device` plays the phone: it reads pushes for its token from apns-sink's read API,
//! decrypts them with the token's DH secret, decrypts each item's `NMSG` metadata with the
//! queue's notifier DH secret, fetches the message with `GET` (checking msgId and timestamp
//! against the push), and hands it to the agent (which re-receives the unacknowledged message
//! on `SUB`, decrypts it with the ratchet, and `ACK`s it) to print "sender: message".

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hush_crypto::{DhSecret, Ed25519Secret, X25519Public, X25519Secret};
use hush_proto::address::ProtocolServer;
use hush_proto::encoding::base64url_decode;
use hush_proto::ntf::{
    DeviceToken, NtfCommand, NtfResponse, PnMessageData, PrivateKeyDer, PublicKeyDer, PushProvider,
    SmpQueueNtf, decode_ntf_transmission, encode_ntf_transmission,
};
use hush_proto::transmission::{Transmission, authorized_bytes};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::profile::{NotifyMode, Profile};
use crate::session::Session;

const NTF_VERSION: u16 = 3;
const WAIT: Duration = Duration::from_secs(10);

/// One NTF connection.
struct NtfClient {
    conn: hush_transport::ClientConnection,
}

impl NtfClient {
    async fn connect(ntf: &str) -> anyhow::Result<NtfClient> {
        let srv =
            ProtocolServer::parse(ntf).map_err(|e| anyhow::anyhow!("bad ntf address: {e}"))?;
        let conn = hush_transport::TransportClient::ntf()?
            .connect_server(
                &crate::session::network(),
                srv.hosts(),
                srv.effective_port(),
                srv.key_hash(),
            )
            .await
            .context("cannot connect to the ntf-server")?;
        Ok(NtfClient { conn })
    }

    /// Sends `command` (encoded) for `entity`, signed with `key`.
    async fn cmd(
        &mut self,
        key: &Ed25519Secret,
        entity: &[u8],
        command: &[u8],
    ) -> anyhow::Result<NtfResponse> {
        let corr = hush_crypto::random_nonce();
        let auth = key
            .sign(&authorized_bytes(
                self.conn.session_id(),
                &corr,
                entity,
                command,
            ))
            .to_vec();
        let t = Transmission {
            authorization: &auth,
            corr_id: &corr,
            entity_id: entity,
            command,
            ..Default::default()
        };
        let mut out = Vec::new();
        encode_ntf_transmission(&mut out, &t, NTF_VERSION)
            .map_err(|e| anyhow::anyhow!("encode: {e:?}"))?;
        self.conn.send(&[out]).await.context("ntf send")?;
        let block = tokio::time::timeout(WAIT, self.conn.recv())
            .await
            .context("ntf-server did not answer")?
            .context("ntf receive")?
            .map_err(|e| anyhow::anyhow!("ntf block: {e:?}"))?;
        let ts = block
            .transmissions()
            .map_err(|e| anyhow::anyhow!("ntf block: {e:?}"))?;
        let first = ts.first().context("empty ntf block")?;
        let r = decode_ntf_transmission(first, NTF_VERSION)
            .map_err(|e| anyhow::anyhow!("ntf response: {e:?}"))?;
        if r.corr_id != corr {
            bail!("ntf response for another command");
        }
        NtfResponse::parse(r.command, NTF_VERSION)
            .map_err(|e| anyhow::anyhow!("ntf response: {e:?}"))
    }
}

fn enc(c: &NtfCommand) -> anyhow::Result<Vec<u8>> {
    c.encode_checked(NTF_VERSION)
        .map_err(|e| anyhow::anyhow!("encode: {e:?}"))
}

/// The simulated phone of a profile (stored in hush.db settings).
pub struct Device {
    pub token_hex: String,
    key: Ed25519Secret,
    dh: X25519Secret,
    pub token_id: Vec<u8>,
    push_secret: Option<DhSecret>,
}

impl Device {
    fn load(p: &Profile) -> anyhow::Result<Option<Device>> {
        let (Some(t), Some(k), Some(d)) = (
            p.setting("device_token")?,
            p.setting("device_key")?,
            p.setting("device_dh")?,
        ) else {
            return Ok(None);
        };
        let key = Ed25519Secret::from_pkcs8_der(&hex::decode(k)?)
            .map_err(|e| anyhow::anyhow!("device key: {e}"))?;
        let dh: [u8; 32] = hex::decode(d)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("device dh key"))?;
        let dh = X25519Secret::from_bytes(dh);
        let token_id = p
            .setting("token_id")?
            .map(hex::decode)
            .transpose()?
            .unwrap_or_default();
        let push_secret = match p.setting("ntf_server_dh")? {
            Some(s) => Some(
                dh.dh(&X25519Public::from_spki_der(&hex::decode(s)?)
                    .map_err(|e| anyhow::anyhow!("server dh key: {e}"))?),
            ),
            None => None,
        };
        Ok(Some(Device {
            token_hex: t,
            key,
            dh,
            token_id,
            push_secret,
        }))
    }

    fn create(p: &Profile) -> anyhow::Result<Device> {
        let key = Ed25519Secret::generate();
        let dh = X25519Secret::generate();
        let token_hex = hex::encode(rand::random::<[u8; 32]>());
        p.set_setting("device_token", &token_hex)?;
        p.set_setting("device_key", &hex::encode(&*key.to_pkcs8_der()))?;
        p.set_setting("device_dh", &hex::encode(*dh.to_bytes()))?;
        Ok(Device {
            token_hex,
            key,
            dh,
            token_id: Vec::new(),
            push_secret: None,
        })
    }

    fn active(&self) -> bool {
        !self.token_id.is_empty() && self.push_secret.is_some()
    }
}

/// A push as the device understands it.
pub enum PushContent {
    Verification(Vec<u8>),
    Messages(Vec<PnMessageData>),
    CheckMessages,
}

fn decode_push(secret: Option<&DhSecret>, payload: &str) -> anyhow::Result<PushContent> {
    let v: serde_json::Value = serde_json::from_str(payload)?;
    let nd = &v["notificationData"];
    if nd["checkMessages"] == true {
        return Ok(PushContent::CheckMessages);
    }
    let secret = secret.context("push before registration")?;
    let nonce: [u8; 24] = base64url_decode(nd["nonce"].as_str().context("no nonce")?)
        .map_err(|e| anyhow::anyhow!("nonce: {e:?}"))?
        .try_into()
        .map_err(|_| anyhow::anyhow!("nonce length"))?;
    let field = |k: &str| -> anyhow::Result<Vec<u8>> {
        let ct = base64url_decode(nd[k].as_str().context("missing field")?)
            .map_err(|e| anyhow::anyhow!("{k}: {e:?}"))?;
        hush_crypto::cb_decrypt(secret, &nonce, &ct).map_err(|e| anyhow::anyhow!("{k}: {e}"))
    };
    if nd["verification"].is_string() {
        return Ok(PushContent::Verification(field("verification")?));
    }
    let plain = field("message")?;
    let items = hush_proto::ntf::parse_pn_messages(std::str::from_utf8(&plain)?)
        .map_err(|e| anyhow::anyhow!("push items: {e}"))?;
    Ok(PushContent::Messages(items))
}

/// A push received by apns-sink (fields used here).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SinkPush {
    pub seq: u64,
    pub token: String,
    pub payload: String,
    pub received_at_ms: u64,
}

/// `GET <read api>?after=<seq>&wait_ms=<ms>` (plain HTTP/1.1 on loopback).
async fn sink_read(url: &str, after: u64, wait_ms: u64) -> anyhow::Result<Vec<SinkPush>> {
    let rest = url
        .strip_prefix("http://")
        .context("apns-sink read API must be http://")?;
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, "received"));
    let addr: SocketAddr = hostport.parse().context("apns-sink read address")?;
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .context("cannot reach the apns-sink read API")?;
    let req = format!(
        "GET /{path}?after={after}&wait_ms={wait_ms} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(
        Duration::from_millis(wait_ms + 5000),
        s.take(16 * 1024 * 1024).read_to_end(&mut buf),
    )
    .await
    .context("apns-sink read API timeout")??;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").context("bad HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "apns-sink read API: {}",
            head.lines().next().unwrap_or_default()
        );
    }
    Ok(body
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

fn settings(p: &Profile) -> anyhow::Result<(String, String)> {
    let ntf = p
        .setting("ntf")?
        .context("no ntf-server for this profile (hush init with a running `hush up`, or --ntf)")?;
    let sink = p
        .setting("sink_read")?
        .context("no apns-sink read API for this profile (hush init --sink-read)")?;
    Ok((ntf, sink))
}

/// Split mode: the device registers its token with the push-server (TLS, pinned certificate)
/// and gets an opaque push handle; the ntf-server only ever sees the handle.
async fn push_handle(p: &Profile, token_hex: &str) -> anyhow::Result<String> {
    let addr = p
        .setting("push_server")?
        .context("no push-server address for split mode (hush init with a running `hush up`)")?;
    let fp = p
        .setting("push_fingerprint")?
        .and_then(|f| push_api::parse_fingerprint(&f))
        .context("no push-server fingerprint for split mode")?;
    let sa: SocketAddr = addr.parse().context("push-server address")?;
    let gw = push_api::RemoteGateway::new(push_api::RemoteConfig {
        host: sa.ip().to_string(),
        port: sa.port(),
        fingerprint: fp,
        credential: None,
        timeout: WAIT,
    })
    .map_err(|e| anyhow::anyhow!("push-server: {e}"))?;
    let h = gw
        .register(push_api::DeviceAddress::Apns {
            env: push_api::ApnsEnv::Test,
            token: token_hex.to_string(),
        })
        .await
        .map_err(|e| anyhow::anyhow!("push-server registration: {e}"))?;
    Ok(h.as_str().to_string())
}

/// `TNEW` with the `PH` provider: `TNEW T` ‖ `PH` ‖ shortString(handle) ‖ the rest as for APNs.
fn tnew_with_handle(apns_form: &[u8], token_len: usize, handle: &str) -> anyhow::Result<Vec<u8>> {
    let skip = b"TNEW TAT".len() + 1 + token_len;
    let rest = apns_form.get(skip..).context("TNEW encoding")?;
    let len = u8::try_from(handle.len()).map_err(|_| anyhow::anyhow!("push handle too long"))?;
    let mut c = b"TNEW T".to_vec();
    c.extend_from_slice(push_api::HANDLE_PROVIDER_CODE);
    c.push(len);
    c.extend_from_slice(handle.as_bytes());
    c.extend_from_slice(rest);
    Ok(c)
}

/// Registers the device (once): TNEW, verification push from the sink, TVFY. With `split`,
/// the token is first exchanged for a push handle at the push-server.
pub async fn ensure_device(p: &Profile, split: bool) -> anyhow::Result<Device> {
    if let Some(d) = Device::load(p)?
        && d.active()
    {
        return Ok(d);
    }
    let (ntf, sink) = settings(p)?;
    let mut d = Device::create(p)?;
    let mut c = NtfClient::connect(&ntf).await?;
    let tnew = NtfCommand::Tnew {
        token: DeviceToken {
            provider: PushProvider::ApnsTest,
            token: d.token_hex.as_bytes().to_vec(),
        },
        verify_key: PublicKeyDer::auth_key(d.key.public().to_spki_der())
            .map_err(|e| anyhow::anyhow!("{e:?}"))?,
        dh_key: PublicKeyDer::dh_key(d.dh.public().to_spki_der())
            .map_err(|e| anyhow::anyhow!("{e:?}"))?,
    };
    let mut command = enc(&tnew)?;
    if split {
        let handle = push_handle(p, &d.token_hex).await?;
        command = tnew_with_handle(&command, d.token_hex.len(), &handle)?;
        p.set_setting("device_split", "1")?;
    }
    let r = c.cmd(&d.key, b"", &command).await?;
    let NtfResponse::TknId {
        token_id,
        server_dh_key,
    } = r
    else {
        bail!("TNEW: unexpected answer {r:?}");
    };
    let srv = X25519Public::from_spki_der(server_dh_key.as_bytes())
        .map_err(|e| anyhow::anyhow!("server dh key: {e}"))?;
    d.push_secret = Some(d.dh.dh(&srv));
    d.token_id = token_id;
    // the verification code arrives by push
    let deadline = Instant::now() + WAIT;
    let mut after = 0;
    let code = 'wait: loop {
        if Instant::now() > deadline {
            bail!("no verification push arrived at the apns-sink");
        }
        for r in sink_read(&sink, after, 1000).await? {
            after = after.max(r.seq);
            if r.token != d.token_hex {
                continue;
            }
            if let Ok(PushContent::Verification(code)) =
                decode_push(d.push_secret.as_ref(), &r.payload)
            {
                break 'wait code;
            }
        }
    };
    let r = c
        .cmd(&d.key, &d.token_id, &enc(&NtfCommand::Tvfy { code })?)
        .await?;
    if r != NtfResponse::Ok {
        bail!("TVFY: {r:?}");
    }
    p.set_setting("token_id", &hex::encode(&d.token_id))?;
    p.set_setting("ntf_server_dh", &hex::encode(server_dh_key.as_bytes()))?;
    p.set_setting("sink_seq", &after.to_string())?;
    let _ = c.conn.close().await;
    Ok(d)
}

fn notifier_pkcs8(k: &hush_client::AuthKey) -> anyhow::Result<PrivateKeyDer> {
    let der = match k {
        hush_client::AuthKey::Ed25519(k) => k.to_pkcs8_der().to_vec(),
        hush_client::AuthKey::Ed448(k) => k
            .to_pkcs8_der()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .to_vec(),
        hush_client::AuthKey::X25519(k) => k.to_pkcs8_der(),
    };
    PrivateKeyDer::new(der).map_err(|e| anyhow::anyhow!("{e:?}"))
}

/// Sets a contact's notification mode (registering for pushes when needed).
pub async fn set_mode(
    s: &mut Session,
    name: &str,
    mode: NotifyMode,
    split: bool,
) -> anyhow::Result<()> {
    let c = s
        .profile
        .contact_by_name(name)?
        .with_context(|| format!("no contact {name}"))?;
    match mode {
        NotifyMode::Push => {
            let d = ensure_device(&s.profile, split).await?;
            let (ntf, _) = settings(&s.profile)?;
            let creds = s.agent.enable_notifications(c.conn_id).await?;
            let mut nc = NtfClient::connect(&ntf).await?;
            for (server, cr) in creds {
                let snew = NtfCommand::Snew {
                    token_id: d.token_id.clone(),
                    queue: SmpQueueNtf {
                        server,
                        notifier_id: cr.notifier_id.clone(),
                    },
                    notifier_key: notifier_pkcs8(&cr.notifier_key)?,
                };
                let r = nc.cmd(&d.key, b"", &enc(&snew)?).await?;
                if !matches!(r, NtfResponse::SubId { .. }) {
                    bail!("SNEW: {r:?}");
                }
            }
            let _ = nc.conn.close().await;
        }
        NotifyMode::Periodic => {
            let d = ensure_device(&s.profile, split).await?;
            let (ntf, _) = settings(&s.profile)?;
            let mut nc = NtfClient::connect(&ntf).await?;
            let r = nc
                .cmd(
                    &d.key,
                    &d.token_id,
                    &enc(&NtfCommand::Tcrn { minutes: 20 })?,
                )
                .await?;
            if r != NtfResponse::Ok {
                bail!("TCRN: {r:?}");
            }
            let _ = nc.conn.close().await;
        }
        NotifyMode::Connected | NotifyMode::Off => {
            if c.notify == NotifyMode::Push {
                s.agent.disable_notifications(c.conn_id).await?;
            }
        }
    }
    s.profile.set_notify(name, mode)?;
    s.out.emit(
        "notify_mode",
        &format!("{name}: notifications {}", mode.as_str()),
        json!({ "name": name, "mode": mode.as_str() }),
    );
    Ok(())
}

/// What `hush device` did with one message push.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub push_received_at_ms: u64,
    pub fetched_at_ms: u64,
    /// A visible (content-free) alert instead of a silent background push: the ntf-server's
    /// budget of silent pushes was used up.
    pub alert: bool,
}

fn is_alert(payload: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(payload)
        .map(|v| v["aps"]["alert"].is_string())
        .unwrap_or(false)
}

/// Handles the items of one message push: NMSG meta, GET (checked against the push), then the
/// agent receives, decrypts and ACKs. Returns how many messages were fetched with GET.
async fn fetch_items(s: &mut Session, items: &[PnMessageData]) -> anyhow::Result<usize> {
    let queues = {
        let mut st = hush_agent::store::Store::open(s.profile.agent_db())?;
        st.tx(|tx| tx.all_rcv_queues())?
    };
    let mut fetched = 0;
    for item in items {
        let Some(q) = queues.iter().find(|q| {
            q.server == item.queue.server
                && q.notifier
                    .as_ref()
                    .is_some_and(|n| n.notifier_id == item.queue.notifier_id)
        }) else {
            continue;
        };
        let Some(n) = &q.notifier else { continue };
        let meta = hush_client::decrypt_nmsg(&n.rcv_ntf_dh_secret, &item.nonce, &item.enc_meta)
            .map_err(|e| anyhow::anyhow!("NMSG meta: {e}"))?;
        let (client, _ev) = hush_client::TlsConnector::new()?
            .with_network(crate::session::network())
            .connect_to(&q.server, &hush_client::ClientConfig::default())
            .await?;
        let got = client.get(&q.rcv_id, &q.rcv_key).await;
        client.close().await;
        match got? {
            Some(raw) => {
                let m = raw.decrypt(&q.rcv_dh_secret)?;
                if m.msg_id != meta.msg_id {
                    tracing::debug!("queue head is not the pushed message (already fetched)");
                }
                fetched += 1;
            }
            None => tracing::debug!("pushed message already fetched"),
        }
    }
    Ok(fetched)
}

/// Opens the agent, lets it receive (SUB re-delivers what GET fetched), decrypt, print and ACK
/// until `want` messages were shown or the queues are quiet. Returns how many were shown and
/// when (Unix ms) the `want`-th was shown.
async fn receive(s: &mut Session, want: usize) -> anyhow::Result<(usize, Option<u64>)> {
    let before = s.shown;
    let mut shown_at = None;
    if crate::daemon::running_pid(&s.profile.dir).is_some() {
        // the always-connected receiver keeps `connected` contacts' queues
        let conns = crate::daemon::left_to_device(s)?;
        s.agent.subscribe(&conns).await?;
    } else {
        s.agent.subscribe_all().await?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let quiet = Duration::from_millis(if want == 0 { 1500 } else { 300 });
    loop {
        let got = s.shown - before;
        if got >= want && want > 0 && shown_at.is_none() {
            shown_at = Some(u64::try_from(crate::profile::now_ms()).unwrap_or(0));
        }
        let wait = if got >= want {
            quiet
        } else {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        };
        match tokio::time::timeout(wait, s.events.recv()).await {
            Ok(Some(ev)) => {
                if let Err(e) = s.handle(ev).await {
                    s.out.error(&format!("{e:#}"));
                }
            }
            Ok(None) | Err(_) => return Ok((s.shown - before, shown_at)),
        }
    }
}

/// `hush device`: handles pushes until `count` message pushes were handled or `run_for`
/// passed. Returns the handled pushes.
pub async fn device(
    profile: Profile,
    relay: ProtocolServer,
    out: crate::session::Output,
    count: Option<usize>,
    run_for: Option<Duration>,
) -> anyhow::Result<Vec<Fetched>> {
    let d = Device::load(&profile)?
        .filter(Device::active)
        .context("no registered device (use `hush notify <contact> push` first)")?;
    let (_, sink) = settings(&profile)?;
    let mut after: u64 = profile
        .setting("sink_seq")?
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    out.emit(
        "device_ready",
        "device: waiting for pushes",
        json!({ "token": d.token_hex }),
    );
    let started = Instant::now();
    let mut handled = Vec::new();
    let mut session: Option<Session> = None;
    let mut profile = Some(profile);
    loop {
        if count.is_some_and(|c| handled.len() >= c)
            || run_for.is_some_and(|r| started.elapsed() >= r)
        {
            break;
        }
        let pushes = sink_read(&sink, after, 2000).await?;
        for r in pushes {
            after = after.max(r.seq);
            if r.token != d.token_hex {
                continue;
            }
            let content = match decode_push(d.push_secret.as_ref(), &r.payload) {
                Ok(c) => c,
                Err(e) => {
                    out.error(&format!("undecodable push: {e:#}"));
                    continue;
                }
            };
            if session.is_none() {
                let p = profile.take().context("profile")?;
                session = Some(Session::open(p, relay.clone(), None, out).await?);
            }
            let s = session.as_mut().context("session")?;
            match content {
                PushContent::Verification(_) => {}
                PushContent::CheckMessages => {
                    out.emit(
                        "push",
                        "push: check messages",
                        json!({ "kind": "periodic" }),
                    );
                    receive(s, 0).await?;
                }
                PushContent::Messages(items) => {
                    let alert = is_alert(&r.payload);
                    out.emit(
                        "push",
                        &format!(
                            "push: {} notification(s){}",
                            items.len(),
                            if alert { " (visible alert)" } else { "" }
                        ),
                        json!({ "kind": "message", "items": items.len(), "seq": r.seq, "alert": alert }),
                    );
                    let n = fetch_items(s, &items).await?;
                    let (_, shown_at) = receive(s, n.max(1)).await?;
                    handled.push(Fetched {
                        push_received_at_ms: r.received_at_ms,
                        fetched_at_ms: shown_at.unwrap_or_else(|| {
                            u64::try_from(crate::profile::now_ms()).unwrap_or(0)
                        }),
                        alert,
                    });
                }
            }
            s.profile.set_setting("sink_seq", &after.to_string())?;
            // close the connections between pushes, as a sleeping phone would
            if let Some(s) = session.take() {
                let Session {
                    agent, profile: p, ..
                } = s;
                agent.close().await;
                profile = Some(p);
            }
        }
    }
    if let Some(s) = session.take() {
        s.close().await;
    }
    Ok(handled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tnew_with_handle_replaces_only_the_token() {
        let d = X25519Secret::generate();
        let k = Ed25519Secret::generate();
        let token = "ab".repeat(32);
        let tnew = NtfCommand::Tnew {
            token: DeviceToken {
                provider: PushProvider::ApnsTest,
                token: token.as_bytes().to_vec(),
            },
            verify_key: PublicKeyDer::auth_key(k.public().to_spki_der()).unwrap(),
            dh_key: PublicKeyDer::dh_key(d.public().to_spki_der()).unwrap(),
        };
        let apns = enc(&tnew).unwrap();
        let c = tnew_with_handle(&apns, token.len(), "HANDLE").unwrap();
        assert!(c.starts_with(b"TNEW TPH\x06HANDLE"));
        let tail = &apns[b"TNEW TAT".len() + 1 + token.len()..];
        assert!(c.ends_with(tail));
        assert_eq!(c.len(), apns.len() - token.len() + 6);
        assert!(tnew_with_handle(&apns[..5], token.len(), "H").is_err());
        assert!(tnew_with_handle(&apns, token.len(), &"x".repeat(300)).is_err());
    }

    #[test]
    fn undecodable_pushes_are_errors() {
        let s = DhSecret::from_bytes([7; 32]);
        for p in [
            "",
            "{}",
            "not json",
            r#"{"notificationData":{"nonce":"AAAA","message":"AAAA"}}"#,
            r#"{"notificationData":{"nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","message":"AAAA"}}"#,
        ] {
            assert!(decode_push(Some(&s), p).is_err(), "{p}");
        }
        assert!(matches!(
            decode_push(None, r#"{"notificationData":{"checkMessages":true}}"#),
            Ok(PushContent::CheckMessages)
        ));
    }

    #[test]
    fn verification_push_round_trip() {
        let s = DhSecret::from_bytes([9; 32]);
        let nonce = [3u8; 24];
        let ct = hush_crypto::cb_encrypt(&s, &nonce, b"code-0123456789", 64).unwrap();
        let b64 = hush_proto::encoding::base64url_encode;
        let payload = format!(
            r#"{{"aps":{{"content-available":1}},"notificationData":{{"nonce":"{}","verification":"{}"}}}}"#,
            b64(&nonce),
            b64(&ct)
        );
        match decode_push(Some(&s), &payload).unwrap() {
            PushContent::Verification(c) => assert_eq!(c, b"code-0123456789"),
            _ => panic!("not a verification push"),
        }
        // another secret cannot open it
        assert!(decode_push(Some(&DhSecret::from_bytes([1; 32])), &payload).is_err());
    }
}
