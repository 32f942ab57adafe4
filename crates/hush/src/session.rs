//! One running profile: the agent, hush.db, and the chat logic on top of agent messages —
//! contacts, contact requests, history, groups (members connected to each other over their own
//! queues), and the output (text lines or JSON lines).
//!
//! Message bodies between hush clients are JSON objects ([`Body`]); the connection info sent
//! when connecting is [`ConnInfo`]. A body that is not hush JSON is shown as plain text.
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
use hush_proto::address::ProtocolServer;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::notify::Notifier;
use crate::profile::{NotifyMode, Profile};

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

    fn my_info(&self, gid: Option<&str>) -> anyhow::Result<Vec<u8>> {
        Ok(serde_json::to_vec(&ConnInfo {
            name: self.profile.name()?,
            gid: gid.map(str::to_string),
        })?)
    }

    fn send_body(&mut self, conn: i64, body: &Body) -> anyhow::Result<i64> {
        let bytes = serde_json::to_vec(body)?;
        let id = self.agent.send(conn, &bytes)?;
        self.unsent.insert((conn, id), String::new());
        Ok(id)
    }

    // ------------------------------------------------------------------ commands

    pub async fn invite(&mut self) -> anyhow::Result<String> {
        let info = self.my_info(None)?;
        let (conn, link) = self.agent.create_invitation(&info).await?;
        self.profile.add_contact(conn, None, "invited")?;
        self.out.emit(
            "invitation",
            &format!("invitation: {link}"),
            json!({ "link": link, "conn": conn }),
        );
        Ok(link)
    }

    pub async fn connect(&mut self, link: &str) -> anyhow::Result<i64> {
        let info = self.my_info(None)?;
        let conn = self.agent.join(link.trim(), &info).await?;
        self.profile.add_contact(conn, None, "joining")?;
        self.out.emit(
            "connecting",
            "connecting (the contact appears once the other side is online)",
            json!({ "conn": conn }),
        );
        Ok(conn)
    }

    pub async fn address(&mut self) -> anyhow::Result<String> {
        if let Some(a) = self.profile.setting("address")? {
            self.out
                .emit("address", &format!("address: {a}"), json!({ "link": a }));
            return Ok(a);
        }
        let (conn, link) = self.agent.create_contact_address().await?;
        self.profile.set_setting("address", &link)?;
        self.profile
            .set_setting("address_conn", &conn.to_string())?;
        self.out.emit(
            "address",
            &format!("address: {link}"),
            json!({ "link": link }),
        );
        Ok(link)
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
        self.send_body(
            conn,
            &Body::Msg {
                text: text.to_string(),
            },
        )?;
        self.profile.add_history("out", name, None, text)?;
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
            match h.group {
                Some(g) => println!("#{g} {who}: {}", h.text),
                None => println!("{who}: {}", h.text),
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
            println!(
                "  {:<16} {:<10} notify={}",
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
            AgentEvent::Confirmation { .. } => {}
            AgentEvent::Connected { conn, peer_info } => {
                let info = ConnInfo::parse(&peer_info);
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
                let info = ConnInfo::parse(&conn_info);
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
                // malformed; keeping it would block the queue.
                if let Err(e) = self.agent.ack(conn, msg_id).await {
                    self.out.error(&format!("ack: {e}"));
                }
                r?;
            }
            AgentEvent::Sent { conn, msg_id } => {
                self.unsent.remove(&(conn, msg_id));
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

    async fn on_message(&mut self, conn: i64, body: &[u8]) -> anyhow::Result<()> {
        let contact = self.profile.contact_by_conn(conn)?;
        let member = self.profile.member_by_conn(conn)?;
        let (from, notify) = match (&contact, &member) {
            (Some(c), _) => (c.name.clone().unwrap_or_else(|| "?".into()), c.notify),
            (None, Some(m)) => (m.name.clone(), NotifyMode::Connected),
            (None, None) => ("?".to_string(), NotifyMode::Connected),
        };
        let parsed: Body = match serde_json::from_slice(body) {
            Ok(b) => b,
            Err(_) => Body::Msg {
                text: String::from_utf8_lossy(body).into_owned(),
            },
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

    pub async fn close(self) {
        self.agent.close().await;
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

    #[test]
    fn short_relay_hides_the_fingerprint() {
        assert_eq!(short_relay("smp://abc=@127.0.0.1:5223"), "127.0.0.1:5223");
        assert_eq!(short_relay("x"), "x");
    }
}
