//! The models.dev catalog: which models each provider serves and what they cost. Held as an
//! immutable snapshot swapped atomically, so readers on the request path never lock and a failed
//! refresh can never leave a half-updated catalog.

pub mod pricing;
pub mod source;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use std::{collections::HashMap, sync::Arc};

/// models.dev provider id → gateway provider name, for the providers the gateway knows.
pub const PROVIDER_MAP: [(&str, &str); 4] = [
    ("openai", "openai"),
    ("google", "gemini"),
    ("deepseek", "deepseek"),
    ("xai", "xai"),
];

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ModelInfo {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub release_date: Option<String>,
    #[serde(default)]
    pub reasoning: bool,
    #[serde(default)]
    pub tool_call: bool,
    #[serde(default)]
    pub cost: Option<Cost>,
    #[serde(default)]
    pub limit: Option<Limit>,
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
pub struct Limit {
    #[serde(default)]
    pub context: Option<u64>,
    #[serde(default)]
    pub output: Option<u64>,
}

/// Prices in USD per million tokens.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct Cost {
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub reasoning: Option<f64>,
    #[serde(default)]
    pub cache_read: Option<f64>,
    #[serde(default)]
    pub cache_write: Option<f64>,
    #[serde(default)]
    pub input_audio: Option<f64>,
    #[serde(default)]
    pub output_audio: Option<f64>,
    #[serde(default)]
    pub tiers: Vec<CostTier>,
    #[serde(default)]
    pub context_over_200k: Option<TierPrices>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct CostTier {
    #[serde(flatten)]
    pub prices: TierPrices,
    pub tier: TierBound,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct TierPrices {
    #[serde(default)]
    pub input: Option<f64>,
    #[serde(default)]
    pub output: Option<f64>,
    #[serde(default)]
    pub reasoning: Option<f64>,
    #[serde(default)]
    pub cache_read: Option<f64>,
    #[serde(default)]
    pub cache_write: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TierBound {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub size: u64,
}

/// One immutable version of the catalog.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Short hash of the source document: which snapshot priced a request.
    pub version: String,
    pub loaded_at: Option<DateTime<Utc>>,
    /// Gateway provider → model id → info.
    providers: HashMap<String, HashMap<String, Arc<ModelInfo>>>,
    /// Bare model id → gateway provider (first provider in `PROVIDER_MAP` order wins).
    owner: HashMap<String, String>,
    /// Models skipped because their entry did not parse.
    pub skipped: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("the registry is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the registry is not a JSON object of providers")]
    Shape,
    #[error("the registry lists none of the providers openai, google, deepseek, xai")]
    NoKnownProvider,
}

impl Catalog {
    /// Parses models.dev `api.json`. A malformed model entry is skipped (and counted); a document
    /// without any known provider is refused, so a truncated or wrong download never empties the
    /// catalog.
    pub fn parse(bytes: &[u8]) -> Result<Self, CatalogError> {
        let doc: Value = serde_json::from_slice(bytes)?;
        let obj = doc.as_object().ok_or(CatalogError::Shape)?;
        let mut providers = HashMap::new();
        let mut owner = HashMap::new();
        let mut skipped = 0;
        for (source_id, gateway) in PROVIDER_MAP {
            let Some(models) = obj
                .get(source_id)
                .and_then(|p| p.get("models"))
                .and_then(Value::as_object)
            else {
                continue;
            };
            let mut map = HashMap::new();
            for (id, m) in models {
                match serde_json::from_value::<ModelInfo>(m.clone()) {
                    Ok(mut info) => {
                        id.clone_into(&mut info.id);
                        owner
                            .entry(id.clone())
                            .or_insert_with(|| gateway.to_string());
                        map.insert(id.clone(), Arc::new(info));
                    }
                    Err(_) => skipped += 1,
                }
            }
            providers.insert(gateway.to_string(), map);
        }
        if providers.is_empty() {
            return Err(CatalogError::NoKnownProvider);
        }
        use sha2::Digest;
        Ok(Self {
            version: hex::encode(&sha2::Sha256::digest(bytes)[..6]),
            loaded_at: Some(Utc::now()),
            providers,
            owner,
            skipped,
        })
    }

    /// Which gateway provider's catalog lists this bare id.
    pub fn provider_of(&self, model: &str) -> Option<&str> {
        self.owner.get(model).map(String::as_str)
    }

    pub fn model(&self, provider: &str, id: &str) -> Option<&Arc<ModelInfo>> {
        self.providers.get(provider)?.get(id)
    }

    pub fn models(&self, provider: &str) -> impl Iterator<Item = &Arc<ModelInfo>> {
        self.providers
            .get(provider)
            .into_iter()
            .flat_map(|m| m.values())
    }

    pub fn len(&self) -> usize {
        self.providers.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Catalog> for Registry {
    fn from(c: Catalog) -> Self {
        Self::new(c)
    }
}

/// The current catalog, swapped whole on refresh.
pub struct Registry {
    current: ArcSwap<Catalog>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new(Catalog::default())
    }
}

impl Registry {
    pub fn new(catalog: Catalog) -> Self {
        Self {
            current: ArcSwap::from_pointee(catalog),
        }
    }

    pub fn snapshot(&self) -> Arc<Catalog> {
        self.current.load_full()
    }

    pub fn replace(&self, catalog: Catalog) {
        self.current.store(Arc::new(catalog));
    }
}

/// Seconds since the epoch of a models.dev date (`YYYY-MM-DD` or `YYYY-MM`), for `created`.
pub fn release_timestamp(date: Option<&str>) -> i64 {
    let Some(d) = date else { return 0 };
    let full = if d.len() == 7 {
        format!("{d}-01")
    } else {
        d.to_string()
    };
    chrono::NaiveDate::parse_from_str(&full, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Option<Vec<u8>> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/data/models-dev-snapshot.json"
        ))
        .ok()
    }

    #[test]
    fn parses_the_real_snapshot() {
        let Some(bytes) = snapshot() else {
            eprintln!("SKIPPED: ../shared/data is not present");
            return;
        };
        let c = Catalog::parse(&bytes).unwrap();
        assert_eq!(c.provider_of("gpt-4o"), Some("openai"));
        assert_eq!(c.provider_of("gemini-2.5-flash"), Some("gemini"));
        assert_eq!(c.provider_of("deepseek-chat"), Some("deepseek"));
        assert_eq!(c.provider_of("grok-4.3"), Some("xai"));
        let cost = c.model("openai", "gpt-4o").unwrap().cost.clone().unwrap();
        assert_eq!(
            (cost.input, cost.output, cost.cache_read),
            (2.5, 10.0, Some(1.25))
        );
        let pro = c
            .model("gemini", "gemini-2.5-pro")
            .unwrap()
            .cost
            .clone()
            .unwrap();
        assert_eq!(pro.tiers[0].tier.size, 200_000);
        assert_eq!(pro.tiers[0].prices.input, Some(2.5));
        assert!(c.len() > 80);
        assert_eq!(c.version.len(), 12);
    }

    #[test]
    fn refuses_documents_that_would_empty_the_catalog() {
        assert!(Catalog::parse(b"{\"openai\": {\"models\": {").is_err());
        assert!(matches!(Catalog::parse(b"[]"), Err(CatalogError::Shape)));
        assert!(matches!(
            Catalog::parse(b"{\"other\": {}}"),
            Err(CatalogError::NoKnownProvider)
        ));
        let c = Catalog::parse(
            br#"{"openai": {"models": {"good": {"id": "good"}, "bad": {"id": 5}}}}"#,
        )
        .unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c.skipped, 1);
    }

    #[test]
    fn release_dates() {
        assert_eq!(release_timestamp(Some("2024-05-13")), 1_715_558_400);
        assert_eq!(release_timestamp(Some("2024-05")), 1_714_521_600);
        assert_eq!(release_timestamp(None), 0);
    }
}
