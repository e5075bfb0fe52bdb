//! The checker library's one error type.
//!
//! It separates what the `checker` binary must tell apart: an unreadable or malformed history
//! (exit code 2, naming the line and column) from I/O failures while writing one. Rule
//! violations are not errors: they are findings in a [`crate::Report`].

use thiserror::Error;

/// Everything that can go wrong reading, writing or validating a history.
#[derive(Debug, Error)]
pub enum CheckerError {
    /// A history row (or its header) could not be understood. `line` is 1-based and counts the
    /// header as line 1; `column` is the column's name as in the header.
    #[error("history line {line}, column {column}: {message}")]
    Field {
        /// 1-based line in the CSV file.
        line: u64,
        /// Name of the offending column (or `header`, or `row` for whole-row problems).
        column: String,
        /// What is wrong, naming the expected form or limit.
        message: String,
    },
    /// Two rows contradict each other in a way no execution can explain (a reused operation id
    /// or value id): the history itself is broken, not the store.
    #[error("history line {line}: {message} (first seen on line {first_line})")]
    Inconsistent {
        /// The later row.
        line: u64,
        /// The earlier row it contradicts.
        first_line: u64,
        /// What is contradictory.
        message: String,
    },
    /// The CSV layer failed (an I/O error, or invalid UTF-8 where text is required).
    #[error("history line {line}: {source}")]
    Csv {
        /// 1-based line where reading stopped (0 when unknown).
        line: u64,
        /// The underlying error.
        #[source]
        source: csv::Error,
    },
    /// A value id was asked for a value shorter than the id's frame.
    #[error("value length {len} is below the minimum of {min} bytes needed to carry a value id")]
    ValueTooShort {
        /// The requested length in bytes.
        len: usize,
        /// [`crate::value_id::MIN_LEN`].
        min: usize,
    },
    /// The history's clock record (`history.clock.json`) is not valid JSON of the expected
    /// shape.
    #[error("{path}: {message}")]
    ClockRecord {
        /// The sidecar file.
        path: String,
        /// What serde found wrong, with line and column.
        message: String,
    },
    /// Reading or writing a file (the history, its clock record, a report) failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being written.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl CheckerError {
    /// Convenience constructor for a field error.
    pub(crate) fn field(line: u64, column: &str, message: impl Into<String>) -> Self {
        Self::Field {
            line,
            column: column.to_string(),
            message: message.into(),
        }
    }
}
