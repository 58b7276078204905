//! GopherGate: a self-hosted, OpenAI-compatible LLM gateway.
//!
//! Module map (see ARCHITECTURE.md for the request flow and invariants):
//! - [`app`]: wiring, start-up and graceful shutdown; [`cli`]: the command line.
//! - [`config`]: layered configuration; [`secret`]: values that never print; [`crypto`]: keys.
//! - [`server`]: HTTP routes and middleware; [`error`]: the one error-to-HTTP mapping.
//! - [`domain`]: the canonical OpenAI-shaped types; [`routing`]: model id to provider.
//! - [`providers`]: one adapter per upstream wire format; [`translate`]: pure wire translation.
//! - [`registry`]: the models.dev catalog (models, prices), refreshed in the background.
//! - [`store`]: persistence behind narrow traits; [`keys`]: the client-key cache and key creation;
//!   [`users`]: dashboard users (password rules, bcrypt, the first admin).
//! - [`workers`]: background tasks (request log writer, …); [`mock`]: a fake upstream for tests.

pub mod app;
pub mod budget;
pub mod cli;
pub mod config;
pub mod coordination;
pub mod crypto;
pub mod dashboard;
pub mod domain;
pub mod error;
pub mod estimate;
pub mod events;
pub mod hub;
pub mod keys;
pub mod mock;
pub mod providers;
pub mod ratelimit;
pub mod registry;
pub mod resilience;
pub mod routing;
pub mod secret;
pub mod server;
pub mod store;
pub mod translate;
pub mod users;
pub mod workers;
