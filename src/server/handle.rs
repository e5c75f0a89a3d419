//! A [`Handle`]: steering a running server from other threads — publish, send to one user,
//! read presence, disconnect a user, shut down.
//!
//! Requests travel over a channel and wake the loop through a `mio::Waker`; the loop
//! answers each over its own reply channel. The loop never blocks on a handle: it drains
//! the requests that are there when it wakes. A caller blocks until the loop answers, so it
//! must not call from the loop's own thread.

use std::fmt;
use std::io;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

use mio::{Token, Waker};
use serde_json::Value;

use super::Server;
use crate::model::{Counts, Json};
use crate::names;
use crate::wheel::Millis;

/// Steers a running [`Server`] from any thread. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    requests: Sender<Request>,
    waker: Arc<Waker>,
}

/// Why a [`Handle`] call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandleError {
    /// The server was dropped (its loop no longer runs).
    Stopped,
    /// A channel or user name is not valid.
    InvalidName(String),
}

impl fmt::Display for HandleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandleError::Stopped => write!(f, "the server has stopped"),
            HandleError::InvalidName(reason) => write!(f, "invalid name: {reason}"),
        }
    }
}

impl std::error::Error for HandleError {}

pub(super) enum Request {
    Publish {
        channel: String,
        data: Json,
        reply: Sender<usize>,
    },
    SendToUser {
        user: String,
        data: Json,
        reply: Sender<usize>,
    },
    Presence {
        reply: Sender<Value>,
    },
    Counts {
        channel: String,
        reply: Sender<Option<Counts>>,
    },
    Disconnect {
        user: String,
        reply: Sender<usize>,
    },
    Shutdown,
}

impl Handle {
    /// Publishes `data` to `channel` (a `message` with `"from":null`, as `POST /publish`).
    /// Returns the number of connections it was queued to.
    pub fn publish(&self, channel: &str, data: &Value) -> Result<usize, HandleError> {
        valid(channel)?;
        self.ask(|reply| Request::Publish {
            channel: channel.to_owned(),
            data: Json::from_value(data),
            reply,
        })
    }

    /// Sends `data` to every connection of `user`, as a `message` with `"channel":null` and
    /// `"from":null`. Returns the number of connections.
    pub fn send_to_user(&self, user: &str, data: &Value) -> Result<usize, HandleError> {
        valid(user)?;
        self.ask(|reply| Request::SendToUser {
            user: user.to_owned(),
            data: Json::from_value(data),
            reply,
        })
    }

    /// Every channel's members, as `GET /presence` answers.
    pub fn presence(&self) -> Result<Value, HandleError> {
        self.ask(|reply| Request::Presence { reply })
    }

    /// A channel's counts, `None` when it does not exist.
    pub fn counts(&self, channel: &str) -> Result<Option<Counts>, HandleError> {
        valid(channel)?;
        self.ask(|reply| Request::Counts {
            channel: channel.to_owned(),
            reply,
        })
    }

    /// Closes every connection of `user` (Close 1000; the others see `leave` with reason
    /// `closed`). Returns the number of connections closed.
    pub fn disconnect_user(&self, user: &str) -> Result<usize, HandleError> {
        valid(user)?;
        self.ask(|reply| Request::Disconnect {
            user: user.to_owned(),
            reply,
        })
    }

    /// Starts a graceful shutdown ([`Server::shutdown`]); returns at once.
    pub fn shutdown(&self) -> Result<(), HandleError> {
        self.send(Request::Shutdown)
    }

    fn ask<T>(&self, request: impl FnOnce(Sender<T>) -> Request) -> Result<T, HandleError> {
        let (reply, answer) = mpsc::channel();
        self.send(request(reply))?;
        answer.recv().map_err(|_| HandleError::Stopped)
    }

    fn send(&self, request: Request) -> Result<(), HandleError> {
        self.requests
            .send(request)
            .map_err(|_| HandleError::Stopped)?;
        self.waker.wake().map_err(|_| HandleError::Stopped)
    }
}

fn valid(name: &str) -> Result<(), HandleError> {
    names::validate(name).map_err(|error| HandleError::InvalidName(format!("{name:?} {error}")))
}

/// The loop's side: where requests arrive.
pub(super) struct Inbox {
    requests: Receiver<Request>,
    handle: Handle,
}

impl Inbox {
    pub fn new(registry: &mio::Registry, token: Token) -> io::Result<Inbox> {
        let waker = Arc::new(Waker::new(registry, token)?);
        let (requests, inbox) = mpsc::channel();
        Ok(Inbox {
            requests: inbox,
            handle: Handle { requests, waker },
        })
    }
}

impl Server {
    /// A [`Handle`] to steer this server from other threads while [`Server::run`] runs.
    pub fn handle(&self) -> Handle {
        self.inbox.handle.clone()
    }

    /// The waker fired: answer every request that is waiting.
    pub(super) fn on_requests(&mut self, now: Millis) {
        while let Ok(request) = self.inbox.requests.try_recv() {
            // A caller that gave up waiting dropped its receiver; nothing to tell it then.
            match request {
                Request::Publish {
                    channel,
                    data,
                    reply,
                } => {
                    let delivered = self.engine.publish(&channel, None, &data, now);
                    let _ = reply.send(delivered);
                }
                Request::SendToUser { user, data, reply } => {
                    let _ = reply.send(self.engine.send_to_user(&user, &data));
                }
                Request::Presence { reply } => {
                    let json = serde_json::from_str(&self.presence_json()).unwrap_or(Value::Null);
                    let _ = reply.send(json);
                }
                Request::Counts { channel, reply } => {
                    let engine = &self.engine;
                    let counts = engine.roster().find(&channel).map_or_else(
                        || Some(engine.channel_counts_named(&channel)).filter(|c| c.users > 0),
                        |id| engine.channel_counts(id),
                    );
                    let _ = reply.send(counts);
                }
                Request::Disconnect { user, reply } => {
                    let _ = reply.send(self.engine.disconnect_user(&user, now));
                }
                Request::Shutdown if self.shutdown.is_none() => self.begin_shutdown(now),
                Request::Shutdown => {}
            }
            self.reap(now);
        }
    }
}
