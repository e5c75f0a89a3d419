//! Carrying out the engine's effects: deliveries into the connections' queues, Pings,
//! Close frames, dropped sockets, deadlines on the wheel, the Redis connections.
//!
//! Invariants: effects are carried out in the order the engine decided them; a connection
//! an effect names that is gone (or no longer open) is skipped; an ending is counted in the
//! metrics exactly once, here or in `Server::end`.

use std::mem;

use log::debug;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Utf8Bytes;

use super::conn::{Conn, Phase};
use super::{Server, Timer};
use crate::dialect::Dialect;
use crate::engine::Effect;
use crate::metrics::Ending;
use crate::roster::ConnId;
use crate::wheel::Millis;

impl Server {
    /// Carries out every effect the engine has decided so far.
    pub(super) fn carry_out(&mut self, now: Millis) {
        loop {
            let mut effects = mem::take(&mut self.effects);
            self.engine.take_effects(now, &mut effects);
            if effects.is_empty() {
                self.effects = effects;
                return;
            }
            for effect in effects.drain(..) {
                self.carry_out_one(effect, now);
            }
            // A heartbeat tick over a crowd decides an effect per connection: that room is
            // given back, not kept for good.
            effects.shrink_to(crate::engine::EFFECTS_KEPT);
            self.effects = effects;
        }
    }

    fn carry_out_one(&mut self, effect: Effect, now: Millis) {
        match effect {
            Effect::Deliver { to, text } => {
                let recipients = to.as_slice().iter().copied();
                self.outbox.deliver(&mut self.conns, recipients, text);
            }
            Effect::Ping(id) => {
                if let Some(Conn {
                    phase: Phase::Open(ws),
                    ..
                }) = self.conns.get_mut(id)
                {
                    if self.outbox.send_ping(ws, id) {
                        self.counters.pings_sent += 1;
                    }
                }
            }
            Effect::Close {
                conn,
                code,
                reason,
                leave,
            } => {
                self.counters.closed(Ending::WebSocket(leave));
                self.close(conn, CloseCode::from(code), &reason, now);
            }
            Effect::Drop { conn, leave } => {
                self.counters.closed(Ending::WebSocket(leave));
                self.remove(conn);
            }
            Effect::GoingAway(id) => self.going_away(id),
            Effect::Arm { timer, at } => self.wheel.insert(Timer::Engine(timer), at),
            Effect::ClusterConnect => self.cluster_connect(now),
            Effect::ClusterDisconnect => self.cluster_disconnect(),
            Effect::LastSeen { lookup, values } => self.last_seen_answered(lookup, values, now),
        }
    }

    /// Sends a Close frame with `code` (RFC 6455 §7.1.7; the session has ended), then the
    /// socket lingers until the peer closes.
    pub(super) fn close(&mut self, id: ConnId, code: CloseCode, reason: &str, now: Millis) {
        debug!(
            "conn=#{id} closed: {reason} (close code {})",
            u16::from(code)
        );
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if !conn.is_open() {
            return self.broken_invariant(id, "a close of a connection not open", now);
        }
        let Phase::Open(mut ws) = mem::replace(&mut conn.phase, Phase::Gone) else {
            return;
        };
        // A close reason is limited to 123 bytes (§5.5: control frames carry at most 125).
        let reason = truncate_utf8(reason, 123);
        ws.close(
            CloseFrame {
                code,
                reason: Utf8Bytes::from(reason.to_owned()),
            },
            self.ws_config,
        );
        // Best effort: a peer that cannot take the Close now is not waited for.
        let _ = ws.stream_mut().send_queued(&self.outbox.traffic);
        let stream = ws.into_stream().into_inner();
        self.linger(id, stream, now);
    }

    /// A shutdown: Close 1001 (going away, RFC 6455 §7.4.1); the peer's answer ends the
    /// connection, with reason `shutdown`.
    fn going_away(&mut self, id: ConnId) {
        let code = self
            .engine
            .dialect(id)
            .map_or(1001, Dialect::going_away_code);
        let Some(Conn {
            phase: Phase::Open(ws),
            ..
        }) = self.conns.get_mut(id)
        else {
            return;
        };
        // 1001 (RFC 6455 §7.4.1), or the code of the dialect that says "come back" its way.
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: "server shutting down".into(),
        };
        // tungstenite frames the Close into the connection's queue (it only refuses after a
        // Close, and none was sent yet); what the peer cannot take now goes on its writable
        // events, and a peer that never answers is left to the shutdown deadline.
        ws.close(frame, self.ws_config);
        self.outbox.flush(ws, id);
    }
}

fn truncate_utf8(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
