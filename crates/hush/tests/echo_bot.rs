//! hush-chat's example echo bot (crates/hush-chat/examples/echo_bot.rs), run against a real
//! relay (`hush up`) with a `hush chat` user: the user connects through the bot's contact
//! address (x.contact), is greeted under its name, gets every text back, and sees its texts
//! delivered (the bot sends receipts).

mod common;

#[path = "../../hush-chat/examples/echo_bot.rs"]
#[allow(dead_code)]
mod echo_bot;

use std::time::Duration;

use common::{chat, profile, start_up};
use hush_agent::{Agent, AgentConfig};
use hush_proto::address::ProtocolServer;

#[test]
fn echo_bot_answers_a_hush_user() {
    let dir = tempfile::tempdir().unwrap();
    let (_up, relay) = start_up(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = ProtocolServer::parse(&relay).unwrap();
    let (bot, events) = rt
        .block_on(Agent::open(
            dir.path().join("bot.db"),
            AgentConfig::new(server),
        ))
        .unwrap();
    let (_, address) = rt.block_on(bot.create_contact_address()).unwrap();
    let task = rt.spawn(echo_bot::serve(bot.clone(), events, "echo"));

    let pa = profile(dir.path(), "alice", &relay);
    let mut a = chat(&pa, "alice", &[]);
    a.send(&format!("/connect {address}"));
    a.wait_line("connected: echo");
    a.wait_line("echo: Hello alice! I send back every text you send me.");
    a.send("@echo ping");
    a.wait_line("echo: ping");
    a.wait_line("[delivered to echo] ping");
    a.send("@echo second");
    a.wait_line("echo: second");
    let (code, _) = a.finish(Duration::from_secs(20));
    assert_eq!(code, 0);
    rt.block_on(bot.close());
    task.abort();
}
