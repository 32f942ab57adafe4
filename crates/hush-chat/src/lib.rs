//! The SimpleX Chat protocol as the SimpleX Chat apps speak it, above the agent: what goes in
//! an agent message body and in connection info.
//!
//! Sans-IO: bytes in, typed messages out, and back. Sending and receiving is the agent's job
//! (`hush-agent`); this crate only encodes and decodes.
//!
//! ```
//! use hush_chat::{ChatMessage, ChatMsgEvent, Profile, parse_chat_messages};
//!
//! // conn info when joining an invitation (or confirming one)
//! let info = ChatMessage::info(Profile::named("alice")).encode();
//! // a text message
//! let body = ChatMessage::text("hello").encode();
//! for m in parse_chat_messages(&body) {
//!     match m {
//!         Ok(m) => assert_eq!(m.msg_text(), Some("hello")),
//!         Err(e) => eprintln!("bad chat message: {e}"),
//!     }
//! }
//! # let _ = info;
//! ```
//!
//! See README.md for what is supported and how a client or bot uses it.

mod error;
mod framing;
mod message;
pub mod version;

pub use error::ChatError;
pub use framing::{
    DecodeLimits, MAX_COMPRESSED_INFO_LENGTH, MAX_COMPRESSED_MSG_LENGTH,
    MAX_DECOMPRESSED_MSG_LENGTH, MAX_ENCODED_INFO_LENGTH, MAX_ENCODED_MSG_LENGTH,
    MAX_LENGTH_PASSTHROUGH, ZSTD_LEVEL, batch_messages, compress_body, conn_info_body,
    decompress_capped, message_body, parse_chat_messages, parse_chat_messages_with,
};
pub use message::{
    ChatMessage, ChatMsgEvent, JsonObject, MsgContainer, MsgContent, Profile, SharedMsgId,
};
pub use version::{ChatVersionRange, HUSH_CHAT_VRANGE};
