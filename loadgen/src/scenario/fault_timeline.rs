//! The one-at-a-time rule that partitions and link faults share: of the faults a kind
//! selects, at most one is in force at a time (a new one waits for the end action or the
//! `until_s` of the one before), and every end action ends one.

use super::invalid::{Invalid, bad};
use super::{FaultAction, Scenario};

/// Checks that the faults `selects` picks (the end action among them) come one at a time and
/// that every `end` ends one; `noun` names the kind in messages ("partition", "link fault").
pub(super) fn one_at_a_time(
    s: &Scenario,
    selects: impl Fn(FaultAction) -> bool,
    end: FaultAction,
    noun: &str,
) -> Result<(), Invalid> {
    let mut order: Vec<usize> = (0..s.faults.len())
        .filter(|&i| selects(s.faults[i].action))
        .collect();
    order.sort_by(|&a, &b| s.faults[a].at_s.total_cmp(&s.faults[b].at_s));
    // The fault in force: its index and when it ends (`None`: at an end action).
    let mut in_force: Option<(usize, Option<f64>)> = None;
    for i in order {
        let f = &s.faults[i];
        if let Some((_, Some(until))) = in_force
            && until <= f.at_s
        {
            in_force = None;
        }
        match (f.action, in_force) {
            (a, None) if a == end => {
                return bad(
                    &format!("fault[{i}].action"),
                    format!("{} at {} s: no {noun} is in force", end.name(), f.at_s),
                );
            }
            (a, Some(_)) if a == end => in_force = None,
            (_, Some((j, _))) => {
                return bad(
                    &format!("fault[{i}].at_s"),
                    format!(
                        "{} at {} s while fault[{j}] ({}) is still in force: {} it first \
                         (a {} action or its until_s)",
                        f.action.name(),
                        f.at_s,
                        s.faults[j].action.name(),
                        end.name(),
                        end.name()
                    ),
                );
            }
            (_, None) => in_force = Some((i, f.until_s)),
        }
    }
    Ok(())
}
