//! The operator's commands, end to end: the real `crsd` binary on a real data folder, beside
//! a running crsd (the real binary too) for the changes the APIs must see.

mod common;

use common::daemon::Daemon;
use common::tc3::Tc3;
use common::V2Client;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const SECRET_ID: &str = "AKIDadminCliTest00000000000000000001";
const SECRET_KEY: &str = "adminCliTestSecretKey000000000001";
const PASSWORD: &str = "AdminCli1234";

/// How long a running crsd may keep accepting a disabled account or a replaced key
/// (`crsd_service::AUTH_CACHE_TTL`, 5 s) plus room for a slow machine.
const CACHE_BOUND: Duration = Duration::from_secs(8);

/// `crsd <args>` run to its end.
fn crsd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crsd"))
        .args(args)
        .env_remove("CRSD_DATA_DIR")
        .env("RUST_LOG", "warn")
        .output()
        .expect("crsd runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `crsd <args> --data-dir <data>`, which must succeed; its standard output.
fn ok(data: &Path, args: &[&str]) -> String {
    let mut all: Vec<&str> = args.to_vec();
    let data = data.to_str().unwrap();
    all.extend(["--data-dir", data]);
    let o = crsd(&all);
    assert!(
        o.status.success(),
        "crsd {all:?}: {:?}\n{}\n{}",
        o.status,
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(&o)
}

/// The JSON lines a command printed.
fn json_lines(data: &Path, args: &[&str]) -> Vec<Value> {
    ok(data, args)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// `crsd account list --json`, by app id.
fn account(data: &Path, app_id: i64) -> Value {
    json_lines(data, &["account", "list", "--json"])
        .into_iter()
        .find(|a| a["appId"] == app_id)
        .unwrap_or_else(|| panic!("account {app_id} listed"))
}

/// Every file and folder under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            if p.is_dir() {
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every operator command, naming some account, instance or backup.
const COMMANDS: &[&[&str]] = &[
    &["account", "list"],
    &["account", "add"],
    &["account", "disable", "1251000001"],
    &["account", "enable", "1251000001"],
    &["account", "rotate-key", "1251000001"],
    &["account", "set-balance", "1251000001", "5"],
    &["account", "top-up", "1251000001", "5"],
    &["instance", "list"],
    &["task", "list", "--running"],
    &["backup", "list", "--instance", "crs-abcdefgh"],
    &["backup", "path", "b6a4d5c2-0000-4000-8000-000000000000"],
];

#[test]
fn every_command_refuses_a_folder_without_a_database() {
    let root = tempfile::tempdir().unwrap();
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let missing = root.path().join("missing");
    let garbage = root.path().join("garbage");
    std::fs::create_dir(&garbage).unwrap();
    std::fs::write(
        garbage.join("crsd.db"),
        b"this is not a database, it is a note\n",
    )
    .unwrap();
    let before = tree(root.path());
    for dir in [&empty, &missing, &garbage] {
        for cmd in COMMANDS {
            let mut args: Vec<&str> = cmd.to_vec();
            args.extend(["--data-dir", dir.to_str().unwrap()]);
            let o = crsd(&args);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "crsd {args:?}: {err}");
            assert!(
                err.contains("crsd database"),
                "crsd {args:?} says why: {err}"
            );
            assert!(o.stdout.is_empty(), "crsd {args:?} printed {}", stdout(&o));
        }
    }
    assert_eq!(tree(root.path()), before, "nothing created or removed");

    // `account add --init` creates the database; the other commands then work on it.
    let created: Value = serde_json::from_str(&ok(
        &empty,
        &["account", "add", "--init", "--name", "first"],
    ))
    .unwrap();
    let app_id = created["appId"].as_i64().unwrap();
    assert!(empty.join("crsd.db").is_file());
    let listed = account(&empty, app_id);
    assert_eq!(listed["name"], "first");
    assert_eq!(listed["secretId"], created["secretId"]);
    assert_eq!(listed["state"], "enabled");
    assert_eq!(listed["balance"], 100_000_000);
    let text = ok(&empty, &["account", "list"]);
    assert!(text.starts_with("APP_ID"), "a table: {text}");
    assert!(
        !text.contains(created["secretKey"].as_str().unwrap()),
        "never the key: {text}"
    );
    let second: Value =
        serde_json::from_str(&ok(&empty, &["account", "add", "--name", "second"])).unwrap();
    assert_eq!(
        second["appId"],
        app_id + 1,
        "add without --init on a database"
    );
    assert!(ok(&empty, &["instance", "list", "--json"]).is_empty());
    assert!(ok(&empty, &["task", "list", "--json"]).is_empty());

    // Operator mistakes are refused (exit code 1) and change nothing.
    for bad in [
        vec!["account", "set-balance", "1", "5"],
        vec!["account", "top-up", &*app_id.to_string(), "0"],
        vec!["account", "set-balance", &*app_id.to_string(), "-1"],
    ] {
        let mut args = bad.clone();
        args.extend(["--data-dir", empty.to_str().unwrap()]);
        let o = crsd(&args);
        assert_eq!(o.status.code(), Some(1), "crsd {args:?}");
    }
    assert_eq!(account(&empty, app_id)["balance"], 100_000_000);
}

#[test]
fn version_names_the_commit() {
    let o = crsd(&["--version"]);
    assert!(o.status.success());
    let v = stdout(&o);
    let commit = v
        .trim()
        .strip_prefix(&format!("crsd {} (commit ", env!("CARGO_PKG_VERSION")))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("version and commit: {v:?}"));
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{v:?}"
    );
}

#[test]
fn every_flag_has_a_help_text() {
    let mut commands: Vec<Vec<&str>> = COMMANDS
        .iter()
        .map(|c| c.iter().take(2).copied().collect())
        .collect();
    commands.extend([vec!["serve"], vec!["address-hook"], vec![]]);
    for args in commands {
        let mut args = args.clone();
        args.push("--help");
        let help = stdout(&crsd(&args));
        let lines: Vec<&str> = help.lines().collect();
        // In the Options and Arguments sections every entry has its text on its own line
        // (after two spaces) or on the next, further indented.
        let mut section = false;
        let mut entries = 0;
        for (n, line) in lines.iter().enumerate() {
            if !line.starts_with(' ') {
                section = *line == "Options:" || *line == "Arguments:";
                continue;
            }
            let entry = line.trim_start();
            if !section
                || !(entry.starts_with('-') || entry.starts_with('<') || entry.starts_with('['))
            {
                continue;
            }
            entries += 1;
            let same_line = entry
                .split_once("  ")
                .is_some_and(|(_, t)| !t.trim().is_empty());
            let next_line = lines
                .get(n + 1)
                .is_some_and(|l| l.starts_with("          ") && !l.trim().is_empty());
            assert!(
                same_line || next_line,
                "crsd {args:?}: {line:?} has no help text:\n{help}"
            );
        }
        assert!(entries >= 2, "crsd {args:?}: {help}");
    }
}

/// Waits until `c`'s requests get `code` (0: success); how long it took.
async fn until_code(c: &V2Client, code: i64, since: Instant) -> Duration {
    loop {
        let v = c
            .call("DescribeRedis", &[("limit", "10"), ("offset", "0")])
            .await;
        if v["code"] == code {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < CACHE_BOUND,
            "still not {code} after {:?}: {v}",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_changes_reach_a_running_crsd() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(dir.path(), SECRET_ID, SECRET_KEY);
    d.start().await;
    let data = d.data.clone();
    let old = d.client();
    old.ok("DescribeRedis", &[("limit", "10"), ("offset", "0")])
        .await;
    let first = json_lines(&data, &["account", "list", "--json"]);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["secretId"], SECRET_ID);
    let app_id = first[0]["appId"].as_i64().unwrap();
    let app = app_id.to_string();

    // A new key: the old one is refused, the new one works.
    let rotated: Value =
        serde_json::from_str(&ok(&data, &["account", "rotate-key", &app])).unwrap();
    let at = Instant::now();
    assert_eq!(rotated["appId"], app_id);
    assert_ne!(rotated["secretId"], SECRET_ID);
    let new = V2Client {
        secret_id: rotated["secretId"].as_str().unwrap().to_string(),
        secret_key: rotated["secretKey"].as_str().unwrap().to_string(),
        ..old.clone()
    };
    new.ok("DescribeRedis", &[("limit", "10"), ("offset", "0")])
        .await;
    let took = until_code(&old, 4104, at).await;
    eprintln!("old key refused {took:?} after rotate-key");
    assert_eq!(account(&data, app_id)["secretId"], rotated["secretId"]);

    // Disabled: refused as an unknown SecretId; enabled again: works. The key was just
    // looked up, so crsd's cache holds it: the worst case.
    new.ok("DescribeRedis", &[("limit", "10"), ("offset", "0")])
        .await;
    ok(&data, &["account", "disable", &app]);
    let at = Instant::now();
    assert_eq!(account(&data, app_id)["state"], "disabled");
    let took = until_code(&new, 4104, at).await;
    eprintln!("disabled account refused {took:?} after disable");
    ok(&data, &["account", "enable", &app]);
    let at = Instant::now();
    assert_eq!(account(&data, app_id)["state"], "enabled");
    let took = until_code(&new, 0, at).await;
    eprintln!("enabled account accepted {took:?} after enable");

    // Balance: set and topped up in the store, what a purchase sees at once.
    let v: Value =
        serde_json::from_str(&ok(&data, &["account", "set-balance", &app, "0"])).unwrap();
    assert_eq!(v["balance"], 0);
    assert_eq!(account(&data, app_id)["balance"], 0);
    let order = [
        ("zoneId", "100002"),
        ("typeId", "2"),
        ("memSize", "1024"),
        ("goodsNum", "1"),
        ("period", "1"),
        ("password", PASSWORD),
    ];
    let v = new.call("CreateRedis", &order).await;
    assert_eq!(
        v["codeDesc"], "OperationConstraints.AccountBalanceNotEnough",
        "{v}"
    );
    let v: Value =
        serde_json::from_str(&ok(&data, &["account", "top-up", &app, "250000"])).unwrap();
    assert_eq!(v["balance"], 250_000);
    let v: Value = serde_json::from_str(&ok(&data, &["account", "top-up", &app, "50000"])).unwrap();
    assert_eq!(v["balance"], 300_000);
    assert_eq!(account(&data, app_id)["balance"], 300_000);
    new.ok("CreateRedis", &order).await;
    assert!(
        account(&data, app_id)["balance"].as_i64().unwrap() < 300_000,
        "the purchase was paid from the topped-up balance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_tasks_and_backups_of_a_running_crsd() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(dir.path(), SECRET_ID, SECRET_KEY);
    d.start().await;
    let data = d.data.clone();
    let c = d.client();
    let made = c.create(PASSWORD, 1).await;
    let id = made[0]["redisId"].as_str().unwrap().to_string();
    let address = format!(
        "{}:{}",
        made[0]["wanIp"].as_str().unwrap(),
        made[0]["port"].as_u64().unwrap()
    );
    let app_id = made[0]["appId"].as_i64().unwrap();

    let listed = json_lines(&data, &["instance", "list", "--json"]);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], id);
    assert_eq!(listed[0]["appId"], app_id);
    assert_eq!(listed[0]["status"], "running");
    assert_eq!(listed[0]["address"], address);
    assert_eq!(listed[0]["memMb"], 1024);
    assert_eq!(listed[0]["replicas"], 1);
    let mine = json_lines(
        &data,
        &[
            "instance",
            "list",
            "--json",
            "--account",
            &app_id.to_string(),
        ],
    );
    assert_eq!(mine.len(), 1);
    assert!(json_lines(&data, &["instance", "list", "--json", "--account", "7"]).is_empty());
    let table = ok(&data, &["instance", "list"]);
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains(&address), "{table}");

    assert!(json_lines(&data, &["task", "list", "--running", "--json"]).is_empty());
    let tasks = json_lines(&data, &["task", "list", "--json"]);
    assert!(
        tasks
            .iter()
            .any(|t| t["instance"] == id && t["status"] == "succeeded"),
        "{tasks:?}"
    );

    // A manual backup: listed with its file, which `backup path` names too.
    let v = c
        .ok(
            "ManualBackupInstance",
            &[("redisId", &id), ("remark", "admin")],
        )
        .await;
    let task = v["data"]["requestId"].as_i64().unwrap();
    assert_eq!(c.wait_task(task).await, 2);
    assert!(json_lines(&data, &["task", "list", "--running", "--json"]).is_empty());
    let backups = json_lines(&data, &["backup", "list", "--json", "--instance", &id]);
    assert_eq!(backups.len(), 1, "{backups:?}");
    let b = &backups[0];
    assert_eq!(b["state"], "normal");
    assert_eq!(b["kind"], "manualBackupInstance");
    let path = PathBuf::from(b["path"].as_str().unwrap());
    let len = std::fs::metadata(&path).expect("the backup file").len();
    assert_eq!(b["size"], len);
    let backup_id = b["id"].as_str().unwrap();
    assert_eq!(
        ok(&data, &["backup", "path", backup_id]).trim(),
        path.to_str().unwrap()
    );

    // The instance deleted (API 3.0: isolated, then cleaned up): gone from the instance list,
    // its backup still listed with its file.
    let t3 = Tc3::like(&c);
    t3.ok("DestroyPrepaidInstance", json!({ "InstanceId": id }))
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while json_lines(&data, &["instance", "list", "--json"])[0]["status"] != "isolated" {
        assert!(Instant::now() < deadline, "isolated");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = t3.ok("CleanUpInstance", json!({ "InstanceId": id })).await;
    assert_eq!(t3.wait_task(r["TaskId"].as_i64().unwrap()).await, "succeed");
    assert!(json_lines(&data, &["instance", "list", "--json"]).is_empty());
    let after = json_lines(&data, &["backup", "list", "--json", "--instance", &id]);
    assert_eq!(after, backups, "the deleted instance's backup stays");
    assert!(path.is_file());
    let table = ok(&data, &["backup", "list", "--instance", &id]);
    assert!(table.contains(path.to_str().unwrap()), "{table}");
}
