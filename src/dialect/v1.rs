//! rollcall's protocol v1 as a dialect: the query of `/` names the user, channels, events
//! mode and watches; frames are the JSON commands and events of `docs/protocol.md` (their
//! codec is [`crate::protocol`]).

use super::{Decoded, Frame};
use crate::http::upgrade::{self, Access};
use crate::http::{Request, Response, Upgrade};
use crate::model::{CommandError, ErrorCode, Event};
use crate::protocol::{self, event};

/// Validates the upgrade request (RFC 6455 §4.2.1) and reads its query.
pub fn upgrade(request: &Request, access: Access<'_>) -> Result<Upgrade, Response> {
    upgrade::validate(request, access)
}

/// A text frame is a JSON command; a binary frame is refused.
pub fn decode(frame: Frame<'_>, max_meta_size: usize) -> Decoded {
    match frame {
        Frame::Text(text) => match protocol::decode(text, max_meta_size) {
            Ok(command) => Decoded::Command(command),
            Err(error) => Decoded::Refused(error),
        },
        Frame::Binary(_) => Decoded::Refused(CommandError::new(
            ErrorCode::BadRequest,
            "binary frames are not part of the protocol; send JSON text",
        )),
    }
}

/// The JSON text of `event`; `None` for the events of another dialect's apps (Pusher's named
/// events, subscriptions and pings never reach a v1 connection).
pub fn encode(event: &Event<'_>) -> Option<String> {
    Some(match *event {
        Event::Welcome {
            conn,
            user,
            interval_ms,
            timeout_ms,
        } => event::welcome(conn, user, interval_ms, timeout_ms),
        Event::State {
            channel,
            seq,
            members,
            reference,
        } => event::state(channel, seq, members(), reference),
        Event::Count {
            channel,
            counts,
            reference,
        } => event::count(channel, counts, reference),
        Event::Join {
            channel,
            user,
            meta,
            seq,
        } => event::join(channel, user, meta, seq),
        Event::Leave {
            channel,
            user,
            reason,
            seq,
        } => event::leave(channel, user, reason, seq),
        Event::Update {
            channel,
            user,
            meta,
            seq,
        } => event::update(channel, user, meta, seq),
        Event::Diff { channel, diff } => event::diff(channel, diff),
        Event::Message {
            channel: Some(channel),
            from,
            data,
        } => event::message(channel, from, data),
        Event::Message {
            channel: None,
            data,
            ..
        } => event::direct_message(data),
        Event::Refreshed {
            expires_at,
            reference,
        } => event::refreshed(expires_at, reference),
        Event::Pong { id, reference } => event::pong(id, reference),
        Event::Error {
            code,
            message,
            reference,
            ..
        } => event::error(code, message, reference),
        Event::UserStatuses {
            online,
            offline,
            reference,
        } => event::users(online, offline, reference),
        Event::UserOnline { user } => event::user_online(user),
        Event::UserOffline { user, last_seen } => event::user_offline(user, last_seen),
        Event::Named { .. }
        | Event::Subscribed { .. }
        | Event::CacheMiss { .. }
        | Event::Ping
        | Event::Coded { .. }
        | Event::SignedIn { .. }
        | Event::Watchlist { .. } => return None,
    })
}
