//! The echo bot example, run against a real relay: a user connects through the bot's contact
//! address and gets its messages back.

mod common;

#[path = "../examples/echo_bot.rs"]
#[allow(dead_code)]
mod echo_bot;

use common::*;
use hush_agent::AgentEvent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_bot_echoes() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path()).await;
    let (bot, bot_rx) = open_agent(&db_path(dir.path(), "bot"), relay.server()).await;
    let (_, address) = bot.create_contact_address().await.unwrap();
    let bot_task = tokio::spawn(echo_bot::serve(bot.clone(), bot_rx));

    let (user, mut user_rx) = open_agent(&db_path(dir.path(), "user"), relay.server()).await;
    let conn = user.join(&address, b"user").await.unwrap();
    let mut seen = Vec::new();
    let info = wait_for(&mut user_rx, &mut seen, |e| match e {
        AgentEvent::Connected { conn: c, peer_info } if *c == conn => Some(peer_info.clone()),
        _ => None,
    })
    .await;
    assert_eq!(info, b"echo bot");
    for text in ["ping", "second ping", "third"] {
        user.send(conn, text.as_bytes()).unwrap();
        let (msg_id, body) = wait_for(&mut user_rx, &mut seen, |e| match e {
            AgentEvent::Message {
                conn: c,
                msg_id,
                body,
                ..
            } if *c == conn => Some((*msg_id, body.clone())),
            _ => None,
        })
        .await;
        assert_eq!(body, text.as_bytes());
        user.ack(conn, msg_id).await.unwrap();
    }
    bot.close().await;
    bot_task.abort();
    user.close().await;
}
