//! What a relay pushes without being asked (events: empty corrId), plus late and unexpected
//! responses, tagged with the entity id they concern.

use hush_proto::error::ErrorType;
use hush_proto::smp::BrokerMsg;

use crate::ClientError;
use crate::msg::RawMsg;

/// A server-pushed transmission (reference §2.7: events carry an empty corrId).
#[derive(Clone, Debug)]
pub enum ServerEvent {
    /// `MSG` on a subscribed queue (after `SOK`, or pushed on `SEND`), or a `MSG` answering an
    /// `ACK`/`GET` that had already timed out. Decrypt with [`RawMsg::decrypt`].
    Message { rcv_id: Vec<u8>, msg: RawMsg },
    /// `NMSG` to a notifier subscription; decrypt with [`crate::decrypt_nmsg`].
    Notification {
        notifier_id: Vec<u8>,
        nonce: [u8; 24],
        enc_meta: Vec<u8>,
    },
    /// `END`: another connection took over the subscription of this queue / notifier.
    End { entity_id: Vec<u8> },
    /// `DELD`: the queue (or notifier credentials) was deleted by another connection.
    Deleted { entity_id: Vec<u8> },
    /// `ENDS n`: a service subscription moved to another connection.
    ServiceEnd { service_id: Vec<u8>, count: i64 },
    /// `ERR` with an empty corrId (e.g. `ERR BLOCK` for a block the relay could not read).
    Error {
        entity_id: Vec<u8>,
        error: ErrorType,
    },
    /// A response that arrived after its command timed out.
    LateResponse {
        entity_id: Vec<u8>,
        command: &'static str,
        response: Result<BrokerMsg, ClientError>,
    },
    /// A well-formed transmission nobody asked for (unknown corrId, or an event tag that is
    /// never pushed).
    Unexpected {
        entity_id: Vec<u8>,
        tag: &'static str,
    },
    /// A transmission (or block) that does not parse.
    Unparsable { error: ErrorType },
}

impl ServerEvent {
    /// The entity (recipient / notifier / service id) the event is about; empty when none.
    pub fn entity_id(&self) -> &[u8] {
        match self {
            ServerEvent::Message { rcv_id, .. } => rcv_id,
            ServerEvent::Notification { notifier_id, .. } => notifier_id,
            ServerEvent::End { entity_id }
            | ServerEvent::Deleted { entity_id }
            | ServerEvent::Error { entity_id, .. }
            | ServerEvent::LateResponse { entity_id, .. }
            | ServerEvent::Unexpected { entity_id, .. } => entity_id,
            ServerEvent::ServiceEnd { service_id, .. } => service_id,
            ServerEvent::Unparsable { .. } => &[],
        }
    }
}
