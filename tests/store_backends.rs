//! One store suite, run against both backends: every behaviour below is a function over a
//! `Backend`, and `both_backends!` makes a `sqlite::<name>` and a `postgres::<name>` test of it.
//! SQLite gets a temporary file; PostgreSQL a fresh database per test on the server named by
//! `GOPHERGATE_TEST_POSTGRES_URL` (scripts/test.sh starts one; without it those tests say they
//! are skipped).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/pg.rs"]
mod pg;

use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, TimeZone, Utc};
use gophergate::{
    crypto::{self, Sealed},
    domain::TokenCounts,
    keys::{AuthError, KeyCache},
    store::{
        self, DynStore, LogQuery, LogRow, NewKey, StoreError, UsageGroup, UsageQuery, UsageTotals,
        UserRole,
    },
};
use std::time::Duration;

struct Backend {
    store: DynStore,
    url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<pg::TestDb>,
}

impl Backend {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/gophergate.db", dir.path().display());
        Self {
            store: store::open(&url, 4).await.unwrap(),
            url,
            _dir: Some(dir),
            pg: None,
        }
    }

    async fn postgres(test: &str) -> Option<Self> {
        let db = pg::fresh_database(test).await?;
        let url = db.url.clone();
        Some(Self {
            store: store::open(&url, 4).await.unwrap(),
            url,
            _dir: None,
            pg: Some(db),
        })
    }

    /// Another process on the same database (a second instance, or the CLI).
    async fn reopen(&self) -> DynStore {
        store::open(&self.url, 4).await.unwrap()
    }

    async fn finish(self) {
        drop(self.store);
        if let Some(db) = self.pg {
            db.drop_database().await;
        }
    }
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let b = super::Backend::sqlite().await;
                    super::$name(&b).await;
                    b.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(b) = super::Backend::postgres(stringify!($name)).await else {
                        return;
                    };
                    super::$name(&b).await;
                    b.finish().await;
                }
            )*
        }
    };
}

both_backends!(
    keys_round_trip,
    live_key_names_are_unique,
    key_version_moves_on_changes_not_on_spend,
    revocation_reaches_other_processes,
    users_round_trip,
    user_ids_are_never_reused,
    last_admin_survives_concurrent_deletes,
    credentials_and_provider_settings,
    log_rows_round_trip,
    log_paging_and_filters,
    large_batches_in_one_call,
    concurrent_writers_keep_totals,
    usage_rollups,
    key_spend_follows_the_log,
    retention_deletes_oldest_and_keeps_rollups,
);

// ---------------------------------------------------------------------------------------------

fn new_key(name: &str) -> (String, NewKey) {
    let key = crypto::generate_client_key();
    let new = NewKey {
        name: name.into(),
        hash: crypto::hash_client_key(&key),
        prefix: crypto::key_prefix(&key),
        models: None,
        rpm: None,
        tpm: None,
        budget_usd: None,
        expires_at: None,
    };
    (key, new)
}

fn is_ms(t: DateTime<Utc>) -> bool {
    t.timestamp_subsec_nanos().is_multiple_of(1_000_000)
}

fn at(day: u32, h: u32, m: u32, s: u32, ms: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, h, m, s).unwrap() + ChronoDuration::milliseconds(ms.into())
}

fn usage(prompt: u64, completion: u64, cached: u64, reasoning: u64) -> Option<TokenCounts> {
    Some(TokenCounts {
        prompt,
        completion,
        cached,
        reasoning,
        ..Default::default()
    })
}

fn row(i: usize, created_at: DateTime<Utc>) -> LogRow {
    LogRow {
        request_id: format!("req-{i}"),
        created_at,
        key_id: Some(1),
        key_name: Some("alpha".into()),
        provider: Some("openai".into()),
        model: Some("gpt-4o-mini".into()),
        upstream_model: Some("gpt-4o-mini-2024-07-18".into()),
        stream: i.is_multiple_of(2),
        status: 200,
        latency_ms: 100 + i as u64,
        ttft_ms: i.is_multiple_of(2).then_some(20),
        usage: usage(10, 5, 2, 1),
        cost_usd: Some(0.001),
        usage_source: Some("reported"),
        price_source: Some("registry".into()),
        registry_version: Some("v1".into()),
        price_note: Some("openai/gpt-4o-mini".into()),
        error: None,
        attempts: None,
    }
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
}

async fn usage_of(s: &DynStore, group_by: UsageGroup) -> Vec<UsageTotals> {
    s.usage(&UsageQuery {
        group_by,
        from: day(1),
        to: day(31),
        key_name: None,
        model: None,
        provider: None,
    })
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Keys

async fn keys_round_trip(b: &Backend) {
    let s = &b.store;
    let expires = Utc::now() + ChronoDuration::days(30);
    let (_, mut a) = new_key("alpha");
    a.models = Some(vec!["gpt-4o".into(), "gemini/gemini-2.5-flash".into()]);
    a.rpm = Some(60);
    a.tpm = Some(100_000);
    a.budget_usd = Some(12.5);
    a.expires_at = Some(expires);
    let created = s.create_key(a.clone()).await.unwrap();
    assert_eq!(created.name, "alpha");
    assert_eq!(created.prefix, a.prefix);
    assert_eq!(created.models, a.models);
    assert_eq!((created.rpm, created.tpm), (Some(60), Some(100_000)));
    assert_eq!(created.budget_usd, Some(12.5));
    assert_eq!(created.spent_usd, 0.0);
    assert!(created.revoked_at.is_none());
    // Times keep milliseconds, as SQLite's text does, on both backends.
    let e = created.expires_at.unwrap();
    assert!(is_ms(e) && is_ms(created.created_at));
    assert_eq!(e.timestamp_millis(), expires.timestamp_millis());

    let (_, bare) = new_key("beta");
    let beta = s.create_key(bare.clone()).await.unwrap();
    assert_eq!(beta.models, None);
    assert_eq!((beta.rpm, beta.tpm, beta.budget_usd), (None, None, None));
    assert!(beta.id > created.id);

    let found = s.find_key_by_hash(&a.hash).await.unwrap().unwrap();
    assert_eq!(found, created);
    assert!(s.find_key_by_hash(&[7; 32]).await.unwrap().is_none());
    let names: Vec<String> = s
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names, ["alpha", "beta"]);

    let revoked = s.revoke_key("alpha").await.unwrap();
    assert!(revoked.revoked_at.is_some_and(is_ms));
    assert_eq!(revoked.status(Utc::now()), "revoked");
    assert!(matches!(
        s.revoke_key("alpha").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.revoke_key("nobody").await,
        Err(StoreError::NotFound(_))
    ));
    let again = s.find_key_by_hash(&a.hash).await.unwrap().unwrap();
    assert_eq!(again, revoked);
}

async fn live_key_names_are_unique(b: &Backend) {
    let s = &b.store;
    let (_, first) = new_key("dup");
    s.create_key(first).await.unwrap();
    let (_, second) = new_key("dup");
    match s.create_key(second.clone()).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("\"dup\""), "{m}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // A revoked key gives its name up.
    s.revoke_key("dup").await.unwrap();
    let replacement = s.create_key(second).await.unwrap();
    assert!(replacement.revoked_at.is_none());
    // The same hash twice is a conflict too (never two rows for one key).
    let (_, mut clash) = new_key("other");
    clash.hash = replacement.id.to_le_bytes().repeat(4).try_into().unwrap();
    s.create_key(clash.clone()).await.unwrap();
    clash.name = "other-2".into();
    assert!(matches!(
        s.create_key(clash).await,
        Err(StoreError::Conflict(_))
    ));
}

async fn key_version_moves_on_changes_not_on_spend(b: &Backend) {
    let s = &b.store;
    let v0 = s.keys_version().await.unwrap();
    let (_, k) = new_key("spender");
    let key = s.create_key(k).await.unwrap();
    // A new key needs no invalidation: unknown keys are never cached.
    assert_eq!(s.keys_version().await.unwrap(), v0);
    let mut r = row(0, at(2, 10, 0, 0, 0));
    r.key_id = Some(key.id);
    s.insert_logs(&[r]).await.unwrap();
    assert_eq!(
        s.keys_version().await.unwrap(),
        v0,
        "spend must not empty every key cache"
    );
    s.revoke_key("spender").await.unwrap();
    let v1 = s.keys_version().await.unwrap();
    assert!(v1 > v0);
    // Nothing changed, nothing bumped.
    let _ = s.revoke_key("spender").await;
    assert_eq!(s.keys_version().await.unwrap(), v1);
}

async fn revocation_reaches_other_processes(b: &Backend) {
    let (key, new) = new_key("shared");
    b.store.create_key(new).await.unwrap();
    let cache = KeyCache::new(b.store.clone()).await.unwrap();
    let token = tokio_util::sync::CancellationToken::new();
    let watcher = tokio::spawn(cache.clone().watch(token.clone()));
    assert!(cache.authenticate(&key).await.is_ok());

    // Another process (a second instance, or the CLI) revokes it.
    let other = b.reopen().await;
    other.revoke_key("shared").await.unwrap();
    let started = std::time::Instant::now();
    loop {
        match cache.authenticate(&key).await {
            Err(AuthError::Revoked) => break,
            Ok(_) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert!(
            started.elapsed() < gophergate::keys::POLL_INTERVAL * 4,
            "the revocation was not seen within {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    token.cancel();
    watcher.await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Users

async fn users_round_trip(b: &Backend) {
    let s = &b.store;
    assert_eq!(s.count_users().await.unwrap(), 0);
    let admin = s
        .create_user("root", "$2b$hash-1", UserRole::Admin)
        .await
        .unwrap();
    assert_eq!(admin.username, "root");
    assert_eq!(admin.role, UserRole::Admin);
    assert_eq!(admin.session_epoch, 0);
    assert!(is_ms(admin.created_at));
    match s.create_user("root", "x", UserRole::Viewer).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("\"root\""), "{m}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let viewer = s
        .create_user("Viewer", "$2b$hash-2", UserRole::Viewer)
        .await
        .unwrap();
    assert_eq!(s.count_users().await.unwrap(), 2);
    // Usernames are case-sensitive on both backends.
    assert!(s.find_user("viewer").await.unwrap().is_none());
    let found = s.find_user("Viewer").await.unwrap().unwrap();
    assert_eq!((found.id, found.role), (viewer.id, UserRole::Viewer));
    assert_eq!(
        s.find_user_by_id(admin.id).await.unwrap().unwrap().username,
        "root"
    );
    assert!(s.find_user_by_id(9_999).await.unwrap().is_none());

    assert_eq!(s.bump_session_epoch(admin.id).await.unwrap(), 1);
    assert_eq!(s.set_password(admin.id, "$2b$hash-3").await.unwrap(), 2);
    let after = s.find_user("root").await.unwrap().unwrap();
    assert_eq!(
        (after.password_hash.as_str(), after.session_epoch),
        ("$2b$hash-3", 2)
    );
    assert!(matches!(
        s.bump_session_epoch(9_999).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.set_password(9_999, "h").await,
        Err(StoreError::NotFound(_))
    ));

    let names: Vec<String> = s
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["root", "Viewer"]);
    assert_eq!(s.delete_user("Viewer").await.unwrap().id, viewer.id);
    assert!(matches!(
        s.delete_user("Viewer").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.delete_user("root").await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.count_users().await.unwrap(), 1);
}

async fn user_ids_are_never_reused(b: &Backend) {
    let s = &b.store;
    s.create_user("keep", "h", UserRole::Admin).await.unwrap();
    let gone = s.create_user("gone", "h", UserRole::Viewer).await.unwrap();
    s.delete_user("gone").await.unwrap();
    let next = s.create_user("next", "h", UserRole::Viewer).await.unwrap();
    assert!(next.id > gone.id, "{} reused {}", next.id, gone.id);
}

async fn last_admin_survives_concurrent_deletes(b: &Backend) {
    let s = &b.store;
    let other = b.reopen().await;
    let pair = |round: usize| (format!("a{round}"), format!("b{round}"));
    let (x, y) = pair(0);
    s.create_user(&x, "h", UserRole::Admin).await.unwrap();
    s.create_user(&y, "h", UserRole::Admin).await.unwrap();
    for round in 0..5 {
        // Exactly two admins, and two dashboards each deleting one of them at the same moment.
        let (x, y) = pair(round);
        let (r1, r2) = tokio::join!(s.delete_user(&x), other.delete_user(&y));
        let ok = [r1.is_ok(), r2.is_ok()];
        assert_eq!(
            ok.iter().filter(|o| **o).count(),
            1,
            "round {round}: {ok:?}"
        );
        for r in [r1, r2] {
            if let Err(e) = r {
                assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
            }
        }
        let admins: Vec<_> = s
            .list_users()
            .await
            .unwrap()
            .into_iter()
            .filter(|u| u.role == UserRole::Admin)
            .collect();
        assert_eq!(admins.len(), 1, "round {round}");
        let (nx, ny) = pair(round + 1);
        s.create_user(&nx, "h", UserRole::Admin).await.unwrap();
        s.create_user(&ny, "h", UserRole::Admin).await.unwrap();
        s.delete_user(&admins[0].username).await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Provider credentials and settings

async fn credentials_and_provider_settings(b: &Backend) {
    let s = &b.store;
    let sealed = |n: u8| Sealed {
        key_id: format!("data-v{n}"),
        nonce: vec![n; 12],
        ciphertext: vec![0, n, 255, 0],
    };
    assert!(s.get_credential("openai").await.unwrap().is_none());
    for (p, n) in [("openai", 1), ("Zeta", 2), ("gemini", 3), ("_local", 4)] {
        s.put_credential(p, &sealed(n)).await.unwrap();
    }
    s.put_credential("openai", &sealed(9)).await.unwrap();
    let got = s.get_credential("openai").await.unwrap().unwrap();
    assert_eq!(
        (got.key_id, got.nonce, got.ciphertext),
        ("data-v9".into(), vec![9; 12], vec![0, 9, 255, 0])
    );
    // Byte order, as SQLite sorts: upper case before `_` before lower case.
    let names: Vec<String> = s
        .list_credentials()
        .await
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(names, ["Zeta", "_local", "gemini", "openai"]);

    assert_eq!(s.provider_enabled("xai").await.unwrap(), None);
    s.set_provider_enabled("xai", false).await.unwrap();
    assert_eq!(s.provider_enabled("xai").await.unwrap(), Some(false));
    s.set_provider_enabled("xai", true).await.unwrap();
    assert_eq!(s.provider_enabled("xai").await.unwrap(), Some(true));
}

// ---------------------------------------------------------------------------------------------
// The request log

async fn log_rows_round_trip(b: &Backend) {
    let s = &b.store;
    assert!(s.insert_logs(&[]).await.unwrap().is_empty());
    let full = row(0, at(2, 10, 0, 0, 123));
    let bare = LogRow {
        request_id: "req-bare".into(),
        created_at: at(2, 10, 0, 1, 0),
        status: 401,
        ..Default::default()
    };
    let mut estimated = row(2, at(2, 10, 0, 2, 5));
    estimated.usage_source = Some("estimated");
    estimated.cost_usd = None;
    estimated.error = Some("upstream said \"no\" ✗".into());
    estimated.attempts = Some(r#"[{"target":"openai/gpt-4o-mini","status":502}]"#.into());
    estimated.usage = usage(0, 0, 0, 0);
    // Sub-millisecond precision is dropped, on both backends alike.
    let mut fine = row(3, at(2, 10, 0, 3, 7) + ChronoDuration::microseconds(456));
    fine.ttft_ms = Some(0);
    let rows = vec![full, bare, estimated, fine];
    let ids = s.insert_logs(&rows).await.unwrap();
    assert_eq!(ids.len(), 4);
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    assert_eq!(s.count_logs().await.unwrap(), 4);

    let stored = s
        .query_logs(&LogQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let got_ids: Vec<i64> = stored.iter().map(|l| l.id).collect();
    assert_eq!(got_ids, ids.iter().rev().copied().collect::<Vec<_>>());
    let mut expected = rows.clone();
    expected[3].created_at = at(2, 10, 0, 3, 7);
    for (log, want) in stored.iter().rev().zip(&expected) {
        assert_eq!(&log.row, want);
    }
}

async fn log_paging_and_filters(b: &Backend) {
    let s = &b.store;
    let mut rows = Vec::new();
    for i in 0..25 {
        let mut r = row(i, at(3, 9, 0, i as u32, 0));
        r.key_name = Some(["alpha", "beta"][i % 2].into());
        r.model = Some(["gpt-4o", "gemini-2.5-flash", "deepseek-chat"][i % 3].into());
        r.provider = Some(["openai", "gemini", "deepseek"][i % 3].into());
        r.status = if i % 5 == 0 { 429 } else { 200 };
        rows.push(r);
    }
    s.insert_logs(&rows).await.unwrap();
    let page = |before, limit| LogQuery {
        limit,
        before,
        ..Default::default()
    };
    let first = s.query_logs(&page(None, 10)).await.unwrap();
    assert_eq!(first.len(), 10);
    assert_eq!(first[0].row.request_id, "req-24");
    let second = s.query_logs(&page(Some(first[9].id), 10)).await.unwrap();
    assert_eq!(second[0].row.request_id, "req-14");
    let third = s.query_logs(&page(Some(second[9].id), 10)).await.unwrap();
    assert_eq!(third.len(), 5);
    assert_eq!(third[4].row.request_id, "req-0");
    assert!(
        s.query_logs(&page(Some(third[4].id), 10))
            .await
            .unwrap()
            .is_empty()
    );
    // A limit of 0 still returns one row, on both.
    assert_eq!(s.query_logs(&page(None, 0)).await.unwrap().len(), 1);

    let filtered = s
        .query_logs(&LogQuery {
            limit: 100,
            key_name: Some("beta".into()),
            provider: Some("gemini".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = filtered.iter().map(|l| l.row.request_id.as_str()).collect();
    assert_eq!(ids, ["req-19", "req-13", "req-7", "req-1"]);
    let limited = s
        .query_logs(&LogQuery {
            limit: 100,
            status: Some(429),
            model: Some("gpt-4o".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = limited.iter().map(|l| l.row.request_id.as_str()).collect();
    assert_eq!(ids, ["req-15", "req-0"]);
    assert!(
        s.query_logs(&LogQuery {
            limit: 100,
            key_name: Some("ALPHA".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .is_empty()
    );
}

async fn large_batches_in_one_call(b: &Backend) {
    let s = &b.store;
    // More rows than one SQLite statement takes and than a PostgreSQL VALUES list could bind.
    let rows: Vec<LogRow> = (0..5_000)
        .map(|i| {
            row(
                i,
                at(4, 0, 0, 0, 0) + ChronoDuration::milliseconds(i as i64),
            )
        })
        .collect();
    let ids = s.insert_logs(&rows).await.unwrap();
    assert_eq!(ids.len(), 5_000);
    assert!(ids.windows(2).all(|w| w[1] > w[0]));
    assert_eq!(s.count_logs().await.unwrap(), 5_000);
    let newest = s
        .query_logs(&LogQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(newest[0].id, ids[4_999]);
    assert_eq!(newest[0].row.request_id, "req-4999");
    let totals = usage_of(s, UsageGroup::Day).await;
    assert_eq!(totals.len(), 1);
    assert_eq!(totals[0].requests, 5_000);
    assert_eq!(totals[0].prompt_tokens, 50_000);
}

async fn concurrent_writers_keep_totals(b: &Backend) {
    // Two instances writing batches that touch the same rollup rows, in different orders.
    let a = b.store.clone();
    let other = b.reopen().await;
    let batch = |offset: usize, reversed: bool| {
        let mut rows: Vec<LogRow> = (0..200)
            .map(|i| {
                let mut r = row(offset + i, at(5 + (i % 3) as u32, 12, 0, 0, 0));
                r.key_name = Some(format!("k{}", i % 7));
                r.model = Some(format!("m{}", i % 5));
                r
            })
            .collect();
        if reversed {
            rows.reverse();
        }
        rows
    };
    let write = |s: DynStore, offset: usize, reversed: bool| async move {
        for n in 0..10 {
            s.insert_logs(&batch(offset + n * 1_000, reversed))
                .await
                .unwrap();
        }
    };
    tokio::join!(write(a, 0, false), write(other, 100_000, true));
    let s = &b.store;
    assert_eq!(s.count_logs().await.unwrap(), 4_000);
    let by_key = usage_of(s, UsageGroup::Key).await;
    assert_eq!(by_key.iter().map(|t| t.requests).sum::<u64>(), 4_000);
    let by_day = usage_of(s, UsageGroup::Day).await;
    assert_eq!(by_day.len(), 3);
    assert_eq!(by_day.iter().map(|t| t.requests).sum::<u64>(), 4_000);
}

async fn usage_rollups(b: &Backend) {
    let s = &b.store;
    let mk = |key: Option<&str>, model: Option<&str>, provider: Option<&str>, d: u32| {
        let mut r = row(0, at(d, 23, 59, 59, 999));
        r.key_name = key.map(Into::into);
        r.model = model.map(Into::into);
        r.provider = provider.map(Into::into);
        r
    };
    let mut rows = [
        mk(Some("alpha"), Some("gpt-4o"), Some("openai"), 6),
        mk(Some("alpha"), Some("gpt-4o"), Some("openai"), 6),
        mk(Some("Beta"), Some("gpt-4o"), Some("openai"), 7),
        mk(Some("alpha"), Some("unknown-model"), None, 7),
        mk(Some("beta"), Some("gemini-2.5-flash"), Some("gemini"), 8),
    ];
    rows[3].status = 404;
    rows[3].usage = None;
    rows[3].cost_usd = None;
    rows[4].cost_usd = None;
    rows[4].usage = usage(100, 50, 0, 30);
    // Written in two batches, so the second one's upserts add to existing rollup rows.
    s.insert_logs(&rows[..2]).await.unwrap();
    s.insert_logs(&rows[2..]).await.unwrap();

    let by_key = usage_of(s, UsageGroup::Key).await;
    let groups: Vec<(Option<&str>, u64)> = by_key
        .iter()
        .map(|t| (t.group.as_deref(), t.requests))
        .collect();
    // Most requests first, then byte order ("Beta" before "beta").
    assert_eq!(
        groups,
        [(Some("alpha"), 3), (Some("Beta"), 1), (Some("beta"), 1)]
    );
    let alpha = &by_key[0];
    assert_eq!(
        (alpha.errors, alpha.prompt_tokens, alpha.completion_tokens),
        (1, 20, 10)
    );
    assert_eq!((alpha.cached_tokens, alpha.reasoning_tokens), (4, 2));
    assert!((alpha.cost_usd.unwrap() - 0.002).abs() < 1e-12);
    assert_eq!(alpha.unpriced_requests, 1);
    // No priced request: no cost at all, never a made-up 0.
    let beta = &by_key[2];
    assert_eq!((beta.cost_usd, beta.unpriced_requests), (None, 1));
    assert_eq!(beta.reasoning_tokens, 30);

    let by_provider = usage_of(s, UsageGroup::Provider).await;
    let groups: Vec<(Option<&str>, u64)> = by_provider
        .iter()
        .map(|t| (t.group.as_deref(), t.requests))
        .collect();
    assert_eq!(
        groups,
        [(Some("openai"), 3), (None, 1), (Some("gemini"), 1)]
    );
    let by_day = usage_of(s, UsageGroup::Day).await;
    let groups: Vec<(Option<&str>, u64)> = by_day
        .iter()
        .map(|t| (t.group.as_deref(), t.requests))
        .collect();
    assert_eq!(
        groups,
        [
            (Some("2026-03-06"), 2),
            (Some("2026-03-07"), 2),
            (Some("2026-03-08"), 1)
        ]
    );

    // Filtered: read from the full-grain rollups.
    let q = |group_by, from, to, key: Option<&str>, provider: Option<&str>| UsageQuery {
        group_by,
        from: day(from),
        to: day(to),
        key_name: key.map(Into::into),
        model: None,
        provider: provider.map(Into::into),
    };
    let alpha_models = s
        .usage(&q(UsageGroup::Model, 1, 31, Some("alpha"), None))
        .await
        .unwrap();
    let groups: Vec<(Option<&str>, u64)> = alpha_models
        .iter()
        .map(|t| (t.group.as_deref(), t.requests))
        .collect();
    assert_eq!(groups, [(Some("gpt-4o"), 2), (Some("unknown-model"), 1)]);
    let openai_days = s
        .usage(&q(UsageGroup::Day, 7, 8, None, Some("openai")))
        .await
        .unwrap();
    assert_eq!(openai_days.len(), 1);
    assert_eq!(openai_days[0].group.as_deref(), Some("2026-03-07"));
    assert!(
        s.usage(&q(UsageGroup::Key, 9, 31, None, None))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn key_spend_follows_the_log(b: &Backend) {
    let s = &b.store;
    let (_, a) = new_key("a");
    let (_, bb) = new_key("b");
    let a_hash = a.hash;
    let a = s.create_key(a).await.unwrap();
    let bk = s.create_key(bb).await.unwrap();
    let mut rows = Vec::new();
    for i in 0..10 {
        let mut r = row(i, at(9, 1, 0, 0, 0));
        r.key_id = Some(if i < 7 { a.id } else { bk.id });
        r.cost_usd = (i != 3).then_some(0.25);
        rows.push(r);
    }
    s.insert_logs(&rows[..5]).await.unwrap();
    s.insert_logs(&rows[5..]).await.unwrap();
    let keys = s.list_keys().await.unwrap();
    assert_eq!(keys[0].spent_usd, 1.5);
    assert_eq!(keys[1].spent_usd, 0.75);
    let found = s.find_key_by_hash(&a_hash).await.unwrap().unwrap();
    assert_eq!(found.spent_usd, 1.5);
}

async fn retention_deletes_oldest_and_keeps_rollups(b: &Backend) {
    let s = &b.store;
    // Ids in a different order from the times: retention goes by time.
    let mut rows: Vec<LogRow> = (0..10)
        .map(|i| row(i, at(10, 12, 0, 0, 0) - ChronoDuration::minutes(i as i64)))
        .collect();
    rows.push(row(10, at(11, 0, 0, 0, 0)));
    s.insert_logs(&rows).await.unwrap();
    let before = usage_of(s, UsageGroup::Day).await;
    let cutoff = at(10, 11, 55, 0, 0);
    // Rows at 11:51..11:54 go (4 of them), oldest first, 3 at a time.
    assert_eq!(s.delete_logs_before(cutoff, 3).await.unwrap(), 3);
    let left: Vec<String> = s
        .query_logs(&LogQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.row.request_id)
        .collect();
    for gone in ["req-9", "req-8", "req-7"] {
        assert!(!left.contains(&gone.to_string()), "{left:?}");
    }
    assert!(left.contains(&"req-6".to_string()), "{left:?}");
    assert_eq!(s.delete_logs_before(cutoff, 3).await.unwrap(), 1);
    assert_eq!(s.delete_logs_before(cutoff, 3).await.unwrap(), 0);
    // The row exactly at the cutoff (req-5) stays.
    assert_eq!(s.count_logs().await.unwrap(), 7);
    assert_eq!(usage_of(s, UsageGroup::Day).await, before);
}

// ---------------------------------------------------------------------------------------------
// Opening by URL (no server needed)

#[tokio::test]
async fn unreachable_postgres_is_one_clear_sentence_without_the_password() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("postgres://gg:hunter2-secret@127.0.0.1:{port}/gophergate");
    let err = match store::open(&url, 1).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("connected to a closed port"),
    };
    assert!(
        err.starts_with(&format!(
            "could not connect to PostgreSQL at gg@127.0.0.1:{port}/gophergate: "
        )),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

#[tokio::test]
async fn unknown_database_schemes_are_refused() {
    let err = store::open("mysql://root@localhost/db", 1)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("sqlite://") && err.contains("postgres://"),
        "{err}"
    );
}

#[tokio::test]
async fn wrong_postgres_password_names_the_place_not_the_password() {
    let Some(server) = pg::server_url() else {
        return;
    };
    let url = server.replacen(":gophergate@", ":wrong-pass-123@", 1);
    if url == server {
        return; // not the scripts/test.sh server: its credentials are unknown here
    }
    let err = store::open(&url, 1).await.err().unwrap().to_string();
    assert!(
        err.contains("could not connect to PostgreSQL at gophergate@"),
        "{err}"
    );
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("wrong-pass-123"), "{err}");
}

/// `cargo test --test store_backends -- --ignored --nocapture`: log-writer throughput on each
/// backend (batches of 512 rows, as `log.batch_size`), for comparing, not asserting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn log_write_throughput() {
    use std::io::Write;
    let mut backends = vec![("sqlite", Backend::sqlite().await)];
    if let Some(b) = Backend::postgres("throughput").await {
        backends.push(("postgres", b));
    }
    for (name, b) in backends {
        let started = std::time::Instant::now();
        for n in 0..100 {
            let rows: Vec<LogRow> = (0..512)
                .map(|i| {
                    let mut r = row(n * 512 + i, at(12, 0, 0, 0, 0));
                    r.key_name = Some(format!("k{}", i % 20));
                    r.model = Some(format!("m{}", i % 10));
                    r
                })
                .collect();
            b.store.insert_logs(&rows).await.unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        let _ = writeln!(
            std::io::stderr(),
            "{name}: 51,200 rows in {secs:.2}s ({:.0} rows/s, {:.1} ms per 512-row batch)",
            51_200.0 / secs,
            secs * 10.0
        );
        b.finish().await;
    }
}
