//! An echo bot: a template for bot authors, with `hush-agent` (connections, relay, ratchet)
//! and `hush-chat` (what the SimpleX Chat app puts in them).
//!
//! It opens (or creates) its agent database, prints its contact address (created once) and,
//! with `--invite`, a one-time invitation; accepts every contact request; greets new contacts;
//! answers every text with the same text; and acknowledges messages with a delivery receipt
//! when the sender asks for one (the app then shows them as delivered).
//!
//! ```text
//! cargo run -p hush-chat --example echo_bot -- --relay 'smp://<fp>@host:5223' \
//!     [--db echo_bot.db] [--name echo] [--invite]
//! ```
//!
//! Paste the printed address into a SimpleX Chat app ("connect via link") or into
//! `hush connect <link>`. Stop with Ctrl-C.

use std::collections::HashMap;

use hush_agent::{Agent, AgentConfig, AgentEvent, AgentEvents, ConnId};
use hush_chat::{
    ChatMessage, ChatMsgEvent, ChatVersionRange, HUSH_CHAT_VRANGE, MAX_ENCODED_MSG_LENGTH, Profile,
    batch_messages, conn_info_body, message_body, parse_chat_messages,
    version::BATCH_SEND2_VERSION,
};
use hush_proto::address::ProtocolServer;

struct Args {
    relay: String,
    db: String,
    name: String,
    invite: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        relay: String::new(),
        db: "echo_bot.db".into(),
        name: "echo".into(),
        invite: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().ok_or(format!("{k} needs a value"));
        match k.as_str() {
            "--relay" => a.relay = val()?,
            "--db" => a.db = val()?,
            "--name" => a.name = val()?,
            "--invite" => a.invite = true,
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    if a.relay.is_empty() {
        return Err("--relay smp://<fingerprint>@host:port is required".into());
    }
    Ok(a)
}

/// What the bot knows about one contact (in memory: after a restart a contact is named
/// "contact <id>" until it sends its profile again; a real bot keeps this in its database).
struct Peer {
    name: String,
    /// The peer's chat version range, from every message it sends.
    vrange: Option<ChatVersionRange>,
}

fn peer_of(peers: &mut HashMap<ConnId, Peer>, conn: ConnId) -> &mut Peer {
    peers.entry(conn).or_insert_with(|| Peer {
        name: format!("contact {conn}"),
        vrange: None,
    })
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let a = args().map_err(|e| format!("echo_bot: {e}"))?;
    let relay = ProtocolServer::parse(&a.relay).map_err(|e| format!("bad relay: {e}"))?;
    let (agent, events) = Agent::open(&a.db, AgentConfig::new(relay)).await?;
    agent.subscribe_all().await?;

    // The contact address, created once and kept in the agent database.
    let address = match agent.contact_addresses()?.first() {
        Some(c) => agent.contact_address_link(*c)?,
        None => agent.create_contact_address().await?.1,
    };
    println!("address: {address}");
    if a.invite {
        let info = conn_info_body(&ChatMessage::info(Profile::named(a.name.clone())), false)?;
        let (_, link) = agent.create_invitation(&info).await?;
        println!("invitation: {link}");
    }
    let r = tokio::select! {
        r = serve(agent.clone(), events, &a.name) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    agent.close().await;
    r
}

/// The bot: handles `events` until the agent stops.
pub async fn serve(agent: Agent, mut events: AgentEvents, name: &str) -> Result<(), BoxError> {
    // Our profile goes in every conn info we send: x.info, no compression (no PQ in hush's
    // ratchet).
    let info = conn_info_body(&ChatMessage::info(Profile::named(name)), false)?;
    let mut peers: HashMap<ConnId, Peer> = HashMap::new();
    while let Some(ev) = events.recv().await {
        match ev {
            AgentEvent::ContactRequest {
                request, conn_info, ..
            } => {
                // x.contact from the app (or x.info from old clients): accept everyone
                let name = profile_name(&conn_info).unwrap_or_else(|| "someone".into());
                println!("request from {name}: accepting");
                let conn = agent.accept_contact_request(request, &info).await?;
                peer_of(&mut peers, conn).name = name;
            }
            AgentEvent::Confirmation { conn, peer_info } => {
                // someone joined our invitation; the agent accepts it (auto-accept is on)
                if let Some(n) = profile_name(&peer_info) {
                    peer_of(&mut peers, conn).name = n;
                }
            }
            AgentEvent::Connected { conn, peer_info } => {
                let peer = peer_of(&mut peers, conn);
                for m in parse_chat_messages(&peer_info).into_iter().flatten() {
                    peer.vrange = Some(m.chat_vrange);
                    if let Some(p) = m.profile() {
                        peer.name = p.display_name.clone();
                    }
                }
                println!("connected: {}", peer.name);
                let hello = format!("Hello {}! I send back every text you send me.", peer.name);
                agent.send(
                    conn,
                    &message_body(ChatMessage::text(hello).encode(), false)?,
                )?;
            }
            AgentEvent::Message {
                conn, msg_id, body, ..
            } => {
                let peer = peer_of(&mut peers, conn);
                let mut receipt = false;
                let mut replies = Vec::new();
                for m in parse_chat_messages(&body) {
                    let m = match m {
                        Ok(m) => m,
                        Err(e) => {
                            eprintln!("bad chat message: {e}");
                            continue;
                        }
                    };
                    peer.vrange = Some(m.chat_vrange);
                    receipt |= m.event.has_delivery_receipt();
                    match &m.event {
                        ChatMsgEvent::MsgNew(c) => {
                            let text = c.content.text();
                            println!("{}: {text}", peer.name);
                            replies.push(ChatMessage::text(text).encode());
                        }
                        ChatMsgEvent::Info(p) => peer.name = p.display_name.clone(),
                        // edits, deletions, groups, files, calls: a bot may handle more here
                        other => tracing::debug!(event = other.name(), "ignored"),
                    }
                }
                // Several replies go as one batch when the peer's chat version allows (≥ 9).
                let version = HUSH_CHAT_VRANGE
                    .peer_conn_version(&peer.vrange.unwrap_or(ChatVersionRange::INITIAL));
                let bodies = if version >= BATCH_SEND2_VERSION {
                    batch_messages(&replies, MAX_ENCODED_MSG_LENGTH)
                } else {
                    replies.into_iter().map(Ok).collect()
                };
                for b in bodies {
                    agent.send(conn, &message_body(b?, false)?)?;
                }
                // The receipt info is empty, as the app sends it.
                if receipt {
                    agent.ack_with_receipt(conn, msg_id, b"").await?;
                } else {
                    agent.ack(conn, msg_id).await?;
                }
            }
            AgentEvent::Receipt { conn, .. } => {
                println!("delivered to {}", peer_of(&mut peers, conn).name);
            }
            _ => {}
        }
    }
    Ok(())
}

/// The display name in an `x.info` / `x.contact` conn info.
fn profile_name(conn_info: &[u8]) -> Option<String> {
    parse_chat_messages(conn_info)
        .into_iter()
        .flatten()
        .find_map(|m| m.profile().map(|p| p.display_name.clone()))
}
