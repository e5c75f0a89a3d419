//! Coalesced presence for `events=diff`: a channel's changes reach its `diff` subscribers
//! (and the watchers whose connection asked for `events=diff`) as one `diff` per
//! `--diff-interval`, encoded once for all of them.
//!
//! A change in a quiet channel goes out at once, in a diff of its own, and opens a window of
//! one interval; changes within the window fold into the channel's [`PendingDiff`], sent when
//! the window ends (which opens the next one). A window that ends with nothing pending
//! closes, so a quiet channel holds nothing here.
//!
//! A native connection joining in mode `diff` while its channel's window is open gets its
//! `state` when the window ends, after the diff and at the diff's seq: one encoding shared by
//! every joiner of that tick (a storm of N joiners then costs the server one member list per
//! tick, not N), and a joiner never holds a state taken in the middle of a window whose diff
//! it would apply on top (a join and leave that cancel out within the window would leave it
//! with a member nobody else sees).
//!
//! Invariants: a channel has a window exactly while a `Timer::Diff` of it is armed; diffs of
//! one channel chain (`from` of each is `seq` of the one before), so a pending diff whose
//! changes all cancelled out is still sent (empty) to carry the seq forward; a joiner waiting
//! for its state hears no diff of the channel before it.

use std::collections::HashSet;
use std::rc::Rc;

use super::delivery::{watchers_of_everything, Audience};
use super::{Engine, Timer};
use crate::dialect::Dialect;
use crate::model::{DiffChange, Event, EventsMode, Json, PendingDiff};
use crate::roster::{Change, ChannelId, ConnId, UserId};
use crate::wheel::Millis;

/// A channel's open window: its name (to check the channel still is the same one when the
/// window ends) and the changes made within it.
pub(super) struct DiffWindow {
    name: Rc<str>,
    pending: Option<PendingDiff>,
    /// Joiners waiting for their `state` (with the `ref` of their `join`), in join order.
    joiners: Vec<(ConnId, Option<Json>)>,
}

impl Engine {
    /// Tells the channel's diff listeners of `change`: at once when the channel was quiet
    /// (but `except`, the joiner, whose `state` already holds it), else folded into the
    /// window's pending diff.
    pub(super) fn diff_changed(
        &mut self,
        channel: ChannelId,
        name: &Rc<str>,
        change: &Change,
        except: Option<ConnId>,
        now: Millis,
    ) {
        if self.diff_listeners(channel, name, None).next().is_none() {
            return;
        }
        let (user, net, seq) = net_change(change);
        if let Some(window) = self.diffs.get_mut(&channel) {
            window
                .pending
                .get_or_insert_with(|| PendingDiff::starting_at(seq.saturating_sub(1)))
                .fold(user, net, seq);
            return;
        }
        let mut diff = PendingDiff::starting_at(seq.saturating_sub(1));
        diff.fold(user, net, seq);
        self.send_diff(channel, name, &diff, &|id| Some(*id) == except);
        self.open_window(channel, name.clone(), now);
    }

    /// A native joiner in mode `diff` of a channel whose window is open waits for the
    /// window's end for its `state` (see the module's doc): true when it was put to wait.
    pub(super) fn defer_diff_state(
        &mut self,
        id: ConnId,
        channel: ChannelId,
        reference: Option<&Json>,
    ) -> bool {
        let native = self
            .sessions
            .get(id)
            .is_some_and(|session| session.dialect == Dialect::V1);
        match self.diffs.get_mut(&channel) {
            Some(window) if native => {
                window.joiners.push((id, reference.cloned()));
                true
            }
            _ => false,
        }
    }

    /// The channel's window ends at `now`: its pending diff, if any, goes out and opens the
    /// next window; then the joiners that waited get their `state`.
    pub(super) fn diff_due(&mut self, channel: ChannelId, now: Millis) {
        let Some(DiffWindow {
            name,
            pending,
            mut joiners,
        }) = self.diffs.remove(&channel)
        else {
            return;
        };
        // The channel emptied (and may have been created again): its listeners are gone.
        if self.roster.find(&name) != Some(channel) || self.shutting_down {
            return;
        }
        // Those that left meanwhile, or joined again in another mode, wait no more.
        joiners.retain(|(id, _)| self.roster.mode(channel, *id) == Some(EventsMode::Diff));
        if let Some(diff) = pending {
            // A set, not a sorted list: every host already has `HashSet<ConnId>`'s code (the
            // watched users'), while sorting ids would add ~7 KiB to it.
            let waiting: HashSet<ConnId> = joiners.iter().map(|(id, _)| *id).collect();
            self.send_diff(channel, &name, &diff, &|id| waiting.contains(id));
            self.open_window(channel, name.clone(), now);
        }
        let shared = joiners
            .iter()
            .filter(|(_, reference)| reference.is_none())
            .map(|(id, _)| *id);
        self.deliver_state(shared.collect::<Vec<_>>().into_iter(), &name, None);
        for (id, reference) in joiners.iter().filter(|(_, r)| r.is_some()) {
            self.send_state(*id, &name, reference.as_ref());
        }
    }

    fn open_window(&mut self, channel: ChannelId, name: Rc<str>, now: Millis) {
        self.diffs.insert(
            channel,
            DiffWindow {
                name,
                pending: None,
                joiners: Vec::new(),
            },
        );
        let interval = super::millis(self.config.diff_interval);
        self.arm(Timer::Diff(channel), now + interval);
    }

    /// Sends `diff` to the channel's listeners but those `excluded`.
    fn send_diff(
        &mut self,
        channel: ChannelId,
        name: &str,
        diff: &PendingDiff,
        excluded: &dyn Fn(&ConnId) -> bool,
    ) {
        let recipients: Vec<ConnId> = self
            .diff_listeners(channel, name, None)
            .filter(|id| !excluded(id))
            .collect();
        let event = Event::Diff {
            channel: name,
            diff,
        };
        self.deliver(recipients.into_iter(), &event);
    }

    /// Who hears the channel's diffs: its `diff` subscribers, and the watchers whose
    /// connection asked for `events=diff` (unless subscribed in a mode that hears presence).
    fn diff_listeners<'a>(
        &'a self,
        channel: ChannelId,
        name: &str,
        except: Option<ConnId>,
    ) -> impl Iterator<Item = ConnId> + 'a {
        let audience = Audience {
            roster: &self.roster,
            watch_all: watchers_of_everything(&self.watch_all, name),
            channel,
            mode: EventsMode::Diff,
            except,
        };
        let sessions = &self.sessions;
        let wants_diffs = move |watcher: &ConnId| {
            sessions
                .get(*watcher)
                .is_some_and(|session| session.mode == EventsMode::Diff)
        };
        audience
            .subscribers()
            .chain(audience.watchers().filter(wants_diffs))
    }
}

/// The user, the net change and the seq of a roster change.
fn net_change(change: &Change) -> (&UserId, DiffChange, u64) {
    match change {
        Change::Join { user, meta, seq } => (user, DiffChange::Join(meta.clone()), *seq),
        Change::Leave { user, reason, seq } => (user, DiffChange::Leave(*reason), *seq),
        Change::Update { user, meta, seq } => (user, DiffChange::Update(meta.clone()), *seq),
    }
}
