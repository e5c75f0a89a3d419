//! Pusher user sign-in: a connection proves its user with the app backend's signature over
//! the user data, then hears the events sent to `#server-to-user-{id}` and the online status
//! of the users on its watchlist (`pusher_internal:watchlist_events`).
//!
//! Invariants: a user is online while at least one connection of its app is signed in as it
//! (on this node: online status is not shared across a cluster); `watchers` lists, for each
//! app and user, the signed-in connections whose watchlist names that user.

use std::collections::HashMap;

use super::Engine;
use crate::model::Event;
use crate::names;
use crate::protocol::fields::Fields;
use crate::pusher::auth;
use crate::roster::ConnId;

/// The longest watchlist (Pusher's limit); a longer one is refused with 4302.
pub const MAX_WATCHLIST: usize = 100;

/// The `pusher:error` code of a refused sign-in.
const UNAUTHORIZED: u16 = super::pusher::UNAUTHORIZED;
/// The `pusher:error` code of a watchlist over [`MAX_WATCHLIST`].
const WATCHLIST_TOO_LONG: u16 = 4302;

/// A refused sign-in: the `pusher:error` code and why.
type Refused = (u16, String);

/// Who is online, and who watches whom, per app.
#[derive(Default)]
pub(super) struct Online {
    /// Signed-in connections per (app, user).
    signed_in: HashMap<(u16, Box<str>), u32>,
    /// Connections watching each (app, user).
    watchers: HashMap<(u16, Box<str>), Vec<ConnId>>,
    /// The watchlist of each signed-in connection that has one.
    watchlists: HashMap<ConnId, Box<[Box<str>]>>,
}

impl Engine {
    /// True when the Pusher connection `id` signed in as `user`.
    pub(super) fn signed_in_as(&self, id: ConnId, user: &str) -> bool {
        self.sessions.get(id).is_some_and(|s| {
            s.counted && &*s.user == user && self.pusher_socket(id).is_some_and(|p| p.signed_in)
        })
    }

    /// `pusher:signin`: checks the signature and the user data, signs the connection in,
    /// answers `signin_success` and the watchlist's online users. A refusal is a
    /// `pusher:error` 4009 (4302 for a watchlist too long); the connection stays.
    pub(super) fn signin(&mut self, id: ConnId, signature: &str, user_data: &str) {
        if let Err((code, reason)) = self.try_signin(id, signature, user_data) {
            self.send(
                id,
                &Event::Coded {
                    code,
                    reason: &reason,
                },
            );
        }
    }

    fn try_signin(&mut self, id: ConnId, signature: &str, user_data: &str) -> Result<(), Refused> {
        let refused = |reason: String| (UNAUTHORIZED, reason);
        let Some(index) = self.pusher_socket(id).map(|p| p.app) else {
            return Ok(());
        };
        let Some(app) = self.config.pusher.app(index) else {
            return Ok(());
        };
        let socket = self.socket_id(id);
        auth::verify_signin(app, &socket, user_data, signature)
            .map_err(|error| refused(format!("sign-in refused: {}", error.message())))?;
        let (user, watchlist) = read_user_data(user_data)?;
        let Some(session) = self.sessions.get_mut(id) else {
            return Ok(());
        };
        if session.counted && *session.user != *user {
            let current = session.user.to_string();
            return Err(refused(format!(
                "this connection is user {current:?}; one connection is one user"
            )));
        }
        if !session.counted {
            session.user = user.as_str().into();
        }
        self.count_user(id);
        let Some(socket) = self.pusher_socket_mut(id) else {
            return Ok(());
        };
        let was_signed_in = std::mem::replace(&mut socket.signed_in, true);
        self.stop_watching(index, id);
        if !watchlist.is_empty() {
            let list = watchlist.clone().into_boxed_slice();
            self.pusher.online.watchlists.insert(id, list);
        }
        if !was_signed_in {
            self.came_online(index, &user);
        }
        self.send(id, &Event::SignedIn { user_data });
        for watched in watchlist.iter() {
            self.pusher
                .online
                .watchers
                .entry((index, watched.clone()))
                .or_default()
                .push(id);
        }
        let online: Vec<&str> = watchlist
            .iter()
            .filter(|watched| {
                self.pusher
                    .online
                    .signed_in
                    .contains_key(&(index, (*watched).clone()))
            })
            .map(|watched| &**watched)
            .collect();
        if !online.is_empty() {
            let event = Event::Watchlist {
                online: true,
                users: &online,
            };
            self.send(id, &event);
        }
        Ok(())
    }

    /// A signed-in Pusher connection ends: its user may go offline, and it watches no more.
    pub(super) fn signed_out(&mut self, id: ConnId, app: u16, user: &str) {
        self.stop_watching(app, id);
        let key = (app, Box::<str>::from(user));
        let Some(count) = self.pusher.online.signed_in.get_mut(&key) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            self.pusher.online.signed_in.remove(&key);
            self.tell_watchers(app, user, false);
        }
    }

    fn came_online(&mut self, app: u16, user: &str) {
        let count = self
            .pusher
            .online
            .signed_in
            .entry((app, Box::from(user)))
            .or_default();
        *count += 1;
        if *count == 1 {
            self.tell_watchers(app, user, true);
        }
    }

    fn tell_watchers(&mut self, app: u16, user: &str, online: bool) {
        let Some(watchers) = self.pusher.online.watchers.get(&(app, Box::from(user))) else {
            return;
        };
        let recipients = watchers.clone();
        let users = [user];
        let event = Event::Watchlist {
            online,
            users: &users,
        };
        self.deliver(recipients.into_iter(), &event);
    }

    /// Connection `id` no longer watches the users of its watchlist, if it had one.
    fn stop_watching(&mut self, app: u16, id: ConnId) {
        let Some(watchlist) = self.pusher.online.watchlists.remove(&id) else {
            return;
        };
        for watched in watchlist {
            let key = (app, watched.clone());
            if let Some(watchers) = self.pusher.online.watchers.get_mut(&key) {
                watchers.retain(|watcher| *watcher != id);
                if watchers.is_empty() {
                    self.pusher.online.watchers.remove(&key);
                }
            }
        }
    }
}

/// The user data of a sign-in: `id` (a non-empty string, a valid user id) and the
/// `watchlist` (user ids, at most [`MAX_WATCHLIST`]).
fn read_user_data(text: &str) -> Result<(String, Vec<Box<str>>), Refused> {
    let refused = |reason: &str| (UNAUTHORIZED, reason.to_owned());
    let fields = Fields::parse(text).map_err(|_| refused("user_data must be a JSON object"))?;
    let id = fields
        .get("id")
        .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
        .filter(|id| !id.is_empty())
        .ok_or_else(|| refused("user_data needs an id, a non-empty string"))?;
    names::validate_user(&id).map_err(|error| (UNAUTHORIZED, format!("user id {error}")))?;
    let watchlist: Vec<String> = match fields.get("watchlist") {
        None => Vec::new(),
        Some(raw) => serde_json::from_str(raw.get())
            .map_err(|_| refused("watchlist must be an array of user ids"))?,
    };
    if watchlist.len() > MAX_WATCHLIST {
        return Err((
            WATCHLIST_TOO_LONG,
            format!("a watchlist holds at most {MAX_WATCHLIST} users"),
        ));
    }
    Ok((
        id,
        watchlist.into_iter().map(String::into_boxed_str).collect(),
    ))
}
