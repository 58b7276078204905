//! The registry: served from the cached copy at once, refreshed in the background, never emptied
//! or corrupted by a bad download, and the gateway serves without any copy at all.

use crate::helpers::*;
use gophergate::{events::Event, mock::MockConfig, registry::source};

#[tokio::test]
async fn a_bad_refresh_keeps_the_catalog_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api.json");
    std::fs::copy(registry_snapshot_path(), &file).unwrap();
    let url = file.to_string_lossy().to_string();
    let u = url.clone();
    let t = spawn_app_with(MockConfig::default(), move |c| c.registry.url = u).await;
    t.wait_registry().await;
    let state = t.app().state();
    let before = state.registry.snapshot();

    for bad in [
        "{\"openai\": {\"models\": {\"gpt",
        "[]",
        "{\"unrelated\": {}}",
        "",
    ] {
        std::fs::write(&file, bad).unwrap();
        let outcome = source::refresh_once(
            &state.registry,
            &url,
            &state.config.data_dir,
            &reqwest::Client::new(),
        )
        .await;
        assert!(
            matches!(outcome, source::RefreshOutcome::Failed(_)),
            "{bad:?}: {outcome:?}"
        );
        let after = state.registry.snapshot();
        assert_eq!(after.version, before.version);
        assert_eq!(after.len(), before.len());
    }
    std::fs::remove_file(&file).unwrap();
    let outcome = source::refresh_once(
        &state.registry,
        &url,
        &state.config.data_dir,
        &reqwest::Client::new(),
    )
    .await;
    assert!(
        matches!(outcome, source::RefreshOutcome::Failed(ref r) if r.contains("could not read"))
    );
    // Requests are still priced from the kept catalog.
    let resp = t.chat(user_msg("still priced")).await;
    assert!(resp.headers().get("x-gophergate-cost-usd").is_some());
}

async fn next(rx: &mut tokio::sync::broadcast::Receiver<Event>) -> Event {
    tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn the_worker_reports_refreshes_as_events() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api.json");
    let events = gophergate::events::Events::default();
    let mut rx = events.subscribe();
    let registry = std::sync::Arc::new(gophergate::registry::Registry::default());
    let token = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(source::run(
        events.clone(),
        registry.clone(),
        file.to_string_lossy().to_string(),
        dir.path().to_path_buf(),
        std::time::Duration::from_millis(50),
        reqwest::Client::new(),
        token.clone(),
    ));
    assert!(matches!(
        next(&mut rx).await,
        Event::RegistryRefreshFailed { .. }
    ));
    std::fs::copy(registry_snapshot_path(), &file).unwrap();
    loop {
        if let Event::RegistryRefreshed { models, .. } = next(&mut rx).await {
            assert!(models > 80);
            break;
        }
    }
    assert!(!registry.snapshot().is_empty());
    token.cancel();
    worker.await.unwrap();
}

#[tokio::test]
async fn without_any_copy_the_gateway_serves_unpriced() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.json").to_string_lossy().to_string();
    let t = spawn_app_with(MockConfig::default(), move |c| c.registry.url = missing).await;
    let resp = t.chat(user_msg("no registry")).await;
    assert_eq!(resp.status(), 200);
    let row = &t.exact_logs(1).await[0].row;
    assert!(row.usage.is_some());
    assert_eq!(row.cost_usd, None);
    assert!(
        row.price_note.as_deref().unwrap().contains("no registry"),
        "{:?}",
        row.price_note
    );
}

#[tokio::test]
async fn a_restart_serves_from_the_cached_copy_at_once() {
    let t = spawn_app().await;
    t.wait_registry().await;
    let version = t.app().state().registry.snapshot().version.clone();
    let cached = t.dir.path().join("registry.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !cached.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the good copy is cached in data_dir"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let data_dir = t.dir.path().to_path_buf();
    let mut t = t;
    t.shutdown().await;

    // Same data dir, registry URL unreachable: the cached copy is there before the first request.
    let mut config = test_config(&data_dir, &t.mock);
    config.registry.url = data_dir.join("gone.json").to_string_lossy().to_string();
    let app = gophergate::app::App::build(config).await.unwrap();
    let snap = app.state().registry.snapshot();
    assert_eq!(snap.version, version);
    assert!(!snap.is_empty());
    app.shutdown().await.unwrap();
}
