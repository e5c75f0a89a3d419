//! `GET /users/{id}` and `POST /users/status`: whether users are online (their connections
//! here, their channels) or when they were last seen. Admin token as `/presence`.
//!
//! In a live cluster the offline users' last-seen times are Redis's (see the engine's
//! `cluster_last_seen`): the request is *parked* (its connection stays in its handshake
//! phase, nothing more is read from it) until the engine's [`Effect::LastSeen`] answers it,
//! within `LOOKUP_WAIT_MS`, else a 503.
//!
//! Invariants: a batch names at most [`MAX_USERS`] valid user ids; anything else is a 400
//! with a JSON error, never a partial answer. A parked request is answered exactly once:
//! by its lookup's answer, or by its connection's handshake deadline (503), or not at all
//! when its connection is gone.
//!
//! [`Effect::LastSeen`]: crate::engine::Effect::LastSeen

use std::collections::HashMap;

use serde_json::Value;

use super::conn::{AfterResponse, Conn, Phase};
use super::Server;
use crate::engine::UserPresence;
use crate::http::{Request, Response};
use crate::metrics::Ending;
use crate::model::JsonStr;
use crate::names;
use crate::roster::ConnId;
use crate::wheel::Millis;

/// Users one `POST /users/status` may ask about.
pub const MAX_USERS: usize = 1_000;

/// Requests waiting for Redis, by lookup.
pub(super) type Parked = HashMap<u64, ParkedRequest>;

/// A status request waiting for its offline users' times.
pub(super) struct ParkedRequest {
    conn: ConnId,
    /// The statuses as they were when asked, in order.
    statuses: Vec<(String, UserPresence)>,
    /// `GET /users/{id}` (one status, bare) rather than `POST /users/status`.
    single: bool,
}

impl Server {
    /// `GET /users/{id}` from connection `id`; `None` when parked.
    pub(super) fn user_status(&mut self, id: ConnId, user: &str, now: Millis) -> Option<Response> {
        let statuses = vec![(user.to_owned(), self.engine.user_presence(user))];
        self.statuses_or_park(id, statuses, true, now)
    }

    /// `POST /users/status` with `{"users":[ID,...]}`: `{"users":[STATUS,...]}` in order;
    /// `None` when parked.
    pub(super) fn users_status(
        &mut self,
        id: ConnId,
        request: &Request,
        now: Millis,
    ) -> Option<Response> {
        let users = match parse_users(&request.body) {
            Ok(users) => users,
            Err(message) => return Some(Response::json_error(400, "bad_request", &message)),
        };
        let statuses = users
            .into_iter()
            .map(|user| {
                let presence = self.engine.user_presence(&user);
                (user, presence)
            })
            .collect();
        self.statuses_or_park(id, statuses, false, now)
    }

    /// Answers now, or parks the request while Redis is asked about its offline users.
    fn statuses_or_park(
        &mut self,
        id: ConnId,
        statuses: Vec<(String, UserPresence)>,
        single: bool,
        now: Millis,
    ) -> Option<Response> {
        let offline = statuses
            .iter()
            .filter(|(_, presence)| matches!(presence, UserPresence::Offline { .. }))
            .map(|(user, _)| user.as_str());
        let names: Vec<&str> = offline.collect();
        if names.is_empty() {
            return Some(statuses_response(&statuses, single));
        }
        match self.engine.ask_last_seen(names.into_iter(), now) {
            Some(lookup) => {
                let parked = ParkedRequest {
                    conn: id,
                    statuses,
                    single,
                };
                self.parked.insert(lookup, parked);
                None
            }
            None => Some(statuses_response(&statuses, single)),
        }
    }

    /// True while connection `id`'s request waits for Redis (nothing more is read from it).
    pub(super) fn is_parked(&self, id: ConnId) -> bool {
        !self.parked.is_empty() && self.parked.values().any(|parked| parked.conn == id)
    }

    /// The engine answered `lookup`: the offline users' times in Redis, in order (`None`:
    /// Redis did not answer, a 503).
    pub(super) fn last_seen_answered(
        &mut self,
        lookup: u64,
        values: Option<Vec<Option<u64>>>,
        now: Millis,
    ) {
        let Some(mut parked) = self.parked.remove(&lookup) else {
            return;
        };
        let still_waiting = matches!(
            self.conns.get(parked.conn),
            Some(Conn {
                phase: Phase::Handshake { .. },
                ..
            })
        );
        if !still_waiting {
            return;
        }
        let response = match values {
            Some(values) => {
                let offline =
                    parked
                        .statuses
                        .iter_mut()
                        .filter_map(|(_, presence)| match presence {
                            UserPresence::Offline { last_seen } => Some(last_seen),
                            UserPresence::Online { .. } => None,
                        });
                for (last_seen, fetched) in offline.zip(values) {
                    *last_seen = (*last_seen).max(fetched);
                }
                statuses_response(&parked.statuses, parked.single)
            }
            None => unanswered(),
        };
        self.counters.closed(Ending::Http);
        self.respond(parked.conn, response.to_bytes(), AfterResponse::Close, now);
    }

    /// The handshake deadline of a parked request: it gives up (503); true when it was
    /// parked.
    pub(super) fn unpark_late(&mut self, id: ConnId, now: Millis) -> bool {
        let lookup = self
            .parked
            .iter()
            .find(|(_, parked)| parked.conn == id)
            .map(|(&lookup, _)| lookup);
        let Some(lookup) = lookup else {
            return false;
        };
        self.last_seen_answered(lookup, None, now);
        true
    }
}

fn unanswered() -> Response {
    Response::json_error(
        503,
        "unavailable",
        "the cluster's Redis did not answer in time for the last-seen times",
    )
}

fn statuses_response(statuses: &[(String, UserPresence)], single: bool) -> Response {
    let mut body = String::new();
    if single {
        if let Some((user, presence)) = statuses.first() {
            write_status(user, presence, &mut body);
        }
        return Response::json(200, body);
    }
    body.push_str(r#"{"users":["#);
    for (index, (user, presence)) in statuses.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        write_status(user, presence, &mut body);
    }
    body.push_str("]}");
    Response::json(200, body)
}

/// `{"user":U,"online":true,"connections":N,"channels":[...]}` or
/// `{"user":U,"online":false,"last_seen":MS|null}`.
fn write_status(user: &str, presence: &UserPresence, out: &mut String) {
    match presence {
        UserPresence::Online {
            connections,
            channels,
        } => {
            out.push_str(&format!(
                r#"{{"user":{},"online":true,"connections":{connections},"channels":["#,
                JsonStr(user)
            ));
            for (index, channel) in channels.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&JsonStr(channel).to_string());
            }
            out.push_str("]}");
        }
        UserPresence::Offline { last_seen } => {
            let last_seen = last_seen.map_or_else(|| "null".to_owned(), |ms| ms.to_string());
            out.push_str(&format!(
                r#"{{"user":{},"online":false,"last_seen":{last_seen}}}"#,
                JsonStr(user)
            ));
        }
    }
}

/// The user ids of a `POST /users/status` body, validated.
fn parse_users(body: &[u8]) -> Result<Vec<String>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Some(list) = value.get("users").and_then(Value::as_array) else {
        return Err(r#"the body is {"users":[ID,...]}"#.into());
    };
    if list.len() > MAX_USERS {
        return Err(format!("at most {MAX_USERS} users per request"));
    }
    list.iter()
        .map(|user| {
            let user = user.as_str().ok_or("each user is a string")?;
            names::validate_user(user).map_err(|e| format!("user {e}"))?;
            Ok(user.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_checked() {
        assert_eq!(
            parse_users(br#"{"users":["a","b c"]}"#),
            Ok(vec!["a".into(), "b c".into()])
        );
        for bad in [
            &b"not json"[..],
            br#"{"user":["a"]}"#,
            br#"{"users":"a"}"#,
            br#"{"users":[1]}"#,
            br#"{"users":[""]}"#,
            br#"{"users":["a\u0001"]}"#,
        ] {
            assert!(parse_users(bad).is_err(), "{bad:?}");
        }
        let many = format!(
            r#"{{"users":[{}]}}"#,
            vec!["\"u\""; MAX_USERS + 1].join(",")
        );
        assert!(parse_users(many.as_bytes()).is_err());
    }
}
