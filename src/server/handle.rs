//! A [`Handle`]: steering a running server from other threads — publish, send to one user,
//! read presence, disconnect a user, shut down.
//!
//! Requests travel over a channel and wake the loop through a `mio::Waker`; the loop
//! answers each over its own reply channel. The loop never blocks on a handle: it drains
//! the requests that are there when it wakes.
//!
//! Invariants: a call never waits for a loop that cannot answer: one made on the loop's own
//! thread (from a `Handler` hook) fails at once with [`HandleError::OnLoopThread`]; once the
//! loop has stopped, waiting calls and new ones fail with [`HandleError::Stopped`] within
//! [`STOP_CHECK`]; a handle made with [`Handle::with_timeout`] gives up after its timeout.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use mio::{Token, Waker};
use serde_json::Value;

use super::Server;
use crate::model::{Counts, Json, Member, PresenceSnapshot, UserStatus};
use crate::names;
use crate::roster::ConnId;
use crate::wheel::Millis;

/// How often a waiting call looks whether the loop has stopped meanwhile.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// Steers a running [`Server`] from any thread. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    requests: Sender<Request>,
    waker: Arc<Waker>,
    state: Arc<LoopState>,
    /// How long a call waits for its answer (`None`: as long as the loop runs).
    timeout: Option<Duration>,
}

/// What handles know of the loop: whether it has stopped, and its thread.
#[derive(Default)]
pub(super) struct LoopState {
    stopped: AtomicBool,
    thread: Mutex<Option<ThreadId>>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("stopped", &self.state.is_stopped())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl LoopState {
    /// The loop runs (again) on `thread`.
    pub fn running_on(&self, thread: ThreadId) {
        *self.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread);
        self.stopped.store(false, Ordering::Release);
    }

    /// The loop has stopped: waiting and later calls fail with `Stopped`.
    pub fn stopped(&self) {
        self.stopped.store(true, Ordering::Release);
        *self.thread.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    fn is_loop_thread(&self) -> bool {
        *self.thread.lock().unwrap_or_else(PoisonError::into_inner) == Some(thread::current().id())
    }
}

/// Why a [`Handle`] call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandleError {
    /// The server's loop has stopped (its run returned, or the server was dropped).
    Stopped,
    /// A channel or user name is not valid.
    InvalidName(String),
    /// The call was made on the loop's own thread (from a `Handler` hook), where waiting for
    /// the loop would wait forever: act through the hook's `Actions` instead.
    OnLoopThread,
    /// No answer within the handle's timeout ([`Handle::with_timeout`]).
    TimedOut,
    /// The data is not valid JSON ([`Handle::publish_json`]).
    InvalidJson,
    /// The connection id is not one a welcome gives (`SLOT.GENERATION`).
    InvalidConnection(String),
}

impl fmt::Display for HandleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandleError::Stopped => write!(f, "the server has stopped"),
            HandleError::InvalidName(reason) => write!(f, "invalid name: {reason}"),
            HandleError::OnLoopThread => write!(
                f,
                "a Handle cannot be called on the server's own thread (use the hook's Actions)"
            ),
            HandleError::TimedOut => write!(f, "the server did not answer in time"),
            HandleError::InvalidJson => write!(f, "the data is not valid JSON"),
            HandleError::InvalidConnection(id) => write!(f, "{id:?} is not a connection id"),
        }
    }
}

impl std::error::Error for HandleError {}

pub(super) enum Request {
    /// A question, answered on `reply` (one answer type for all: each reply type would
    /// be another copy of the channel's code in the binary).
    Ask {
        question: Question,
        reply: Sender<Answer>,
    },
    Shutdown,
}

pub(super) enum Question {
    Publish { channel: String, data: Json },
    SendToUser { user: String, data: Json },
    Presence,
    Counts { channel: String },
    Disconnect { user: String },
    Snapshot,
    Members { channel: String },
    Status { user: String },
    SendToConnection { id: ConnId, data: Json },
    DisconnectConnection { id: ConnId },
}

pub(super) enum Answer {
    Number(usize),
    Done(bool),
    Json(Value),
    Counts(Option<Counts>),
    Snapshot(PresenceSnapshot),
    Members(Vec<Member>),
    Status(UserStatus),
}

impl Handle {
    /// Publishes `data` to `channel` (a `message` with `"from":null`, as `POST /publish`).
    /// Returns the number of connections it was queued to.
    pub fn publish(&self, channel: &str, data: &Value) -> Result<usize, HandleError> {
        valid(channel)?;
        let data = Json::from_value(data);
        self.ask(
            Question::Publish {
                channel: channel.to_owned(),
                data,
            },
            number,
        )
    }

    /// Sends `data` to every connection of `user`, as a `message` with `"channel":null` and
    /// `"from":null`. Returns the number of connections.
    pub fn send_to_user(&self, user: &str, data: &Value) -> Result<usize, HandleError> {
        valid(user)?;
        let data = Json::from_value(data);
        self.ask(
            Question::SendToUser {
                user: user.to_owned(),
                data,
            },
            number,
        )
    }

    /// Every channel's members, as `GET /presence` answers.
    pub fn presence(&self) -> Result<Value, HandleError> {
        self.ask(Question::Presence, |answer| match answer {
            Answer::Json(json) => Some(json),
            _ => None,
        })
    }

    /// A channel's counts, `None` when it does not exist.
    pub fn counts(&self, channel: &str) -> Result<Option<Counts>, HandleError> {
        valid(channel)?;
        let channel = channel.to_owned();
        self.ask(Question::Counts { channel }, |answer| match answer {
            Answer::Counts(counts) => Some(counts),
            _ => None,
        })
    }

    /// Closes every connection of `user` (Close 1000; the others see `leave` with reason
    /// `closed`). Returns the number of connections closed.
    pub fn disconnect_user(&self, user: &str) -> Result<usize, HandleError> {
        valid(user)?;
        self.ask(
            Question::Disconnect {
                user: user.to_owned(),
            },
            number,
        )
    }

    /// Publishes JSON text (as a hook hands it over) to `channel`, like [`Handle::publish`];
    /// its numbers reach clients exactly as written.
    pub fn publish_json(&self, channel: &str, json: &str) -> Result<usize, HandleError> {
        valid(channel)?;
        let data = Json::parse(json).ok_or(HandleError::InvalidJson)?;
        self.ask(
            Question::Publish {
                channel: channel.to_owned(),
                data,
            },
            number,
        )
    }

    /// Every channel with members, typed (what [`Handle::presence`] gives as JSON).
    pub fn snapshot(&self) -> Result<PresenceSnapshot, HandleError> {
        self.ask(Question::Snapshot, |answer| match answer {
            Answer::Snapshot(snapshot) => Some(snapshot),
            _ => None,
        })
    }

    /// The members of `channel` (cluster-wide in a live cluster), by user id; empty when
    /// it has none.
    pub fn members(&self, channel: &str) -> Result<Vec<Member>, HandleError> {
        valid(channel)?;
        let channel = channel.to_owned();
        self.ask(Question::Members { channel }, |answer| match answer {
            Answer::Members(members) => Some(members),
            _ => None,
        })
    }

    /// Where `user` is: its open connections on this server and the channels it is a
    /// member of.
    pub fn status(&self, user: &str) -> Result<UserStatus, HandleError> {
        valid(user)?;
        self.ask(
            Question::Status {
                user: user.to_owned(),
            },
            |answer| match answer {
                Answer::Status(status) => Some(status),
                _ => None,
            },
        )
    }

    /// The channels `user` is a member of, by name ([`Handle::status`]'s list).
    pub fn channels_of(&self, user: &str) -> Result<Vec<String>, HandleError> {
        self.status(user).map(|status| status.channels)
    }

    /// Sends `data` to one connection, named by the id its `welcome` gave (`"conn"`), as a
    /// `message` with `"channel":null`. `Ok(false)` when no such connection is open.
    pub fn send_to_connection(&self, id: &str, data: &Value) -> Result<bool, HandleError> {
        let id = connection(id)?;
        let data = Json::from_value(data);
        self.ask(Question::SendToConnection { id, data }, done)
    }

    /// Closes one connection (Close 1000), named by the id its `welcome` gave. `Ok(false)`
    /// when no such connection is open.
    pub fn disconnect_connection(&self, id: &str) -> Result<bool, HandleError> {
        let id = connection(id)?;
        self.ask(Question::DisconnectConnection { id }, done)
    }

    /// Starts a graceful shutdown ([`Server::shutdown`]); returns at once, from any thread
    /// (the loop's own included).
    pub fn shutdown(&self) -> Result<(), HandleError> {
        self.send(Request::Shutdown)
    }

    /// This handle, whose calls give up with [`HandleError::TimedOut`] when the loop has not
    /// answered within `timeout`.
    pub fn with_timeout(&self, timeout: Duration) -> Handle {
        Handle {
            timeout: Some(timeout),
            ..self.clone()
        }
    }

    /// Asks the loop `question` and waits for its answer, which `expect` reads.
    fn ask<T>(
        &self,
        question: Question,
        expect: fn(Answer) -> Option<T>,
    ) -> Result<T, HandleError> {
        if self.state.is_loop_thread() {
            return Err(HandleError::OnLoopThread);
        }
        let (reply, answer) = mpsc::channel();
        self.send(Request::Ask { question, reply })?;
        let deadline = self.timeout.map(|timeout| Instant::now() + timeout);
        loop {
            let wait = deadline.map_or(STOP_CHECK, |deadline| {
                STOP_CHECK.min(deadline.saturating_duration_since(Instant::now()))
            });
            match answer.recv_timeout(wait) {
                // The loop answers each question with its kind of answer.
                Ok(answer) => return expect(answer).ok_or(HandleError::Stopped),
                Err(RecvTimeoutError::Disconnected) => return Err(HandleError::Stopped),
                Err(RecvTimeoutError::Timeout) if self.state.is_stopped() => {
                    return Err(HandleError::Stopped)
                }
                Err(RecvTimeoutError::Timeout) => {
                    if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                        return Err(HandleError::TimedOut);
                    }
                }
            }
        }
    }

    fn send(&self, request: Request) -> Result<(), HandleError> {
        if self.state.is_stopped() {
            return Err(HandleError::Stopped);
        }
        self.requests
            .send(request)
            .map_err(|_| HandleError::Stopped)?;
        self.waker.wake().map_err(|_| HandleError::Stopped)
    }
}

fn number(answer: Answer) -> Option<usize> {
    match answer {
        Answer::Number(number) => Some(number),
        _ => None,
    }
}

fn done(answer: Answer) -> Option<bool> {
    match answer {
        Answer::Done(done) => Some(done),
        _ => None,
    }
}

fn connection(id: &str) -> Result<ConnId, HandleError> {
    id.parse()
        .map_err(|_| HandleError::InvalidConnection(id.to_owned()))
}

fn valid(name: &str) -> Result<(), HandleError> {
    names::validate(name).map_err(|error| HandleError::InvalidName(format!("{name:?} {error}")))
}

/// The loop's side: where requests arrive.
pub(super) struct Inbox {
    requests: Receiver<Request>,
    handle: Handle,
    /// The thread the loop last ran on, as handles were told.
    thread: Option<ThreadId>,
}

impl Inbox {
    pub fn new(registry: &mio::Registry, token: Token) -> io::Result<Inbox> {
        let waker = Arc::new(Waker::new(registry, token)?);
        let (requests, inbox) = mpsc::channel();
        Ok(Inbox {
            requests: inbox,
            handle: Handle {
                requests,
                waker,
                state: Arc::default(),
                timeout: None,
            },
            thread: None,
        })
    }

    /// The loop runs on this thread (called as each turn starts: cheap unless the thread
    /// changed or the loop had stopped).
    pub fn enter(&mut self) {
        let current = thread::current().id();
        if self.thread != Some(current) {
            self.thread = Some(current);
            self.handle.state.running_on(current);
        }
    }

    /// The loop has stopped: every waiting request is dropped, so its caller hears
    /// `Stopped` at once, and later calls fail before they are sent.
    pub fn close(&mut self) {
        self.thread = None;
        self.handle.state.stopped();
        while self.requests.try_recv().is_ok() {}
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.close();
    }
}

impl Server {
    /// A [`Handle`] to steer this server from other threads while [`Server::run`] runs.
    pub fn handle(&self) -> Handle {
        self.inbox.handle.clone()
    }

    fn answer(&mut self, question: Question, now: Millis) -> Answer {
        let engine = &mut self.engine;
        match question {
            Question::Publish { channel, data } => {
                Answer::Number(engine.publish(&channel, None, &data, now))
            }
            Question::SendToUser { user, data } => {
                Answer::Number(engine.send_to_user(&user, &data))
            }
            Question::Presence => {
                Answer::Json(serde_json::from_str(&self.presence_json()).unwrap_or(Value::Null))
            }
            Question::Counts { channel } => {
                Answer::Counts(engine.roster().find(&channel).map_or_else(
                    || Some(engine.channel_counts_named(&channel)).filter(|c| c.users > 0),
                    |id| engine.channel_counts(id),
                ))
            }
            Question::Disconnect { user } => Answer::Number(engine.disconnect_user(&user, now)),
            Question::Snapshot => Answer::Snapshot(engine.snapshot()),
            Question::Members { channel } => Answer::Members(engine.members(&channel)),
            Question::Status { user } => Answer::Status(engine.user_status(&user)),
            Question::SendToConnection { id, data } => {
                Answer::Done(engine.send_to_connection(id, &data))
            }
            Question::DisconnectConnection { id } => {
                Answer::Done(engine.disconnect_connection(id, now))
            }
        }
    }

    /// The waker fired: answer every request that is waiting.
    pub(super) fn on_requests(&mut self, now: Millis) {
        while let Ok(request) = self.inbox.requests.try_recv() {
            match request {
                Request::Ask { question, reply } => {
                    let answer = self.answer(question, now);
                    // A caller that gave up waiting dropped its receiver; nothing to tell it.
                    let _ = reply.send(answer);
                }
                Request::Shutdown if self.shutdown.is_none() => self.begin_shutdown(now),
                Request::Shutdown => {}
            }
            self.reap(now);
        }
    }
}
