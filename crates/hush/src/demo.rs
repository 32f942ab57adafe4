//! `hush demo`: the whole system in one process. Starts the stack (as `hush up`, free ports, a
//! temporary directory), creates two users, connects them with a one-time invitation, and then
//! exchanges messages: bob is notified by the always-connected receiver (his subscribed relay
//! connection), alice by instant push in split mode (her device registered a push handle with
//! the push-server, so the ntf-server never sees its token; ntf-server → push-server →
//! apns-sink → her simulated device, which fetches with GET and decrypts). Prints the latency of each path per round.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hush_proto::address::ProtocolServer;
use serde_json::json;
use tokio::sync::mpsc;

use crate::profile::{NotifyMode, Profile, now_ms};
use crate::session::{Output, Session};
use crate::up;

fn make_profile(dir: &Path, name: &str, a: &up::Addresses) -> anyhow::Result<Profile> {
    let p = Profile::open_or_create(dir)?;
    p.set_setting("name", name)?;
    p.set_setting("relay", &a.smp)?;
    p.set_setting("ntf", &a.ntf)?;
    p.set_setting("sink_read", &a.apns_sink_read)?;
    p.set_setting("push_server", &a.push_server)?;
    p.set_setting("push_fingerprint", &a.push_fingerprint)?;
    Ok(p)
}

fn connected(s: &Session, name: &str) -> bool {
    matches!(s.profile.contact_by_name(name), Ok(Some(c)) if c.status == "connected")
}

/// Runs both sessions' events until both see each other connected.
async fn pump_until_connected(a: &mut Session, b: &mut Session) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !(connected(a, "bob") && connected(b, "alice")) {
        tokio::select! {
            ev = a.events.recv() => { if let Some(ev) = ev { a.handle(ev).await?; } }
            ev = b.events.recv() => { if let Some(ev) = ev { b.handle(ev).await?; } }
            _ = tokio::time::sleep_until(deadline) => bail!("alice and bob did not connect"),
        }
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `hush demo`.
pub async fn run(dir: Option<PathBuf>, rounds: usize, json: bool) -> anyhow::Result<()> {
    let (dir, temporary) = match dir {
        Some(d) => (d, false),
        None => (
            std::env::temp_dir().join(format!("hush-demo-{}", std::process::id())),
            true,
        ),
    };
    let r = run_in(&dir, rounds.max(1), json).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    r
}

async fn run_in(dir: &Path, rounds: usize, json: bool) -> anyhow::Result<()> {
    let say = Output { json, prefix: "" };
    let (stack, _) = up::start(&up::UpOptions {
        data_dir: dir.join("stack"),
        port_base: 0,
        dev_fast_periodic: false,
    })
    .await?;
    let addrs = stack.addresses.clone();
    say.emit(
        "demo_stack",
        &format!(
            "stack up: relay {}, ntf-server {}, apns-sink {}",
            crate::session::short_relay(&addrs.smp),
            crate::session::short_relay(&addrs.ntf),
            addrs.apns_sink
        ),
        json!({ "addresses": addrs }),
    );
    let relay = ProtocolServer::parse(&addrs.smp).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (adir, bdir) = (dir.join("alice"), dir.join("bob"));
    let alice_out = Output {
        json,
        prefix: "[alice]        ",
    };
    let bob_out = Output {
        json,
        prefix: "[bob]          ",
    };
    let phone_out = Output {
        json,
        prefix: "[alice phone]  ",
    };
    let mut sa = Session::open(
        make_profile(&adir, "alice", &addrs)?,
        relay.clone(),
        None,
        alice_out,
    )
    .await?;
    let mut sb = Session::open(
        make_profile(&bdir, "bob", &addrs)?,
        relay.clone(),
        None,
        bob_out,
    )
    .await?;
    let link = sa.invite().await?;
    sb.connect(&link).await?;
    pump_until_connected(&mut sa, &mut sb).await?;
    // alice: instant push for bob's messages; her app then goes to sleep (no connection)
    crate::push::set_mode(&mut sa, "bob", NotifyMode::Push, true).await?;
    sa.close().await;

    // bob: always connected (his session stays subscribed), notified on each message
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<String>(4);
    let (got_tx, mut got_rx) = mpsc::unbounded_channel::<Instant>();
    sb.on_incoming = Some(Box::new(move |_| {
        let _ = got_tx.send(Instant::now());
    }));
    let bob = tokio::spawn(async move {
        loop {
            tokio::select! {
                c = cmd_rx.recv() => match c {
                    Some(text) => {
                        if let Err(e) = sb.send_text("alice", &text) {
                            sb.out.error(&format!("{e:#}"));
                        }
                    }
                    None => break,
                },
                ev = sb.events.recv() => match ev {
                    Some(ev) => {
                        if let Err(e) = sb.handle(ev).await {
                            sb.out.error(&format!("{e:#}"));
                        }
                    }
                    None => break,
                },
            }
        }
        let _ = sb.flush(Duration::from_secs(5)).await;
        sb.close().await;
    });

    let mut conn_ms = Vec::new();
    let mut push_ms = Vec::new();
    let mut shown_ms = Vec::new();
    for round in 1..=rounds {
        // always-connected path: alice → bob
        let mut sa = Session::open(Profile::open(&adir)?, relay.clone(), None, alice_out).await?;
        let t0 = Instant::now();
        sa.send_text("bob", &format!("hello bob ({round})"))?;
        let t1 = tokio::time::timeout(Duration::from_secs(10), got_rx.recv())
            .await
            .context("bob was not notified")?
            .context("bob stopped")?;
        let _ = sa.flush(Duration::from_secs(5)).await;
        sa.close().await;
        let c = t1.duration_since(t0).as_secs_f64() * 1000.0;
        conn_ms.push(c);

        // instant push path: bob → alice's sleeping phone
        let t0 = now_ms();
        cmd_tx
            .send(format!("hello alice ({round})"))
            .await
            .context("bob stopped")?;
        // The ntf-server's default policy allows 3 silent pushes per hour, then one visible
        // alert per 10 minutes; later messages wait at the relay until the next push.
        let within_budget = round <= 4;
        let fetched = crate::push::device(
            Profile::open(&adir)?,
            relay.clone(),
            phone_out,
            Some(1),
            Some(Duration::from_secs(if within_budget { 20 } else { 5 })),
        )
        .await?;
        let Some(f) = fetched.first() else {
            if within_budget {
                bail!("no push arrived at alice's phone");
            }
            say.emit(
                "demo_round",
                &format!(
                    "round {round}: always-connected (bob): {c:.1} ms send → notification | instant push (alice): withheld by the notification budget (3 silent pushes per hour, then one visible alert per 10 minutes); the message waits at the relay"
                ),
                json!({ "round": round, "always_connected_ms": c, "push_withheld": true }),
            );
            continue;
        };
        let p = f.push_received_at_ms.saturating_sub(t0.max(0) as u64) as f64;
        let s = f.fetched_at_ms.saturating_sub(t0.max(0) as u64) as f64;
        push_ms.push(p);
        shown_ms.push(s);
        let style = if f.alert {
            "visible alert"
        } else {
            "silent push"
        };
        say.emit(
            "demo_round",
            &format!(
                "round {round}: always-connected (bob): {c:.1} ms send → notification | instant push (alice, {style}): at apns-sink after {p:.0} ms, message fetched (GET) and shown after {s:.0} ms"
            ),
            json!({ "round": round, "always_connected_ms": c, "push_ms": p, "push_shown_ms": s, "alert": f.alert }),
        );
    }
    drop(cmd_tx);
    let _ = bob.await;
    let pushes = push_ms.len();
    let delivery = match stack.relay_delivery {
        smp_server::server::notify::NtfDelivery::Adaptive { max_delay } => format!(
            "adaptive, at once when quiet, at most {} ms apart under load",
            max_delay.as_millis()
        ),
        smp_server::server::notify::NtfDelivery::Fixed { interval } => {
            format!("fixed, every {} ms", interval.as_millis())
        }
    };
    say.emit(
        "demo_summary",
        &format!(
            "median: always-connected {:.1} ms over {rounds} message(s); instant push {:.0} ms to the push, {:.0} ms to the message on screen over {pushes} push(es) (relay NMSG delivery: {delivery})",
            median(&mut conn_ms),
            median(&mut push_ms),
            median(&mut shown_ms)
        ),
        json!({ "rounds": rounds, "pushes": pushes, "relay_delivery": delivery }),
    );
    stack.stop().await?;
    Ok(())
}
