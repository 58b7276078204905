//! End-to-end tests: one binary, shared helpers, every test on its own app, port and database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod chat;
