//! Layered configuration: built-in defaults, then the providers' usual env vars (`OPENAI_API_KEY`, …),
//! then a TOML file, then `GOPHERGATE_<SECTION>__<KEY>` env vars; later layers win. Everything is
//! validated here, at start-up, so a bad value stops the process with the path of the offending key
//! instead of failing on the first request.

use crate::secret::Secret;
use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    /// 32 bytes as 64 hex digits or base64; generated into `<data_dir>/encryption.key` when absent.
    pub encryption_key: Option<Secret<String>>,
    pub registry: RegistryConfig,
    pub log: LogConfig,
    pub pricing: crate::registry::pricing::PricingConfig,
    pub metrics: MetricsConfig,
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Named models that stand for an ordered or weighted list of `provider/model` targets.
    pub routes: BTreeMap<String, RouteConfig>,
    pub retry: RetryConfig,
    pub health: HealthConfig,
    pub redis: RedisConfig,
}

/// Optional Redis shared by several instances: rate and token limits, budget reservations, the
/// live feed and key-change announcements. Without it each instance keeps its own counters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]` (`rediss://` for TLS is not built in).
    pub url: Option<Secret<String>>,
    /// Every key and channel starts with this: separate deployments can share one Redis.
    pub prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            prefix: "gophergate".into(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            data_dir: PathBuf::from("./data"),
            database: DatabaseConfig::default(),
            encryption_key: None,
            registry: RegistryConfig::default(),
            log: LogConfig::default(),
            pricing: Default::default(),
            metrics: MetricsConfig::default(),
            providers: BTreeMap::new(),
            routes: BTreeMap::new(),
            retry: RetryConfig::default(),
            health: HealthConfig::default(),
            redis: RedisConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest request body accepted on `/v1` (413 beyond it).
    pub max_body_bytes: usize,
    /// How long a graceful stop waits for in-flight requests before ending them.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
    /// `/v1` requests (streams included) served at once; beyond it a fast 503.
    pub max_in_flight: usize,
    /// A stream silent this long gets an SSE comment line, so proxies keep it open; `0s` never.
    #[serde(with = "duration")]
    pub sse_keepalive: Duration,
    /// How long a client may take to send a request's headers, and how long a kept-alive
    /// connection may sit idle between requests; then the connection is closed (slow-loris).
    #[serde(with = "duration")]
    pub header_timeout: Duration,
    /// Largest request head (request line and headers) accepted; 431 beyond it.
    pub max_header_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 16 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(30),
            max_in_flight: 10_000,
            sse_keepalive: Duration::from_secs(15),
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://…` (one instance) or `postgres://…` (several); defaults to
    /// `sqlite://<data_dir>/gophergate.db`. Shown with its password (if any) redacted.
    #[serde(serialize_with = "url_redacted")]
    pub url: Option<Secret<String>>,
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 8,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// `http(s)://…` or a local file path.
    pub url: String,
    #[serde(with = "duration")]
    pub refresh: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            url: "https://models.dev/api.json".into(),
            refresh: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Rows waiting for the writer. When full, requests wait for room rather than drop a row.
    pub queue_capacity: usize,
    /// Rows written per transaction at most.
    pub batch_size: usize,
    /// Raw request-log rows older than this are deleted (the usage rollups are kept); `0s` keeps
    /// them forever.
    #[serde(with = "duration")]
    pub retention: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 65_536,
            batch_size: 512,
            retention: Duration::from_secs(90 * 86_400),
        }
    }
}

/// Prometheus metrics at `/metrics`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// When set, `/metrics` needs `Authorization: Bearer <token>`.
    pub token: Option<Secret<String>>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            token: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    Openai,
    Gemini,
    Deepseek,
    Xai,
    OpenaiCompatible,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Gemini => "gemini",
            Self::Deepseek => "deepseek",
            Self::Xai => "xai",
            Self::OpenaiCompatible => "openai-compatible",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderConfig {
    pub kind: Option<ProviderKind>,
    pub base_url: Option<String>,
    pub api_key: Option<Secret<String>>,
    /// Extra model ids this provider serves (routing of bare ids, `/v1/models`).
    pub models: Vec<String>,
    /// Total time allowed for one upstream request, stream included (default 10m).
    #[serde(with = "duration::option", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Time allowed to open the TCP/TLS connection (default 10s).
    #[serde(with = "duration::option", skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Duration>,
    /// Time allowed until the response headers arrive (default 5m: a non-streamed answer from a
    /// reasoning model only starts when it is complete).
    #[serde(with = "duration::option", skip_serializing_if = "Option::is_none")]
    pub first_byte_timeout: Option<Duration>,
    /// Longest silence allowed between two stream chunks (default 5m).
    #[serde(with = "duration::option", skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    /// Set false to switch a provider off without removing its settings.
    pub enabled: Option<bool>,
}

/// One `[routes.<name>]`: clients ask for `<name>` and get the first target that answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `provider/model` targets, as strings or `{ model = "…", weight = N }` tables.
    pub targets: Vec<RouteTarget>,
    #[serde(default)]
    pub strategy: RouteStrategy,
    /// Retries per target before moving on; defaults to `retry.max_retries`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum RouteTarget {
    Model(String),
    Weighted {
        model: String,
        #[serde(default = "one")]
        weight: u32,
    },
}

fn one() -> u32 {
    1
}

impl RouteTarget {
    pub fn model(&self) -> &str {
        match self {
            Self::Model(m) | Self::Weighted { model: m, .. } => m,
        }
    }

    pub fn weight(&self) -> u32 {
        match self {
            Self::Model(_) => 1,
            Self::Weighted { weight, .. } => *weight,
        }
    }
}

/// `fallback`: targets in the order listed. `weighted`: each request draws its first target by
/// weight (load balancing), the others follow as fallbacks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteStrategy {
    #[default]
    Fallback,
    Weighted,
}

/// Retries of a failed upstream call, only while nothing has been sent to the client.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retries of the same target after a connect error, 429, 500, 502, 503 or 504.
    pub max_retries: u32,
    /// First backoff; doubles per retry, with jitter, up to `max_backoff`.
    #[serde(with = "duration")]
    pub initial_backoff: Duration,
    #[serde(with = "duration")]
    pub max_backoff: Duration,
    /// A `Retry-After` longer than this is not waited for: the next target is tried instead.
    #[serde(with = "duration")]
    pub max_retry_after: Duration,
    /// No new attempt (retry or fallback) starts this long after the request arrived.
    #[serde(with = "duration")]
    pub budget: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 2,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(10),
            budget: Duration::from_secs(30),
        }
    }
}

/// Passive health (circuit breakers per `provider/model` target) and optional active probes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Consecutive failures that open a target's circuit.
    pub failure_threshold: u32,
    /// Or: this share of failures (0–1) over the last `window` once `min_requests` were seen.
    pub failure_rate: f64,
    pub min_requests: u32,
    #[serde(with = "duration")]
    pub window: Duration,
    /// How long an open circuit skips its target before one trial request (half-open).
    #[serde(with = "duration")]
    pub cooldown: Duration,
    /// Active probes of every usable provider (`GET /models`) at this interval; `0s` is off.
    #[serde(with = "duration")]
    pub probe_interval: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            failure_rate: 0.5,
            min_requests: 20,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(30),
            probe_interval: Duration::ZERO,
        }
    }
}

/// The four built-in providers: name, kind, key env vars, base-URL env var, default base URL.
pub const BUILTIN_PROVIDERS: [(&str, ProviderKind, &[&str], &str, &str); 4] = [
    (
        "openai",
        ProviderKind::Openai,
        &["OPENAI_API_KEY"],
        "OPENAI_BASE_URL",
        "https://api.openai.com/v1",
    ),
    (
        "gemini",
        ProviderKind::Gemini,
        &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
        "GEMINI_BASE_URL",
        "https://generativelanguage.googleapis.com/v1beta",
    ),
    (
        "deepseek",
        ProviderKind::Deepseek,
        &["DEEPSEEK_API_KEY"],
        "DEEPSEEK_BASE_URL",
        "https://api.deepseek.com/v1",
    ),
    (
        "xai",
        ProviderKind::Xai,
        &["XAI_API_KEY"],
        "XAI_BASE_URL",
        "https://api.x.ai/v1",
    ),
];

/// A provider as the gateway uses it, after defaults and validation.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub api_key: Option<Secret<String>>,
    pub models: Vec<String>,
    pub timeouts: Timeouts,
    pub enabled: bool,
}

/// A provider's upstream time limits (see `ProviderConfig`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(300),
            idle: Duration::from_secs(300),
            total: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Figment(Box<figment::Error>),
    #[error("invalid value for `{path}`: {message}")]
    Invalid { path: String, message: String },
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        Self::Figment(Box::new(e))
    }
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

/// Where the TOML file comes from: `--config`, else `GOPHERGATE_CONFIG`, else `./gophergate.toml`
/// when it exists.
pub fn config_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("GOPHERGATE_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let default = PathBuf::from("gophergate.toml");
    default.exists().then_some(default)
}

impl Config {
    /// Loads every layer from the process environment and the file system.
    pub fn load(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        let path = config_path(explicit);
        if let Some(p) = &path
            && !p.exists()
        {
            return Err(invalid(
                "--config",
                format!("the file {} does not exist", p.display()),
            ));
        }
        let mut figment = Figment::new();
        for (name, _, key_vars, url_var, _) in BUILTIN_PROVIDERS {
            if let Some(key) = key_vars.iter().find_map(|v| non_empty_env(v)) {
                figment = figment.merge(Serialized::default(
                    &format!("providers.{name}.api_key"),
                    key,
                ));
            }
            if let Some(url) = non_empty_env(url_var) {
                figment = figment.merge(Serialized::default(
                    &format!("providers.{name}.base_url"),
                    url,
                ));
            }
        }
        if let Some(p) = &path {
            figment = figment.merge(Toml::file_exact(p));
        }
        figment = figment.merge(
            Env::prefixed("GOPHERGATE_")
                .ignore(&["config", "encryption_key", "metrics__token"])
                .split("__"),
        );
        // Taken as text: figment would read a key of decimal digits only as a number and reject it.
        if let Ok(key) = std::env::var("GOPHERGATE_ENCRYPTION_KEY") {
            figment = figment.merge(Serialized::default("encryption_key", key));
        }
        if let Ok(token) = std::env::var("GOPHERGATE_METRICS__TOKEN") {
            figment = figment.merge(Serialized::default("metrics.token", token));
        }
        Self::from_figment(figment)
    }

    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let config: Config = figment.extract()?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.server.max_body_bytes < 1024 {
            return Err(invalid("server.max_body_bytes", "must be at least 1024"));
        }
        if self.server.max_in_flight == 0 {
            return Err(invalid("server.max_in_flight", "must be at least 1"));
        }
        if self.server.header_timeout < Duration::from_millis(100) {
            return Err(invalid("server.header_timeout", "must be at least 100ms"));
        }
        if self.server.max_header_bytes < 1024 {
            return Err(invalid("server.max_header_bytes", "must be at least 1024"));
        }
        if self.log.queue_capacity == 0 {
            return Err(invalid("log.queue_capacity", "must be at least 1"));
        }
        if self.log.batch_size == 0 {
            return Err(invalid("log.batch_size", "must be at least 1"));
        }
        if !self.log.retention.is_zero() && self.log.retention < Duration::from_secs(3600) {
            return Err(invalid(
                "log.retention",
                "must be at least 1h, or 0s to keep the request log forever",
            ));
        }
        if let Some(url) = &self.database.url {
            let url = url.expose();
            if !url.starts_with("sqlite:") && !crate::store::is_postgres_url(url) {
                return Err(invalid(
                    "database.url",
                    "must be a sqlite:// or postgres:// URL",
                ));
            }
        }
        self.validate_resilience()?;
        if let Some(url) = &self.redis.url
            && !url.expose().starts_with("redis://")
        {
            return Err(invalid("redis.url", "must be a redis:// URL"));
        }
        if self.registry.url.trim().is_empty() {
            return Err(invalid("registry.url", "must not be empty"));
        }
        if self.registry.refresh < Duration::from_secs(60) {
            return Err(invalid("registry.refresh", "must be at least 1m"));
        }
        for (model, o) in &self.pricing.overrides {
            let prices = [
                Some(o.input),
                Some(o.output),
                o.cache_read,
                o.cache_write,
                o.reasoning,
            ];
            if prices.iter().flatten().any(|p| !p.is_finite() || *p < 0.0) {
                return Err(invalid(
                    format!("pricing.overrides.{model}"),
                    "prices must be non-negative numbers of USD per million tokens",
                ));
            }
        }
        for (model, target) in &self.pricing.aliases {
            if target.trim().is_empty() {
                return Err(invalid(
                    format!("pricing.aliases.{model}"),
                    "must name a model",
                ));
            }
        }
        if self
            .metrics
            .token
            .as_ref()
            .is_some_and(|t| t.expose().trim().is_empty())
        {
            return Err(invalid(
                "metrics.token",
                "must not be empty (leave it out to serve /metrics without a token)",
            ));
        }
        if let Some(key) = &self.encryption_key {
            crate::crypto::MasterKey::parse(key.expose())
                .map_err(|e| invalid("encryption_key", e.to_string()))?;
        }
        self.providers().map(|_| ())
    }

    fn validate_resilience(&self) -> Result<(), ConfigError> {
        let r = &self.retry;
        if r.max_retries > 10 {
            return Err(invalid("retry.max_retries", "must be at most 10"));
        }
        if r.initial_backoff > r.max_backoff {
            return Err(invalid(
                "retry.initial_backoff",
                "must not exceed retry.max_backoff",
            ));
        }
        let h = &self.health;
        if h.failure_threshold == 0 {
            return Err(invalid("health.failure_threshold", "must be at least 1"));
        }
        if !(h.failure_rate > 0.0 && h.failure_rate <= 1.0) {
            return Err(invalid(
                "health.failure_rate",
                "must be a share between 0 (exclusive) and 1",
            ));
        }
        if h.window.is_zero() || h.cooldown.is_zero() {
            return Err(invalid(
                "health.window",
                "health.window and health.cooldown must be greater than zero",
            ));
        }
        if !h.probe_interval.is_zero() && h.probe_interval < Duration::from_secs(1) {
            return Err(invalid(
                "health.probe_interval",
                "must be at least 1s, or 0s for no active probes",
            ));
        }
        let providers: Vec<String> = self.providers()?.into_iter().map(|p| p.name).collect();
        for (name, route) in &self.routes {
            let path = format!("routes.{name}");
            if name.is_empty() || name.contains('/') {
                return Err(invalid(
                    path,
                    "a route name must be non-empty and contain no `/`",
                ));
            }
            if route.targets.is_empty() {
                return Err(invalid(
                    format!("{path}.targets"),
                    "needs at least one target",
                ));
            }
            for t in &route.targets {
                let ok = t
                    .model()
                    .split_once('/')
                    .is_some_and(|(p, m)| !p.is_empty() && !m.is_empty());
                if !ok {
                    return Err(invalid(
                        format!("{path}.targets"),
                        format!("`{}` is not of the form provider/model", t.model()),
                    ));
                }
                let provider = t.model().split_once('/').map_or("", |(p, _)| p);
                if !providers.iter().any(|p| p == provider) {
                    return Err(invalid(
                        format!("{path}.targets"),
                        format!("`{}` names no configured provider", t.model()),
                    ));
                }
                if t.weight() == 0 {
                    return Err(invalid(
                        format!("{path}.targets"),
                        format!("the weight of `{}` must be at least 1", t.model()),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) => url.expose().clone(),
            None => format!(
                "sqlite://{}",
                self.data_dir.join("gophergate.db").to_string_lossy()
            ),
        }
    }

    /// Every provider: the four built-ins (configured or not) plus custom ones from the config.
    pub fn providers(&self) -> Result<Vec<ProviderSettings>, ConfigError> {
        let mut out = Vec::new();
        for (name, kind, _, _, default_url) in BUILTIN_PROVIDERS {
            let cfg = self.providers.get(name).cloned().unwrap_or_default();
            if let Some(k) = cfg.kind
                && k != kind
            {
                return Err(invalid(
                    format!("providers.{name}.kind"),
                    format!(
                        "the built-in provider `{name}` is always of kind `{}`",
                        kind.as_str()
                    ),
                ));
            }
            out.push(settings(name, kind, cfg, default_url)?);
        }
        for (name, cfg) in &self.providers {
            if BUILTIN_PROVIDERS.iter().any(|b| b.0 == name) {
                continue;
            }
            if name.is_empty() || name.contains('/') {
                return Err(invalid(
                    format!("providers.{name}"),
                    "a provider name must be non-empty and contain no `/`",
                ));
            }
            let kind = cfg.kind.ok_or_else(|| {
                invalid(
                    format!("providers.{name}.kind"),
                    "required for a custom provider (openai, gemini, deepseek, xai or openai-compatible)",
                )
            })?;
            if cfg.base_url.is_none() {
                return Err(invalid(
                    format!("providers.{name}.base_url"),
                    "required for a custom provider",
                ));
            }
            out.push(settings(name, kind, cfg.clone(), "")?);
        }
        Ok(out)
    }
}

fn settings(
    name: &str,
    kind: ProviderKind,
    cfg: ProviderConfig,
    default_url: &str,
) -> Result<ProviderSettings, ConfigError> {
    let base_url = cfg.base_url.unwrap_or_else(|| default_url.to_string());
    let parsed = reqwest::Url::parse(&base_url)
        .map_err(|e| invalid(format!("providers.{name}.base_url"), e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(
            format!("providers.{name}.base_url"),
            "must be an http:// or https:// URL",
        ));
    }
    let d = Timeouts::default();
    let timeouts = Timeouts {
        connect: cfg.connect_timeout.unwrap_or(d.connect),
        first_byte: cfg.first_byte_timeout.unwrap_or(d.first_byte),
        idle: cfg.idle_timeout.unwrap_or(d.idle),
        total: cfg.timeout.unwrap_or(d.total),
    };
    for (field, value) in [
        ("timeout", timeouts.total),
        ("connect_timeout", timeouts.connect),
        ("first_byte_timeout", timeouts.first_byte),
        ("idle_timeout", timeouts.idle),
    ] {
        if value.is_zero() {
            return Err(invalid(
                format!("providers.{name}.{field}"),
                "must be greater than zero",
            ));
        }
    }
    Ok(ProviderSettings {
        name: name.to_string(),
        kind,
        base_url: base_url.trim_end_matches('/').to_string(),
        api_key: cfg.api_key.filter(|k| !k.expose().is_empty()),
        models: cfg.models,
        timeouts,
        enabled: cfg.enabled.unwrap_or(true),
    })
}

fn non_empty_env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

/// Durations in the configuration: read in humantime's forms (`90d`, `1h 30m`, `250ms`), written
/// back in the largest unit that is exact (`90d`, `15s`), as one would type them (humantime's own
/// output turns 90 days into `2months 29days 2h 52m 48s`).
mod duration {
    use serde::{Deserializer, Serializer};
    use std::time::Duration;

    pub fn compact(d: Duration) -> String {
        if !d.subsec_nanos().is_multiple_of(1_000_000) {
            return format!("{}ns", d.as_nanos());
        }
        let ms = d.as_millis();
        if ms == 0 {
            return "0s".into();
        }
        const UNITS: [(&str, u128); 5] = [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ];
        let (unit, size) = UNITS
            .into_iter()
            .find(|(_, size)| ms.is_multiple_of(*size))
            .unwrap_or(("ms", 1));
        format!("{}{unit}", ms / size)
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&compact(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        humantime_serde::deserialize(d)
    }

    pub mod option {
        use serde::{Deserializer, Serializer};
        use std::time::Duration;

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            humantime_serde::option::deserialize(d)
        }
    }
}

/// A database URL with its password replaced by `********` (in the user info, or a `password`
/// query parameter); the rest (scheme, user, host, database, options) is what an operator needs
/// to see.
pub fn url_without_password(url: &str) -> String {
    const STARS: &str = "********";
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:{STARS}@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k.to_ascii_lowercase().contains("password") => {
                        format!("{k}={STARS}")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    if scheme.is_empty() {
        format!("{authority}{tail}")
    } else {
        format!("{scheme}://{authority}{tail}")
    }
}

fn url_redacted<S: serde::Serializer>(
    url: &Option<Secret<String>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => s.serialize_str(&url_without_password(url.expose())),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_in_the_largest_exact_unit_and_read_back() {
        use std::time::Duration as D;
        let cases = [
            (D::from_secs(90 * 86_400), "90d"),
            (D::from_secs(86_400), "1d"),
            (D::from_secs(7_200), "2h"),
            (D::from_secs(300), "5m"),
            (D::from_secs(30), "30s"),
            (D::from_millis(1_500), "1500ms"),
            (D::from_millis(250), "250ms"),
            (D::from_nanos(1_500), "1500ns"),
            (D::ZERO, "0s"),
        ];
        for (d, text) in cases {
            assert_eq!(duration::compact(d), text);
            let back = humantime_serde::re::humantime::parse_duration(text).expect(text);
            assert_eq!(back, d, "{text}");
        }
    }

    #[test]
    fn a_database_url_is_shown_without_its_password() {
        let cases = [
            (
                "sqlite:///data/gophergate.db",
                "sqlite:///data/gophergate.db",
            ),
            (
                "postgres://gg:s3cret@db:5432/gg?sslmode=require",
                "postgres://gg:********@db:5432/gg?sslmode=require",
            ),
            ("postgres://gg@db/gg", "postgres://gg@db/gg"),
            (
                "postgres://db/gg?user=gg&password=s3cret",
                "postgres://db/gg?user=gg&password=********",
            ),
            (
                "postgres://gg:p@ss:word@db/gg",
                "postgres://gg:********@db/gg",
            ),
        ];
        for (url, shown) in cases {
            assert_eq!(url_without_password(url), shown);
        }
    }

    fn from_toml(s: &str) -> Result<Config, ConfigError> {
        Config::from_figment(Figment::new().merge(Toml::string(s)))
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = from_toml("").unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.database_url(), "sqlite://./data/gophergate.db");
        assert_eq!(c.registry.url, "https://models.dev/api.json");
        assert_eq!(c.registry.refresh, Duration::from_secs(86_400));
        let p = c.providers().unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(
            p[1].base_url,
            "https://generativelanguage.googleapis.com/v1beta"
        );
    }

    #[test]
    fn unknown_key_names_its_path() {
        let err = from_toml("[server]\nlisen = \"0.0.0.0:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("lisen"), "{err}");
        assert!(err.contains("server"), "{err}");
    }

    #[test]
    fn bad_value_names_its_path() {
        let err = from_toml("[server]\nlisten = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.listen"), "{err}");
        let err = from_toml("[registry]\nrefresh = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("registry.refresh"), "{err}");
    }

    #[test]
    fn log_retention_is_a_duration_and_zero_keeps_forever() {
        let c = from_toml("").unwrap();
        assert_eq!(c.log.retention, Duration::from_secs(90 * 86_400));
        let c = from_toml("[log]\nretention = \"30d\"\n").unwrap();
        assert_eq!(c.log.retention, Duration::from_secs(30 * 86_400));
        let c = from_toml("[log]\nretention = \"0s\"\n").unwrap();
        assert!(c.log.retention.is_zero());
        for bad in ["\"soon\"", "\"5m\"", "-1"] {
            let err = from_toml(&format!("[log]\nretention = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("log.retention"), "{bad}: {err}");
        }
    }

    #[test]
    fn custom_provider_needs_kind_and_url() {
        let err = from_toml("[providers.local]\nbase_url = \"http://x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("providers.local.kind"), "{err}");
        let c = from_toml(
            "[providers.local]\nkind = \"openai-compatible\"\nbase_url = \"http://127.0.0.1:9/v1/\"\nmodels = [\"llama\"]\n",
        )
        .unwrap();
        let p = c.providers().unwrap();
        let local = p.iter().find(|p| p.name == "local").unwrap();
        assert_eq!(local.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(local.kind, ProviderKind::OpenaiCompatible);
    }

    #[test]
    fn metrics_default_on_without_a_token() {
        let c = from_toml("").unwrap();
        assert!(c.metrics.enabled && c.metrics.token.is_none());
        let c = from_toml("[metrics]\nenabled = false\ntoken = \"s3cret\"\n").unwrap();
        assert!(!c.metrics.enabled);
        assert_eq!(c.metrics.token.unwrap().expose(), "s3cret");
        let err = from_toml("[metrics]\ntoken = \" \"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("metrics.token"), "{err}");
    }

    #[test]
    fn weak_or_short_encryption_key_is_refused() {
        let err = from_toml(&format!("encryption_key = \"{}\"\n", "aa".repeat(32)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("encryption_key"), "{err}");
        let err = from_toml("encryption_key = \"abcd\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("encryption_key"), "{err}");
    }
}
