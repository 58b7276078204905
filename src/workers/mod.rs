//! Long-running background tasks. Each is named when spawned and stops on the shared cancellation
//! token; the request log writer stops last, after the server has drained.

pub mod log_writer;
pub mod metrics;
pub mod probes;
pub mod retention;
