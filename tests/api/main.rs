//! End-to-end tests: one binary, shared helpers, every test on its own app, port and database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod auth;
mod budget;
mod chat;
mod cli;
mod dashboard_api;
mod dashboard_manage;
mod disconnect;
mod embeddings;
mod errors;
mod lifecycle;
mod limits_http;
mod live;
mod models;
mod multi_instance;
mod postgres;
mod pricing;
mod providers_gemini;
mod providers_openai_compat;
mod rate_limits;
mod registry;
mod resilience;
mod shutdown;
mod soak;
mod streams;
