//! The kvstore client library. Arriving with issue 3.
