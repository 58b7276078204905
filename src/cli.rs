//! The command line: `serve` (the default), `keys`, `users`, `config check`. Commands other than
//! `serve` work on the same database as a running server, safely (SQLite WAL + busy timeout).
//! Output meant for scripts goes to stdout; every error is one sentence on stderr.

use crate::{
    app::App,
    config::Config,
    secret::Secret,
    store::{self, StoreError, UserRole},
    users,
};
use anyhow::{Context, anyhow, bail};
use chrono::Utc;
use clap::{Parser, Subcommand};
use std::{io::Read, path::PathBuf};

/// `println!` that returns the error instead of panicking: the CLI's answers go to stdout, and a
/// reader that has gone away (`gophergate keys list | head -1`) ends the command quietly (`main`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

#[derive(Parser, Debug)]
#[command(
    name = "gophergate",
    version,
    about = "A self-hosted, OpenAI-compatible LLM gateway."
)]
pub struct Cli {
    /// TOML configuration file (else $GOPHERGATE_CONFIG, else ./gophergate.toml when present).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the gateway (the default when no command is given).
    Serve,
    /// Manage client API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage dashboard users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Database tools.
    #[command(subcommand)]
    Db(DbCommand),
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key and print it once on stdout (only its hash is stored).
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated model ids this key may use (default: any).
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// Requests per minute allowed.
        #[arg(long)]
        rpm: Option<u32>,
        /// Tokens (prompt + completion) per minute allowed.
        #[arg(long)]
        tpm: Option<u32>,
        /// Spending limit in USD.
        #[arg(long = "budget-usd")]
        budget_usd: Option<f64>,
        /// Expiry time, RFC 3339 (e.g. 2027-01-31T00:00:00Z).
        #[arg(long)]
        expires: Option<String>,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke the live key with this name; effective at once on running servers.
    Revoke { name: String },
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Create a dashboard user; the password is read from stdin.
    Create {
        #[arg(long)]
        username: String,
        #[arg(long, default_value = "admin", value_parser = ["admin", "viewer"])]
        role: String,
        /// Read the password from stdin (required: passwords never go on the command line).
        #[arg(long = "password-stdin")]
        password_stdin: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective values, secrets redacted.
    Check,
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Copy a SQLite install (users, keys, provider keys and settings, request log, usage
    /// rollups, with their ids) into an empty PostgreSQL database. Stop the SQLite server first.
    Migrate {
        /// The SQLite database to copy (default: the configured `database.url`).
        #[arg(long, value_name = "SQLITE_URL")]
        from: Option<String>,
        /// The empty PostgreSQL database to fill, e.g. postgres://gophergate@db:5432/gophergate
        /// (leave the password out of the URL and set $PGPASSWORD, so it is not on the command
        /// line).
        #[arg(long, value_name = "POSTGRES_URL")]
        to: String,
        /// Log and rollup rows per insert statement.
        #[arg(long, default_value_t = 5_000)]
        batch_rows: usize,
    },
}

/// Runs a command; the caller prints the error and exits non-zero.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config =
        Config::load(cli.config.as_deref()).map_err(|e| anyhow!("configuration error: {e}"))?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Keys(cmd) => keys(config, cmd).await,
        Command::Users(cmd) => users(config, cmd).await,
        Command::Config(ConfigCommand::Check) => config_check(&config),
        Command::Db(DbCommand::Migrate {
            from,
            to,
            batch_rows,
        }) => db_migrate(&config, from, &to, batch_rows).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Caught from before the first connection: a SIGTERM while starting up (or while the first
    // admin's password hashes) is a graceful stop, not an instant death with rows unwritten.
    let stop = shutdown_signal();
    let app = App::build(config).await?;
    let token = app.shutdown_token();
    tokio::spawn(async move {
        stop.await;
        tracing::info!("stop requested; draining");
        token.cancel();
    });
    announce_first_admin(&app).await?;
    app.run_until_stopped().await
}

/// With no dashboard user yet, creates `admin` with a random password and prints it once, on
/// stdout only (never through the log, which may be kept or shipped elsewhere).
async fn announce_first_admin(app: &App) -> anyhow::Result<()> {
    let Some(password) = users::create_first_admin(&app.state().store)
        .await
        .context("could not create the first dashboard user")?
    else {
        return Ok(());
    };
    let shown = (|| {
        outln!("Created the first dashboard user (this password is shown only once):")?;
        outln!("  username: {}", users::FIRST_ADMIN)?;
        outln!("  password: {}", password.expose())?;
        outln!(
            "Sign in at http://{}/ and change it under Account & password, or add your own admin \
             with `gophergate users create --username NAME --password-stdin`.",
            app.addr()
        )
    })();
    // The server keeps running without a stdout; the password is never logged instead.
    if let Err(e) = shown {
        tracing::warn!(
            error = %e,
            "could not print the first dashboard user's password; add an admin with `gophergate users create`"
        );
    }
    Ok(())
}

/// Installs the SIGTERM and Ctrl-C handlers now (a signal from then on is never the default
/// action) and returns a future that completes at the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (term, int) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        )
    };
    async move {
        #[cfg(unix)]
        {
            async fn recv(s: std::io::Result<tokio::signal::unix::Signal>) {
                match s {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            }
            tokio::select! { _ = recv(term) => {}, _ = recv(int) => {} }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn open_store(config: &Config) -> anyhow::Result<store::DynStore> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("could not create data_dir {}", config.data_dir.display()))?;
    store::open(&config.database_url(), 2)
        .await
        .context("could not open the database")
}

async fn keys(config: Config, cmd: KeysCommand) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    match cmd {
        KeysCommand::Create {
            name,
            models,
            rpm,
            tpm,
            budget_usd,
            expires,
        } => {
            let spec = crate::keys::KeySpec {
                name,
                models,
                rpm,
                tpm,
                budget_usd,
                expires_at: expires,
            };
            let (key, _) = crate::keys::create(&store, spec)
                .await
                .map_err(|e| match e {
                    crate::keys::CreateKeyError::Store(e) => friendly(e),
                    invalid => anyhow!(invalid),
                })?;
            outln!("{key}")?;
        }
        KeysCommand::List => {
            let now = Utc::now();
            outln!(
                "{:<24} {:<11} {:<8} {:<8} {:<10} {:<12} {:<24} {:<24} MODELS",
                "NAME",
                "PREFIX",
                "STATUS",
                "RPM",
                "TPM",
                "BUDGET_USD",
                "CREATED",
                "EXPIRES"
            )?;
            for k in store.list_keys().await? {
                let status = k.status(now);
                outln!(
                    "{:<24} {:<11} {:<8} {:<8} {:<10} {:<12} {:<24} {:<24} {}",
                    k.name,
                    format!("{}…", k.prefix),
                    status,
                    k.rpm.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
                    k.tpm.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
                    k.budget_usd
                        .map(|b| format!("{b:.2}"))
                        .unwrap_or_else(|| "-".into()),
                    store::format_time(k.created_at),
                    k.expires_at
                        .map(store::format_time)
                        .unwrap_or_else(|| "-".into()),
                    k.models.map(|m| m.join(",")).unwrap_or_else(|| "*".into()),
                )?;
            }
        }
        KeysCommand::Revoke { name } => {
            let k = store.revoke_key(&name).await.map_err(friendly)?;
            outln!("revoked {}", k.name)?;
        }
    }
    Ok(())
}

async fn users(config: Config, cmd: UsersCommand) -> anyhow::Result<()> {
    let UsersCommand::Create {
        username,
        role,
        password_stdin,
    } = cmd;
    if !password_stdin {
        bail!(
            "pass --password-stdin and write the password to standard input (passwords are never taken from the command line)"
        );
    }
    let username = users::check_username(&username).map_err(|e| anyhow!("--username: {e}"))?;
    let role = UserRole::parse(&role).ok_or_else(|| anyhow!("--role must be admin or viewer"))?;
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("could not read the password from stdin")?;
    let password = Secret::new(password.trim_end_matches(['\r', '\n']).to_string());
    users::check_password(password.expose()).map_err(|e| anyhow!(e))?;
    let store = open_store(&config).await?;
    let user = users::create(&store, &username, password, role)
        .await
        .map_err(|e| match e {
            users::UserError::Store(e) => friendly(e),
            other => anyhow!(other),
        })?;
    outln!("created user {} ({})", user.username, user.role.as_str())?;
    Ok(())
}

fn config_check(config: &Config) -> anyhow::Result<()> {
    // The database URL in effect, also when it is the default (its password, if any, redacted).
    let mut shown = config.clone();
    if shown.database.url.is_none() {
        shown.database.url = Some(Secret::from(config.database_url()));
    }
    let text = toml::to_string_pretty(&shown).context("could not render the configuration")?;
    outln!("# effective configuration (secrets shown as ********)")?;
    outln!("{text}")?;
    if config.encryption_key.is_none() {
        let path = config.data_dir.join("encryption.key");
        outln!(
            "# encryption_key: {} {}",
            if path.exists() {
                "read from"
            } else {
                "will be generated into"
            },
            path.display()
        )?;
    }
    outln!("# providers:")?;
    for p in config.providers()? {
        outln!(
            "#   {:<10} kind={:<17} base_url={} key={}{}",
            p.name,
            p.kind.as_str(),
            p.base_url,
            if p.api_key.is_some() {
                "set"
            } else {
                "missing"
            },
            if p.enabled { "" } else { " (disabled)" }
        )?;
    }
    outln!("# configuration OK")?;
    Ok(())
}

async fn db_migrate(
    config: &Config,
    from: Option<String>,
    to: &str,
    batch_rows: usize,
) -> anyhow::Result<()> {
    let from = from.unwrap_or_else(|| config.database_url());
    if !from.starts_with("sqlite:") {
        bail!("--from must be a sqlite:// URL (the database to copy)");
    }
    if !store::is_postgres_url(to) {
        bail!("--to must be a postgres:// URL (the empty database to copy into)");
    }
    let started = std::time::Instant::now();
    let r = store::copy::sqlite_to_postgres(&from, to, batch_rows)
        .await
        .map_err(friendly)
        .context("nothing was copied")?;
    outln!(
        "copied into {}: users {}, keys {}, provider keys {}, provider settings {}, log rows {}, \
         usage rollup rows {} ({:.1}s)",
        store::postgres::describe_url(to),
        r.users,
        r.keys,
        r.credentials,
        r.provider_settings,
        r.log_rows,
        r.rollup_rows,
        started.elapsed().as_secs_f64()
    )?;
    Ok(())
}

fn friendly(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::Conflict(m) | StoreError::NotFound(m) => anyhow!(m),
        other => anyhow!(other),
    }
}
