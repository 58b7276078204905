//! Runs the mock provider as a process: `gophergate-mock --listen 127.0.0.1:9000`.
//! Point the gateway at it with `OPENAI_BASE_URL=http://127.0.0.1:9000/v1`.

use clap::Parser;
use gophergate::mock::{Dialect, MockConfig, MockServer};
use std::{net::SocketAddr, time::Duration};

#[derive(Parser)]
#[command(
    name = "gophergate-mock",
    about = "A fake LLM provider for tests, benchmarks and demos."
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Require this bearer key (else any key is accepted).
    #[arg(long)]
    api_key: Option<String>,
    /// Delay before every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Wire format to speak: openai, gemini, deepseek or xai.
    #[arg(long, default_value = "openai", value_parser = ["openai", "gemini", "deepseek", "xai"])]
    dialect: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let dialect = match args.dialect.as_str() {
        "gemini" => Dialect::Gemini,
        "deepseek" => Dialect::DeepSeek,
        "xai" => Dialect::Xai,
        _ => Dialect::OpenAi,
    };
    let config = MockConfig {
        dialect,
        api_key: args.api_key,
        latency: Duration::from_millis(args.latency_ms),
    };
    match MockServer::start_on(args.listen, config).await {
        Ok(server) => {
            eprintln!("mock provider listening on http://{}", server.addr);
            let _ = tokio::signal::ctrl_c().await;
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: could not listen on {}: {e}", args.listen);
            std::process::ExitCode::FAILURE
        }
    }
}
