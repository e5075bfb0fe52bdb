//! The `[nemesis]` table (placeholder, filled in below).
