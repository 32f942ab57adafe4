//! One running profile: the agent, hush.db, and the chat logic on top of agent messages —
//! contacts, contact requests, history, groups (members connected to each other over their own
//! queues), and the output (text lines or JSON lines).
//!
//! Messages and connection info speak the SimpleX Chat protocol (`hush-chat`), so a SimpleX
//! Chat app user sees a named contact and plain text: our connection info is `x.info` with our
//! profile (`x.contact` when we use someone's contact address), texts are `x.msg.new`, and
//! hush's own group bodies ([`Body`]) travel as `x.hush.<t>` events, which the app ignores.
//! Received bodies are decoded by [`decode_body`] (single messages, batches, compressed
//! batches); `x.msg.update` / `x.msg.del` edit the history, `x.info` is a profile update, and
//! other events are ignored (logged at debug, event name only). Old hush clients (conn info
//! [`ConnInfo`], bodies `{"t":…}`) still work: what does not decode as chat is read as the
//! legacy JSON, and such peers are answered in it. A body that is neither is shown as text.
//!
//! Delivery receipts: a received message that asks for one (`x.msg.new`) is acknowledged with
//! a receipt; our own direct messages go `pending` → `sent` (the relay took it) →
//! `delivered` (the peer's receipt), shown in `chat` and kept in the history.
//!
//! Groups: the creator invites contacts (`ginv`); a contact that joins (`gjoin`) is introduced
//! to every member who joined before (`gintro`); that member creates a one-time invitation and
//! returns it to the creator (`glink`), who forwards it to the new member (`gfwd`), who joins
//! it. From then on every group message (`gmsg`) goes from each member directly to every other
//! member, each over its own pair of queues.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context, bail};
use hush_agent::{Agent, AgentConfig, AgentEvent, AgentEvents, ConnStatus};
use hush_chat::{
    ChatMessage, ChatMsgEvent, ChatVersionRange, HUSH_CHAT_VRANGE, JsonObject, conn_info_body,
    message_body, parse_chat_messages,
};
use hush_proto::address::{ConnectionRequestUri, ProtocolServer};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::notify::Notifier;
use crate::profile::{HistoryMeta, NotifyMode, PeerChat, Profile};

/// The profile field (ignored by the app) that carries a hush group id in the `x.info` of a
/// member-to-member connection.
pub const HUSH_GID: &str = "hushGid";
/// Prefix of the events that carry hush's own [`Body`]s (the app ignores unknown events).
pub const HUSH_EVENT_PREFIX: &str = "x.hush.";

/// What a hush client sends in a message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Body {
    Msg {
        text: String,
    },
    Ginv {
        gid: String,
        name: String,
    },
    Gjoin {
        gid: String,
    },
    Gintro {
        gid: String,
        member: String,
    },
    Glink {
        gid: String,
        member: String,
        link: String,
    },
    Gfwd {
        gid: String,
        from: String,
        link: String,
    },
    Gmsg {
        gid: String,
        text: String,
    },
}

/// What a hush client sends when connecting.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct ConnInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
}

impl ConnInfo {
    fn parse(b: &[u8]) -> ConnInfo {
        serde_json::from_slice(b).unwrap_or_else(|_| ConnInfo {
            name: String::from_utf8_lossy(b).chars().take(32).collect(),
            gid: None,
        })
    }
}

/// What a peer's connection info (`Confirmation`, `Connected`, `ContactRequest`) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The display name it asks to be shown under.
    pub name: String,
    /// A hush group id (member-to-member connections).
    pub gid: Option<String>,
    /// The peer's chat version range (chat conn info only).
    pub vrange: Option<ChatVersionRange>,
    /// An old hush client's `{"name":…}`.
    pub legacy: bool,
}

impl PeerInfo {
    /// `x.info` or `x.contact` (old apps send `x.info` as a contact request too); else the
    /// legacy hush `{"name":…}`; else the first 32 characters of the bytes as a name.
    pub fn parse(b: &[u8]) -> PeerInfo {
        for r in parse_chat_messages(b) {
            match r {
                Ok(m) => {
                    if let Some(p) = m.profile() {
                        return PeerInfo {
                            name: p.display_name.clone(),
                            gid: p
                                .other
                                .get(HUSH_GID)
                                .and_then(|v| v.as_str())
                                .map(str::to_string),
                            vrange: Some(m.chat_vrange),
                            legacy: false,
                        };
                    }
                    tracing::debug!(event = m.event.name(), "chat: conn info without a profile");
                }
                Err(e) => tracing::debug!("chat: conn info is not a chat message: {e}"),
            }
        }
        let legacy = serde_json::from_slice::<ConnInfo>(b).is_ok();
        let i = ConnInfo::parse(b);
        PeerInfo {
            name: i.name,
            gid: i.gid,
            vrange: None,
            legacy,
        }
    }

    fn peer_chat(&self) -> PeerChat {
        PeerChat {
            vrange: self.vrange.map(|v| (v.min(), v.max())),
            legacy: self.legacy,
        }
    }
}

/// One thing a received body says, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A text (`x.msg.new`, any content type: its text), or a legacy / plain-text message.
    Text {
        text: String,
        /// The chat `msgId` (base64), when the sender gave one.
        shared_id: Option<String>,
    },
    /// `x.msg.update`: message `shared_id` now reads `text`.
    Edit { shared_id: String, text: String },
    /// `x.msg.del`.
    Delete { shared_id: String },
    /// `x.info`: the peer's new profile.
    Profile { name: String },
    /// A hush group body (`x.hush.*`, or legacy JSON).
    Hush(Body),
    /// An event hush does not handle (groups of the app, files, calls, reactions, …).
    Ignored { event: String },
    /// Nothing readable (not chat, not legacy JSON, not UTF-8).
    Undecodable { error: String },
}

/// A received body, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub items: Vec<Item>,
    /// Some message asks for a delivery receipt.
    pub receipt: bool,
    /// The sender's chat version range (from its last chat message).
    pub vrange: Option<ChatVersionRange>,
    /// The body was an old hush client's `{"t":…}` JSON.
    pub legacy: bool,
}

/// Decodes a received message body: chat messages (one, a `[` batch, an `X` compressed batch,
/// an `=` binary batch), else the legacy hush [`Body`], else UTF-8 text.
pub fn decode_body(body: &[u8]) -> Decoded {
    let mut d = Decoded {
        items: Vec::new(),
        receipt: false,
        vrange: None,
        legacy: false,
    };
    let mut chat_ok = false;
    let mut first_err = None;
    for r in parse_chat_messages(body) {
        let m = match r {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!("chat: undecodable message: {e}");
                first_err.get_or_insert_with(|| e.to_string());
                continue;
            }
        };
        chat_ok = true;
        d.receipt |= m.event.has_delivery_receipt();
        d.vrange = Some(m.chat_vrange);
        let shared_id = m.msg_id.as_ref().map(|i| i.to_text());
        d.items.push(match m.event {
            ChatMsgEvent::MsgNew(c) => Item::Text {
                text: c.content.text().to_string(),
                shared_id,
            },
            ChatMsgEvent::MsgUpdate {
                msg_id, content, ..
            } => Item::Edit {
                shared_id: msg_id.to_text(),
                text: content.text().to_string(),
            },
            ChatMsgEvent::MsgDel { msg_id, .. } => Item::Delete {
                shared_id: msg_id.to_text(),
            },
            ChatMsgEvent::Info(p) => Item::Profile {
                name: p.display_name,
            },
            ChatMsgEvent::Unknown { event, params } if event.starts_with(HUSH_EVENT_PREFIX) => {
                match serde_json::from_value::<Body>(serde_json::Value::Object(params)) {
                    Ok(b) if hush_event(&b) == event => Item::Hush(b),
                    _ => {
                        tracing::debug!(event, "chat: malformed hush event ignored");
                        Item::Ignored { event }
                    }
                }
            }
            other => {
                tracing::debug!(event = other.name(), "chat: event ignored");
                Item::Ignored {
                    event: other.name().to_string(),
                }
            }
        });
    }
    if chat_ok {
        return d;
    }
    if let Ok(b) = serde_json::from_slice::<Body>(body) {
        d.legacy = true;
        d.receipt = matches!(b, Body::Msg { .. });
        d.items.push(match b {
            Body::Msg { text } => Item::Text {
                text,
                shared_id: None,
            },
            b => Item::Hush(b),
        });
        return d;
    }
    // plain text from another client; binary (a broken compressed batch) is not shown
    d.items.push(match std::str::from_utf8(body) {
        Ok(t) if !t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => Item::Text {
            text: t.to_string(),
            shared_id: None,
        },
        _ => Item::Undecodable {
            error: first_err.unwrap_or_else(|| "not UTF-8".into()),
        },
    });
    d
}

/// The event name a hush [`Body`] travels under.
fn hush_event(b: &Body) -> String {
    let t = match b {
        Body::Msg { .. } => "msg",
        Body::Ginv { .. } => "ginv",
        Body::Gjoin { .. } => "gjoin",
        Body::Gintro { .. } => "gintro",
        Body::Glink { .. } => "glink",
        Body::Gfwd { .. } => "gfwd",
        Body::Gmsg { .. } => "gmsg",
    };
    format!("{HUSH_EVENT_PREFIX}{t}")
}

/// A hush [`Body`] as a chat message (`x.hush.<t>`, params = the body's JSON); `Msg` is a
/// plain `x.msg.new`.
pub fn body_chat_message(b: &Body) -> ChatMessage {
    if let Body::Msg { text } = b {
        return ChatMessage::text(text.clone());
    }
    let params: JsonObject = match serde_json::to_value(b) {
        Ok(serde_json::Value::Object(o)) => o,
        _ => JsonObject::new(),
    };
    ChatMessage::new(ChatMsgEvent::Unknown {
        event: hush_event(b),
        params,
    })
}

/// Where output goes.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
    /// Prepended to text lines (the demo runs several users in one process).
    pub prefix: &'static str,
}

impl Output {
    /// One line: `text` in text mode, `value` (with `"event": kind`) in JSON mode.
    pub fn emit(&self, kind: &str, text: &str, mut value: serde_json::Value) {
        let mut out = std::io::stdout().lock();
        if self.json {
            if let Some(o) = value.as_object_mut() {
                o.insert("event".into(), kind.into());
            }
            let _ = writeln!(out, "{value}");
        } else {
            let _ = writeln!(out, "{}{text}", self.prefix);
        }
        let _ = out.flush();
    }

    pub fn error(&self, text: &str) {
        if self.json {
            self.emit("error", text, json!({ "error": text }));
        } else {
            eprintln!("{}error: {text}", self.prefix);
        }
    }
}

/// A message as shown and notified.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub from: String,
    pub group: Option<String>,
    pub text: String,
    pub notify: NotifyMode,
}

/// Callback for every incoming chat message.
pub type IncomingHook = Box<dyn FnMut(&Incoming) + Send>;

pub struct Session {
    pub agent: Agent,
    pub events: AgentEvents,
    pub profile: Profile,
    pub out: Output,
    pub notifier: Option<Notifier>,
    /// Sent-but-not-yet-accepted message ids (conn, msg id).
    unsent: HashMap<(i64, i64), String>,
    /// Relays currently connected.
    pub relays_up: HashMap<String, bool>,
    /// Round trip of the last reachability check (`status`).
    relay_rtt_ms: Option<f64>,
    /// Chat messages shown so far.
    pub shown: usize,
    /// Called for every incoming chat message (the demo measures latency with it).
    pub on_incoming: Option<IncomingHook>,
}

/// Relay of a profile: `--relay`, else the profile's, else the local stack's.
pub fn relay_of(profile: &Profile, over: Option<&str>) -> anyhow::Result<ProtocolServer> {
    let text = match over {
        Some(r) => r.to_string(),
        None => profile
            .setting("relay")?
            .context("the profile has no relay (hush init --relay smp://…)")?,
    };
    ProtocolServer::parse(&text).map_err(|e| anyhow::anyhow!("bad relay address {text:?}: {e}"))
}

/// How this process reaches servers (`--socks-proxy`); direct when never set.
static NETWORK: std::sync::OnceLock<hush_transport::NetworkConfig> = std::sync::OnceLock::new();

/// Sets the process's network configuration (once, at start; later calls are ignored).
pub fn set_network(n: hush_transport::NetworkConfig) {
    let _ = NETWORK.set(n);
}

/// The process's network configuration (direct by default).
pub fn network() -> hush_transport::NetworkConfig {
    NETWORK.get().cloned().unwrap_or_default()
}

impl Session {
    /// Opens the profile's agent with `pool` settings.
    pub async fn open(
        profile: Profile,
        relay: ProtocolServer,
        pool: Option<hush_client::PoolConfig>,
        out: Output,
    ) -> anyhow::Result<Session> {
        let mut cfg = AgentConfig::new(relay);
        if let Some(p) = pool {
            cfg.pool = p;
        }
        cfg.pool.network = network();
        cfg.retry_interval = Duration::from_millis(500);
        let (agent, events) = Agent::open(profile.agent_db(), cfg)
            .await
            .context("cannot open the agent database")?;
        Ok(Session {
            agent,
            events,
            profile,
            out,
            notifier: None,
            unsent: HashMap::new(),
            relays_up: HashMap::new(),
            shown: 0,
            relay_rtt_ms: None,
            on_incoming: None,
        })
    }

    fn my_profile(&self, gid: Option<&str>) -> anyhow::Result<hush_chat::Profile> {
        let mut p = hush_chat::Profile::named(self.profile.name()?);
        if let Some(g) = gid {
            p.other.insert(HUSH_GID.into(), g.into());
        }
        Ok(p)
    }

    /// Our connection info: `x.info` with our profile (no compression: no PQ in our ratchet).
    fn my_info(&self, gid: Option<&str>) -> anyhow::Result<Vec<u8>> {
        Ok(conn_info_body(
            &ChatMessage::info(self.my_profile(gid)?),
            false,
        )?)
    }

    /// Sends `msg` on `conn`, or the legacy JSON of `legacy` to an old hush peer.
    fn send_chat(&mut self, conn: i64, msg: &ChatMessage, legacy: &Body) -> anyhow::Result<i64> {
        let old = self
            .profile
            .peer_chat(conn)?
            .map(|p| p.legacy)
            .unwrap_or(false);
        let bytes = if old {
            serde_json::to_vec(legacy)?
        } else {
            message_body(msg.encode(), false)?
        };
        let id = self.agent.send(conn, &bytes)?;
        self.unsent.insert((conn, id), String::new());
        Ok(id)
    }

    fn send_body(&mut self, conn: i64, body: &Body) -> anyhow::Result<i64> {
        self.send_chat(conn, &body_chat_message(body), body)
    }

    /// The chat version of the connection with a peer (reference `peerConnChatVersion`); 1
    /// until the peer said otherwise. Batches of several messages need ≥ 9.
    pub fn peer_conn_version(&self, conn: i64) -> anyhow::Result<u16> {
        let peer = self
            .profile
            .peer_chat(conn)?
            .and_then(|p| p.vrange)
            .and_then(|(a, b)| ChatVersionRange::new(a, b))
            .unwrap_or(ChatVersionRange::INITIAL);
        Ok(HUSH_CHAT_VRANGE.peer_conn_version(&peer))
    }

    // ------------------------------------------------------------------ commands

    /// The user data in our short links: the SimpleX Chat app's `ContactShortLinkData`
    /// (`{"profile": …, "business": false}`), which the app shows before connecting.
    fn link_data(&self) -> anyhow::Result<Vec<u8>> {
        let profile =
            ChatMessage::info(self.my_profile(None)?).to_json()["params"]["profile"].clone();
        Ok(serde_json::to_vec(
            &json!({ "profile": profile, "business": false }),
        )?)
    }

    /// A one-time invitation: the short link (`https://<relay>/i#…`) and the full link it
    /// stands for (either works; the full one alone on a relay without short links).
    pub async fn invite(&mut self) -> anyhow::Result<String> {
        let info = self.my_info(None)?;
        let (conn, link, full) = match self
            .agent
            .create_invitation_with_short_link(&info, &self.link_data()?)
            .await
        {
            Ok((conn, l)) => (conn, l.short, Some(l.full)),
            Err(hush_agent::AgentError::Unsupported(_)) => {
                let (conn, link) = self.agent.create_invitation(&info).await?;
                (conn, link, None)
            }
            Err(e) => return Err(e.into()),
        };
        self.profile.add_contact(conn, None, "invited")?;
        self.out.emit(
            "invitation",
            &format!("invitation: {link}"),
            json!({ "link": link, "full_link": full, "conn": conn }),
        );
        if let Some(f) = &full
            && !self.out.json
        {
            self.out
                .emit("invitation_full", &format!("full link: {f}"), json!({}));
        }
        Ok(link)
    }

    pub async fn connect(&mut self, link: &str) -> anyhow::Result<i64> {
        let link = link.trim();
        // A contact address gets x.contact (a request with our profile), and our confirmation
        // once the owner accepts gets x.info, as the app does; a one-time invitation x.info.
        let info = self.my_info(None)?;
        let is_contact = matches!(
            ConnectionRequestUri::parse(link),
            Ok(ConnectionRequestUri::Contact { .. })
        ) || matches!(
            hush_proto::address::ConnShortLink::parse(link),
            Ok(hush_proto::address::ConnShortLink::Contact { .. })
        );
        let conn = if is_contact {
            let req = conn_info_body(&ChatMessage::contact_request(self.my_profile(None)?), false)?;
            self.agent.join_with_request(link, &req, &info).await?
        } else {
            self.agent.join(link, &info).await?
        };
        self.profile.add_contact(conn, None, "joining")?;
        self.out.emit(
            "connecting",
            "connecting (the contact appears once the other side is online)",
            json!({ "conn": conn }),
        );
        Ok(conn)
    }

    /// This profile's contact address (created once): the short link (`https://<relay>/a#…`)
    /// and the full link it stands for.
    pub async fn address(&mut self) -> anyhow::Result<String> {
        if let Some(a) = self.profile.setting("address")? {
            let full = self.profile.setting("address_full")?;
            self.emit_address(&a, full.as_deref());
            return Ok(a);
        }
        let (conn, link, full) = match self
            .agent
            .create_contact_address_with_short_link(&self.link_data()?)
            .await
        {
            Ok((conn, l)) => (conn, l.short, Some(l.full)),
            Err(hush_agent::AgentError::Unsupported(_)) => {
                let (conn, link) = self.agent.create_contact_address().await?;
                (conn, link, None)
            }
            Err(e) => return Err(e.into()),
        };
        self.profile.set_setting("address", &link)?;
        if let Some(f) = &full {
            self.profile.set_setting("address_full", f)?;
        }
        self.profile
            .set_setting("address_conn", &conn.to_string())?;
        self.emit_address(&link, full.as_deref());
        Ok(link)
    }

    fn emit_address(&self, link: &str, full: Option<&str>) {
        self.out.emit(
            "address",
            &format!("address: {link}"),
            json!({ "link": link, "full_link": full }),
        );
        if let Some(f) = full
            && !self.out.json
        {
            self.out
                .emit("address_full", &format!("full link: {f}"), json!({}));
        }
    }

    pub async fn accept(&mut self, name: &str) -> anyhow::Result<()> {
        let req = self
            .profile
            .requests()?
            .into_iter()
            .find(|r| r.name == name || r.id.to_string() == name)
            .with_context(|| format!("no contact request from {name}"))?;
        let info = self.my_info(None)?;
        let conn = self.agent.accept_contact_request(req.id, &info).await?;
        let cname = self.profile.free_name(&req.name)?;
        self.profile.add_contact(conn, Some(&cname), "joining")?;
        self.profile.delete_request(req.id)?;
        self.out.emit(
            "accepted",
            &format!("accepted {cname}"),
            json!({ "name": cname }),
        );
        Ok(())
    }

    fn connected_contact(&self, name: &str) -> anyhow::Result<i64> {
        let c = self
            .profile
            .contact_by_name(name)?
            .with_context(|| format!("no contact {name}"))?;
        if c.status != "connected" {
            bail!("{name} is not connected yet ({})", c.status);
        }
        Ok(c.conn_id)
    }

    pub fn send_text(&mut self, name: &str, text: &str) -> anyhow::Result<()> {
        let conn = self.connected_contact(name)?;
        let msg = ChatMessage::text(text);
        let shared = msg.msg_id.as_ref().map(|i| i.to_text());
        let id = self.send_chat(
            conn,
            &msg,
            &Body::Msg {
                text: text.to_string(),
            },
        )?;
        self.profile.add_history_meta(
            "out",
            name,
            None,
            text,
            &HistoryMeta {
                conn_id: Some(conn),
                agent_msg_id: Some(id),
                shared_id: shared.as_deref(),
                status: Some("pending"),
            },
        )?;
        Ok(())
    }

    pub async fn delete(&mut self, name: &str) -> anyhow::Result<()> {
        let c = self
            .profile
            .contact_by_name(name)?
            .with_context(|| format!("no contact {name}"))?;
        self.agent.delete_connection(c.conn_id).await?;
        self.profile.delete_contact(c.conn_id)?;
        self.out.emit(
            "deleted",
            &format!("deleted {name}"),
            json!({ "name": name }),
        );
        Ok(())
    }

    pub fn group_create(&mut self, name: &str) -> anyhow::Result<()> {
        if self.profile.group_by_name(name)?.is_some() {
            bail!("group {name} exists");
        }
        let gid = hex::encode(rand::random::<[u8; 16]>());
        self.profile.add_group(&gid, name, None)?;
        self.out.emit(
            "group_created",
            &format!("group #{name} created"),
            json!({ "group": name }),
        );
        Ok(())
    }

    pub fn group_invite(&mut self, group: &str, name: &str) -> anyhow::Result<()> {
        let g = self
            .profile
            .group_by_name(group)?
            .with_context(|| format!("no group {group}"))?;
        if g.owner.is_some() {
            bail!("only the creator of #{group} can invite");
        }
        let conn = self.connected_contact(name)?;
        self.send_body(
            conn,
            &Body::Ginv {
                gid: g.gid.clone(),
                name: g.name.clone(),
            },
        )?;
        self.profile.set_member(&g.gid, name, conn, "invited")?;
        self.out.emit(
            "group_invited",
            &format!("invited {name} to #{group}"),
            json!({ "group": group, "name": name }),
        );
        Ok(())
    }

    pub fn group_send(&mut self, group: &str, text: &str) -> anyhow::Result<usize> {
        let g = self
            .profile
            .group_by_name(group)?
            .with_context(|| format!("no group {group}"))?;
        let mut n = 0;
        for m in self.profile.members(&g.gid)? {
            if m.status == "contact" || m.status == "connected" {
                self.send_body(
                    m.conn_id,
                    &Body::Gmsg {
                        gid: g.gid.clone(),
                        text: text.to_string(),
                    },
                )?;
                n += 1;
            }
        }
        self.profile.add_history("out", "me", Some(&g.gid), text)?;
        Ok(n)
    }

    pub fn contacts(&self) -> anyhow::Result<()> {
        let cs = self.profile.contacts()?;
        if self.out.json {
            self.out.emit("contacts", "", json!({ "contacts": cs }));
            return Ok(());
        }
        for c in cs {
            println!(
                "{} {} notify={}",
                c.name.as_deref().unwrap_or("(pending)"),
                c.status,
                c.notify.as_str()
            );
        }
        Ok(())
    }

    pub fn history(&self, name: &str, limit: usize) -> anyhow::Result<()> {
        let items = if let Some(g) = name
            .strip_prefix('#')
            .and_then(|g| self.profile.group_by_name(g).ok().flatten())
        {
            self.profile.history(None, Some(&g.gid), limit)?
        } else {
            self.profile.history(Some(name), None, limit)?
        };
        if self.out.json {
            self.out.emit("history", "", json!({ "items": items }));
            return Ok(());
        }
        for h in items {
            let who = if h.dir == "out" {
                "me"
            } else {
                h.peer.as_str()
            };
            let status = match (h.dir.as_str(), &h.status) {
                ("out", Some(s)) => format!(" ({s})"),
                _ => String::new(),
            };
            match h.group {
                Some(g) => println!("#{g} {who}: {}{status}", h.text),
                None => println!("{who}: {}{status}", h.text),
            }
        }
        Ok(())
    }

    /// Readable status: profile, relays, contacts and what is pending.
    pub async fn status(&mut self) -> anyhow::Result<()> {
        if self.relays_up.is_empty()
            && let Ok(r) = relay_of(&self.profile, None)
        {
            // one-shot: check the relay with a PING
            let t0 = std::time::Instant::now();
            let ok = tokio::time::timeout(Duration::from_secs(3), async {
                let (c, _ev) = hush_client::TlsConnector::new()?
                    .with_network(network())
                    .connect_to(&r, &hush_client::ClientConfig::default())
                    .await?;
                let p = c.ping().await;
                c.close().await;
                p
            })
            .await;
            let up = matches!(ok, Ok(Ok(())));
            self.relays_up.insert(r.to_text(), up);
            if up {
                self.relay_rtt_ms = Some(t0.elapsed().as_secs_f64() * 1000.0);
            }
        }
        let name = self.profile.name()?;
        let relay = self.profile.setting("relay")?.unwrap_or_default();
        let contacts = self.profile.contacts()?;
        let requests = self.profile.requests()?;
        let outbox = self.agent.pending_sends().unwrap_or(-1);
        let mut conns = Vec::new();
        for c in self.agent.connections()? {
            if let Ok(s) = self.agent.connection_status(c) {
                conns.push((c, s));
            }
        }
        let pending_conns = conns
            .iter()
            .filter(|(_, s)| !matches!(s, ConnStatus::Connected | ConnStatus::Address))
            .count();
        let daemon = crate::daemon::running_pid(&self.profile.dir);
        let groups = self.profile.groups()?;
        if self.out.json {
            self.out.emit(
                "status",
                "",
                json!({
                    "name": name, "relay": relay, "contacts": contacts, "requests": requests,
                    "outbox": outbox, "pending_connections": pending_conns,
                    "groups": groups, "daemon_pid": daemon, "relays_up": self.relays_up,
                }),
            );
            return Ok(());
        }
        println!("profile: {name} ({})", self.profile.dir.display());
        println!("relay:   {relay}");
        match daemon {
            Some(pid) => println!("daemon:  running (pid {pid})"),
            None => println!("daemon:  not running"),
        }
        for (r, up) in &self.relays_up {
            let state = match (*up, self.relay_rtt_ms) {
                (true, Some(ms)) => format!("reachable (connect + PING {ms:.0} ms)"),
                (true, None) => "connected".to_string(),
                (false, _) => "unreachable".to_string(),
            };
            println!("relay {}: {state}", short_relay(r));
        }
        println!(
            "contacts: {} connected, {} pending",
            contacts.iter().filter(|c| c.status == "connected").count(),
            contacts.iter().filter(|c| c.status != "connected").count()
        );
        for c in &contacts {
            let proto = match self.profile.peer_chat(c.conn_id)? {
                Some(p) if p.legacy => " (old hush)".to_string(),
                Some(_) => format!(" chat v{}", self.peer_conn_version(c.conn_id)?),
                None => String::new(),
            };
            println!(
                "  {:<16} {:<10} notify={}{proto}",
                c.name.as_deref().unwrap_or("(pending)"),
                c.status,
                c.notify.as_str()
            );
        }
        for g in &groups {
            let ms = self.profile.members(&g.gid)?;
            println!(
                "  #{:<15} {} members{}",
                g.name,
                ms.len(),
                g.owner
                    .as_ref()
                    .map(|o| format!(" (invited by {o})"))
                    .unwrap_or_default()
            );
        }
        println!("requests: {}", requests.len());
        for r in &requests {
            println!("  {} (hush accept {})", r.name, r.name);
        }
        println!("outbox:   {outbox} message(s) waiting for the relay");
        Ok(())
    }

    // ------------------------------------------------------------------ events

    /// Handles one agent event.
    pub async fn handle(&mut self, ev: AgentEvent) -> anyhow::Result<()> {
        match ev {
            AgentEvent::Confirmation { conn, peer_info } => {
                let info = PeerInfo::parse(&peer_info);
                self.profile.set_peer_chat(conn, info.peer_chat())?;
            }
            AgentEvent::Connected { conn, peer_info } => {
                let info = PeerInfo::parse(&peer_info);
                self.profile.set_peer_chat(conn, info.peer_chat())?;
                if let Some(m) = self.profile.member_by_conn(conn)? {
                    self.profile
                        .set_member(&m.gid, &m.name, conn, "connected")?;
                    let g = self.group_name(&m.gid);
                    self.out.emit(
                        "member_connected",
                        &format!("#{g}: member {} connected", m.name),
                        json!({ "group": g, "name": m.name }),
                    );
                } else {
                    let name = self.profile.contact_connected(conn, &info.name)?;
                    self.out.emit(
                        "connected",
                        &format!("connected: {name}"),
                        json!({ "name": name }),
                    );
                }
            }
            AgentEvent::ContactRequest {
                request, conn_info, ..
            } => {
                let info = PeerInfo::parse(&conn_info);
                self.profile.add_request(request, &info.name)?;
                self.out.emit(
                    "request",
                    &format!(
                        "request from {} (accept with: hush accept {})",
                        info.name, info.name
                    ),
                    json!({ "name": info.name, "id": request }),
                );
            }
            AgentEvent::Message {
                conn, msg_id, body, ..
            } => {
                let r = self.on_message(conn, &body).await;
                // Acknowledge even if handling failed: the message is in the history or was
                // malformed; keeping it would block the queue. With a delivery receipt when the
                // message asks for one and was handled.
                let acked = if matches!(r, Ok(true)) {
                    self.agent.ack_with_receipt(conn, msg_id, b"").await
                } else {
                    self.agent.ack(conn, msg_id).await
                };
                if let Err(e) = acked {
                    self.out.error(&format!("ack: {e}"));
                }
                r?;
            }
            AgentEvent::Sent { conn, msg_id } => {
                self.unsent.remove(&(conn, msg_id));
                if let Some((peer, text)) = self.profile.set_history_status(conn, msg_id, "sent")? {
                    self.out.emit(
                        "sent",
                        &format!("[sent to {peer}] {text}"),
                        json!({ "to": peer, "text": text, "msg_id": msg_id }),
                    );
                }
            }
            AgentEvent::Receipt {
                conn,
                msg_id,
                hash_ok,
            } => {
                if !hash_ok {
                    tracing::warn!("delivery receipt with a different message hash");
                }
                if let Some((peer, text)) =
                    self.profile.set_history_status(conn, msg_id, "delivered")?
                {
                    self.out.emit(
                        "delivered",
                        &format!("[delivered to {peer}] {text}"),
                        json!({ "to": peer, "text": text, "msg_id": msg_id, "hash_ok": hash_ok }),
                    );
                }
            }
            AgentEvent::DeliveryError {
                conn,
                msg_id,
                error,
            } => {
                self.unsent.remove(&(conn, msg_id));
                self.out.error(&format!("message not delivered: {error}"));
            }
            AgentEvent::Duplicate { .. } => {}
            AgentEvent::Error { error, .. } => {
                tracing::debug!("agent error: {error}");
            }
            AgentEvent::QueueEnded { conn } => {
                tracing::info!(conn, "queue subscription ended");
            }
            AgentEvent::RelayUp { server } => {
                self.relays_up.insert(server.clone(), true);
                self.out.emit(
                    "relay_up",
                    &format!("relay connected: {}", short_relay(&server)),
                    json!({ "relay": server }),
                );
            }
            AgentEvent::RelayDown { server, reason } => {
                self.relays_up.insert(server.clone(), false);
                self.out.emit(
                    "relay_down",
                    &format!("relay down: {} ({reason})", short_relay(&server)),
                    json!({ "relay": server, "reason": reason }),
                );
            }
            // events added to hush-agent later (e.g. delivery receipts) are not shown
            #[allow(unreachable_patterns)]
            _ => {}
        }
        Ok(())
    }

    fn group_name(&self, gid: &str) -> String {
        self.profile
            .group_by_id(gid)
            .ok()
            .flatten()
            .map(|g| g.name)
            .unwrap_or_else(|| "?".into())
    }

    /// Handles a received body; returns whether to send a delivery receipt.
    async fn on_message(&mut self, conn: i64, body: &[u8]) -> anyhow::Result<bool> {
        let d = decode_body(body);
        if d.vrange.is_some() || d.legacy {
            self.profile.set_peer_chat(
                conn,
                PeerChat {
                    vrange: d.vrange.map(|v| (v.min(), v.max())),
                    legacy: d.legacy,
                },
            )?;
        }
        for item in d.items {
            self.on_item(conn, item).await?;
        }
        Ok(d.receipt)
    }

    async fn on_item(&mut self, conn: i64, item: Item) -> anyhow::Result<()> {
        let contact = self.profile.contact_by_conn(conn)?;
        let member = self.profile.member_by_conn(conn)?;
        let (from, notify) = match (&contact, &member) {
            (Some(c), _) => (c.name.clone().unwrap_or_else(|| "?".into()), c.notify),
            (None, Some(m)) => (m.name.clone(), NotifyMode::Connected),
            (None, None) => ("?".to_string(), NotifyMode::Connected),
        };
        let parsed = match item {
            Item::Text { text, shared_id } => {
                self.profile.add_history_meta(
                    "in",
                    &from,
                    None,
                    &text,
                    &HistoryMeta {
                        conn_id: Some(conn),
                        shared_id: shared_id.as_deref(),
                        ..HistoryMeta::default()
                    },
                )?;
                self.incoming(Incoming {
                    from,
                    group: None,
                    text,
                    notify,
                });
                return Ok(());
            }
            Item::Edit { shared_id, text } => {
                if self
                    .profile
                    .edit_received(conn, &shared_id, &text, Some("edited"))?
                {
                    self.out.emit(
                        "edited",
                        &format!("{from} edited: {text}"),
                        json!({ "from": from, "text": text }),
                    );
                }
                return Ok(());
            }
            Item::Delete { shared_id } => {
                if self
                    .profile
                    .edit_received(conn, &shared_id, "[deleted]", Some("deleted"))?
                {
                    self.out.emit(
                        "deleted_message",
                        &format!("{from} deleted a message"),
                        json!({ "from": from }),
                    );
                }
                return Ok(());
            }
            Item::Profile { name } => {
                self.out.emit(
                    "profile",
                    &format!("{from} updated the profile (name {name})"),
                    json!({ "from": from, "name": name }),
                );
                return Ok(());
            }
            Item::Ignored { .. } => return Ok(()),
            Item::Undecodable { error } => {
                self.out
                    .error(&format!("undecodable message from {from}: {error}"));
                return Ok(());
            }
            Item::Hush(b) => b,
        };
        match parsed {
            Body::Msg { text } => {
                self.profile.add_history("in", &from, None, &text)?;
                self.incoming(Incoming {
                    from,
                    group: None,
                    text,
                    notify,
                });
            }
            Body::Gmsg { gid, text } => {
                let Some(g) = self.profile.group_by_id(&gid)? else {
                    return Ok(());
                };
                // Only members of the group may post to it.
                if !self
                    .profile
                    .members(&gid)?
                    .iter()
                    .any(|m| m.conn_id == conn)
                {
                    return Ok(());
                }
                self.profile.add_history("in", &from, Some(&gid), &text)?;
                self.incoming(Incoming {
                    from,
                    group: Some(g.name),
                    text,
                    notify,
                });
            }
            Body::Ginv { gid, name } => {
                if contact.is_none() || self.profile.group_by_id(&gid)?.is_some() {
                    return Ok(());
                }
                let local = self.free_group_name(&name)?;
                self.profile.add_group(&gid, &local, Some(&from))?;
                self.profile.set_member(&gid, &from, conn, "contact")?;
                self.send_body(conn, &Body::Gjoin { gid: gid.clone() })?;
                self.out.emit(
                    "group_joined",
                    &format!("joined group #{local} (invited by {from})"),
                    json!({ "group": local, "by": from }),
                );
            }
            Body::Gjoin { gid } => {
                let Some(g) = self.profile.group_by_id(&gid)? else {
                    return Ok(());
                };
                if g.owner.is_some() || contact.is_none() {
                    return Ok(());
                }
                for m in self.profile.members(&gid)? {
                    if m.status == "contact" && m.name != from {
                        self.send_body(
                            m.conn_id,
                            &Body::Gintro {
                                gid: gid.clone(),
                                member: from.clone(),
                            },
                        )?;
                    }
                }
                self.profile.set_member(&gid, &from, conn, "contact")?;
                self.out.emit(
                    "group_member_joined",
                    &format!("#{}: {from} joined", g.name),
                    json!({ "group": g.name, "name": from }),
                );
            }
            Body::Gintro { gid, member } => {
                let Some(g) = self.profile.group_by_id(&gid)? else {
                    return Ok(());
                };
                if g.owner.as_deref() != Some(from.as_str()) || contact.is_none() {
                    return Ok(());
                }
                let info = self.my_info(Some(&gid))?;
                let (mconn, link) = self.agent.create_invitation(&info).await?;
                self.profile.set_member(&gid, &member, mconn, "pending")?;
                self.send_body(conn, &Body::Glink { gid, member, link })?;
            }
            Body::Glink { gid, member, link } => {
                let Some(g) = self.profile.group_by_id(&gid)? else {
                    return Ok(());
                };
                if g.owner.is_some() {
                    return Ok(());
                }
                let members = self.profile.members(&gid)?;
                let sender_is_member = members.iter().any(|m| m.conn_id == conn);
                if let (true, Some(target)) =
                    (sender_is_member, members.iter().find(|m| m.name == member))
                {
                    self.send_body(
                        target.conn_id,
                        &Body::Gfwd {
                            gid,
                            from: from.clone(),
                            link,
                        },
                    )?;
                }
            }
            Body::Gfwd {
                gid,
                from: member,
                link,
            } => {
                let Some(g) = self.profile.group_by_id(&gid)? else {
                    return Ok(());
                };
                if g.owner.as_deref() != Some(from.as_str()) || contact.is_none() {
                    return Ok(());
                }
                let info = self.my_info(Some(&gid))?;
                let mconn = self.agent.join(&link, &info).await?;
                self.profile.set_member(&gid, &member, mconn, "pending")?;
            }
        }
        Ok(())
    }

    fn free_group_name(&self, wanted: &str) -> anyhow::Result<String> {
        let mut n = 1;
        loop {
            let cand = if n == 1 {
                wanted.to_string()
            } else {
                format!("{wanted}{n}")
            };
            if self.profile.group_by_name(&cand)?.is_none() {
                return Ok(cand);
            }
            n += 1;
        }
    }

    fn incoming(&mut self, m: Incoming) {
        self.shown += 1;
        let text = match &m.group {
            Some(g) => format!("#{g} {}: {}", m.from, m.text),
            None => format!("{}: {}", m.from, m.text),
        };
        self.out.emit(
            "message",
            &text,
            json!({ "from": m.from, "group": m.group, "text": m.text }),
        );
        if let Some(n) = &self.notifier {
            n.notify(&m);
        }
        if let Some(f) = self.on_incoming.as_mut() {
            f(&m);
        }
    }

    /// Processes events until every message sent in this session was accepted by the relay and
    /// the agent's outbox is empty (or `timeout`).
    pub async fn flush(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let outbox = self.agent.pending_sends().unwrap_or(0);
            if self.unsent.is_empty() && outbox == 0 {
                return Ok(());
            }
            let tick = tokio::time::sleep(Duration::from_millis(50));
            tokio::select! {
                ev = self.events.recv() => match ev {
                    Some(ev) => {
                        if let Err(e) = Box::pin(self.handle(ev)).await {
                            self.out.error(&format!("{e:#}"));
                        }
                    }
                    None => bail!("agent stopped"),
                },
                _ = tick => {}
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{} message(s) not yet accepted by the relay (they stay in the outbox and are sent next time)",
                    outbox.max(self.unsent.len() as i64)
                );
            }
        }
    }

    pub async fn close(mut self) {
        self.agent.close().await;
        // Events the agent emitted after the last one handled (a one-shot `hush connect` whose
        // handshake completes while it flushes): record them in the profile, else the contact
        // would stay "joining" although the connection is up. Only such connection-state events:
        // messages are not acknowledged, so the agent emits them again next time.
        while let Ok(ev) = self.events.try_recv() {
            if !matches!(
                ev,
                AgentEvent::Connected { .. }
                    | AgentEvent::Confirmation { .. }
                    | AgentEvent::ContactRequest { .. }
            ) {
                continue;
            }
            if let Err(e) = Box::pin(self.handle(ev)).await {
                tracing::debug!(error = %format!("{e:#}"), "event after close");
            }
        }
    }
}

/// `smp://<fp>@host:port` → `host:port` for display (no key material in logs).
pub fn short_relay(s: &str) -> String {
    s.rsplit_once('@')
        .map(|(_, h)| h.to_string())
        .unwrap_or_else(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_and_plain_text_is_a_message() {
        let all = [
            Body::Msg { text: "hi".into() },
            Body::Ginv {
                gid: "g".into(),
                name: "team".into(),
            },
            Body::Gjoin { gid: "g".into() },
            Body::Gintro {
                gid: "g".into(),
                member: "carol".into(),
            },
            Body::Glink {
                gid: "g".into(),
                member: "carol".into(),
                link: "simplex:/invitation#x".into(),
            },
            Body::Gfwd {
                gid: "g".into(),
                from: "bob".into(),
                link: "l".into(),
            },
            Body::Gmsg {
                gid: "g".into(),
                text: "t".into(),
            },
        ];
        for b in all {
            let j = serde_json::to_vec(&b).unwrap();
            assert_eq!(serde_json::from_slice::<Body>(&j).unwrap(), b);
        }
        assert!(serde_json::from_slice::<Body>(b"hello").is_err());
        assert!(serde_json::from_slice::<Body>(br#"{"t":"nope"}"#).is_err());
    }

    #[test]
    fn conn_info_from_other_clients() {
        assert_eq!(ConnInfo::parse(br#"{"name":"bob"}"#).name, "bob");
        let i = ConnInfo::parse(br#"{"name":"bob","gid":"g1"}"#);
        assert_eq!(i.gid.as_deref(), Some("g1"));
        // not JSON (another client's profile format): the bytes become a bounded name
        let long = vec![b'x'; 500];
        assert_eq!(ConnInfo::parse(&long).name.len(), 32);
        assert_eq!(ConnInfo::parse(&[0xff, 0xfe]).gid, None);
    }

    const MSG: &str = r#"{"v":"1","msgId":"AQIDBA==","event":"x.msg.new","params":{"content":{"text":"hello","type":"text"}}}"#;

    fn texts(d: &Decoded) -> Vec<String> {
        d.items
            .iter()
            .map(|i| match i {
                Item::Text { text, .. } => text.clone(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn app_payloads_decode_to_what_is_shown() {
        // one x.msg.new (reference ProtocolTests literal): text, msgId, receipt asked
        let d = decode_body(MSG.as_bytes());
        assert_eq!(
            d.items,
            vec![Item::Text {
                text: "hello".into(),
                shared_id: Some("AQIDBA==".into())
            }]
        );
        assert!(d.receipt && !d.legacy);
        assert_eq!(d.vrange, Some(ChatVersionRange::INITIAL));
        // a batch: both, in order
        let batch = format!(
            "[{MSG},{}]",
            r#"{"v":"1-9","event":"x.msg.del","params":{"msgId":"AQIDBA=="}}"#
        );
        let d = decode_body(batch.as_bytes());
        assert_eq!(texts(&d)[0], "hello");
        assert_eq!(
            d.items[1],
            Item::Delete {
                shared_id: "AQIDBA==".into()
            }
        );
        assert_eq!(d.vrange, ChatVersionRange::new(1, 9));
        // a compressed batch with a passthrough block
        let mut x = vec![b'X', 1, b'0', MSG.len() as u8];
        x.extend_from_slice(MSG.as_bytes());
        assert_eq!(texts(&decode_body(&x)), ["hello"]);
        // a profile update; an app group event is ignored, asks no receipt
        let d = decode_body(
            br#"{"v":"1","event":"x.info","params":{"profile":{"fullName":"","displayName":"sam2"}}}"#,
        );
        assert_eq!(
            d.items,
            vec![Item::Profile {
                name: "sam2".into()
            }]
        );
        assert!(!d.receipt);
        let d = decode_body(br#"{"v":"1","event":"x.grp.leave","params":{}}"#);
        assert_eq!(
            d.items,
            vec![Item::Ignored {
                event: "x.grp.leave".into()
            }]
        );
        assert!(!d.receipt);
        // a broken compressed batch is not shown as text
        assert!(matches!(
            decode_body(b"X\x011\x00\x04abcd").items[..],
            [Item::Undecodable { .. }]
        ));
    }

    #[test]
    fn legacy_and_plain_bodies_still_display() {
        let d = decode_body(br#"{"t":"msg","text":"old"}"#);
        assert_eq!(texts(&d), ["old"]);
        assert!(d.legacy && d.receipt);
        let d = decode_body(br#"{"t":"gjoin","gid":"g"}"#);
        assert_eq!(d.items, vec![Item::Hush(Body::Gjoin { gid: "g".into() })]);
        let d = decode_body(b"Xylophone");
        assert_eq!(texts(&d), ["Xylophone"]);
        assert!(!d.legacy && !d.receipt);
    }

    #[test]
    fn hush_bodies_travel_as_x_hush_events() {
        for b in [
            Body::Gmsg {
                gid: "g".into(),
                text: "t".into(),
            },
            Body::Glink {
                gid: "g".into(),
                member: "carol".into(),
                link: "simplex:/invitation#x".into(),
            },
        ] {
            let m = body_chat_message(&b);
            assert!(m.event.name().starts_with("x.hush.g"));
            let bytes = message_body(m.encode(), false).unwrap();
            assert_eq!(decode_body(&bytes).items, vec![Item::Hush(b)]);
        }
        // a text is a plain x.msg.new
        let m = body_chat_message(&Body::Msg { text: "hi".into() });
        assert_eq!(m.msg_text(), Some("hi"));
        // an x.hush event whose params say another type is ignored
        let d = decode_body(br#"{"event":"x.hush.gmsg","params":{"t":"gjoin","gid":"g"}}"#);
        assert!(matches!(d.items[..], [Item::Ignored { .. }]));
    }

    #[test]
    fn peer_info_from_app_hush_and_old_hush() {
        let i = PeerInfo::parse(
            br#"{"v":"1-18","event":"x.contact","params":{"contactReqId":"AQIDBA==","profile":{"fullName":"Alice","displayName":"alice"}}}"#,
        );
        assert_eq!(i.name, "alice");
        assert!(!i.legacy);
        assert_eq!(i.vrange, ChatVersionRange::new(1, 18));
        let mut p = hush_chat::Profile::named("bob");
        p.other.insert(HUSH_GID.into(), "g1".into());
        let b = conn_info_body(&ChatMessage::info(p), false).unwrap();
        let i = PeerInfo::parse(&b);
        assert_eq!((i.name.as_str(), i.gid.as_deref()), ("bob", Some("g1")));
        let i = PeerInfo::parse(br#"{"name":"old","gid":"g2"}"#);
        assert_eq!((i.name.as_str(), i.gid.as_deref()), ("old", Some("g2")));
        assert!(i.legacy && i.vrange.is_none());
        let i = PeerInfo::parse(b"just bytes");
        assert_eq!(i.name, "just bytes");
        assert!(!i.legacy);
    }

    #[test]
    fn short_relay_hides_the_fingerprint() {
        assert_eq!(short_relay("smp://abc=@127.0.0.1:5223"), "127.0.0.1:5223");
        assert_eq!(short_relay("x"), "x");
    }
}
