//! The member table and its state machine: pure code, time passed in as milliseconds.
//!
//! Each member has an *announced* state ([`Status`]: joining, up, leaving, left) that only the
//! member itself changes, raising its incarnation each time, and a heartbeat counter it raises
//! every gossip round. Views merge by (incarnation, then heartbeat): the higher incarnation wins
//! whole; at equal incarnation only the heartbeat can advance. A member is never removed (a
//! `left` member stays as a tombstone so it cannot be resurrected by an old view).
//!
//! Liveness ([`Health`]) is *local*: a member whose heartbeat has not advanced, and which has not
//! answered a direct probe, for `suspect_after` is suspect, for `down_after` down. Health is not
//! gossiped (each node judges for itself, so one confused node cannot declare another dead for
//! everyone), and it never changes ownership: a down member stays in the ring.
//!
//! This module does no I/O and reads no clock.

use std::collections::{BTreeMap, HashMap};

use kvstore_proto::pb;

/// A member's announced lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Streaming its ranges in; receives writes for them, reads still go to the old owners.
    Joining,
    /// Owns its ranges.
    Up,
    /// Handing its ranges out; still owns them and receives writes.
    Leaving,
    /// Gone; owns nothing.
    Left,
}

impl Status {
    /// The wire value.
    pub fn to_wire(self) -> pb::MemberState {
        match self {
            Self::Joining => pb::MemberState::Joining,
            Self::Up => pb::MemberState::Up,
            Self::Leaving => pb::MemberState::Leaving,
            Self::Left => pb::MemberState::Left,
        }
    }

    /// Decodes an announced state; `None` for the liveness-only states (suspect, down, unknown)
    /// that are never announced.
    pub fn from_wire(raw: i32) -> Option<Self> {
        match pb::MemberState::try_from(raw).ok()? {
            pb::MemberState::Joining => Some(Self::Joining),
            pb::MemberState::Up => Some(Self::Up),
            pb::MemberState::Leaving => Some(Self::Leaving),
            pb::MemberState::Left => Some(Self::Left),
            _ => None,
        }
    }

    /// Lower-case name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Joining => "joining",
            Self::Up => "up",
            Self::Leaving => "leaving",
            Self::Left => "left",
        }
    }
}

/// This node's local judgement of a member's liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Heard from recently.
    Alive,
    /// Silent for `suspect_after`: still tried, not yet given up on.
    Suspect,
    /// Silent for `down_after`: not sent requests (its writes become hints).
    Down,
}

/// One member as gossiped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Node id.
    pub id: u32,
    /// `host:port` it serves gRPC on.
    pub address: String,
    /// Announced state.
    pub status: Status,
    /// Raised by the member for every state change (and to refute stale views of itself).
    pub incarnation: u64,
    /// Raised by the member every gossip round.
    pub heartbeat: u64,
    /// Conditions the member announces about itself (spread with its heartbeat).
    pub conditions: Conditions,
}

/// What a member says about itself beyond its state: reasons coordinators should not count on
/// it for some requests. Announced by the member, carried by its heartbeat (a newer heartbeat
/// brings the newer conditions), never judged by others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Conditions {
    /// Its clock is too far from the cluster's (or its floor ahead of its wall clock): it
    /// coordinates no writes.
    pub clock_unhealthy: bool,
    /// Its storage takes no writes (disk full, read-only after an fsync failure): its writes
    /// are hinted instead of sent.
    pub writes_refused: bool,
}

impl Member {
    /// The gossip wire form (announced state, never a health judgement).
    pub fn to_wire(&self) -> pb::Member {
        pb::Member {
            id: self.id,
            address: self.address.clone(),
            state: self.status.to_wire() as i32,
            incarnation: self.incarnation,
            heartbeat: self.heartbeat,
            clock_unhealthy: self.conditions.clock_unhealthy,
            writes_refused: self.conditions.writes_refused,
        }
    }

    /// Decodes a gossiped member; `None` when its state is not an announced one.
    pub fn from_wire(m: &pb::Member) -> Option<Self> {
        Some(Self {
            id: m.id,
            address: m.address.clone(),
            status: Status::from_wire(m.state)?,
            incarnation: m.incarnation,
            heartbeat: m.heartbeat,
            conditions: Conditions {
                clock_unhealthy: m.clock_unhealthy,
                writes_refused: m.writes_refused,
            },
        })
    }
}

#[derive(Debug, Clone)]
struct Record {
    member: Member,
    /// When this node last saw evidence the member is alive (heartbeat advance or probe).
    last_alive_ms: u64,
}

/// What a merge changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeOutcome {
    /// A member's announced state or address changed, or a member was added: ownership may
    /// have moved.
    pub ring_changed: bool,
    /// This node had to raise its own incarnation to refute a view of itself.
    pub refuted: bool,
    /// Another node announced this one *left* at a higher incarnation: it was removed from the
    /// cluster (`kv removenode`) while it was down, and must not come back serving.
    pub removed: bool,
}

/// Failure-detector timings in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Silence before a member is suspect.
    pub suspect_after_ms: u64,
    /// Silence before a member is down.
    pub down_after_ms: u64,
}

/// The member table as one node sees it.
#[derive(Debug, Clone)]
pub struct MemberTable {
    self_id: u32,
    members: BTreeMap<u32, Record>,
    timing: Timing,
}

impl MemberTable {
    /// A table holding only this node, in `status`, at incarnation 1.
    pub fn new(self_id: u32, address: String, status: Status, timing: Timing, now_ms: u64) -> Self {
        let mut members = BTreeMap::new();
        members.insert(
            self_id,
            Record {
                member: Member {
                    id: self_id,
                    address,
                    status,
                    incarnation: 1,
                    heartbeat: 0,
                    conditions: Conditions::default(),
                },
                last_alive_ms: now_ms,
            },
        );
        Self {
            self_id,
            members,
            timing,
        }
    }

    /// This node's id.
    pub fn self_id(&self) -> u32 {
        self.self_id
    }

    /// This node's own entry.
    pub fn me(&self) -> &Member {
        &self.members[&self.self_id].member
    }

    /// A member by id.
    pub fn get(&self, id: u32) -> Option<&Member> {
        self.members.get(&id).map(|r| &r.member)
    }

    /// Every member, by id.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values().map(|r| &r.member)
    }

    /// Changes this node's announced state (and address), raising its incarnation so the
    /// change wins everywhere.
    pub fn set_my_status(&mut self, status: Status) {
        let me = &mut self.members.get_mut(&self.self_id).expect("self").member;
        me.status = status;
        me.incarnation += 1;
    }

    /// Announces another member *left* on its behalf (`kv removenode`: it is dead and will not
    /// announce anything itself), raising its incarnation so the removal wins everywhere.
    pub fn remove_member(&mut self, id: u32) -> Result<(), String> {
        if id == self.self_id {
            return Err(format!("node {id} is this node: use kv leave {id}"));
        }
        let r = self
            .members
            .get_mut(&id)
            .ok_or_else(|| format!("node {id} is not a member"))?;
        r.member.status = Status::Left;
        r.member.incarnation += 1;
        Ok(())
    }

    /// Raises this node's heartbeat (once per gossip round).
    pub fn beat(&mut self) {
        self.members
            .get_mut(&self.self_id)
            .expect("self")
            .member
            .heartbeat += 1;
    }

    /// Sets the conditions this node announces about itself; returns whether they changed
    /// (they spread with the next heartbeat).
    pub fn set_my_conditions(&mut self, conditions: Conditions) -> bool {
        let me = &mut self.members.get_mut(&self.self_id).expect("self").member;
        let changed = me.conditions != conditions;
        me.conditions = conditions;
        changed
    }

    /// Records direct evidence (a probe answered) that `id` is alive.
    pub fn observe_alive(&mut self, id: u32, now_ms: u64) {
        if let Some(r) = self.members.get_mut(&id) {
            r.last_alive_ms = r.last_alive_ms.max(now_ms);
        }
    }

    /// Merges one gossiped member.
    pub fn merge(&mut self, remote: Member, now_ms: u64) -> MergeOutcome {
        let mut out = MergeOutcome::default();
        if remote.id == self.self_id {
            // Nobody else speaks for this node: a view of it at our incarnation or above (we
            // restarted and forgot ours) is refuted by jumping past it, keeping our own state.
            let me = &mut self.members.get_mut(&self.self_id).expect("self").member;
            if remote.status == Status::Left
                && me.status != Status::Left
                && remote.incarnation > me.incarnation
            {
                // Removed by an operator while down: refuting would bring a node whose ranges
                // were re-replicated elsewhere back into the ring with stale data.
                out.removed = true;
                return out;
            }
            if remote.incarnation >= me.incarnation
                && (remote.status != me.status
                    || remote.address != me.address
                    || remote.incarnation > me.incarnation)
            {
                me.incarnation = remote.incarnation + 1;
                me.heartbeat = me.heartbeat.max(remote.heartbeat);
                out.refuted = true;
                out.ring_changed = true;
            }
            return out;
        }
        match self.members.get_mut(&remote.id) {
            None => {
                self.members.insert(
                    remote.id,
                    Record {
                        member: remote,
                        last_alive_ms: now_ms,
                    },
                );
                out.ring_changed = true;
            }
            Some(r) => {
                let local = &mut r.member;
                if remote.incarnation > local.incarnation {
                    out.ring_changed =
                        remote.status != local.status || remote.address != local.address;
                    if remote.heartbeat > local.heartbeat || out.ring_changed {
                        r.last_alive_ms = r.last_alive_ms.max(now_ms);
                    }
                    *local = remote;
                } else if remote.incarnation == local.incarnation
                    && remote.heartbeat > local.heartbeat
                {
                    local.heartbeat = remote.heartbeat;
                    local.conditions = remote.conditions;
                    r.last_alive_ms = r.last_alive_ms.max(now_ms);
                }
            }
        }
        out
    }

    /// Merges a whole gossiped table.
    pub fn merge_all(
        &mut self,
        remote: impl IntoIterator<Item = Member>,
        now_ms: u64,
    ) -> MergeOutcome {
        let mut out = MergeOutcome::default();
        for m in remote {
            let o = self.merge(m, now_ms);
            out.ring_changed |= o.ring_changed;
            out.refuted |= o.refuted;
        }
        out
    }

    /// This node's judgement of `id`'s liveness at `now_ms`. This node is always alive; a left
    /// member is reported down (it answers nothing).
    pub fn health(&self, id: u32, now_ms: u64) -> Health {
        if id == self.self_id {
            return Health::Alive;
        }
        let Some(r) = self.members.get(&id) else {
            return Health::Down;
        };
        if r.member.status == Status::Left {
            return Health::Down;
        }
        let silent = now_ms.saturating_sub(r.last_alive_ms);
        if silent >= self.timing.down_after_ms {
            Health::Down
        } else if silent >= self.timing.suspect_after_ms {
            Health::Suspect
        } else {
            Health::Alive
        }
    }

    /// The state to show operators and clients: the announced state, overridden by suspect or
    /// down when this node judges the member so.
    pub fn effective_state(&self, id: u32, now_ms: u64) -> pb::MemberState {
        let Some(m) = self.get(id) else {
            return pb::MemberState::Unknown;
        };
        shown_state(m.status, self.health(id, now_ms))
    }

    /// The gossip wire form of the table.
    pub fn to_wire(&self) -> Vec<pb::Member> {
        self.members().map(Member::to_wire).collect()
    }

    /// The operator view: members with the states this node judged them in `health` (the
    /// snapshot its coordinator routes by, so what operators see is what requests meet).
    pub fn to_wire_as_judged(&self, health: &HashMap<u32, Health>) -> Vec<pb::Member> {
        self.members()
            .map(|m| pb::Member {
                state: shown_state(m.status, health.get(&m.id).copied().unwrap_or(Health::Down))
                    as i32,
                ..m.to_wire()
            })
            .collect()
    }

    /// A version of the membership that grows with every announced change anywhere: the sum
    /// of incarnations. Equal on two nodes with the same converged table.
    pub fn ring_version(&self) -> u64 {
        self.members().map(|m| m.incarnation).sum()
    }
}

/// The state shown for a member announced as `status` and judged `health` by this node: the
/// announced state, overridden by suspect or down.
pub fn shown_state(status: Status, health: Health) -> pb::MemberState {
    if status == Status::Left {
        return pb::MemberState::Left;
    }
    match health {
        Health::Alive => status.to_wire(),
        Health::Suspect => pb::MemberState::Suspect,
        Health::Down => pb::MemberState::Down,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        suspect_after_ms: 2_000,
        down_after_ms: 4_000,
    };

    fn member(id: u32, status: Status, incarnation: u64, heartbeat: u64) -> Member {
        Member {
            id,
            address: format!("127.0.0.1:{}", 7000 + id),
            status,
            incarnation,
            heartbeat,
            conditions: Conditions::default(),
        }
    }

    fn table() -> MemberTable {
        MemberTable::new(1, "127.0.0.1:7001".into(), Status::Up, T, 0)
    }

    #[test]
    fn merge_rules_table() {
        // (local view of node 2, remote view, expected after merge, ring_changed)
        let cases = [
            // higher incarnation wins whole
            (
                member(2, Status::Up, 1, 9),
                member(2, Status::Leaving, 2, 0),
                member(2, Status::Leaving, 2, 0),
                true,
            ),
            // lower incarnation is ignored, even with a newer heartbeat
            (
                member(2, Status::Leaving, 3, 1),
                member(2, Status::Up, 2, 50),
                member(2, Status::Leaving, 3, 1),
                false,
            ),
            // same incarnation: heartbeat advances, state stays
            (
                member(2, Status::Up, 2, 5),
                member(2, Status::Up, 2, 8),
                member(2, Status::Up, 2, 8),
                false,
            ),
            // same incarnation, older heartbeat: nothing
            (
                member(2, Status::Up, 2, 8),
                member(2, Status::Up, 2, 3),
                member(2, Status::Up, 2, 8),
                false,
            ),
        ];
        for (local, remote, want, changed) in cases {
            let mut t = table();
            t.merge(local.clone(), 0);
            let out = t.merge(remote.clone(), 10);
            assert_eq!(t.get(2), Some(&want), "{local:?} + {remote:?}");
            assert_eq!(out.ring_changed, changed, "{local:?} + {remote:?}");
        }
    }

    #[test]
    fn a_removed_member_is_left_everywhere_and_stops_instead_of_refuting() {
        let mut t = table();
        t.merge(member(2, Status::Up, 3, 9), 0);
        assert!(
            t.remove_member(1).is_err(),
            "this node removes itself with a leave"
        );
        assert!(t.remove_member(9).is_err(), "not a member");
        t.remove_member(2).unwrap();
        let removed = t.get(2).unwrap().clone();
        assert_eq!((removed.status, removed.incarnation), (Status::Left, 4));

        // Node 2 itself, back at its old incarnation, learns it was removed: no refutation.
        let mut two = MemberTable::new(2, "127.0.0.1:7002".into(), Status::Up, T, 0);
        for _ in 0..2 {
            two.set_my_status(Status::Up); // incarnation 3, as node 1 last heard it
        }
        let out = two.merge(removed.clone(), 0);
        assert!(out.removed && !out.refuted, "{out:?}");
        assert_eq!(
            two.me().status,
            Status::Up,
            "its own state is not rewritten"
        );
        // A node that left by itself is not "removed" by hearing so.
        let mut gone = MemberTable::new(2, "127.0.0.1:7002".into(), Status::Left, T, 0);
        assert!(!gone.merge(removed, 0).removed);
    }

    #[test]
    fn merge_is_order_independent() {
        let updates = [
            member(2, Status::Joining, 1, 3),
            member(2, Status::Up, 2, 1),
            member(3, Status::Up, 1, 7),
            member(2, Status::Up, 2, 4),
            member(3, Status::Leaving, 2, 0),
        ];
        let mut a = table();
        let mut b = table();
        for u in &updates {
            a.merge(u.clone(), 0);
        }
        for u in updates.iter().rev() {
            b.merge(u.clone(), 0);
        }
        let av: Vec<_> = a.members().cloned().collect();
        let bv: Vec<_> = b.members().cloned().collect();
        assert_eq!(av, bv);
        assert_eq!(a.ring_version(), b.ring_version());
    }

    #[test]
    fn refutes_stale_views_of_itself() {
        let mut t = table();
        // After a restart the cluster remembers us at incarnation 7, leaving.
        let out = t.merge(member(1, Status::Leaving, 7, 100), 0);
        assert!(out.refuted);
        assert_eq!(t.me().status, Status::Up);
        assert_eq!(t.me().incarnation, 8);
        // An older view of us changes nothing.
        assert_eq!(
            t.merge(member(1, Status::Left, 3, 0), 0),
            MergeOutcome::default()
        );
    }

    #[test]
    fn health_follows_silence_and_recovers_on_heartbeat() {
        let mut t = table();
        t.merge(member(2, Status::Up, 1, 1), 0);
        assert_eq!(t.health(2, 1_999), Health::Alive);
        assert_eq!(t.health(2, 2_000), Health::Suspect);
        assert_eq!(t.health(2, 4_000), Health::Down);
        assert_eq!(t.effective_state(2, 4_000), pb::MemberState::Down);
        // A stale heartbeat is no evidence of life.
        t.merge(member(2, Status::Up, 1, 1), 5_000);
        assert_eq!(t.health(2, 5_000), Health::Down);
        // A fresh one is.
        t.merge(member(2, Status::Up, 1, 2), 5_000);
        assert_eq!(t.health(2, 5_000), Health::Alive);
        // So is a direct probe.
        t.observe_alive(2, 9_500);
        assert_eq!(t.health(2, 10_000), Health::Alive);
        // The node itself is always alive; a left member never is.
        assert_eq!(t.health(1, 1_000_000), Health::Alive);
        t.merge(member(2, Status::Left, 2, 3), 10_000);
        assert_eq!(t.health(2, 10_000), Health::Down);
        assert_eq!(t.effective_state(2, 10_000), pb::MemberState::Left);
    }

    #[test]
    fn own_state_changes_raise_incarnation_and_ring_version() {
        let mut t = table();
        let v0 = t.ring_version();
        t.set_my_status(Status::Leaving);
        assert_eq!(t.me().incarnation, 2);
        assert!(t.ring_version() > v0);
        // Heartbeats do not move the ring version.
        let v1 = t.ring_version();
        t.beat();
        assert_eq!(t.ring_version(), v1);
    }
}
