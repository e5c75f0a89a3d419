//! The delivery of webhooks, decided in virtual time: one lane per URL, each with a bounded
//! queue, at most one batch, at most one request in flight.
//!
//! A lane forms a batch from the front of its queue once it holds [`BATCH_EVENTS`] events or
//! its oldest has waited [`BATCH_WAIT_MS`]: consecutive events of one signer (an app's events
//! are signed with its own secret), at most [`BATCH_EVENTS`]. The batch is posted
//! ([`Action::Post`]); a 2xx acknowledges it, anything else (another status, a failed
//! connection, garbage, no answer within [`ANSWER_MS`]) posts the very same bytes again after
//! an exponential backoff ([`FIRST_BACKOFF_MS`] doubling up to [`MAX_BACKOFF_MS`]) until
//! [`RETRY_WINDOW_MS`] after its first attempt; then it is abandoned, counted and logged.
//!
//! Invariants: a lane's events leave in the order they were queued (the next batch is formed
//! only once the previous one is done), so in order per channel; a lane holds at most
//! `capacity` events, queued and in its batch together, and an event that finds it full is
//! dropped, counted in [`Stats::dropped`] and logged once per burst; nothing here reads a
//! clock or touches a socket: the caller passes `now`, carries out the [`Action`]s and reports
//! each request's [`Outcome`].

use std::collections::VecDeque;

use log::{info, warn};

use super::event::Notice;
use super::http;
use super::target::WebhookUrl;
use super::{Signer, Stats, WebhookSettings};
use crate::pusher::App;
use crate::wheel::Millis;

/// Events in one request at most.
pub const BATCH_EVENTS: usize = 100;

/// How long the oldest queued event waits for others before its batch leaves.
pub const BATCH_WAIT_MS: Millis = 50;

/// How long a batch is retried after its first attempt (Pusher: 5 minutes).
pub const RETRY_WINDOW_MS: Millis = 5 * 60_000;

/// The pause before the first retry; each further retry doubles it.
pub const FIRST_BACKOFF_MS: Millis = 500;

/// The longest pause between two attempts.
pub const MAX_BACKOFF_MS: Millis = 30_000;

/// How long a request waits for its answer before it counts as failed.
pub const ANSWER_MS: Millis = 10_000;

/// What the socket side must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `request` on the URL's connection (opening one if needed) and report its
    /// [`Outcome`].
    Post {
        /// The URL's index.
        url: usize,
        /// The request's bytes.
        request: Vec<u8>,
    },
    /// The request in flight got no answer in time: drop the URL's connection.
    Abort {
        /// The URL's index.
        url: usize,
    },
}

/// How a posted request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered with this status.
    Answered(u16),
    /// No usable answer: the connection failed or closed, or the answer was garbage.
    Failed,
}

/// One queued event.
#[derive(Debug)]
struct Queued {
    signer: usize,
    json: Box<str>,
    at: Millis,
}

/// The batch being delivered.
#[derive(Debug)]
struct Batch {
    request: Vec<u8>,
    events: usize,
    /// The sum of its events' queueing times (for the latency).
    queued_at_sum: Millis,
    first_attempt: Option<Millis>,
    attempts: u32,
    /// When it may be posted (again).
    due: Millis,
}

/// One URL's queue and batch.
#[derive(Debug)]
struct Lane {
    url: WebhookUrl,
    queue: VecDeque<Queued>,
    batch: Option<Batch>,
    /// While a request is in flight: when it counts as unanswered.
    answer_by: Option<Millis>,
    /// Events dropped in the current burst of overflow.
    dropping: u64,
}

/// Every URL's lane, the signers and the figures.
#[derive(Debug)]
pub struct Outbox {
    lanes: Vec<Lane>,
    /// Index 0: the native channels' signer (`None` without a secret); 1 + i: app i's.
    signers: Vec<Option<Signer>>,
    capacity: usize,
    unix_origin_ms: u64,
    stats: Stats,
}

impl Outbox {
    /// The lanes of `settings`' URLs; `apps` sign their own events. `unix_origin_ms` is the
    /// Unix time of the loop's time 0 (for `time_ms`).
    pub fn new(settings: &WebhookSettings, apps: &[App], unix_origin_ms: u64) -> Outbox {
        let native = settings.secret.as_ref().map(|secret| Signer {
            key: settings.key.clone(),
            secret: secret.clone(),
        });
        let signers = std::iter::once(native)
            .chain(apps.iter().map(|app| {
                Some(Signer {
                    key: app.key.clone(),
                    secret: app.secret.clone(),
                })
            }))
            .collect();
        Outbox {
            lanes: settings
                .urls
                .iter()
                .map(|url| Lane {
                    url: url.clone(),
                    queue: VecDeque::new(),
                    batch: None,
                    answer_by: None,
                    dropping: 0,
                })
                .collect(),
            signers,
            capacity: settings.queue.max(1),
            unix_origin_ms,
            stats: Stats::default(),
        }
    }

    /// The URLs, by index.
    pub fn urls(&self) -> impl Iterator<Item = &WebhookUrl> {
        self.lanes.iter().map(|lane| &lane.url)
    }

    /// The figures so far.
    pub fn stats(&self) -> Stats {
        let queued = self
            .lanes
            .iter()
            .map(|lane| lane.queue.len() + lane.batch.as_ref().map_or(0, |b| b.events))
            .sum::<usize>();
        Stats {
            queued: queued as u64,
            ..self.stats
        }
    }

    /// Queues `notice` on every URL at `now` (not at all when nobody signs its kind).
    pub fn push(&mut self, notice: &Notice, now: Millis) {
        let signer = notice.app.map_or(0, |app| usize::from(app) + 1);
        if self.signers.get(signer).is_none_or(Option::is_none) {
            return;
        }
        let json: Box<str> = notice.event.to_json().into();
        for lane in &mut self.lanes {
            let held = lane.queue.len() + lane.batch.as_ref().map_or(0, |b| b.events);
            if held >= self.capacity {
                if lane.dropping == 0 {
                    warn!(
                        "webhook {}: queue full ({} events): dropping events until the receiver catches up",
                        lane.url, self.capacity
                    );
                }
                lane.dropping += 1;
                self.stats.dropped += 1;
                continue;
            }
            if lane.dropping > 0 {
                info!(
                    "webhook {}: queueing again; {} events were dropped",
                    lane.url, lane.dropping
                );
                lane.dropping = 0;
            }
            lane.queue.push_back(Queued {
                signer,
                json: json.clone(),
                at: now,
            });
        }
    }

    /// The next thing to do at `now`, if any; call until `None`.
    pub fn poll(&mut self, now: Millis) -> Option<Action> {
        for index in 0..self.lanes.len() {
            if let Some(action) = self.poll_lane(index, now) {
                return Some(action);
            }
        }
        None
    }

    fn poll_lane(&mut self, index: usize, now: Millis) -> Option<Action> {
        let lane = &mut self.lanes[index];
        if let Some(answer_by) = lane.answer_by {
            if now < answer_by {
                return None;
            }
            warn!("webhook {}: no answer within {ANSWER_MS} ms", lane.url);
            self.failed(index, now);
            return Some(Action::Abort { url: index });
        }
        if lane.batch.is_none() {
            let due = lane.queue.len() >= BATCH_EVENTS
                || lane
                    .queue
                    .front()
                    .is_some_and(|oldest| now >= oldest.at + BATCH_WAIT_MS);
            if !due {
                return None;
            }
            let batch = self.form_batch(index, now);
            self.lanes[index].batch = batch;
        }
        let lane = &mut self.lanes[index];
        let batch = lane.batch.as_mut()?;
        if now < batch.due {
            return None;
        }
        batch.attempts += 1;
        if batch.first_attempt.is_none() {
            batch.first_attempt = Some(now);
        } else {
            self.stats.retried += 1;
        }
        lane.answer_by = Some(now + ANSWER_MS);
        Some(Action::Post {
            url: index,
            request: batch.request.clone(),
        })
    }

    /// Takes the front of the lane's queue (one signer's events, at most [`BATCH_EVENTS`])
    /// into a signed request.
    fn form_batch(&mut self, index: usize, now: Millis) -> Option<Batch> {
        let lane = &mut self.lanes[index];
        let signer = lane.queue.front()?.signer;
        let mut body = format!(
            "{{\"time_ms\":{},\"events\":[",
            self.unix_origin_ms.saturating_add(now)
        );
        let mut events = 0;
        let mut queued_at_sum: Millis = 0;
        while events < BATCH_EVENTS && lane.queue.front().is_some_and(|e| e.signer == signer) {
            let Some(event) = lane.queue.pop_front() else {
                break;
            };
            if events > 0 {
                body.push(',');
            }
            body.push_str(&event.json);
            queued_at_sum = queued_at_sum.saturating_add(event.at);
            events += 1;
        }
        body.push_str("]}");
        if lane.queue.is_empty() && lane.queue.capacity() > 1024 {
            // After an outage the queue's memory goes back.
            lane.queue = VecDeque::new();
        }
        let signer = self.signers.get(signer)?.as_ref()?;
        Some(Batch {
            request: http::request(&lane.url, signer, &body),
            events,
            queued_at_sum,
            first_attempt: None,
            attempts: 0,
            due: now,
        })
    }

    /// The request in flight on URL `url` ended at `now` with `outcome`. An outcome with no
    /// request in flight (it was aborted) is ignored.
    pub fn on_outcome(&mut self, url: usize, outcome: Outcome, now: Millis) {
        let Some(lane) = self.lanes.get_mut(url) else {
            return;
        };
        if lane.answer_by.take().is_none() {
            return;
        }
        match outcome {
            Outcome::Answered(status) if (200..300).contains(&status) => {
                if let Some(batch) = lane.batch.take() {
                    let events = batch.events as u64;
                    self.stats.sent += events;
                    let latency = (now.saturating_mul(events)).saturating_sub(batch.queued_at_sum);
                    self.stats.latency_ms_sum = self.stats.latency_ms_sum.saturating_add(latency);
                }
            }
            Outcome::Answered(status) => {
                log::debug!("webhook {}: answered {status}", lane.url);
                lane.answer_by = Some(now);
                self.failed(url, now);
            }
            Outcome::Failed => {
                log::debug!("webhook {}: request failed", lane.url);
                lane.answer_by = Some(now);
                self.failed(url, now);
            }
        }
    }

    /// The lane's request failed at `now`: its batch waits for a retry, or is abandoned.
    fn failed(&mut self, index: usize, now: Millis) {
        self.stats.failed += 1;
        let lane = &mut self.lanes[index];
        lane.answer_by = None;
        let Some(batch) = lane.batch.as_mut() else {
            return;
        };
        let shift = batch.attempts.saturating_sub(1).min(16);
        let backoff = (FIRST_BACKOFF_MS << shift).min(MAX_BACKOFF_MS);
        let first = batch.first_attempt.unwrap_or(now);
        if now + backoff > first + RETRY_WINDOW_MS {
            warn!(
                "webhook {}: {} events abandoned after {} attempts over {} s",
                lane.url,
                batch.events,
                batch.attempts,
                (now - first) / 1000
            );
            self.stats.abandoned += batch.events as u64;
            lane.batch = None;
            return;
        }
        batch.due = now + backoff;
    }

    /// When [`Outbox::poll`] has something to do next; `None` when nothing waits.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.lanes
            .iter()
            .filter_map(|lane| {
                if let Some(answer_by) = lane.answer_by {
                    return Some(answer_by);
                }
                if let Some(batch) = &lane.batch {
                    return Some(batch.due);
                }
                let oldest = lane.queue.front()?;
                Some(if lane.queue.len() >= BATCH_EVENTS {
                    oldest.at
                } else {
                    oldest.at + BATCH_WAIT_MS
                })
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::event::HookEvent;
    use serde_json::Value;

    const ORIGIN: u64 = 1_700_000_000_000;

    fn settings(urls: usize, queue: usize) -> WebhookSettings {
        WebhookSettings {
            urls: (0..urls)
                .map(|i| {
                    format!("http://127.0.0.1:{}/h", 9000 + i)
                        .parse()
                        .expect("url")
                })
                .collect(),
            secret: Some("secret".into()),
            key: "rollcall".into(),
            queue,
            ca: None,
        }
    }

    fn added(channel: &str, user: usize) -> Notice {
        Notice {
            app: None,
            event: HookEvent::MemberAdded {
                channel: channel.into(),
                user: user.to_string(),
            },
        }
    }

    /// The body of a request, parsed.
    fn body(request: &[u8]) -> Value {
        let at = request
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a head");
        serde_json::from_slice(&request[at + 4..]).expect("JSON body")
    }

    fn users(request: &[u8]) -> Vec<String> {
        body(request)["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["user_id"].as_str().expect("user").to_owned())
            .collect()
    }

    fn post(action: Option<Action>) -> (usize, Vec<u8>) {
        match action {
            Some(Action::Post { url, request }) => (url, request),
            other => panic!("expected a post, got {other:?}"),
        }
    }

    #[test]
    fn events_wait_50_ms_for_company_then_leave_together() {
        let mut outbox = Outbox::new(&settings(1, 100), &[], ORIGIN);
        outbox.push(&added("c", 1), 10);
        outbox.push(&added("c", 2), 30);
        assert_eq!(outbox.next_deadline(), Some(60));
        assert_eq!(outbox.poll(59), None);
        let (url, request) = post(outbox.poll(60));
        assert_eq!(url, 0);
        assert_eq!(users(&request), ["1", "2"]);
        assert_eq!(body(&request)["time_ms"], ORIGIN + 60);
        // One request in flight: nothing more until it is answered.
        outbox.push(&added("c", 3), 61);
        assert_eq!(outbox.poll(200), None);
        outbox.on_outcome(0, Outcome::Answered(200), 70);
        assert_eq!(outbox.stats().sent, 2);
        assert_eq!(outbox.stats().latency_ms_sum, (70 - 10) + (70 - 30));
        assert_eq!(users(&post(outbox.poll(200)).1), ["3"]);
    }

    #[test]
    fn a_hundred_events_leave_at_once_and_no_more_per_request() {
        let mut outbox = Outbox::new(&settings(1, 1000), &[], ORIGIN);
        for user in 0..250 {
            outbox.push(&added("c", user), 5);
        }
        assert_eq!(outbox.next_deadline(), Some(5));
        let mut seen = Vec::new();
        let mut now = 5;
        while let Some(action) = outbox.poll(now) {
            let (_, request) = post(Some(action));
            let batch = users(&request);
            assert!(batch.len() <= BATCH_EVENTS);
            seen.extend(batch);
            now += 1;
            outbox.on_outcome(0, Outcome::Answered(204), now);
            now += BATCH_WAIT_MS;
        }
        let expected: Vec<String> = (0..250).map(|u| u.to_string()).collect();
        assert_eq!(seen, expected);
        assert_eq!(outbox.stats().sent, 250);
        assert_eq!(outbox.stats().queued, 0);
    }

    #[test]
    fn failures_retry_the_same_bytes_with_a_growing_pause_in_order() {
        let mut outbox = Outbox::new(&settings(1, 100), &[], ORIGIN);
        outbox.push(&added("c", 1), 0);
        let (_, first) = post(outbox.poll(50));
        outbox.push(&added("c", 2), 51);
        let mut now = 60;
        let mut pauses = Vec::new();
        for outcome in [
            Outcome::Answered(500),
            Outcome::Failed,
            Outcome::Answered(404),
        ] {
            outbox.on_outcome(0, outcome, now);
            let due = outbox.next_deadline().expect("a retry is due");
            pauses.push(due - now);
            assert_eq!(outbox.poll(due - 1), None);
            let (_, again) = post(outbox.poll(due));
            assert_eq!(again, first, "a retry sends the very same bytes");
            now = due + 1;
        }
        assert_eq!(pauses, [500, 1000, 2000]);
        outbox.on_outcome(0, Outcome::Answered(200), now);
        let stats = outbox.stats();
        assert_eq!((stats.sent, stats.failed, stats.retried), (1, 3, 3));
        // The second event only now, after the first was acknowledged.
        assert_eq!(users(&post(outbox.poll(now)).1), ["2"]);
    }

    #[test]
    fn an_unanswered_request_is_aborted_then_retried() {
        let mut outbox = Outbox::new(&settings(1, 100), &[], ORIGIN);
        outbox.push(&added("c", 1), 0);
        post(outbox.poll(50));
        assert_eq!(outbox.next_deadline(), Some(50 + ANSWER_MS));
        assert_eq!(outbox.poll(50 + ANSWER_MS), Some(Action::Abort { url: 0 }));
        // A late outcome of the aborted request changes nothing.
        outbox.on_outcome(0, Outcome::Answered(200), 50 + ANSWER_MS);
        assert_eq!(outbox.stats().sent, 0);
        let due = outbox.next_deadline().expect("retry");
        assert_eq!(due, 50 + ANSWER_MS + FIRST_BACKOFF_MS);
        post(outbox.poll(due));
    }

    #[test]
    fn a_batch_is_abandoned_after_five_minutes_and_the_next_goes() {
        let mut outbox = Outbox::new(&settings(1, 100), &[], ORIGIN);
        outbox.push(&added("c", 1), 0);
        outbox.push(&added("c", 2), 0);
        let (_, first) = post(outbox.poll(50));
        outbox.push(&added("d", 3), 51);
        let mut now = 50;
        let mut attempts = 1;
        loop {
            outbox.on_outcome(0, Outcome::Failed, now);
            if outbox.stats().abandoned > 0 {
                break;
            }
            now = outbox.next_deadline().expect("a retry");
            assert_eq!(post(outbox.poll(now)).1, first);
            attempts += 1;
        }
        assert!(now > 50 + RETRY_WINDOW_MS - MAX_BACKOFF_MS, "{now}");
        assert!(now <= 50 + RETRY_WINDOW_MS, "{now}");
        assert!(attempts > 10, "{attempts}");
        assert_eq!(outbox.stats().abandoned, 2);
        let (_, next) = post(outbox.poll(now));
        assert_eq!(users(&next), ["3"]);
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_memory_stays_bounded() {
        let mut outbox = Outbox::new(&settings(2, 10), &[], ORIGIN);
        for user in 0..25 {
            outbox.push(&added("c", user), 0);
        }
        let stats = outbox.stats();
        assert_eq!(stats.queued, 20, "10 per URL");
        assert_eq!(stats.dropped, 30, "15 per URL");
        // Each URL gets the first ten, in order.
        for url in 0..2 {
            let (posted, request) = post(outbox.poll(50));
            assert_eq!(posted, url);
            let expected: Vec<String> = (0..10).map(|u| u.to_string()).collect();
            assert_eq!(users(&request), expected);
        }
        // In flight counts toward the bound too.
        outbox.push(&added("c", 99), 60);
        assert_eq!(outbox.stats().dropped, 32);
    }

    #[test]
    fn each_signer_signs_its_own_batches_and_unsigned_kinds_are_not_sent() {
        let apps = [App::parse("7:appkey:appsecret").expect("app")];
        let mut outbox = Outbox::new(&settings(1, 100), &apps, ORIGIN);
        outbox.push(&added("c", 1), 0);
        let app_event = Notice {
            app: Some(0),
            event: HookEvent::ChannelOccupied {
                channel: "presence-x".into(),
            },
        };
        outbox.push(&app_event, 0);
        outbox.push(&added("c", 2), 0);
        let mut keys = Vec::new();
        let mut now = 50;
        while let Some(action) = outbox.poll(now) {
            let (_, request) = post(Some(action));
            let text = String::from_utf8(request).expect("text");
            let key = text
                .lines()
                .find_map(|l| l.strip_prefix("X-Pusher-Key: "))
                .expect("key");
            keys.push(key.to_owned());
            outbox.on_outcome(0, Outcome::Answered(200), now);
            now += 1;
        }
        assert_eq!(keys, ["rollcall", "appkey", "rollcall"]);
        // Without a native secret, native events are not queued at all.
        let mut unsigned = settings(1, 100);
        unsigned.secret = None;
        let mut outbox = Outbox::new(&unsigned, &apps, ORIGIN);
        outbox.push(&added("c", 1), 0);
        outbox.push(&app_event, 0);
        assert_eq!(outbox.stats().queued, 1);
        // An app index nobody configured is ignored.
        outbox.push(
            &Notice {
                app: Some(9),
                ..app_event
            },
            0,
        );
        assert_eq!(outbox.stats().queued, 1);
    }

    #[test]
    fn an_outcome_for_an_unknown_url_or_none_in_flight_changes_nothing() {
        let mut outbox = Outbox::new(&settings(1, 100), &[], ORIGIN);
        outbox.on_outcome(5, Outcome::Answered(200), 0);
        outbox.on_outcome(0, Outcome::Failed, 0);
        assert_eq!(outbox.stats(), Stats::default());
        assert_eq!(outbox.next_deadline(), None);
    }
}
