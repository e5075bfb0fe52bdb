//! Validation of clock faults (`[[fault]] kind = "clock"`, actions bump, strobe, drift, reset):
//! each action's required parameters and their bounds, and the fields a process fault must not
//! carry. Clock faults apply to a node in any process state (its clock file outlives a kill),
//! so they take no part in the kill/restart/pause/resume state machine.
//!
//! They need loadgen's own local cluster: the clock is moved through libfaketime, preloaded
//! under the node processes loadgen starts, never by a knob in the server.

use super::invalid::{Invalid, bad};
use super::{FaultAction, FaultKind, FaultSpec, NodeSelector, Scenario};

/// Largest clock jump or strobe position: a week, in ms (Jepsen bumps by up to hours).
pub const MAX_DELTA_MS: i64 = 7 * 24 * 3_600_000;
/// Shortest strobe period, ms: a node re-reads its clock file on every clock read, but loadgen
/// rewrites it from a 10 ms ticker.
pub const MIN_PERIOD_MS: u64 = 10;

/// Checks `f`; `Ok(true)` when it is a (valid) clock fault, `Ok(false)` for a process fault
/// carrying no clock field.
pub(super) fn validate(
    s: &Scenario,
    f: &FaultSpec,
    field: &dyn Fn(&str) -> String,
) -> Result<bool, Invalid> {
    let clock_kind = f.kind == Some(FaultKind::Clock);
    if !f.action.is_clock() {
        if clock_kind {
            return bad(
                &field("action"),
                format!(
                    "a clock fault's action is bump, strobe, drift or reset, not {}",
                    f.action.name()
                ),
            );
        }
        for (name, set) in [
            ("delta_ms", f.delta_ms.is_some()),
            ("period_ms", f.period_ms.is_some()),
            ("rate", f.rate.is_some()),
            ("until_s", f.until_s.is_some()),
        ] {
            if set {
                return bad(
                    &field(name),
                    format!("only clock faults take it, not {}", f.action.name()),
                );
            }
        }
        return Ok(false);
    }
    if !clock_kind {
        return bad(
            &field("kind"),
            format!("{} is a clock fault: set kind = \"clock\"", f.action.name()),
        );
    }
    if !s.cluster.is_local() {
        return bad(
            &field("kind"),
            "clock faults need loadgen's own nodes (libfaketime is preloaded under them)",
        );
    }
    if let NodeSelector::Index(n) = f.node
        && n >= s.cluster.node_count()
    {
        return bad(
            &field("node"),
            format!("node {n} does not exist ({} nodes)", s.cluster.node_count()),
        );
    }
    let need_delta = || -> Result<i64, Invalid> {
        match f.delta_ms {
            None => bad(
                &field("delta_ms"),
                format!("{} needs delta_ms (ms, negative = behind)", f.action.name()),
            ),
            Some(0) => bad(&field("delta_ms"), "must not be 0"),
            Some(d) if d.abs() > MAX_DELTA_MS => bad(
                &field("delta_ms"),
                format!("{d} ms is beyond +/-{MAX_DELTA_MS} ms (a week)"),
            ),
            Some(d) => Ok(d),
        }
    };
    let until_ok = |required: bool| -> Result<(), Invalid> {
        match f.until_s {
            None if required => bad(
                &field("until_s"),
                format!("{} needs until_s (when it stops)", f.action.name()),
            ),
            Some(u) if !(u.is_finite() && u > f.at_s) => bad(
                &field("until_s"),
                format!("must be after at_s ({} s), got {u}", f.at_s),
            ),
            _ => Ok(()),
        }
    };
    let unused = |names: &[(&str, bool)]| -> Result<(), Invalid> {
        for (name, set) in names {
            if *set {
                return bad(
                    &field(name),
                    format!("a clock {} does not take it", f.action.name()),
                );
            }
        }
        Ok(())
    };
    match f.action {
        FaultAction::Bump => {
            need_delta()?;
            unused(&[
                ("period_ms", f.period_ms.is_some()),
                ("rate", f.rate.is_some()),
                ("until_s", f.until_s.is_some()),
            ])?;
        }
        FaultAction::Strobe => {
            need_delta()?;
            match f.period_ms {
                None => return bad(&field("period_ms"), "strobe needs period_ms"),
                Some(p) if p < MIN_PERIOD_MS => {
                    return bad(
                        &field("period_ms"),
                        format!("must be >= {MIN_PERIOD_MS} ms, got {p}"),
                    );
                }
                Some(_) => {}
            }
            until_ok(true)?;
            unused(&[("rate", f.rate.is_some())])?;
        }
        FaultAction::Drift => {
            match f.rate {
                None => return bad(&field("rate"), "drift needs rate (1.01 = 1% fast)"),
                Some(r) if !(r.is_finite() && r > 0.0 && r != 1.0 && r <= 100.0) => {
                    return bad(
                        &field("rate"),
                        format!("must be in (0, 100] and not 1, got {r}"),
                    );
                }
                Some(_) => {}
            }
            until_ok(false)?;
            unused(&[
                ("delta_ms", f.delta_ms.is_some()),
                ("period_ms", f.period_ms.is_some()),
            ])?;
        }
        FaultAction::Reset => unused(&[
            ("delta_ms", f.delta_ms.is_some()),
            ("period_ms", f.period_ms.is_some()),
            ("rate", f.rate.is_some()),
            ("until_s", f.until_s.is_some()),
        ])?,
        // Other actions returned above.
        _ => {}
    }
    Ok(true)
}
