//! A tiny echo bot: publishes a contact address, accepts every contact request and sends every
//! message back.
//!
//! ```text
//! cargo run -p hush-agent --example echo_bot -- smp://<fingerprint>@<host>[:port] [bot.db]
//! ```
//!
//! It prints its contact address on start (the same one after a restart: its address and
//! connections live in the database). Connect to it with any agent:
//! `agent.join(&address, b"me")`.

use hush_agent::{Agent, AgentConfig, AgentError, AgentEvent, AgentEvents};
use hush_proto::address::ProtocolServer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let server = args
        .next()
        .ok_or("usage: echo_bot smp://<fingerprint>@<host>[:port] [bot.db]")?;
    let db = args.next().unwrap_or_else(|| "echo_bot.db".into());
    let server = ProtocolServer::parse(&server)?;

    let (agent, events) = Agent::open(&db, AgentConfig::new(server)).await?;
    agent.subscribe_all().await?;
    let address = match agent.contact_addresses()?.first() {
        Some(&conn) => agent.contact_address_link(conn)?,
        None => agent.create_contact_address().await?.1,
    };
    println!("echo bot contact address:\n{address}");
    serve(agent, events).await?;
    Ok(())
}

/// The bot: accept contact requests, echo messages. Returns when the event stream ends.
pub async fn serve(agent: Agent, mut events: AgentEvents) -> Result<(), AgentError> {
    while let Some(event) = events.recv().await {
        match event {
            AgentEvent::ContactRequest { request, .. } => {
                let conn = agent.accept_contact_request(request, b"echo bot").await?;
                println!("accepted a contact request as connection {conn}");
            }
            AgentEvent::Connected { conn, .. } => println!("connection {conn} is up"),
            AgentEvent::Message {
                conn, msg_id, body, ..
            } => {
                agent.send(conn, &body)?;
                agent.ack(conn, msg_id).await?;
            }
            AgentEvent::Error { conn, error } => eprintln!("error on {conn:?}: {error}"),
            _ => {}
        }
    }
    Ok(())
}
