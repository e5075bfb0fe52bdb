//! The error a scenario check gives: the field (as written in the TOML, e.g. `fault[2].at_s`)
//! and why it is wrong. Below every validation module, so each can use it without importing
//! another.

/// `(field, why)`.
pub(super) type Invalid = (String, String);

/// Fails with `why` about `field`.
pub(super) fn bad<T>(field: &str, why: impl Into<String>) -> Result<T, Invalid> {
    Err((field.to_string(), why.into()))
}
