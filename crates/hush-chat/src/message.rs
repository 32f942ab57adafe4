//! Typed chat messages and their JSON form (reference `Simplex.Chat.Protocol`:
//! `AppMessageJson`, `ChatMsgEvent`, `appJsonToCM`, `chatToAppMessage`; profile from
//! `Simplex.Chat.Types.Profile`).
//!
//! Wire shape: `{"v":"1-9","msgId":"<base64url>","event":"x.msg.new","params":{…}}`; `v` and
//! `msgId` may be absent (a missing `v` means version 1). Byte strings (`msgId`,
//! `contactReqId`, …) are base64url, emitted with `=` padding and read with or without it.
//! Our encoder always writes `v` (the reference does too). Object keys come out sorted; the
//! reference's tests compare decoded JSON values, not bytes, and so do ours.

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use rand::RngCore;
use serde_json::{Map, Value};

use crate::ChatError;
use crate::version::{ChatVersionRange, HUSH_CHAT_VRANGE};

/// JSON object (insertion order is not kept; keys serialize sorted).
pub type JsonObject = Map<String, Value>;

fn b64_decode(s: &str, field: &'static str) -> Result<Vec<u8>, ChatError> {
    let bad = || ChatError::BadBase64 { field };
    if s.ends_with('=') {
        URL_SAFE.decode(s).map_err(|_| bad())
    } else {
        URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())
    }
}

fn b64_encode(b: &[u8]) -> String {
    URL_SAFE.encode(b)
}

fn bad_params(event: &str, reason: impl Into<String>) -> ChatError {
    ChatError::BadParams {
        event: event.to_string(),
        reason: reason.into(),
    }
}

/// The id the sender gives a message (`SharedMsgId`); updates, deletions, quotes and
/// receipts refer to it. Opaque bytes; the app's are the standard-base64 text of 12 random
/// bytes (16 ASCII bytes, reference `createWithRandomId'` → `encodedRandomBytes gVar 12`),
/// which the JSON then carries base64url-encoded again.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SharedMsgId(pub Vec<u8>);

impl SharedMsgId {
    /// A new id shaped like the app's: standard base64 of 12 random bytes.
    pub fn random() -> SharedMsgId {
        let mut b = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut b);
        SharedMsgId(
            base64::engine::general_purpose::STANDARD
                .encode(b)
                .into_bytes(),
        )
    }

    /// The base64url text form used in JSON.
    pub fn to_text(&self) -> String {
        b64_encode(&self.0)
    }

    fn from_value(v: &Value, field: &'static str, event: &str) -> Result<SharedMsgId, ChatError> {
        match v {
            Value::String(s) => Ok(SharedMsgId(b64_decode(s, field)?)),
            _ => Err(bad_params(event, format!("{field} is not a string"))),
        }
    }
}

/// A user profile (`x.info`, `x.contact`). `displayName` is required; a missing `fullName`
/// reads as `""` (the reference requires it; the app always sends it). Fields this crate does
/// not model are kept in `other` and written back on encode.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Profile {
    pub display_name: String,
    pub full_name: String,
    /// Short description (≤ 160 characters in the app).
    pub short_descr: Option<String>,
    /// A `data:image/…;base64,…` URI.
    pub image: Option<String>,
    /// The contact's address link, if they share one.
    pub contact_link: Option<String>,
    /// Chat preferences (timed messages, reactions, voice, …), kept as JSON.
    pub preferences: Option<Value>,
    pub other: JsonObject,
}

impl Profile {
    /// A profile with just a display name.
    pub fn named(display_name: impl Into<String>) -> Profile {
        Profile {
            display_name: display_name.into(),
            ..Profile::default()
        }
    }

    fn from_value(v: &Value, event: &str) -> Result<Profile, ChatError> {
        let Value::Object(o) = v else {
            return Err(bad_params(event, "profile is not an object"));
        };
        let mut other = o.clone();
        let display_name = match other.remove("displayName") {
            Some(Value::String(s)) => s,
            _ => {
                return Err(bad_params(
                    event,
                    "profile.displayName missing or not a string",
                ));
            }
        };
        let full_name = match other.remove("fullName") {
            Some(Value::String(s)) => s,
            None | Some(Value::Null) => String::new(),
            Some(_) => return Err(bad_params(event, "profile.fullName is not a string")),
        };
        let mut opt_str = |key: &str| -> Result<Option<String>, ChatError> {
            match other.remove(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(bad_params(event, format!("profile.{key} is not a string"))),
            }
        };
        let short_descr = opt_str("shortDescr")?;
        let image = opt_str("image")?;
        let contact_link = opt_str("contactLink")?;
        let preferences = match other.remove("preferences") {
            None | Some(Value::Null) => None,
            Some(p @ Value::Object(_)) => Some(p),
            Some(_) => return Err(bad_params(event, "profile.preferences is not an object")),
        };
        Ok(Profile {
            display_name,
            full_name,
            short_descr,
            image,
            contact_link,
            preferences,
            other,
        })
    }

    fn to_value(&self) -> Value {
        let mut o = self.other.clone();
        o.insert(
            "displayName".into(),
            Value::String(self.display_name.clone()),
        );
        o.insert("fullName".into(), Value::String(self.full_name.clone()));
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(s) = v {
                o.insert(k.into(), Value::String(s.clone()));
            }
        };
        put("shortDescr", &self.short_descr);
        put("image", &self.image);
        put("contactLink", &self.contact_link);
        if let Some(p) = &self.preferences {
            o.insert("preferences".into(), p.clone());
        }
        Value::Object(o)
    }
}

/// Message content (`MsgContent`). Text is typed; every other type (link, image, file, voice,
/// report, chat link, future types) is kept whole as JSON with its text, which is what a text
/// client shows.
#[derive(Clone, Debug, PartialEq)]
pub enum MsgContent {
    /// `{"type":"text","text":…}`
    Text(String),
    /// Any other `type`; `text` is the object's `text` (or `""`), `json` the whole object,
    /// written back unchanged on encode (as the reference does for `MCUnknown`).
    Other {
        tag: String,
        text: String,
        json: JsonObject,
    },
}

impl MsgContent {
    /// The text to show.
    pub fn text(&self) -> &str {
        match self {
            MsgContent::Text(t) => t,
            MsgContent::Other { text, .. } => text,
        }
    }

    /// The content type (`"text"`, `"image"`, …).
    pub fn tag(&self) -> &str {
        match self {
            MsgContent::Text(_) => "text",
            MsgContent::Other { tag, .. } => tag,
        }
    }

    fn from_value(v: &Value, event: &str) -> Result<MsgContent, ChatError> {
        let Value::Object(o) = v else {
            return Err(bad_params(event, "content is not an object"));
        };
        let tag = match o.get("type") {
            Some(Value::String(t)) => t.as_str(),
            _ => return Err(bad_params(event, "content.type missing or not a string")),
        };
        let text = match o.get("text") {
            Some(Value::String(t)) => Some(t.clone()),
            None | Some(Value::Null) => None,
            Some(_) => return Err(bad_params(event, "content.text is not a string")),
        };
        if tag == "text" {
            return text
                .map(MsgContent::Text)
                .ok_or_else(|| bad_params(event, "text content without text"));
        }
        Ok(MsgContent::Other {
            tag: tag.to_string(),
            text: text.unwrap_or_default(),
            json: o.clone(),
        })
    }

    fn to_value(&self) -> Value {
        match self {
            MsgContent::Text(t) => {
                let mut o = Map::new();
                o.insert("type".into(), Value::String("text".into()));
                o.insert("text".into(), Value::String(t.clone()));
                Value::Object(o)
            }
            MsgContent::Other { json, .. } => Value::Object(json.clone()),
        }
    }
}

/// `x.msg.new` params (`MsgContainer`). `quote` (a reply) is kept as JSON; `forward` is true
/// for a forwarded message (the reference reads `true`/`false` or an object as true). Other
/// fields (`file`, `mentions`, `parent`, `scope`, `asGroup`, …) are kept in `other` and written
/// back unchanged.
#[derive(Clone, Debug, PartialEq)]
pub struct MsgContainer {
    pub content: MsgContent,
    pub quote: Option<Value>,
    pub forward: bool,
    /// Timed message: seconds until it disappears.
    pub ttl: Option<i64>,
    /// A "live" message still being typed (updated by `x.msg.update`).
    pub live: Option<bool>,
    pub other: JsonObject,
}

impl MsgContainer {
    /// Plain content, no reply, no forward.
    pub fn simple(content: MsgContent) -> MsgContainer {
        MsgContainer {
            content,
            quote: None,
            forward: false,
            ttl: None,
            live: None,
            other: Map::new(),
        }
    }

    fn from_params(p: &JsonObject, event: &str) -> Result<MsgContainer, ChatError> {
        let mut other = p.clone();
        let content = match other.remove("content") {
            Some(c) => MsgContent::from_value(&c, event)?,
            None => return Err(bad_params(event, "content missing")),
        };
        let quote = match other.remove("quote") {
            None | Some(Value::Null) => None,
            Some(q @ Value::Object(_)) => Some(q),
            Some(_) => return Err(bad_params(event, "quote is not an object")),
        };
        let forward = match other.remove("forward") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(Value::Object(_)) => true,
            Some(_) => return Err(bad_params(event, "invalid forward field")),
        };
        let ttl = opt_i64(&mut other, "ttl", event)?;
        let live = opt_bool(&mut other, "live", event)?;
        Ok(MsgContainer {
            content,
            quote,
            forward,
            ttl,
            live,
            other,
        })
    }

    fn to_params(&self) -> JsonObject {
        let mut o = self.other.clone();
        o.insert("content".into(), self.content.to_value());
        if let Some(q) = &self.quote {
            o.insert("quote".into(), q.clone());
        }
        if self.forward {
            o.insert("forward".into(), Value::Bool(true));
        }
        if let Some(t) = self.ttl {
            o.insert("ttl".into(), Value::from(t));
        }
        if let Some(l) = self.live {
            o.insert("live".into(), Value::Bool(l));
        }
        o
    }
}

fn opt_i64(o: &mut JsonObject, key: &str, event: &str) -> Result<Option<i64>, ChatError> {
    match o.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| bad_params(event, format!("{key} is not an integer"))),
        Some(_) => Err(bad_params(event, format!("{key} is not an integer"))),
    }
}

fn opt_bool(o: &mut JsonObject, key: &str, event: &str) -> Result<Option<bool>, ChatError> {
    match o.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(bad_params(event, format!("{key} is not a boolean"))),
    }
}

/// What a chat message says. Events this crate does not model — all `x.grp.*`, files, calls,
/// reactions, probes, `x.msg.deleted`, `x.direct.del`, and names nobody has defined yet — decode
/// to [`ChatMsgEvent::Unknown`] with their params, never to an error.
#[derive(Clone, Debug, PartialEq)]
pub enum ChatMsgEvent {
    /// `x.msg.new`: a new message.
    MsgNew(MsgContainer),
    /// `x.msg.update`: the sender edited message `msg_id`. `other` keeps `mentions`, `ttl`,
    /// `live`, `scope`, `asGroup`, `prefs`.
    MsgUpdate {
        msg_id: SharedMsgId,
        content: MsgContent,
        other: JsonObject,
    },
    /// `x.msg.del`: the sender deleted message `msg_id`. `other` keeps `memberId`, `scope`
    /// (groups).
    MsgDel {
        msg_id: SharedMsgId,
        other: JsonObject,
    },
    /// `x.info`: the sender's profile (conn info of a direct connection, or a profile update).
    Info(Profile),
    /// `x.contact`: a request sent to a contact address, with the requester's profile, an
    /// optional request id (`contactReqId`, lets the address owner spot a repeated request), the
    /// welcome message id the requester saw in the address's link data, and an optional
    /// message sent with the request (`msgId` + `content`, both needed).
    Contact {
        profile: Profile,
        contact_req_id: Option<Vec<u8>>,
        welcome_msg_id: Option<SharedMsgId>,
        request_msg: Option<(SharedMsgId, MsgContent)>,
    },
    /// `x.ok`: empty params.
    Ok,
    /// Anything else, kept whole.
    Unknown { event: String, params: JsonObject },
}

impl ChatMsgEvent {
    /// The event name on the wire.
    pub fn name(&self) -> &str {
        match self {
            ChatMsgEvent::MsgNew(_) => "x.msg.new",
            ChatMsgEvent::MsgUpdate { .. } => "x.msg.update",
            ChatMsgEvent::MsgDel { .. } => "x.msg.del",
            ChatMsgEvent::Info(_) => "x.info",
            ChatMsgEvent::Contact { .. } => "x.contact",
            ChatMsgEvent::Ok => "x.ok",
            ChatMsgEvent::Unknown { event, .. } => event,
        }
    }

    /// Whether the app shows a notification for this event (reference `hasNotification`,
    /// the agent's `MsgFlags.notification`), for the events this crate types.
    pub fn has_notification(&self) -> bool {
        match self {
            ChatMsgEvent::MsgNew(_) | ChatMsgEvent::Contact { .. } => true,
            ChatMsgEvent::Unknown { event, .. } => matches!(
                event.as_str(),
                "x.file" | "x.grp.inv" | "x.grp.mem.fwd" | "x.grp.del" | "x.call.inv"
            ),
            _ => false,
        }
    }

    /// Whether the app asks for a delivery receipt for this event (reference
    /// `hasDeliveryReceipt`).
    pub fn has_delivery_receipt(&self) -> bool {
        match self {
            ChatMsgEvent::MsgNew(_) => true,
            ChatMsgEvent::Unknown { event, .. } => {
                matches!(event.as_str(), "x.grp.inv" | "x.call.inv")
            }
            _ => false,
        }
    }

    fn from_parts(event: &str, params: &JsonObject) -> Result<ChatMsgEvent, ChatError> {
        Ok(match event {
            "x.msg.new" => ChatMsgEvent::MsgNew(MsgContainer::from_params(params, event)?),
            "x.msg.update" => {
                let mut other = params.clone();
                let msg_id = match other.remove("msgId") {
                    Some(v) => SharedMsgId::from_value(&v, "msgId", event)?,
                    None => return Err(bad_params(event, "msgId missing")),
                };
                let content = match other.remove("content") {
                    Some(c) => MsgContent::from_value(&c, event)?,
                    None => return Err(bad_params(event, "content missing")),
                };
                ChatMsgEvent::MsgUpdate {
                    msg_id,
                    content,
                    other,
                }
            }
            "x.msg.del" => {
                let mut other = params.clone();
                let msg_id = match other.remove("msgId") {
                    Some(v) => SharedMsgId::from_value(&v, "msgId", event)?,
                    None => return Err(bad_params(event, "msgId missing")),
                };
                ChatMsgEvent::MsgDel { msg_id, other }
            }
            "x.info" => match params.get("profile") {
                Some(p) => ChatMsgEvent::Info(Profile::from_value(p, event)?),
                None => return Err(bad_params(event, "profile missing")),
            },
            "x.contact" => {
                let profile = match params.get("profile") {
                    Some(p) => Profile::from_value(p, event)?,
                    None => return Err(bad_params(event, "profile missing")),
                };
                let contact_req_id = match params.get("contactReqId") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(b64_decode(s, "contactReqId")?),
                    Some(_) => return Err(bad_params(event, "contactReqId is not a string")),
                };
                let opt_id = |key: &'static str| -> Result<Option<SharedMsgId>, ChatError> {
                    match params.get(key) {
                        None | Some(Value::Null) => Ok(None),
                        Some(v) => SharedMsgId::from_value(v, key, event).map(Some),
                    }
                };
                let welcome_msg_id = opt_id("welcomeMsgId")?;
                let req_msg_id = opt_id("msgId")?;
                let req_content = match params.get("content") {
                    None | Some(Value::Null) => None,
                    Some(c) => Some(MsgContent::from_value(c, event)?),
                };
                ChatMsgEvent::Contact {
                    profile,
                    contact_req_id,
                    welcome_msg_id,
                    request_msg: req_msg_id.zip(req_content),
                }
            }
            "x.ok" => ChatMsgEvent::Ok,
            _ => {
                tracing::debug!(event, "chat: unknown event kept as Unknown");
                ChatMsgEvent::Unknown {
                    event: event.to_string(),
                    params: params.clone(),
                }
            }
        })
    }

    fn to_params(&self) -> JsonObject {
        match self {
            ChatMsgEvent::MsgNew(c) => c.to_params(),
            ChatMsgEvent::MsgUpdate {
                msg_id,
                content,
                other,
            } => {
                let mut o = other.clone();
                o.insert("msgId".into(), Value::String(msg_id.to_text()));
                o.insert("content".into(), content.to_value());
                o
            }
            ChatMsgEvent::MsgDel { msg_id, other } => {
                let mut o = other.clone();
                o.insert("msgId".into(), Value::String(msg_id.to_text()));
                o
            }
            ChatMsgEvent::Info(p) => {
                let mut o = Map::new();
                o.insert("profile".into(), p.to_value());
                o
            }
            ChatMsgEvent::Contact {
                profile,
                contact_req_id,
                welcome_msg_id,
                request_msg,
            } => {
                let mut o = Map::new();
                o.insert("profile".into(), profile.to_value());
                if let Some(id) = contact_req_id {
                    o.insert("contactReqId".into(), Value::String(b64_encode(id)));
                }
                if let Some(id) = welcome_msg_id {
                    o.insert("welcomeMsgId".into(), Value::String(id.to_text()));
                }
                if let Some((id, content)) = request_msg {
                    o.insert("msgId".into(), Value::String(id.to_text()));
                    o.insert("content".into(), content.to_value());
                }
                o
            }
            ChatMsgEvent::Ok => Map::new(),
            ChatMsgEvent::Unknown { params, .. } => params.clone(),
        }
    }
}

/// One chat message (reference `ChatMessage 'Json`).
#[derive(Clone, Debug, PartialEq)]
pub struct ChatMessage {
    /// The sender's supported chat versions (`"v"`; [`ChatVersionRange::INITIAL`] when absent).
    pub chat_vrange: ChatVersionRange,
    pub msg_id: Option<SharedMsgId>,
    pub event: ChatMsgEvent,
}

impl ChatMessage {
    /// A message from hush sent over an established connection: our version range and a
    /// fresh random `msgId` (the app gives every message it sends one; edits, deletions,
    /// replies and receipts refer to it).
    pub fn new(event: ChatMsgEvent) -> ChatMessage {
        ChatMessage {
            chat_vrange: HUSH_CHAT_VRANGE,
            msg_id: Some(SharedMsgId::random()),
            event,
        }
    }

    /// A message for connection info (join / confirmation / contact request): our version
    /// range and no `msgId` (reference `encodeConnInfo`).
    pub fn conn_info(event: ChatMsgEvent) -> ChatMessage {
        ChatMessage {
            chat_vrange: HUSH_CHAT_VRANGE,
            msg_id: None,
            event,
        }
    }

    /// `x.msg.new` with text content.
    pub fn text(text: impl Into<String>) -> ChatMessage {
        ChatMessage::new(ChatMsgEvent::MsgNew(MsgContainer::simple(
            MsgContent::Text(text.into()),
        )))
    }

    /// `x.info` with `profile` as connection info (what hush sends when it joins an invitation
    /// or confirms a connection). A later profile update is
    /// `ChatMessage::new(ChatMsgEvent::Info(profile))`.
    pub fn info(profile: Profile) -> ChatMessage {
        ChatMessage::conn_info(ChatMsgEvent::Info(profile))
    }

    /// `x.contact` with `profile` and a fresh random request id of 16 bytes, as the app makes
    /// it (what hush sends as conn info when it uses someone's contact address). Send the same
    /// id again if the request is repeated, so the address owner sees one request.
    pub fn contact_request(profile: Profile) -> ChatMessage {
        let mut id = vec![0u8; 16];
        rand::thread_rng().fill_bytes(&mut id);
        ChatMessage::conn_info(ChatMsgEvent::Contact {
            profile,
            contact_req_id: Some(id),
            welcome_msg_id: None,
            request_msg: None,
        })
    }

    /// The text of an `x.msg.new`, if that is what this is.
    pub fn msg_text(&self) -> Option<&str> {
        match &self.event {
            ChatMsgEvent::MsgNew(c) => Some(c.content.text()),
            _ => None,
        }
    }

    /// The profile carried by `x.info` or `x.contact`.
    pub fn profile(&self) -> Option<&Profile> {
        match &self.event {
            ChatMsgEvent::Info(p) | ChatMsgEvent::Contact { profile: p, .. } => Some(p),
            _ => None,
        }
    }

    /// Decodes one JSON value (an object with `event` and `params`).
    pub fn from_json(v: &Value) -> Result<ChatMessage, ChatError> {
        let Value::Object(o) = v else {
            return Err(ChatError::Json("chat message is not an object".into()));
        };
        let event = match o.get("event") {
            Some(Value::String(e)) => e.as_str(),
            _ => return Err(ChatError::Json("event missing or not a string".into())),
        };
        let params = match o.get("params") {
            Some(Value::Object(p)) => p,
            _ => return Err(ChatError::Json("params missing or not an object".into())),
        };
        let chat_vrange = match o.get("v") {
            None | Some(Value::Null) => ChatVersionRange::INITIAL,
            Some(Value::String(s)) => s.parse()?,
            Some(other) => return Err(ChatError::BadVersionRange(other.to_string())),
        };
        let msg_id = match o.get("msgId") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(SharedMsgId(b64_decode(s, "msgId")?)),
            Some(_) => return Err(ChatError::BadBase64 { field: "msgId" }),
        };
        Ok(ChatMessage {
            chat_vrange,
            msg_id,
            event: ChatMsgEvent::from_parts(event, params)?,
        })
    }

    /// Decodes one JSON chat message from bytes (no batch framing; see
    /// [`crate::parse_chat_messages`] for message bodies as they arrive).
    pub fn from_json_bytes(b: &[u8]) -> Result<ChatMessage, ChatError> {
        let v: Value = serde_json::from_slice(b).map_err(|e| ChatError::Json(e.to_string()))?;
        ChatMessage::from_json(&v)
    }

    /// The JSON value of this message.
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("v".into(), Value::String(self.chat_vrange.to_string()));
        if let Some(id) = &self.msg_id {
            o.insert("msgId".into(), Value::String(id.to_text()));
        }
        o.insert("event".into(), Value::String(self.event.name().to_string()));
        o.insert("params".into(), Value::Object(self.event.to_params()));
        Value::Object(o)
    }

    /// The JSON bytes of this message (reference `encodeChatMessage` without the size check).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_json()).expect("a JSON value always serializes")
    }

    /// The JSON bytes, or [`ChatError::TooLarge`] over `max_len` (reference `ECMLarge`).
    pub fn encode_max(&self, max_len: usize) -> Result<Vec<u8>, ChatError> {
        let b = self.encode();
        if b.len() > max_len {
            return Err(ChatError::TooLarge {
                len: b.len(),
                limit: max_len,
            });
        }
        Ok(b)
    }
}
