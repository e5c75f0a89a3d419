//! `GET /users/{id}` and `POST /users/status`: whether users are online (their connections
//! here, their channels) or when they were last seen. Admin token as `/presence`.
//!
//! Invariant: a batch names at most [`MAX_USERS`] valid user ids; anything else is a 400
//! with a JSON error, never a partial answer.

use serde_json::Value;

use super::Server;
use crate::engine::UserPresence;
use crate::http::{Request, Response};
use crate::model::JsonStr;
use crate::names;

/// Users one `POST /users/status` may ask about.
pub const MAX_USERS: usize = 1_000;

impl Server {
    /// `GET /users/{id}`.
    pub(super) fn user_status(&self, user: &str) -> Response {
        let mut body = String::new();
        self.write_status(user, &mut body);
        Response::json(200, body)
    }

    /// `POST /users/status` with `{"users":[ID,...]}`: `{"users":[STATUS,...]}` in order.
    pub(super) fn users_status(&self, request: &Request) -> Response {
        let users = match parse_users(&request.body) {
            Ok(users) => users,
            Err(message) => return Response::json_error(400, "bad_request", &message),
        };
        let mut body = String::from(r#"{"users":["#);
        for (index, user) in users.iter().enumerate() {
            if index > 0 {
                body.push(',');
            }
            self.write_status(user, &mut body);
        }
        body.push_str("]}");
        Response::json(200, body)
    }

    /// `{"user":U,"online":true,"connections":N,"channels":[...]}` or
    /// `{"user":U,"online":false,"last_seen":MS|null}`.
    fn write_status(&self, user: &str, out: &mut String) {
        match self.engine.user_presence(user) {
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
