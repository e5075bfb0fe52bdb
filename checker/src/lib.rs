//! The history checker: verifies recorded histories for last-write-wins convergence, lost
//! acknowledged writes and phantom values. Arriving with issue 5.
