//! Property tests of the relay's delivery rules (`server::delivery_core`) over random command
//! sequences from 2–4 connections on 1–3 queues.
//!
//! A test shell drives the state machine the way `server/delivery.rs` does, with a model store
//! (a `VecDeque` of message ids per queue), and collects what each connection would receive.
//! Before every command an independent oracle (plain per-connection facts: which queues it
//! subscribed and still holds, what it got from `GET`, its one outstanding message) predicts the
//! answers and events; they must match exactly. After every command the invariants are checked:
//! * at most one delivered, unacknowledged message per queue, only on its subscriber, and it is
//!   the one the registry tracks;
//! * a message is delivered only from the head of the queue;
//! * `ACK` of the delivered id removes exactly the head (when it still is the head), an empty id
//!   removes nothing;
//! * the previous subscriber gets exactly one `END` when another connection `SUB`s; `END`/`DELD`
//!   only reach a connection holding the subscription;
//! * no message goes to two live subscribers, no subscription outlives its connection;
//! * after `ACK` the next head is delivered iff there is one (the acknowledging connection is the
//!   subscriber); a subscriber with messages waiting always has one delivered;
//! * `GET`/`SUB` interplay gives `PROHIBITED` as the relay does;
//! * nothing is lost: the messages removed by `ACK` followed by the stored ones are exactly the
//!   messages sent, in order.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use proptest::prelude::*;
use smp_server::server::delivery_core::{
    AckRoute, ConnId, ConnQueues, HeadFrom, Previous, Refusal, Registry, Removed, SubAck,
};

type Id = [u8; 24];

fn id_of(n: u64) -> Id {
    let mut id = [0u8; 24];
    id[..8].copy_from_slice(&n.to_be_bytes());
    id
}

/// What a connection receives about a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Out {
    Sok,
    /// `MSG`: `corr` when it answers a command (`GET`, `ACK`), not an event.
    Msg {
        id: Id,
        corr: bool,
    },
    Ok,
    Err(Refusal),
    End,
    Deld,
}

#[derive(Clone, Copy, Debug)]
enum AckId {
    /// The id of the last `MSG` this connection got for the queue.
    Delivered,
    Empty,
    /// The k-th message ever sent to the queue (often not the delivered one).
    Sent(usize),
    /// Not 24 bytes.
    Short,
}

#[derive(Clone, Copy, Debug)]
enum Cmd {
    Sub {
        c: usize,
        q: usize,
    },
    Get {
        c: usize,
        q: usize,
    },
    Ack {
        c: usize,
        q: usize,
        id: AckId,
    },
    Send {
        c: usize,
        q: usize,
    },
    /// The connection closes; a new connection takes its slot.
    Close {
        c: usize,
    },
    /// `DEL` by connection `c` (or the control port); a new queue takes the slot, created by `c`
    /// in subscribe mode when `sub_new`.
    Del {
        c: usize,
        q: usize,
        by_control: bool,
        sub_new: bool,
    },
}

/// How the oracle sees a connection's use of a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    None,
    Sub,
    Get(Option<Id>),
}

#[derive(Debug)]
struct ConnModel {
    id: ConnId,
    local: ConnQueues,
    // Oracle facts, per queue slot.
    mode: Vec<Mode>,
    /// Holds the subscription (got `SOK` and no `END`/`DELD` since).
    holds: Vec<bool>,
    /// On a held subscription: the delivered message not yet acknowledged.
    outstanding: Vec<Option<Id>>,
    /// The last `MSG` received (any way).
    last_msg: Vec<Option<Id>>,
}

impl ConnModel {
    fn new(id: ConnId, nq: usize) -> Self {
        ConnModel {
            id,
            local: ConnQueues::default(),
            mode: vec![Mode::None; nq],
            holds: vec![false; nq],
            outstanding: vec![None; nq],
            last_msg: vec![None; nq],
        }
    }
}

#[derive(Debug)]
struct QueueModel {
    rid: Id,
    store: VecDeque<Id>,
    sent: Vec<Id>,
    removed: Vec<Id>,
}

struct World {
    reg: Registry<ConnId>,
    conns: Vec<ConnModel>,
    queues: Vec<QueueModel>,
    next: u64,
    now: Instant,
}

type Outs = Vec<(ConnId, Out)>;

impl World {
    fn new(nc: usize, nq: usize) -> Self {
        let mut w = World {
            reg: Registry::default(),
            conns: Vec::new(),
            queues: Vec::new(),
            next: 1,
            now: Instant::now(),
        };
        for _ in 0..nc {
            let id = w.fresh();
            w.conns.push(ConnModel::new(id, nq));
        }
        for _ in 0..nq {
            let q = w.new_queue();
            w.queues.push(q);
        }
        w
    }

    fn fresh(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    fn new_queue(&mut self) -> QueueModel {
        QueueModel {
            rid: id_of(self.fresh() | 1 << 63),
            store: VecDeque::new(),
            sent: Vec::new(),
            removed: Vec::new(),
        }
    }

    fn slot_of(&self, id: ConnId) -> usize {
        self.conns
            .iter()
            .position(|c| c.id == id)
            .unwrap_or_else(|| panic!("output to connection {id}, which is closed"))
    }

    /// The model store's `delete_message`: removes the head when it is `id`; the new head.
    fn delete(&mut self, q: usize, id: Id) -> Option<Id> {
        let qm = &mut self.queues[q];
        if qm.store.front() == Some(&id) {
            qm.store.pop_front();
            qm.removed.push(id);
        }
        qm.store.front().copied()
    }

    fn ack_bytes(&self, c: usize, q: usize, a: AckId) -> Vec<u8> {
        match a {
            AckId::Delivered => match self.conns[c].last_msg[q] {
                Some(id) => id.to_vec(),
                None => id_of(u64::MAX).to_vec(),
            },
            AckId::Empty => Vec::new(),
            AckId::Sent(k) => {
                let sent = &self.queues[q].sent;
                if sent.is_empty() {
                    id_of(u64::MAX - 1).to_vec()
                } else {
                    sent[k % sent.len()].to_vec()
                }
            }
            AckId::Short => vec![7; 3],
        }
    }

    /// The test shell: runs one command the way `server/delivery.rs` does, against the model
    /// store; returns what each connection receives, in order.
    fn run(&mut self, cmd: Cmd) -> Outs {
        let mut out: Outs = Vec::new();
        let now = self.now;
        match cmd {
            Cmd::Sub { c, q } => {
                let rid = self.queues[q].rid;
                let me = self.conns[c].id;
                if let Err(r) = self.conns[c].local.check_sub(&rid) {
                    out.push((me, Out::Err(r)));
                    return out;
                }
                match self.reg.subscribe(&mut self.conns[c].local, rid, me) {
                    Previous::Other(p) => out.push((p, Out::End)),
                    Previous::Same | Previous::None => {}
                }
                out.push((me, Out::Sok));
                if let Some(&head) = self.queues[q].store.front() {
                    self.reg.record_delivery(&rid, me, head, now);
                    out.push((
                        me,
                        Out::Msg {
                            id: head,
                            corr: false,
                        },
                    ));
                }
            }
            Cmd::Get { c, q } => {
                let rid = self.queues[q].rid;
                let me = self.conns[c].id;
                let reg = &self.reg;
                if let Err(r) = self.conns[c]
                    .local
                    .check_get(&rid, || reg.is_subscriber(&rid, me))
                {
                    out.push((me, Out::Err(r)));
                    return out;
                }
                let head = self.queues[q].store.front().copied();
                self.conns[c].local.got(rid, head);
                out.push((
                    me,
                    match head {
                        Some(id) => Out::Msg { id, corr: true },
                        None => Out::Ok,
                    },
                ));
            }
            Cmd::Ack { c, q, id } => {
                let rid = self.queues[q].rid;
                let me = self.conns[c].id;
                let bytes = self.ack_bytes(c, q, id);
                match self.conns[c].local.ack(&rid, &bytes) {
                    Err(r) => out.push((me, Out::Err(r))),
                    Ok(AckRoute::Get { delete }) => {
                        if let Some(id) = delete {
                            self.delete(q, id);
                        }
                        out.push((me, Out::Ok));
                    }
                    Ok(AckRoute::Sub) => match self.reg.ack(&rid, me, &bytes) {
                        Err(r) => out.push((me, Out::Err(r))),
                        Ok(SubAck { next, .. }) => {
                            let head = match next {
                                HeadFrom::Delete(id) => self.delete(q, id),
                                HeadFrom::Peek => self.queues[q].store.front().copied(),
                            };
                            match head {
                                Some(h) => {
                                    self.reg.record_delivery(&rid, me, h, now);
                                    out.push((me, Out::Msg { id: h, corr: true }));
                                }
                                None => out.push((me, Out::Ok)),
                            }
                        }
                    },
                }
            }
            Cmd::Send { c, q } => {
                let me = self.conns[c].id;
                let msg = id_of(self.fresh());
                let qm = &mut self.queues[q];
                let was_empty = qm.store.is_empty();
                qm.store.push_back(msg);
                qm.sent.push(msg);
                let rid = qm.rid;
                if let Some(t) = self.reg.stored(&rid, was_empty, msg, || now) {
                    out.push((
                        t,
                        Out::Msg {
                            id: msg,
                            corr: false,
                        },
                    ));
                }
                out.push((me, Out::Ok));
            }
            Cmd::Close { c } => {
                let me = self.conns[c].id;
                self.reg.connection_closed(me, &self.conns[c].local);
                let nq = self.queues.len();
                let id = self.fresh();
                self.conns[c] = ConnModel::new(id, nq);
            }
            Cmd::Del {
                c, q, by_control, ..
            } => {
                let rid = self.queues[q].rid;
                let me = self.conns[c].id;
                let by = (!by_control).then_some(me);
                if let Some(Removed { conn, deld: true }) = self.reg.queue_deleted(&rid, by) {
                    out.push((conn, Out::Deld));
                }
                if !by_control {
                    out.push((me, Out::Ok));
                }
            }
        }
        out
    }

    /// The oracle: what `cmd` must produce, from the per-connection facts alone.
    fn expect(&self, cmd: Cmd, ack: &[u8]) -> Outs {
        let holder = |q: usize| self.conns.iter().find(|c| c.holds[q]);
        let mut out: Outs = Vec::new();
        match cmd {
            Cmd::Sub { c, q } => {
                let me = &self.conns[c];
                if let Mode::Get(_) = me.mode[q] {
                    out.push((me.id, Out::Err(Refusal::Prohibited)));
                    return out;
                }
                if let Some(p) = holder(q).filter(|p| p.id != me.id) {
                    out.push((p.id, Out::End));
                }
                out.push((me.id, Out::Sok));
                if let Some(&id) = self.queues[q].store.front() {
                    out.push((me.id, Out::Msg { id, corr: false }));
                }
            }
            Cmd::Get { c, q } => {
                let me = &self.conns[c];
                if me.mode[q] == Mode::Sub && me.holds[q] {
                    out.push((me.id, Out::Err(Refusal::Prohibited)));
                    return out;
                }
                out.push((
                    me.id,
                    match self.queues[q].store.front() {
                        Some(&id) => Out::Msg { id, corr: true },
                        None => Out::Ok,
                    },
                ));
            }
            Cmd::Ack { c, q, .. } => {
                let me = &self.conns[c];
                let acks = |d: Option<Id>| d.is_some_and(|d| ack.is_empty() || ack == d);
                let store = &self.queues[q].store;
                let answer = match me.mode[q] {
                    Mode::None => Out::Err(Refusal::NoMsg),
                    Mode::Get(d) if acks(d) => Out::Ok,
                    Mode::Sub if me.holds[q] && acks(me.outstanding[q]) => {
                        // The head after the delete (when the acknowledged id still is it).
                        let next = if !ack.is_empty() && store.front().map(|f| &f[..]) == Some(ack)
                        {
                            store.get(1)
                        } else {
                            store.front()
                        };
                        match next {
                            Some(&id) => Out::Msg { id, corr: true },
                            None => Out::Ok,
                        }
                    }
                    Mode::Get(_) | Mode::Sub => Out::Err(Refusal::NoMsg),
                };
                out.push((me.id, answer));
            }
            Cmd::Send { c, q } => {
                let me = &self.conns[c];
                if self.queues[q].store.is_empty()
                    && let Some(s) = holder(q).filter(|s| s.outstanding[q].is_none())
                {
                    // The id the shell will give the message.
                    out.push((
                        s.id,
                        Out::Msg {
                            id: id_of(self.next + 1),
                            corr: false,
                        },
                    ));
                }
                out.push((me.id, Out::Ok));
            }
            Cmd::Close { .. } => {}
            Cmd::Del {
                c, q, by_control, ..
            } => {
                let me = &self.conns[c];
                if let Some(s) = holder(q).filter(|s| by_control || s.id != me.id) {
                    out.push((s.id, Out::Deld));
                }
                if !by_control {
                    out.push((me.id, Out::Ok));
                }
            }
        }
        out
    }

    /// Applies what the connections received to the oracle's facts, checking the per-message
    /// rules.
    fn observe(&mut self, cmd: Cmd, q: usize, outs: &Outs) -> Result<(), TestCaseError> {
        let head = self.queues[q].store.front().copied();
        for &(cid, o) in outs {
            let x = self.slot_of(cid);
            let cm = &mut self.conns[x];
            match o {
                Out::Sok => {
                    cm.mode[q] = Mode::Sub;
                    cm.holds[q] = true;
                    cm.outstanding[q] = None;
                }
                Out::End | Out::Deld => {
                    prop_assert!(
                        cm.holds[q],
                        "{o:?} to a connection without the subscription"
                    );
                    cm.holds[q] = false;
                    cm.outstanding[q] = None;
                }
                Out::Msg { id, corr } => {
                    prop_assert_eq!(Some(id), head, "a message delivered not from the head");
                    cm.last_msg[q] = Some(id);
                    if matches!(cmd, Cmd::Get { .. }) {
                        prop_assert!(corr);
                        cm.mode[q] = Mode::Get(Some(id));
                    } else {
                        prop_assert!(
                            cm.holds[q],
                            "MSG to a connection that is not the subscriber"
                        );
                        prop_assert_eq!(cm.outstanding[q], None, "a second unacknowledged message");
                        cm.outstanding[q] = Some(id);
                    }
                }
                Out::Ok | Out::Err(_) => {}
            }
        }
        Ok(())
    }

    fn step(&mut self, cmd: Cmd) -> Result<(), TestCaseError> {
        let q = match cmd {
            Cmd::Sub { q, .. }
            | Cmd::Get { q, .. }
            | Cmd::Ack { q, .. }
            | Cmd::Send { q, .. }
            | Cmd::Del { q, .. } => q,
            Cmd::Close { .. } => 0,
        };
        let ack = match cmd {
            Cmd::Ack { c, q, id } => self.ack_bytes(c, q, id),
            _ => Vec::new(),
        };
        let store_before = self.queues[q].store.clone();
        // An accepted ACK (per the oracle) of a non-empty id.
        let acking = match cmd {
            Cmd::Ack { c, q, .. } => {
                let cm = &self.conns[c];
                let d = match cm.mode[q] {
                    Mode::Get(d) => d,
                    Mode::Sub if cm.holds[q] => cm.outstanding[q],
                    _ => None,
                };
                d.filter(|d| ack.is_empty() || ack == d)
                    .map(|d| (d, ack.is_empty()))
            }
            _ => None,
        };
        let want = self.expect(cmd, &ack);
        let got = self.run(cmd);
        prop_assert_eq!(
            per_conn(&got),
            per_conn(&want),
            "after {:?}: got {:?}, want {:?}",
            cmd,
            got,
            want
        );
        match cmd {
            Cmd::Get { c, q } if !matches!(got.last(), Some((_, Out::Err(_)))) => {
                // `GET` of an empty queue: used with `GET`, nothing delivered.
                let cm = &mut self.conns[c];
                cm.mode[q] = Mode::Get(None);
                cm.holds[q] = false;
                cm.outstanding[q] = None;
            }
            Cmd::Ack { c, q, .. } if acking.is_some() => {
                let cm = &mut self.conns[c];
                match &mut cm.mode[q] {
                    Mode::Get(d) => *d = None,
                    _ => cm.outstanding[q] = None,
                }
            }
            _ => {}
        }
        self.observe(cmd, q, &got)?;

        // ACK removes exactly the head, only when it is the acknowledged message.
        if let Some((d, empty)) = acking {
            let mut want_store = store_before.clone();
            if !empty && want_store.front() == Some(&d) {
                want_store.pop_front();
            }
            prop_assert_eq!(
                &self.queues[q].store,
                &want_store,
                "ACK changed the store wrongly"
            );
        } else if !matches!(cmd, Cmd::Send { .. }) {
            prop_assert_eq!(
                &self.queues[q].store,
                &store_before,
                "store changed without ACK"
            );
        }

        if let Cmd::Del { c, q, sub_new, .. } = cmd {
            let fresh = self.new_queue();
            self.queues[q] = fresh;
            for cm in &mut self.conns {
                cm.mode[q] = Mode::None;
                cm.holds[q] = false;
                cm.outstanding[q] = None;
                cm.last_msg[q] = None;
            }
            if sub_new {
                let rid = self.queues[q].rid;
                let me = self.conns[c].id;
                prop_assert!(self.reg.subscribe_new(&mut self.conns[c].local, rid, me));
                self.conns[c].mode[q] = Mode::Sub;
                self.conns[c].holds[q] = true;
            }
        }
        self.check_invariants()
    }

    fn check_invariants(&self) -> Result<(), TestCaseError> {
        let mut subscribed = 0;
        for (q, qm) in self.queues.iter().enumerate() {
            let holders: Vec<&ConnModel> = self.conns.iter().filter(|c| c.holds[q]).collect();
            prop_assert!(holders.len() <= 1, "two connections hold queue {q}");
            let sub = self.reg.subscriber(&qm.rid).copied();
            prop_assert_eq!(sub, holders.first().map(|c| c.id), "registry subscriber");
            let delivered = self.reg.delivered(&qm.rid);
            match holders.first() {
                Some(h) => {
                    subscribed += 1;
                    prop_assert_eq!(delivered, h.outstanding[q], "registry's delivered message");
                    if !qm.store.is_empty() {
                        prop_assert!(
                            delivered.is_some(),
                            "an idle subscriber with messages waiting"
                        );
                    }
                    let (name, d) = self.reg.info(&h.local, &qm.rid, h.id).expect("QUE info");
                    prop_assert_eq!((name, d), ("noSub", delivered));
                }
                None => prop_assert_eq!(delivered, None),
            }
            for cm in &self.conns {
                prop_assert_eq!(cm.local.used_sub(&qm.rid), cm.mode[q] == Mode::Sub);
                if let Mode::Get(d) = cm.mode[q] {
                    prop_assert_eq!(cm.local.get_delivered(&qm.rid), Some(d));
                }
            }
            // Nothing lost, order kept.
            let mut all = qm.removed.clone();
            all.extend(qm.store.iter().copied());
            prop_assert_eq!(&all, &qm.sent, "messages lost or reordered");
        }
        prop_assert_eq!(
            self.reg.len(),
            subscribed,
            "registry entries of no live subscription"
        );
        Ok(())
    }
}

fn per_conn(outs: &Outs) -> BTreeMap<ConnId, Vec<Out>> {
    let mut m: BTreeMap<ConnId, Vec<Out>> = BTreeMap::new();
    for &(c, o) in outs {
        m.entry(c).or_default().push(o);
    }
    m
}

fn cmd(nc: usize, nq: usize) -> impl Strategy<Value = Cmd> {
    let ack_id = prop_oneof![
        6 => Just(AckId::Delivered),
        1 => Just(AckId::Empty),
        2 => (0..8usize).prop_map(AckId::Sent),
        1 => Just(AckId::Short),
    ];
    prop_oneof![
        4 => (0..nc, 0..nq).prop_map(|(c, q)| Cmd::Sub { c, q }),
        1 => (0..nc, 0..nq).prop_map(|(c, q)| Cmd::Get { c, q }),
        6 => (0..nc, 0..nq, ack_id).prop_map(|(c, q, id)| Cmd::Ack { c, q, id }),
        5 => (0..nc, 0..nq).prop_map(|(c, q)| Cmd::Send { c, q }),
        1 => (0..nc).prop_map(|c| Cmd::Close { c }),
        1 => (0..nc, 0..nq, any::<bool>(), any::<bool>()).prop_map(|(c, q, by_control, sub_new)| {
            Cmd::Del { c, q, by_control, sub_new }
        }),
    ]
}

fn scenario() -> impl Strategy<Value = (usize, usize, Vec<Cmd>)> {
    (2..=4usize, 1..=3usize).prop_flat_map(|(nc, nq)| {
        (
            Just(nc),
            Just(nq),
            proptest::collection::vec(cmd(nc, nq), 1..80),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Random command sequences from several connections: every answer and event is the
    /// oracle's, and the invariants hold after every command.
    #[test]
    fn delivery_rules_hold((nc, nq, cmds) in scenario()) {
        let mut w = World::new(nc, nq);
        for cmd in cmds {
            w.step(cmd)?;
        }
    }
}

/// Runs commands, checking each against the oracle and the invariants; returns the outputs.
fn run_all(nc: usize, nq: usize, cmds: &[Cmd]) -> (World, Vec<Outs>) {
    let mut w = World::new(nc, nq);
    let mut all = Vec::new();
    for &cmd in cmds {
        let ack = match cmd {
            Cmd::Ack { c, q, id } => w.ack_bytes(c, q, id),
            _ => Vec::new(),
        };
        let want = w.expect(cmd, &ack);
        w.step(cmd).unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        all.push(want);
    }
    (w, all)
}

/// The walk-through of the rules the proptest checks at random: a takeover ends the previous
/// subscription once and redelivers the outstanding message, a `SEND` to a busy subscriber waits
/// for the `ACK`, and `GET` on the subscriber is prohibited.
#[test]
fn takeover_ends_once_and_redelivers() {
    let (w, outs) = run_all(
        3,
        1,
        &[
            Cmd::Sub { c: 0, q: 0 },
            Cmd::Send { c: 2, q: 0 },
            Cmd::Send { c: 2, q: 0 },
            Cmd::Sub { c: 1, q: 0 },
            Cmd::Get { c: 1, q: 0 },
            Cmd::Ack {
                c: 1,
                q: 0,
                id: AckId::Delivered,
            },
            Cmd::Ack {
                c: 0,
                q: 0,
                id: AckId::Delivered,
            },
            Cmd::Ack {
                c: 1,
                q: 0,
                id: AckId::Delivered,
            },
        ],
    );
    let (a, b, s) = (w.conns[0].id, w.conns[1].id, w.conns[2].id);
    let m1 = w.queues[0].sent[0];
    let m2 = w.queues[0].sent[1];
    assert_eq!(
        outs[1],
        vec![
            (
                a,
                Out::Msg {
                    id: m1,
                    corr: false
                }
            ),
            (s, Out::Ok)
        ]
    );
    // The second message waits for the ACK of the first.
    assert_eq!(outs[2], vec![(s, Out::Ok)]);
    // Takeover: END to the previous subscriber, the unacknowledged message again to the new one.
    assert_eq!(
        outs[3],
        vec![
            (a, Out::End),
            (b, Out::Sok),
            (
                b,
                Out::Msg {
                    id: m1,
                    corr: false
                }
            )
        ]
    );
    assert_eq!(outs[4], vec![(b, Out::Err(Refusal::Prohibited))]);
    assert_eq!(outs[5], vec![(b, Out::Msg { id: m2, corr: true })]);
    // The ended subscription cannot acknowledge.
    assert_eq!(outs[6], vec![(a, Out::Err(Refusal::NoMsg))]);
    assert_eq!(outs[7], vec![(b, Out::Ok)]);
    assert_eq!(w.queues[0].removed, vec![m1, m2]);
    assert!(w.queues[0].store.is_empty());
}

/// `SEND` to a queue whose subscriber is the sending connection: the `MSG` comes before the
/// `OK` of the `SEND`; after `GET` the connection cannot `SUB`, and its `ACK` deletes without
/// delivering the next message.
#[test]
fn own_send_and_get_mode() {
    let (w, outs) = run_all(
        2,
        1,
        &[
            Cmd::Sub { c: 0, q: 0 },
            Cmd::Send { c: 0, q: 0 },
            Cmd::Send { c: 0, q: 0 },
            Cmd::Get { c: 1, q: 0 },
            Cmd::Sub { c: 1, q: 0 },
            Cmd::Ack {
                c: 1,
                q: 0,
                id: AckId::Delivered,
            },
            Cmd::Ack {
                c: 0,
                q: 0,
                id: AckId::Delivered,
            },
        ],
    );
    let (a, b) = (w.conns[0].id, w.conns[1].id);
    let (m1, m2) = (w.queues[0].sent[0], w.queues[0].sent[1]);
    assert_eq!(
        outs[1],
        vec![
            (
                a,
                Out::Msg {
                    id: m1,
                    corr: false
                }
            ),
            (a, Out::Ok)
        ]
    );
    assert_eq!(outs[3], vec![(b, Out::Msg { id: m1, corr: true })]);
    assert_eq!(outs[4], vec![(b, Out::Err(Refusal::Prohibited))]);
    assert_eq!(outs[5], vec![(b, Out::Ok)]);
    // The subscriber's ACK finds its message gone (GET took it) and gets the next one.
    assert_eq!(outs[6], vec![(a, Out::Msg { id: m2, corr: true })]);
    assert_eq!(w.queues[0].removed, vec![m1]);
}

/// Inputs the shell can give in states the command sequences above never reach (a queue deleted
/// between `SUB`'s registry update and its store read; a subscriber left idle by a failed store
/// read): a delivery recorded for a connection that is no longer the subscriber is ignored, and
/// a message appended to a non-empty queue is never pushed (it is not the head).
#[test]
fn stale_inputs_change_nothing() {
    let now = Instant::now();
    let (rid, a, b) = (id_of(1), 10, 11);
    let (mut la, mut lb) = (ConnQueues::default(), ConnQueues::default());
    let mut reg: Registry<ConnId> = Registry::default();
    assert_eq!(reg.subscribe(&mut la, rid, a), Previous::None);
    assert_eq!(reg.subscribe(&mut lb, rid, b), Previous::Other(a));
    assert!(!reg.record_delivery(&rid, a, id_of(2), now));
    assert_eq!(reg.delivered(&rid), None);
    assert_eq!(reg.stored(&rid, false, id_of(3), || now), None);
    assert_eq!(reg.delivered(&rid), None);
    assert_eq!(reg.stored(&rid, true, id_of(4), || now), Some(b));
    assert_eq!(reg.delivered(&rid), Some(id_of(4)));
    // The old subscriber's connection closing leaves the new subscription alone.
    reg.connection_closed(a, &la);
    assert_eq!(reg.subscriber(&rid), Some(&b));
    assert_eq!(
        reg.queue_deleted(&rid, None),
        Some(Removed {
            conn: b,
            deld: true
        })
    );
    assert!(reg.is_empty());
    assert!(!reg.record_delivery(&rid, b, id_of(5), now));
    assert_eq!(lb.ack(&rid, &id_of(4)), Ok(AckRoute::Sub));
    assert_eq!(reg.ack(&rid, b, &id_of(4)), Err(Refusal::NoMsg));
}
