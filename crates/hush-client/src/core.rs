//! The sans-IO core of a relay connection: encoding authorized transmissions, correlating
//! responses with commands by corrId, and classifying what the relay sends (reference §2.7,
//! upstream `Client.hs` `processMsg`). No sockets, no clocks, no tasks: [`crate::SmpClient`]
//! drives it.

use std::collections::HashMap;

use hush_crypto::X25519Public;
use hush_proto::error::ErrorType;
use hush_proto::smp::{BrokerMsg, Command, check_server_transmission};
use hush_proto::transmission::{
    Layout, Transmission, decode_transmission_with, encode_transmission_with, try_authorized_bytes,
};
use rand::RngCore;

use crate::keys::AuthKey;
use crate::msg::RawMsg;
use crate::{ClientError, ServerEvent};

/// Correlation ids are 24 random bytes (they double as the authenticator nonce).
pub const CORR_ID_LEN: usize = 24;

/// A fresh random correlation id.
pub fn new_corr_id() -> [u8; CORR_ID_LEN] {
    let mut c = [0u8; CORR_ID_LEN];
    rand::rngs::OsRng.fill_bytes(&mut c);
    c
}

/// What the handshake fixed for this connection.
#[derive(Clone, Debug)]
pub struct SessionParams {
    /// Negotiated SMP version.
    pub version: u16,
    /// tls-unique; part of every authorized byte string.
    pub session_id: Vec<u8>,
    /// The relay's per-connection X25519 key (for authenticators).
    pub server_session_key: Option<X25519Public>,
    /// 16384 for SMP.
    pub block_size: usize,
}

/// Encodes one transmission: `auth ‖ [service slot] ‖ corrId ‖ entityId ‖ command`, with the
/// authorization made over `shortString(sessionId) ‖ corrId ‖ entityId ‖ command`.
pub fn encode_command(
    session: &SessionParams,
    corr_id: &[u8],
    entity_id: &[u8],
    command: &[u8],
    key: Option<&AuthKey>,
) -> Result<Vec<u8>, ClientError> {
    let authorization = match key {
        Some(k) => {
            // shortString(sessionId) ‖ shortString(corrId) ‖ shortString(entityId), then the
            // command where it is (not copied behind them).
            let head = try_authorized_bytes(&session.session_id, corr_id, entity_id, &[])
                .map_err(|_| ClientError::Auth("field over 255 bytes"))?;
            k.authorize_parts(
                session.server_session_key.as_ref(),
                corr_id,
                &[&head, command],
            )?
        }
        None => Vec::new(),
    };
    let t = Transmission {
        authorization: &authorization,
        service_sig: None,
        session_id: &session.session_id,
        corr_id,
        entity_id,
        command,
    };
    let mut out = Vec::with_capacity(command.len() + authorization.len() + 64);
    encode_transmission_with(&mut out, &t, Layout::smp(session.version))
        .map_err(|_| ClientError::Auth("transmission field too long"))?;
    Ok(out)
}

/// [`encode_command`] in a service session (SMP v16+, reference `useServiceAuth`): the entity
/// key authorizes `certHash ‖ authorized` and the session's service key signs `authorized`
/// into the service slot. Without `key` (or without `service`) it is [`encode_command`].
pub fn encode_command_service(
    session: &SessionParams,
    corr_id: &[u8],
    entity_id: &[u8],
    command: &[u8],
    key: Option<&AuthKey>,
    service: Option<&hush_transport::ClientService>,
) -> Result<Vec<u8>, ClientError> {
    let (Some(k), Some(svc)) = (key, service) else {
        return encode_command(session, corr_id, entity_id, command, key);
    };
    let authorized = try_authorized_bytes(&session.session_id, corr_id, entity_id, command)
        .map_err(|_| ClientError::Auth("field over 255 bytes"))?;
    let mut with_cert = Vec::with_capacity(32 + authorized.len());
    with_cert.extend_from_slice(&svc.cert_hash);
    with_cert.extend_from_slice(&authorized);
    let authorization = k.authorize(session.server_session_key.as_ref(), corr_id, &with_cert)?;
    let service_sig = svc.key.sign(&authorized);
    let t = Transmission {
        authorization: &authorization,
        service_sig: Some(&service_sig),
        session_id: &session.session_id,
        corr_id,
        entity_id,
        command,
    };
    let mut out = Vec::with_capacity(command.len() + authorization.len() + 128);
    encode_transmission_with(&mut out, &t, Layout::smp(session.version))
        .map_err(|_| ClientError::Auth("transmission field too long"))?;
    Ok(out)
}

/// One decoded transmission from the relay.
#[derive(Debug)]
pub enum Incoming {
    /// A reply to a command (non-empty corrId).
    Response {
        corr_id: Vec<u8>,
        entity_id: Vec<u8>,
        /// `Err` = the transmission did not parse (the reference hands the waiter a
        /// `CMD SYNTAX`-style error).
        msg: Result<BrokerMsg, ErrorType>,
    },
    /// A server-initiated message (empty corrId).
    Event(ServerEvent),
}

/// Parses one transmission of a received block.
pub fn decode_incoming(bytes: &[u8], session: &SessionParams) -> Incoming {
    let t = match decode_transmission_with(bytes, Layout::smp(session.version)) {
        Ok(t) => t,
        Err(_) => {
            return Incoming::Event(ServerEvent::Unparsable {
                error: ErrorType::Block,
            });
        }
    };
    let msg = check_server_transmission(&t, session.version, &session.session_id);
    if !t.corr_id.is_empty() {
        return Incoming::Response {
            corr_id: t.corr_id.to_vec(),
            entity_id: t.entity_id.to_vec(),
            msg,
        };
    }
    Incoming::Event(event_of(t.entity_id, msg))
}

fn event_of(entity: &[u8], msg: Result<BrokerMsg, ErrorType>) -> ServerEvent {
    let entity_id = entity.to_vec();
    match msg {
        Ok(BrokerMsg::Msg { msg_id, body }) => ServerEvent::Message {
            rcv_id: entity_id,
            msg: RawMsg {
                msg_id: msg_id.into_vec(),
                enc_body: body,
            },
        },
        Ok(BrokerMsg::End) => ServerEvent::End { entity_id },
        Ok(BrokerMsg::Deld) => ServerEvent::Deleted { entity_id },
        Ok(BrokerMsg::NMsg { nonce, enc_meta }) => ServerEvent::Notification {
            notifier_id: entity_id,
            nonce,
            enc_meta: enc_meta.into_vec(),
        },
        Ok(BrokerMsg::Ends(n)) => ServerEvent::ServiceEnd {
            service_id: entity_id,
            count: n,
        },
        Ok(BrokerMsg::Err(error)) => ServerEvent::Error { entity_id, error },
        Ok(other) => ServerEvent::Unexpected {
            entity_id,
            tag: other.tag(),
        },
        Err(error) => ServerEvent::Unparsable { error },
    }
}

/// A command waiting for its response.
#[derive(Debug)]
struct Pending<W> {
    entity_id: Vec<u8>,
    command: &'static str,
    /// `None` once the command timed out: a late response is then reported as an event.
    waiter: Option<W>,
}

/// What to do with a response.
#[derive(Debug)]
pub enum Resolution<W> {
    /// Hand `result` to the waiting command.
    Deliver(W, Result<BrokerMsg, ClientError>),
    /// The command timed out earlier; report the response as an event.
    Late(ServerEvent),
    /// No command with this corrId (the reference's "unexpected response").
    Unknown(ServerEvent),
}

/// corrId → waiting command. `W` is whatever wakes the caller (a oneshot sender in
/// [`crate::SmpClient`], a plain value in tests).
#[derive(Debug)]
pub struct Correlator<W> {
    pending: HashMap<Vec<u8>, Pending<W>>,
    /// Timed-out commands whose response has not arrived, oldest first (bounded).
    timed_out: std::collections::VecDeque<Vec<u8>>,
    max_timed_out: usize,
}

impl<W> Default for Correlator<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<W> Correlator<W> {
    pub fn new() -> Self {
        Correlator {
            pending: HashMap::new(),
            timed_out: std::collections::VecDeque::new(),
            max_timed_out: 1024,
        }
    }

    /// Number of commands still expecting a response (including timed-out ones).
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Number of commands whose caller is still waiting.
    pub fn waiting(&self) -> usize {
        self.pending.values().filter(|p| p.waiter.is_some()).count()
    }

    /// Registers a command before it is sent.
    pub fn register(&mut self, corr_id: Vec<u8>, entity_id: Vec<u8>, command: &'static str, w: W) {
        self.pending.insert(
            corr_id,
            Pending {
                entity_id,
                command,
                waiter: Some(w),
            },
        );
    }

    /// Fails one command now (e.g. it was too large to send); returns its waiter.
    pub fn remove(&mut self, corr_id: &[u8]) -> Option<W> {
        self.pending.remove(corr_id).and_then(|p| p.waiter)
    }

    /// The caller gave up waiting: keep the entry so a late response is recognised, but
    /// remember at most `max_timed_out` of them.
    pub fn time_out(&mut self, corr_id: &[u8]) {
        if let Some(p) = self.pending.get_mut(corr_id)
            && p.waiter.take().is_some()
        {
            self.timed_out.push_back(corr_id.to_vec());
            while self.timed_out.len() > self.max_timed_out {
                if let Some(old) = self.timed_out.pop_front()
                    && self.pending.get(&old).is_some_and(|p| p.waiter.is_none())
                {
                    self.pending.remove(&old);
                }
            }
        }
    }

    /// Matches a response to its command (reference `processMsg`): the entity must be the
    /// command's (an `ERR` with an empty entity — `BLOCK`/`SESSION` — is accepted too).
    pub fn resolve(
        &mut self,
        corr_id: &[u8],
        entity_id: Vec<u8>,
        msg: Result<BrokerMsg, ErrorType>,
    ) -> Resolution<W> {
        self.resolve_live(corr_id, entity_id, msg, |_| true)
    }

    /// [`Correlator::resolve`], treating a waiter for which `alive` is false (its caller gave
    /// up, e.g. the request future was dropped) like a timed-out one, so that its response —
    /// a `MSG` answering `ACK` in particular — is reported as an event instead of being lost.
    pub fn resolve_live(
        &mut self,
        corr_id: &[u8],
        entity_id: Vec<u8>,
        msg: Result<BrokerMsg, ErrorType>,
        alive: impl FnOnce(&W) -> bool,
    ) -> Resolution<W> {
        let Some(mut p) = self.pending.remove(corr_id) else {
            return Resolution::Unknown(unknown_event(entity_id, msg));
        };
        if p.waiter.as_ref().is_some_and(|w| !alive(w)) {
            p.waiter = None;
        }
        let entity_ok = p.entity_id == entity_id
            || (entity_id.is_empty() && matches!(msg, Ok(BrokerMsg::Err(_))));
        match p.waiter {
            Some(w) => {
                let tag = msg.as_ref().map(BrokerMsg::tag).unwrap_or("?");
                let result = match msg {
                    Ok(_) if !entity_ok => Err(ClientError::UnexpectedResponse {
                        command: p.command,
                        tag,
                    }),
                    Ok(BrokerMsg::Err(e)) => Err(ClientError::Smp(e)),
                    Ok(m) => Ok(m),
                    Err(e) => Err(ClientError::BadResponse(e)),
                };
                Resolution::Deliver(w, result)
            }
            None => {
                self.timed_out.retain(|c| c.as_slice() != corr_id);
                Resolution::Late(match msg {
                    // A late MSG (to ACK/GET) is still a message for the recipient.
                    Ok(BrokerMsg::Msg { msg_id, body }) if entity_ok => ServerEvent::Message {
                        rcv_id: entity_id,
                        msg: RawMsg {
                            msg_id: msg_id.into_vec(),
                            enc_body: body,
                        },
                    },
                    msg => ServerEvent::LateResponse {
                        entity_id,
                        command: p.command,
                        response: msg.map_err(ClientError::BadResponse),
                    },
                })
            }
        }
    }

    /// The connection ended: every waiter, to be failed.
    pub fn drain(&mut self) -> Vec<W> {
        self.timed_out.clear();
        self.pending.drain().filter_map(|(_, p)| p.waiter).collect()
    }
}

fn unknown_event(entity_id: Vec<u8>, msg: Result<BrokerMsg, ErrorType>) -> ServerEvent {
    match msg {
        Ok(m) => ServerEvent::Unexpected {
            entity_id,
            tag: m.tag(),
        },
        Err(error) => ServerEvent::Unparsable { error },
    }
}

/// The wire tag of a command (for errors and logs).
pub fn command_tag(c: &Command) -> &'static str {
    c.tag()
}
