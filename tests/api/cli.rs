//! The real `gophergate` binary: keys, users, config check and serve start-up, each against its own
//! temporary data directory. The environment of every child is cleared, so nothing from the
//! developer's shell (an `OPENAI_API_KEY`, a `GOPHERGATE_*` variable) leaks in.

use crate::helpers::*;
use std::{
    io::Write,
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

/// `gophergate` with an empty environment except `GOPHERGATE_DATA_DIR`, run inside `data_dir` (so
/// no stray `./gophergate.toml` is picked up).
pub fn gophergate(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gophergate"));
    cmd.env_clear()
        .env("GOPHERGATE_DATA_DIR", data_dir)
        .env("NO_COLOR", "1")
        .current_dir(data_dir)
        .stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails unless the command failed with exactly one non-empty line on stderr.
fn assert_one_line_failure(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "expected failure; stdout: {}",
        stdout(o)
    );
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {err:?}");
    err
}

fn create_key(dir: &Path, name: &str) -> String {
    let o = run(gophergate(dir).args(["keys", "create", "--name", name]));
    assert!(o.status.success(), "keys create failed: {}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got {out:?}");
    assert!(lines[0].starts_with("gg-"), "{out:?}");
    assert_eq!(lines[0].trim(), lines[0]);
    lines[0].to_string()
}

fn users_create(dir: &Path, name: &str, password: Option<&str>) -> Output {
    let mut cmd = gophergate(dir);
    cmd.args(["users", "create", "--username", name]);
    if password.is_some() {
        cmd.arg("--password-stdin");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        // The child may exit without reading (no --password-stdin); ignore a broken pipe.
        let _ = stdin.write_all(format!("{}\n", password.unwrap_or("unused-password")).as_bytes());
    }
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn keys_create_prints_one_key_that_a_server_on_the_same_data_dir_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "ci");
    assert_eq!(key.len(), 46);

    let data_dir = dir.path().to_path_buf();
    let t = spawn_app_with(Default::default(), |c| c.data_dir = data_dir).await;
    let resp = t.chat_as(&key, user_msg("from the cli")).await;
    assert_eq!(resp.status(), 200);
    let rows = t.exact_logs(1).await;
    assert_eq!(rows[0].row.key_name.as_deref(), Some("ci"));
}

#[tokio::test]
async fn keys_created_while_the_server_runs_work_at_once() {
    let t = spawn_app().await;
    let key = create_key(t.dir.path(), "live-ci");
    assert_eq!(t.chat_as(&key, user_msg("hi")).await.status(), 200);
}

#[test]
fn keys_list_shows_names_but_never_keys() {
    let dir = tempfile::tempdir().unwrap();
    let a = create_key(dir.path(), "alpha");
    let b = create_key(dir.path(), "beta");
    let o = run(gophergate(dir.path()).args(["keys", "list"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("alpha") && out.contains("beta"), "{out}");
    for k in [&a, &b] {
        assert!(!out.contains(k.as_str()), "full key listed: {out}");
        // Nothing beyond the 9-character display prefix.
        assert!(
            !out.contains(&k[..12]),
            "more than the prefix listed: {out}"
        );
        assert!(!stderr(&o).contains(&k[..12]));
    }
}

/// `gophergate keys list | head -1`: once the reader has gone, writing fails (EPIPE); the
/// command stops quietly instead of panicking with a backtrace.
#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    create_key(dir.path(), "alpha");
    create_key(dir.path(), "beta");
    for args in [&["keys", "list"][..], &["config", "check"][..]] {
        let (reader, writer) = std::io::pipe().unwrap();
        // The read end is closed before the command starts, so its first write fails.
        drop(reader);
        let o = gophergate(dir.path())
            .args(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(o.status.success(), "{args:?}: {:?} {err}", o.status);
    }
}

#[test]
fn keys_revoke_and_its_errors() {
    let dir = tempfile::tempdir().unwrap();
    create_key(dir.path(), "ci");
    // A second live key with the same name is refused.
    let o = run(gophergate(dir.path()).args(["keys", "create", "--name", "ci"]));
    let err = assert_one_line_failure(&o);
    assert!(err.contains("ci"), "{err}");
    assert!(stdout(&o).trim().is_empty(), "a key was printed anyway");

    let o = run(gophergate(dir.path()).args(["keys", "revoke", "ci"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let list = stdout(&run(gophergate(dir.path()).args(["keys", "list"])));
    let line = list.lines().find(|l| l.starts_with("ci ")).unwrap();
    assert!(line.contains("revoked"), "{list}");

    // Revoking again (no live key of that name) or an unknown name fails with one line.
    for name in ["ci", "nobody"] {
        let o = run(gophergate(dir.path()).args(["keys", "revoke", name]));
        let err = assert_one_line_failure(&o);
        assert!(err.contains(name), "{err}");
    }
    // The name is free again after revocation.
    create_key(dir.path(), "ci");
}

#[test]
fn users_create_reads_the_password_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let o = users_create(dir.path(), "bob", Some("correct horse battery"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains("correct horse"));
    assert!(!stderr(&o).contains("correct horse"));

    let o = users_create(dir.path(), "bob", Some("another password"));
    let err = assert_one_line_failure(&o);
    assert!(err.contains("bob"), "{err}");

    // Without --password-stdin: refused, and says how to fix it.
    let o = users_create(dir.path(), "carol", None);
    let err = assert_one_line_failure(&o);
    assert!(err.contains("--password-stdin"), "{err}");
    // carol was not created: creating her properly now works.
    let o = users_create(dir.path(), "carol", Some("a fine password"));
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Every substring of `secret` of this length, to check that no part of it was printed.
fn windows(secret: &str, len: usize) -> Vec<&str> {
    (0..=secret.len() - len)
        .map(|i| &secret[i..i + len])
        .collect()
}

#[test]
fn config_check_succeeds_and_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(gophergate(dir.path()).args(["config", "check"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&dir.path().display().to_string()));

    let enc = "3f9a1c7e5b2d4608f1e3a5c7b9d0e2f4a6c8e0b2d4f6a8c0e2b4d6f8a0c2e4f6";
    let provider_key = "sk-secretvalue";
    let o = run(gophergate(dir.path())
        .args(["config", "check"])
        .env("GOPHERGATE_ENCRYPTION_KEY", enc)
        .env("OPENAI_API_KEY", provider_key));
    assert!(o.status.success(), "{}", stderr(&o));
    let all = format!("{}{}", stdout(&o), stderr(&o));
    for w in windows(enc, 8) {
        assert!(!all.contains(w), "part of the encryption key printed: {w}");
    }
    assert!(!all.contains(provider_key), "{all}");
    assert!(!all.contains("secretvalue"), "{all}");
    // The key was picked up (not merely ignored): openai now has one.
    let openai = stdout(&o)
        .lines()
        .find(|l| l.contains("openai") && l.contains("key="))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(openai.contains("key=set"), "{all}");

    // Effective values as one would write them: the default database URL, durations in the
    // largest exact unit; a PostgreSQL password is redacted, the rest of its URL shown.
    let out = stdout(&run(gophergate(dir.path()).args(["config", "check"])));
    let config: toml::Value = toml::from_str(&out).expect("config check prints TOML");
    let db = format!("sqlite://{}", dir.path().join("gophergate.db").display());
    assert_eq!(
        config["database"]["url"].as_str(),
        Some(db.as_str()),
        "{out}"
    );
    assert_eq!(config["log"]["retention"].as_str(), Some("90d"), "{out}");
    assert_eq!(
        config["server"]["shutdown_grace"].as_str(),
        Some("30s"),
        "{out}"
    );
    let o = run(gophergate(dir.path()).args(["config", "check"]).env(
        "GOPHERGATE_DATABASE__URL",
        "postgres://gg:hunter2pass@db.internal:5432/gg?sslmode=require",
    ));
    let out = stdout(&o);
    assert!(!out.contains("hunter2pass"), "{out}");
    assert!(
        out.contains("postgres://gg:********@db.internal:5432/gg?sslmode=require"),
        "{out}"
    );
}

#[test]
fn encryption_key_that_reads_as_a_number_is_accepted() {
    // Valid hex that happens to read as a number (here 1234567890123456 after leading zeros) must
    // still be taken as text.
    let dir = tempfile::tempdir().unwrap();
    let key = format!("{}1234567890123456", "0".repeat(48));
    let o = run(gophergate(dir.path())
        .args(["config", "check"])
        .env("GOPHERGATE_ENCRYPTION_KEY", &key));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains(&key[40..]));
}

#[test]
fn unknown_config_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[server]\nlisen = \"x\"\n").unwrap();
    let o = run(gophergate(dir.path())
        .arg("--config")
        .arg(&file)
        .args(["config", "check"]));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("lisen"), "{}", stderr(&o));
    // `serve` refuses the same file.
    let o = run(gophergate(dir.path())
        .arg("--config")
        .arg(&file)
        .arg("serve")
        .env("GOPHERGATE_SERVER__LISTEN", "127.0.0.1:0"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("lisen"), "{}", stderr(&o));
}

/// Waits for a child to exit within `limit`; kills it and fails otherwise.
fn exits_within(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!("process still running after {limit:?}: {}", stderr(&o));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_refuses_a_bad_or_weak_encryption_key() {
    for (bad, why) in [
        ("abcd", "32 bytes"),
        (&"0".repeat(64), "weak"),
        (&"ab".repeat(32), "weak"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let child = gophergate(dir.path())
            .arg("serve")
            .env("GOPHERGATE_ENCRYPTION_KEY", bad)
            .env("GOPHERGATE_SERVER__LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let o = exits_within(child, Duration::from_secs(10));
        assert!(!o.status.success(), "served with encryption key {bad}");
        let err = stderr(&o);
        assert!(err.contains("encryption_key"), "{err}");
        assert!(err.contains(why), "{err}");
        assert!(!err.contains(bad), "the bad key was echoed: {err}");
        assert!(!dir.path().join("encryption.key").exists());
    }
}

/// Starts `gophergate serve` on a free port; returns the child and its base URL once `/health`
/// answers. Retries with another port if the chosen one was taken meanwhile.
async fn start_server(dir: &Path) -> (Child, String) {
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let port = closed_port();
        let log = std::fs::File::create(dir.join("serve.log")).unwrap();
        let mut child = gophergate(dir)
            .arg("serve")
            .env("GOPHERGATE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if child.try_wait().unwrap().is_some() {
                break; // exited (port taken?): try another port
            }
            if let Ok(r) = http.get(format!("{base}/health")).send().await
                && r.status() == 200
            {
                return (child, base);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server did not answer /health: {}",
                    std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    panic!(
        "server would not start: {}",
        std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
    );
}

#[cfg(unix)]
#[tokio::test]
async fn first_serve_creates_a_private_encryption_key_and_reuses_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("encryption.key");
    assert!(!path.exists());
    let (mut child, base) = start_server(dir.path()).await;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {:o}", mode & 0o777);
    let first = std::fs::read_to_string(&path).unwrap();

    // The served gateway authenticates a key made by the CLI on the same data dir.
    let key = create_key(dir.path(), "ci");
    let resp = reqwest::Client::new()
        .get(format!("{base}/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    child.kill().unwrap();
    child.wait().unwrap();

    // A second start reuses the file rather than replacing it.
    let (mut child, _) = start_server(dir.path()).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
}
