//! The deployment files: the systemd unit passes `systemd-analyze verify`
//! and the environment example only names keys floodguard knows; so does
//! the two-node drop-in (deploy/cluster/), with the unit it extends.

use std::process::Command;

use crate::support::floodguard::{sample_config_dir, BIN};

fn deploy(file: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_systemd_unit_verifies_and_is_sandboxed() {
    let unit = deploy("floodguard.service");
    for key in [
        "User=floodguard",
        "StateDirectory=floodguard",
        "Environment=FLOODGUARD__DAEMON__DATA_DIR=/var/lib/floodguard",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "Restart=always",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.lines().any(|l| l == key), "{key} in deploy/floodguard.service");
    }
    let Ok(analyze) = which("systemd-analyze") else {
        panic!("systemd-analyze is needed to check deploy/floodguard.service (Debian package systemd)");
    };
    // Verify the unit as shipped, with its binary path pointing at the one built.
    let dir = crate::support::tempdir("unit-");
    let path = dir.path().join("floodguard.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/floodguard", BIN)).unwrap();
    let out = Command::new(analyze).args(["verify", "--man=no"]).arg(&path).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let own: Vec<&str> = text.lines().filter(|l| l.contains("floodguard.service")).collect();
    assert!(own.is_empty() && out.status.success(), "systemd-analyze verify:\n{text}");
}

#[test]
fn every_key_of_the_environment_example_is_one_floodguard_reads() {
    let example = deploy("floodguard.env.example");
    let keys: Vec<String> = example
        .lines()
        .filter_map(|l| l.trim_start_matches('#').split_once('='))
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| k.starts_with("FLOODGUARD__"))
        .collect();
    assert!(keys.len() >= 10, "the example names the secrets: {keys:?}");
    let data = crate::support::tempdir("env-example-");
    let out = Command::new(BIN)
        .args(["check-config", "-c"])
        .arg(sample_config_dir().join("floodguard.toml"))
        .envs(keys.iter().map(|k| (k.as_str(), "placeholder-value-0123456789abcdef0123456789")))
        .env("FLOODGUARD__DAEMON__DATA_DIR", data.path())
        // The SMTP account needs an encrypted connection (the sample's relay is plain).
        .env("FLOODGUARD__CHANNELS__EMAIL__SMTP_URL", "smtps://mail.example.gov.cn:465")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check-config with every key of deploy/floodguard.env.example set:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And a misspelt one is refused, so the check above means something.
    let out = Command::new(BIN)
        .args(["check-config", "-c"])
        .arg(sample_config_dir().join("floodguard.toml"))
        .env("FLOODGUARD__CHANNELS__SMS__KEY_SECRETS", "x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("channels.sms.key_secrets: unknown key"));
}

/// The secrets the environment example shows, uncommented as they are:
/// `run` refuses each, naming its key, before it starts anything.
#[test]
fn the_shipped_example_secrets_stop_run_naming_the_key() {
    let example = deploy("floodguard.env.example");
    let shown: Vec<(String, String)> = example
        .lines()
        .filter_map(|l| l.trim_start_matches('#').split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| k.starts_with("FLOODGUARD__") && (k.contains("TOKEN") || k.contains("ACK__SECRET")))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    assert!(shown.len() >= 5, "the example shows the tokens and the ack secret: {shown:?}");
    for (var, value) in &shown {
        let data = crate::support::tempdir("example-secret-");
        let key = var.trim_start_matches("FLOODGUARD__").to_lowercase().replacen("__", ".", 2);
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "-c"])
            .arg(sample_config_dir().join("floodguard.toml"))
            .env("FLOODGUARD__DAEMON__DATA_DIR", data.path())
            .env("FLOODGUARD__CHANNELS__ACK__BASE_URL", "https://flood.example.gov.cn")
            .env("FLOODGUARD__CHANNELS__ACK__SECRET", "a-fresh-ack-secret-of-the-right-length-1")
            .env("FLOODGUARD__HTTP__LISTEN", "127.0.0.1:1")
            .env(var, value);
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: run must refuse it\n{err}");
        assert!(err.contains(&key) && err.contains("example"), "{var}: the error names {key}:\n{err}");
        assert!(!err.contains(value.as_str()), "the error does not repeat the value:\n{err}");
        assert!(!data.path().join("spool").exists(), "nothing started");
    }
    // A short one is refused for its length; a generated one passes check-config.
    let out = Command::new(BIN)
        .args(["check-config", "-c"])
        .arg(sample_config_dir().join("floodguard.toml"))
        .env("FLOODGUARD__HTTP__API_TOKEN", "short-token")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("http.api_token: is 11 characters long"));
    let secret = Command::new(BIN).arg("gen-secret").output().unwrap();
    let secret = String::from_utf8(secret.stdout).unwrap().trim().to_string();
    assert_eq!(secret.len(), 64, "{secret}");
    let out = Command::new(BIN)
        .args(["check-config", "-c"])
        .arg(sample_config_dir().join("floodguard.toml"))
        .env("FLOODGUARD__HTTP__API_TOKEN", &secret)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&secret), "check-config never prints a secret");
}

/// The drop-in that makes a node of a two-node cluster: verified with the
/// unit it extends, and its settings (the node's name, the PostgreSQL URL,
/// the password from a systemd credential) pass `check-config`.
#[test]
fn the_two_node_drop_in_verifies_and_its_settings_pass_check_config() {
    let drop_in = deploy("cluster/floodguard-cluster.conf");
    let env: Vec<(String, String)> = drop_in
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    assert_eq!(get("FLOODGUARD__STATE__BACKEND"), Some("postgres"));
    let url = get("FLOODGUARD__STATE__URL").expect("the state's URL");
    let user = url.strip_prefix("postgres://").and_then(|u| u.split_once('@')).map(|(user, _)| user);
    assert!(user.is_some_and(|u| !u.contains(':')), "a postgres:// URL with a user and no password: {url}");
    assert!(get("FLOODGUARD__CLUSTER__NODE_ID").is_some(), "the node's name is set");
    let password = get("FLOODGUARD__STATE__PASSWORD__FILE").expect("the password from a file");
    let credential = password.strip_prefix("%d/").expect("the file is a systemd credential (%d)");
    assert!(
        drop_in.lines().any(|l| l.starts_with(&format!("LoadCredential={credential}:"))),
        "LoadCredential={credential}:… in the drop-in"
    );

    // systemd reads the unit with the drop-in beside it as
    // floodguard.service.d/, as installed under /etc/systemd/system.
    let Ok(analyze) = which("systemd-analyze") else {
        panic!("systemd-analyze is needed to check deploy/cluster (Debian package systemd)");
    };
    let dir = crate::support::tempdir("unit-cluster-");
    let unit = dir.path().join("floodguard.service");
    std::fs::write(&unit, deploy("floodguard.service").replace("/usr/local/bin/floodguard", BIN)).unwrap();
    std::fs::create_dir(dir.path().join("floodguard.service.d")).unwrap();
    std::fs::write(dir.path().join("floodguard.service.d/cluster.conf"), &drop_in).unwrap();
    let verify = |extra: Option<&str>| {
        if let Some(line) = extra {
            std::fs::write(
                dir.path().join("floodguard.service.d/cluster.conf"),
                format!("{drop_in}{line}\n"),
            )
            .unwrap();
        }
        let out = Command::new(&analyze)
            .args(["verify", "--man=no"])
            .arg(&unit)
            .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.path().display()))
            .output()
            .unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let own = text.lines().filter(|l| l.contains("floodguard.service")).count();
        (own == 0 && out.status.success(), text)
    };
    let (clean, text) = verify(None);
    assert!(clean, "systemd-analyze verify of the unit with the drop-in:\n{text}");
    // The drop-in is read: a bad line in it is reported.
    let (clean, text) = verify(Some("Environmnt=X=1"));
    assert!(!clean && text.contains("cluster.conf"), "a misspelt key in the drop-in is reported:\n{text}");

    // Its settings on the sample config, the credential where systemd puts it.
    let credentials = crate::support::tempdir("credentials-");
    let data = crate::support::tempdir("cluster-example-");
    let check = || {
        let out = Command::new(BIN)
            .args(["check-config", "-c"])
            .arg(sample_config_dir().join("floodguard.toml"))
            .envs(
                env.iter()
                    .map(|(k, v)| (k.clone(), v.replace("%d", &credentials.path().display().to_string()))),
            )
            .env("FLOODGUARD__DAEMON__DATA_DIR", data.path())
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (ok, err) = check();
    assert!(!ok && err.contains("state.password: cannot read secret file"), "no credential yet:\n{err}");
    std::fs::write(credentials.path().join(credential), "a-database-password-0123456789abcdef\n").unwrap();
    let (ok, err) = check();
    assert!(ok, "check-config with the drop-in's settings:\n{err}");
}

fn which(cmd: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
        .ok_or(())
}
