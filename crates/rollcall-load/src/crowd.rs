//! A crowd: N WebSocket clients opened on a schedule ([`Pacer`]) and followed until each is
//! *up* (the `101`, the `welcome`, or the `welcome` and the `state`, as the mode needs), then
//! while held: pings answered, drops counted.
//!
//! Each member connects where the mode's `dial(k)` says: `--url` for most modes; a mode that
//! spans the nodes of a cluster sends members to other nodes too.
//!
//! Invariants: member `k` has pool tag `k`, so a mode's other connections use tags from the
//! member count on; each member is counted exactly once as up or failed, and once more as
//! dropped if it ends after being up.

use std::io;
use std::time::Instant;

use tungstenite::Utf8Bytes;

use crate::conn::Ending;
use crate::pacer::Pacer;
use crate::pool::{ConnId, Event, Pool, What};
use crate::pusher::{self, Join};
use crate::stats::{Failure, Tally};
use crate::target::Target;

/// When a member counts as up.
#[derive(Debug, Clone)]
pub enum UpWhen {
    /// The `101` arrived (a plain WebSocket server).
    Upgraded,
    /// rollcall's `welcome` arrived.
    Welcome,
    /// The `welcome` and the `state` of its channel (mode `all`).
    State,
    /// A Pusher client: `connection_established`, then its subscription (sent here) succeeded.
    Pusher(Box<Join>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    NotStarted,
    Connecting,
    Welcomed,
    Up,
    Gone,
}

#[derive(Debug, Clone)]
struct Member {
    id: Option<ConnId>,
    stage: Stage,
    pings: u32,
}

/// Where a member connects: the server, and the request target (path and query) there.
pub type Dial<'t> = (&'t Target, String);

/// What a crowd event meant to the mode.
pub enum Seen<'a> {
    /// Not a member's event.
    Other,
    /// A text message from a member that is up (a mode may want to look at it).
    Text(usize, &'a Utf8Bytes),
    /// Anything else of a member (handled here).
    Handled,
}

/// The members and their counts.
pub struct Crowd {
    members: Vec<Member>,
    pacer: Pacer,
    up_when: UpWhen,
    /// Members up so far.
    pub up: u64,
    /// Members that never came up, by failure kind.
    pub failures: Tally,
    /// Members that ended after being up, by kind.
    pub dropped: Tally,
    /// When the first connect started.
    pub first_connect: Option<Instant>,
    /// When the last member came up.
    pub last_up: Option<Instant>,
}

impl Crowd {
    /// `count` members, opened at `rate` per second with at most `in_flight` connecting.
    pub fn new(count: u64, rate: f64, in_flight: u64, up_when: UpWhen) -> Crowd {
        Crowd {
            members: vec![
                Member {
                    id: None,
                    stage: Stage::NotStarted,
                    pings: 0
                };
                count as usize
            ],
            pacer: Pacer::new(count, rate, in_flight),
            up_when,
            up: 0,
            failures: Tally::default(),
            dropped: Tally::default(),
            first_connect: None,
            last_up: None,
        }
    }

    /// Members connecting right now (started, neither up nor failed).
    fn in_flight(&self) -> u64 {
        self.pacer.started() - self.up - self.failures.total()
    }

    /// Starts the members the schedule allows at `now`; `dial(k)` says where member k goes.
    pub fn open_more<'t>(
        &mut self,
        pool: &mut Pool,
        now: Instant,
        dial: impl Fn(usize) -> Dial<'t>,
    ) {
        let first = self.pacer.started() as usize;
        let count = self.pacer.take(now, self.in_flight()) as usize;
        if count > 0 {
            self.first_connect.get_or_insert(now);
        }
        for k in first..first + count {
            let (target, path) = dial(k);
            let id = pool.open_ws_to(target, &path, k, now);
            self.members[k].id = Some(id);
            self.members[k].stage = Stage::Connecting;
        }
    }

    /// When the schedule allows the next start, if the rate is what waits.
    pub fn next_due(&self) -> Option<Instant> {
        self.pacer.next_due()
    }

    /// Whether every member is up or has failed.
    pub fn settled(&self) -> bool {
        self.pacer.done() && self.in_flight() == 0
    }

    /// Gives up on every member still connecting: each fails with `timeout`.
    pub fn give_up(&mut self, pool: &mut Pool) {
        for member in &mut self.members {
            if matches!(
                member.stage,
                Stage::NotStarted | Stage::Connecting | Stage::Welcomed
            ) {
                if let Some(id) = member.id {
                    pool.abandon(id);
                }
                member.stage = Stage::Gone;
                self.failures.add(Failure::Timeout);
            }
        }
    }

    /// Member k's connection, while it lives.
    pub fn id(&self, k: usize) -> Option<ConnId> {
        let member = &self.members[k];
        (member.stage != Stage::Gone).then_some(member.id?)
    }

    /// Whether member k is up now.
    pub fn is_up(&self, k: usize) -> bool {
        self.members[k].stage == Stage::Up
    }

    /// Pings answered: total, and the fewest and most by one member that came up.
    pub fn pings(&self) -> (u64, u64, u64) {
        let counts = self
            .members
            .iter()
            .filter(|m| m.stage == Stage::Up || (m.stage == Stage::Gone && m.pings > 0))
            .map(|m| u64::from(m.pings));
        let (mut total, mut min, mut max, mut any) = (0, u64::MAX, 0, false);
        for count in counts {
            total += count;
            min = min.min(count);
            max = max.max(count);
            any = true;
        }
        (total, if any { min } else { 0 }, max)
    }

    /// Takes note of `event` (sending what a Pusher client sends on `pool`); says whether it
    /// was a member's and, for text of a member that is up, hands the text on.
    pub fn handle<'a>(&mut self, pool: &mut Pool, event: &'a Event) -> Seen<'a> {
        let k = event.tag;
        if k >= self.members.len() || self.members[k].id != Some(event.id) {
            return Seen::Other;
        }
        let member = &mut self.members[k];
        match &event.what {
            What::Upgraded => {
                if matches!(self.up_when, UpWhen::Upgraded) {
                    member.stage = Stage::Up;
                    self.up += 1;
                    self.last_up = Some(event.at);
                }
            }
            What::Text(text) => match member.stage {
                Stage::Up => {
                    // Only a Pusher client's text is parsed here (a `state` may be big).
                    if matches!(self.up_when, UpWhen::Pusher(_))
                        && matches!(pusher::read(text), pusher::Frame::Ping)
                    {
                        pool.send_text(event.id, pusher::PONG, event.at);
                        return Seen::Handled;
                    }
                    return Seen::Text(k, text);
                }
                Stage::Connecting | Stage::Welcomed
                    if matches!(self.up_when, UpWhen::Pusher(_)) =>
                {
                    let UpWhen::Pusher(join) = &self.up_when else {
                        return Seen::Handled;
                    };
                    match pusher::read(text) {
                        pusher::Frame::Established(socket_id) => {
                            pool.send_text(event.id, &join.subscribe(k, &socket_id), event.at);
                            member.stage = Stage::Welcomed;
                        }
                        pusher::Frame::Subscribed => {
                            member.stage = Stage::Up;
                            self.up += 1;
                            self.last_up = Some(event.at);
                        }
                        pusher::Frame::Ping => pool.send_text(event.id, pusher::PONG, event.at),
                        pusher::Frame::Other => {}
                    }
                }
                Stage::Connecting | Stage::Welcomed => {
                    let kind = message_type(text);
                    let up = match (&self.up_when, member.stage, kind.as_deref()) {
                        (UpWhen::Welcome, _, Some("welcome")) => true,
                        (UpWhen::State, Stage::Connecting, Some("welcome")) => {
                            member.stage = Stage::Welcomed;
                            false
                        }
                        (UpWhen::State, Stage::Welcomed, Some("state")) => true,
                        _ => false,
                    };
                    if up {
                        member.stage = Stage::Up;
                        self.up += 1;
                        self.last_up = Some(event.at);
                    }
                }
                _ => {}
            },
            What::Ping => member.pings += 1,
            What::Ended(ending) => {
                let failure = match *ending {
                    Ending::Failed(failure) | Ending::Lost(failure) => failure,
                    Ending::Closed => Failure::Closed,
                };
                if member.stage == Stage::Up {
                    self.dropped.add(failure);
                } else {
                    self.failures.add(failure);
                }
                log::debug!("conn={} member {k} ended: {failure}", event.id);
                member.stage = Stage::Gone;
            }
            What::Response { .. } | What::Control => return Seen::Other,
        }
        Seen::Handled
    }
}

/// [`gather`] for the modes that need every member up before they start: `Ok(None)` when
/// all are, else the problem to report, such as `3 of 5 members up (timed out; failures: ...)`.
pub fn gather_everyone<'t>(
    pool: &mut Pool,
    crowd: &mut Crowd,
    deadline: Instant,
    dial: impl Fn(usize) -> Dial<'t>,
    what: &str,
) -> io::Result<Option<String>> {
    let complete = gather(pool, crowd, deadline, dial, |_, _| {})?;
    let wanted = crowd.members.len() as u64;
    if complete && crowd.up == wanted {
        return Ok(None);
    }
    Ok(Some(format!(
        "{} of {wanted} {what} up ({}failures: {})",
        crowd.up,
        if complete { "" } else { "timed out; " },
        crowd.failures
    )))
}

/// The connect phase: opens the crowd on its schedule and runs the loop until every member is
/// up or failed (`Ok(true)`), or `deadline` passes (`Ok(false)`: the members still connecting
/// failed with `timeout`). Events that are not the crowd's go to `other`.
pub fn gather<'t>(
    pool: &mut Pool,
    crowd: &mut Crowd,
    deadline: Instant,
    dial: impl Fn(usize) -> Dial<'t>,
    mut other: impl FnMut(&mut Pool, &Event),
) -> io::Result<bool> {
    let mut events = Vec::new();
    loop {
        let now = Instant::now();
        crowd.open_more(pool, now, &dial);
        if crowd.settled() {
            return Ok(true);
        }
        if now >= deadline {
            crowd.give_up(pool);
            return Ok(false);
        }
        let wake = crowd.next_due().map_or(deadline, |due| due.min(deadline));
        pool.poll(Some(wake.saturating_duration_since(now)), &mut events)?;
        for event in events.drain(..) {
            if let Seen::Other = crowd.handle(pool, &event) {
                other(pool, &event);
            }
        }
    }
}

/// The `type` of a rollcall message, if it is a JSON object with one.
pub fn message_type(text: &str) -> Option<String> {
    // Read without a JSON tree: the message may be a `state` of thousands of members.
    let kind = crate::member_keys::for_each_key(text, &[], |_, _| {});
    (!kind.is_empty()).then(|| kind.to_string())
}
