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
pub use crate::engine::HandleError;
use crate::engine::{check_channel, check_user, json_text, HostCommand};
use crate::model::{Counts, Json, Member, PresenceSnapshot, UserStatus};
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
    /// Publish, send, update, disconnect: the engine answers how many connections.
    Command(HostCommand),
    Presence,
    Counts {
        channel: String,
    },
    Snapshot,
    Members {
        channel: String,
    },
    Status {
        user: String,
    },
}

pub(super) enum Answer {
    Number(usize),
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
        self.command(HostCommand::publish(channel, Json::from_value(data))?)
    }

    /// Sends `data` to every connection of `user`, as a `message` with `"channel":null` and
    /// `"from":null`. Returns the number of connections.
    pub fn send_to_user(&self, user: &str, data: &Value) -> Result<usize, HandleError> {
        self.command(HostCommand::send_to_user(user, Json::from_value(data))?)
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
        check_channel(channel)?;
        let channel = channel.to_owned();
        self.ask(Question::Counts { channel }, |answer| match answer {
            Answer::Counts(counts) => Some(counts),
            _ => None,
        })
    }

    /// Closes every connection of `user` (Close 1000; the others see `leave` with reason
    /// `closed`). Returns the number of connections closed.
    pub fn disconnect_user(&self, user: &str) -> Result<usize, HandleError> {
        self.command(HostCommand::disconnect_user(user)?)
    }

    /// Publishes JSON text (as a hook hands it over) to `channel`, like [`Handle::publish`];
    /// its numbers reach clients exactly as written.
    pub fn publish_json(&self, channel: &str, json: &str) -> Result<usize, HandleError> {
        self.command(HostCommand::publish(channel, json_text(json)?)?)
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
        check_channel(channel)?;
        let channel = channel.to_owned();
        self.ask(Question::Members { channel }, |answer| match answer {
            Answer::Members(members) => Some(members),
            _ => None,
        })
    }

    /// Where `user` is: its open connections on this server and the channels it is a
    /// member of.
    pub fn status(&self, user: &str) -> Result<UserStatus, HandleError> {
        check_user(user)?;
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
        let command = HostCommand::send_to_connection(id, Json::from_value(data))?;
        self.command(command).map(|reached| reached > 0)
    }

    /// Closes one connection (Close 1000), named by the id its `welcome` gave. `Ok(false)`
    /// when no such connection is open.
    pub fn disconnect_connection(&self, id: &str) -> Result<bool, HandleError> {
        let command = HostCommand::disconnect_connection(id)?;
        self.command(command).map(|reached| reached > 0)
    }

    /// Replaces `user`'s meta (a JSON object) in `channel`, announced as an `update` as if
    /// the user had sent it. `Ok(false)` when the user is not a member there or the meta is
    /// unchanged.
    pub fn update(&self, user: &str, channel: &str, meta: &Value) -> Result<bool, HandleError> {
        let command = HostCommand::update(user, channel, meta)?;
        self.command(command).map(|reached| reached > 0)
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

    /// Has the loop carry out `command`; how many connections it reached.
    fn command(&self, command: HostCommand) -> Result<usize, HandleError> {
        self.ask(Question::Command(command), |answer| match answer {
            Answer::Number(reached) => Some(reached),
            _ => None,
        })
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
            Question::Command(command) => Answer::Number(engine.host(command, now)),
            Question::Presence => {
                Answer::Json(serde_json::from_str(&self.presence_json()).unwrap_or(Value::Null))
            }
            Question::Counts { channel } => {
                Answer::Counts(engine.roster().find(&channel).map_or_else(
                    || Some(engine.channel_counts_named(&channel)).filter(|c| c.users > 0),
                    |id| engine.channel_counts(id),
                ))
            }
            Question::Snapshot => Answer::Snapshot(engine.snapshot()),
            Question::Members { channel } => Answer::Members(engine.members(&channel)),
            Question::Status { user } => Answer::Status(engine.user_status(&user)),
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
