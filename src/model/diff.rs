//! A channel's pending `diff` (`events=diff`): the presence changes of one tick folded into
//! each user's net change, so that a tick costs one message however many members arrived.
//!
//! Invariants: it holds at most one entry per user (its latest net change), so its size is
//! bounded by the users who changed, never by the events; `from` is the channel's seq before
//! the first change folded in and `seq` the seq after the last, so consecutive diffs chain
//! (`from` of one is `seq` of the one before) and a client can tell a gap. Folding follows
//! what a client that knew the state at `from` must do to reach the state at `seq`:
//! - a join then a leave cancel out (the user was never seen);
//! - an update folds into a pending join (a join with the new meta);
//! - a leave then a join is an update (the user stays, with the new meta);
//! - otherwise the latest change wins.

use crate::user_id::UserId;
use std::collections::BTreeMap;

use super::{LeaveReason, Meta};

/// One user's net change within a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffChange {
    /// The user became a member, with this meta.
    Join(Meta),
    /// The user stopped being a member.
    Leave(LeaveReason),
    /// The member stays, with this meta.
    Update(Meta),
}

/// The changes of one channel waiting for its next `diff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDiff {
    from: u64,
    seq: u64,
    changes: BTreeMap<UserId, DiffChange>,
}

impl PendingDiff {
    /// An empty diff starting at the channel's seq `from`.
    pub fn starting_at(from: u64) -> PendingDiff {
        PendingDiff {
            from,
            seq: from,
            changes: BTreeMap::new(),
        }
    }

    /// Folds in `user`'s `change`, which brought the channel to `seq`.
    pub fn fold(&mut self, user: &UserId, change: DiffChange, seq: u64) {
        self.seq = self.seq.max(seq);
        let net = match (self.changes.remove(user), change) {
            (Some(DiffChange::Join(_)), DiffChange::Leave(_)) => return,
            (Some(DiffChange::Join(_)), DiffChange::Update(meta)) => DiffChange::Join(meta),
            (Some(DiffChange::Leave(_)), DiffChange::Join(meta)) => DiffChange::Update(meta),
            (_, change) => change,
        };
        self.changes.insert(user.clone(), net);
    }

    /// The channel's seq before the diff.
    pub fn from(&self) -> u64 {
        self.from
    }

    /// The channel's seq after the diff.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// True when no change is left (nothing happened, or everything cancelled out).
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The net changes, by user.
    pub fn changes(&self) -> impl Iterator<Item = (&str, &DiffChange)> + '_ {
        self.changes.iter().map(|(user, change)| (&**user, change))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(text: &str) -> Meta {
        Meta::from_value(&serde_json::from_str(text).expect("json")).expect("object")
    }

    fn net(diff: &PendingDiff) -> Vec<(&str, &DiffChange)> {
        diff.changes().collect()
    }

    #[test]
    fn a_join_then_a_leave_cancel_out_but_the_seq_moves_on() {
        let alice: UserId = "alice".into();
        let mut diff = PendingDiff::starting_at(4);
        diff.fold(&alice, DiffChange::Join(Meta::default()), 5);
        diff.fold(&alice, DiffChange::Leave(LeaveReason::Closed), 6);
        assert!(diff.is_empty());
        assert_eq!((diff.from(), diff.seq()), (4, 6));
    }

    #[test]
    fn an_update_folds_into_a_pending_join() {
        let bob: UserId = "bob".into();
        let mut diff = PendingDiff::starting_at(0);
        diff.fold(&bob, DiffChange::Join(meta(r#"{"a":1}"#)), 1);
        diff.fold(&bob, DiffChange::Update(meta(r#"{"a":2}"#)), 2);
        assert_eq!(net(&diff), [("bob", &DiffChange::Join(meta(r#"{"a":2}"#)))]);
    }

    #[test]
    fn a_leave_then_a_join_is_an_update_and_the_latest_change_wins() {
        let (carol, dan): (UserId, UserId) = ("carol".into(), "dan".into());
        let mut diff = PendingDiff::starting_at(10);
        diff.fold(&carol, DiffChange::Leave(LeaveReason::Timeout), 11);
        diff.fold(&carol, DiffChange::Join(meta(r#"{"b":1}"#)), 12);
        diff.fold(&dan, DiffChange::Update(meta(r#"{"c":1}"#)), 13);
        diff.fold(&dan, DiffChange::Leave(LeaveReason::Left), 14);
        assert_eq!(
            net(&diff),
            [
                ("carol", &DiffChange::Update(meta(r#"{"b":1}"#))),
                ("dan", &DiffChange::Leave(LeaveReason::Left)),
            ]
        );
        assert_eq!((diff.from(), diff.seq()), (10, 14));
    }
}
