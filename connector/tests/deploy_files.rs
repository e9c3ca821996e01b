//! The deployment artefacts under `deploy/` keep the promises `docs/operations.md` makes.
//!
//! - Every YAML document in `deploy/kubernetes` parses and names its kind; the kustomization
//!   lists files that exist.
//! - The Deployment drains before the kubelet kills it (`terminationGracePeriodSeconds` above
//!   `--grace-period`), rolls out without losing capacity (`maxUnavailable: 0`), probes `/ready`
//!   and `/healthcheck` on the `--metrics` port, reads its credentials from a Secret (the tunnel
//!   token as `TUNNEL_TOKEN`, or a credentials file) and its config from a ConfigMap mounted as
//!   a directory (so `--watch-config` sees edits), and that config is one the connector accepts.
//! - The PodDisruptionBudget and the HPA point at that Deployment.
//! - The systemd units stop with SIGTERM, give the drain more time than `--grace-period`, reload
//!   with SIGHUP and do not let a seccomp filter kill the process for trying io_uring.
//! - Every `ringtun` command and flag used in `deploy/` (and `docs/operations.md`) exists in the
//!   built binary's `--help`.
//! - The Grafana dashboard is valid JSON whose queries use only metrics the code registers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::Value;

/// The connector's default `--grace-period`.
const DEFAULT_GRACE: Duration = Duration::from_secs(30);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("the connector crate has no parent directory"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Files under `dir`, recursively, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn rel(path: &Path) -> String {
    path.strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Kubernetes

/// One Kubernetes object and the file it came from.
struct Object {
    file: PathBuf,
    value: Value,
}

impl Object {
    fn kind(&self) -> &str {
        str_at(&self.value, &["kind"]).unwrap_or("")
    }

    fn name(&self) -> &str {
        str_at(&self.value, &["metadata", "name"]).unwrap_or("")
    }

    fn what(&self) -> String {
        format!("{} {} ({})", self.kind(), self.name(), rel(&self.file))
    }
}

/// Every non-empty YAML document of every `.yaml`/`.yml` file in `deploy/kubernetes`.
fn kubernetes_objects() -> Vec<Object> {
    let dir = repo().join("deploy/kubernetes");
    let mut objects = Vec::new();
    for file in files_under(&dir) {
        let is_yaml = matches!(
            file.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        if !is_yaml {
            continue;
        }
        let text = read(&file);
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let value = Value::deserialize(doc).unwrap_or_else(|e| {
                panic!(
                    "{}: YAML document {} does not parse: {e}",
                    rel(&file),
                    i + 1
                )
            });
            if !value.is_null() {
                objects.push(Object {
                    file: file.clone(),
                    value,
                });
            }
        }
    }
    assert!(
        !objects.is_empty(),
        "no YAML documents in deploy/kubernetes"
    );
    objects
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, key| v.get(*key))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

fn seq_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_sequence)
        .map_or(&[], |s| s.as_slice())
}

fn strings(v: &[Value]) -> Vec<String> {
    v.iter()
        .map(|s| match s {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => panic!("expected a string in a command or args list, got {other:?}"),
        })
        .collect()
}

/// The value of `--flag=value` or `--flag value` in `args`.
fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let prefix = format!("{flag}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if let Some(v) = a.strip_prefix(&prefix) {
            Some(v.to_owned())
        } else if a == flag {
            args.get(i + 1).cloned()
        } else {
            None
        }
    })
}

/// The `--grace-period` in `args` (the connector's default when absent), capped at 3 minutes
/// like the connector does.
fn grace_period(args: &[String], what: &str) -> Duration {
    match flag_value(args, "--grace-period") {
        Some(v) => ringtun_connector::config::parse_duration(&v)
            .unwrap_or_else(|e| panic!("{what}: --grace-period {v:?}: {e}"))
            .min(Duration::from_secs(180)),
        None => DEFAULT_GRACE,
    }
}

/// A container that runs `ringtun tunnel run`, with its full argument list (after `ringtun`).
struct Connector<'a> {
    container: &'a Value,
    args: Vec<String>,
}

fn connectors(deployment: &Value) -> Vec<Connector<'_>> {
    seq_at(deployment, &["spec", "template", "spec", "containers"])
        .iter()
        .filter_map(|c| {
            let command = strings(seq_at(c, &["command"]));
            let runs_ringtun = command
                .first()
                .is_some_and(|b| Path::new(b).file_name().is_some_and(|n| n == "ringtun"));
            if !runs_ringtun {
                return None;
            }
            let mut args: Vec<String> = command[1..].to_vec();
            args.extend(strings(seq_at(c, &["args"])));
            let positional: Vec<&str> = args
                .iter()
                .filter(|a| !a.starts_with('-'))
                .take(2)
                .map(String::as_str)
                .collect();
            (positional == ["tunnel", "run"]).then_some(Connector { container: c, args })
        })
        .collect()
}

fn deployments(objects: &[Object]) -> Vec<&Object> {
    let found: Vec<&Object> = objects
        .iter()
        .filter(|o| o.kind() == "Deployment")
        .collect();
    assert!(!found.is_empty(), "no Deployment in deploy/kubernetes");
    for d in &found {
        assert!(
            !connectors(&d.value).is_empty(),
            "{}: no container runs `ringtun tunnel run`",
            d.what()
        );
    }
    found
}

fn int_of(v: &Value) -> Option<i64> {
    v.as_i64()
}

/// The port number a probe's `port` (a number or a container port name) means.
fn probe_port(container: &Value, port: &Value) -> Option<i64> {
    if let Some(n) = int_of(port) {
        return Some(n);
    }
    let name = port.as_str()?;
    seq_at(container, &["ports"])
        .iter()
        .find(|p| str_at(p, &["name"]) == Some(name))
        .and_then(|p| at(p, &["containerPort"]))
        .and_then(int_of)
}

#[test]
fn kubernetes_files_parse_and_name_their_kind() {
    let objects = kubernetes_objects();
    let mut kinds = BTreeSet::new();
    for o in &objects {
        assert!(
            str_at(&o.value, &["apiVersion"]).is_some() && !o.kind().is_empty(),
            "{}: a document without apiVersion or kind",
            rel(&o.file)
        );
        kinds.insert(o.kind().to_owned());
    }
    for kind in [
        "Deployment",
        "ConfigMap",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Kustomization",
    ] {
        assert!(kinds.contains(kind), "no {kind} in deploy/kubernetes");
    }
    for k in objects.iter().filter(|o| o.kind() == "Kustomization") {
        let resources = strings(seq_at(&k.value, &["resources"]));
        assert!(!resources.is_empty(), "{}: no resources", k.what());
        // Resources are relative to the kustomization's own directory.
        let dir = k.file.parent().map(Path::to_path_buf).unwrap_or_default();
        for r in resources {
            assert!(
                dir.join(&r).is_file(),
                "{}: resource {r} does not exist",
                k.what()
            );
        }
    }
}

#[test]
fn deployment_drains_before_the_kubelet_kills_it() {
    let objects = kubernetes_objects();
    for d in deployments(&objects) {
        let spec = &d.value["spec"];
        let termination = at(spec, &["template", "spec", "terminationGracePeriodSeconds"])
            .and_then(int_of)
            .unwrap_or(30);
        for c in connectors(&d.value) {
            let grace = grace_period(&c.args, &d.what());
            assert!(
                u128::from(termination.unsigned_abs()) * 1000 > grace.as_millis(),
                "{}: terminationGracePeriodSeconds {termination} must exceed --grace-period \
                 {grace:?}, or the kubelet's SIGKILL cuts the drain short",
                d.what()
            );
        }
        let replicas = at(spec, &["replicas"]).and_then(int_of).unwrap_or(1);
        assert!(
            replicas >= 2,
            "{}: {replicas} replica(s); a rollout or a crash would leave the tunnel without a \
             connector",
            d.what()
        );
        assert_eq!(
            str_at(spec, &["strategy", "type"]),
            Some("RollingUpdate"),
            "{}: strategy",
            d.what()
        );
        let unavailable = at(spec, &["strategy", "rollingUpdate", "maxUnavailable"]);
        assert!(
            matches!(unavailable, Some(v) if int_of(v) == Some(0) || v.as_str() == Some("0%")),
            "{}: maxUnavailable must be 0 (got {unavailable:?}): an old connector may stop \
             only after a new one is ready",
            d.what()
        );
        let surge = at(spec, &["strategy", "rollingUpdate", "maxSurge"]);
        assert!(
            matches!(surge, Some(v) if int_of(v).is_some_and(|n| n >= 1)
                || v.as_str().is_some_and(|s| s != "0%")),
            "{}: maxSurge must allow at least one extra pod (got {surge:?})",
            d.what()
        );
    }
}

#[test]
fn probes_use_the_metrics_port() {
    let objects = kubernetes_objects();
    for d in deployments(&objects) {
        for c in connectors(&d.value) {
            let what = d.what();
            let metrics = flag_value(&c.args, "--metrics")
                .unwrap_or_else(|| panic!("{what}: the connector has no --metrics address"));
            let (host, port) = metrics
                .rsplit_once(':')
                .unwrap_or_else(|| panic!("{what}: --metrics {metrics:?} is not HOST:PORT"));
            assert!(
                matches!(host, "0.0.0.0" | "[::]" | "::"),
                "{what}: --metrics {metrics:?} must listen on all addresses: the kubelet probes \
                 the pod IP"
            );
            let port: i64 = port
                .parse()
                .unwrap_or_else(|_| panic!("{what}: --metrics port {port:?}"));
            for (probe, path) in [
                ("readinessProbe", "/ready"),
                ("livenessProbe", "/healthcheck"),
            ] {
                let get = at(c.container, &[probe, "httpGet"])
                    .unwrap_or_else(|| panic!("{what}: no {probe} with httpGet"));
                assert_eq!(str_at(get, &["path"]), Some(path), "{what}: {probe} path");
                let probed = at(get, &["port"]).and_then(|p| probe_port(c.container, p));
                assert_eq!(
                    probed,
                    Some(port),
                    "{what}: {probe} must probe the --metrics port {port}"
                );
            }
        }
    }
}

/// A volume mount: mount path, sub path, and the volume's source kind (`secret`, `configMap`,
/// ...) with its name.
struct Mount {
    path: PathBuf,
    sub_path: bool,
    source: String,
    source_name: String,
}

fn mounts(pod_spec: &Value, container: &Value) -> Vec<Mount> {
    seq_at(container, &["volumeMounts"])
        .iter()
        .filter_map(|m| {
            let name = str_at(m, &["name"])?;
            let volume = seq_at(pod_spec, &["volumes"])
                .iter()
                .find(|v| str_at(v, &["name"]) == Some(name))?;
            let (source, source_name) = if let Some(s) = at(volume, &["secret"]) {
                ("secret", str_at(s, &["secretName"]).unwrap_or(""))
            } else if let Some(c) = at(volume, &["configMap"]) {
                ("configMap", str_at(c, &["name"]).unwrap_or(""))
            } else {
                ("other", "")
            };
            Some(Mount {
                path: PathBuf::from(str_at(m, &["mountPath"])?),
                sub_path: at(m, &["subPath"]).is_some(),
                source: source.to_owned(),
                source_name: source_name.to_owned(),
            })
        })
        .collect()
}

/// The mount that holds `file`, the deepest one if several do.
fn mount_of<'a>(mounts: &'a [Mount], file: &Path) -> Option<&'a Mount> {
    mounts
        .iter()
        .filter(|m| file.starts_with(&m.path))
        .max_by_key(|m| m.path.components().count())
}

#[test]
fn credentials_come_from_a_secret_and_config_from_a_configmap() {
    let objects = kubernetes_objects();
    for d in deployments(&objects) {
        let pod_spec = &d.value["spec"]["template"]["spec"];
        for c in connectors(&d.value) {
            let what = d.what();
            let mounts = mounts(pod_spec, c.container);
            let config_path = PathBuf::from(
                flag_value(&c.args, "--config")
                    .unwrap_or_else(|| panic!("{what}: the connector has no --config")),
            );
            let config_mount = mount_of(&mounts, &config_path)
                .unwrap_or_else(|| panic!("{what}: --config {config_path:?} is not on a volume"));
            assert_eq!(
                config_mount.source, "configMap",
                "{what}: --config must come from a ConfigMap"
            );
            assert!(
                !config_mount.sub_path,
                "{what}: the config is mounted with subPath, which never sees ConfigMap updates"
            );
            // The ConfigMap holding the file must be in deploy/kubernetes and say where the
            // credentials are (unless --credentials-file does).
            let file_name = config_path
                .strip_prefix(&config_mount.path)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let config_map = objects
                .iter()
                .find(|o| o.kind() == "ConfigMap" && o.name() == config_mount.source_name)
                .unwrap_or_else(|| {
                    panic!("{what}: ConfigMap {} not found", config_mount.source_name)
                });
            let text = str_at(&config_map.value, &["data", &file_name])
                .unwrap_or_else(|| panic!("{}: no key {file_name} (--config)", config_map.what()));
            assert!(
                !text.contains("TunnelSecret"),
                "{}: credentials belong in a Secret",
                config_map.what()
            );
            let config = ringtun_connector::config::Config::from_yaml_str(text)
                .unwrap_or_else(|e| panic!("{}: the connector rejects it: {e}", config_map.what()));
            assert!(
                config.ingress.is_some(),
                "{}: no ingress rules",
                config_map.what()
            );
            // A token run: TUNNEL_TOKEN from a Secret, never written out in the manifest.
            let token = seq_at(c.container, &["env"])
                .iter()
                .find(|e| str_at(e, &["name"]) == Some("TUNNEL_TOKEN"));
            if let Some(token) = token {
                assert!(
                    at(token, &["value"]).is_none(),
                    "{what}: TUNNEL_TOKEN is written in the manifest; it belongs in a Secret"
                );
                let secret = str_at(token, &["valueFrom", "secretKeyRef", "name"]);
                assert!(
                    secret.is_some_and(|s| !s.is_empty()),
                    "{what}: TUNNEL_TOKEN must come from a Secret (valueFrom.secretKeyRef)"
                );
                assert!(
                    flag_value(&c.args, "--credentials-file").is_none()
                        && config.credentials_file.is_none(),
                    "{what}: a token run needs no credentials file"
                );
                continue;
            }
            let credentials = flag_value(&c.args, "--credentials-file")
                .map(PathBuf::from)
                .or(config.credentials_file)
                .unwrap_or_else(|| {
                    panic!("{what}: neither --credentials-file nor credentials-file in the config")
                });
            let cred_mount = mount_of(&mounts, &credentials).unwrap_or_else(|| {
                panic!("{what}: credentials {credentials:?} are not on a volume")
            });
            assert_eq!(
                cred_mount.source, "secret",
                "{what}: credentials {credentials:?} must come from a Secret"
            );
        }
    }
}

fn pod_labels(deployment: &Value) -> BTreeMap<String, String> {
    at(deployment, &["spec", "template", "metadata", "labels"])
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn disruption_budget_and_autoscaler_match_the_deployment() {
    let objects = kubernetes_objects();
    let deployments = deployments(&objects);
    for pdb in objects.iter().filter(|o| o.kind() == "PodDisruptionBudget") {
        let selector = at(&pdb.value, &["spec", "selector", "matchLabels"])
            .and_then(Value::as_mapping)
            .unwrap_or_else(|| panic!("{}: no matchLabels selector", pdb.what()));
        let selects = |d: &&Object| {
            let labels = pod_labels(&d.value);
            selector.iter().all(|(k, v)| {
                k.as_str()
                    .and_then(|k| labels.get(k))
                    .is_some_and(|l| Some(l.as_str()) == v.as_str())
            })
        };
        assert!(
            deployments.iter().any(selects),
            "{}: selects no Deployment's pods",
            pdb.what()
        );
    }
    for hpa in objects
        .iter()
        .filter(|o| o.kind() == "HorizontalPodAutoscaler")
    {
        let target = str_at(&hpa.value, &["spec", "scaleTargetRef", "name"]);
        assert!(
            deployments.iter().any(|d| Some(d.name()) == target),
            "{}: scales {target:?}, which is not a Deployment here",
            hpa.what()
        );
        let min = at(&hpa.value, &["spec", "minReplicas"])
            .and_then(int_of)
            .unwrap_or(1);
        assert!(
            min >= 2,
            "{}: minReplicas {min} leaves no replica for failover",
            hpa.what()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// systemd

/// Joins backslash-continued lines.
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        match line.trim_end().strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A unit file as `(section, key, value)` entries in file order.
fn parse_unit(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut entries = Vec::new();
    for line in logical_lines(text) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((k, v)) = line.split_once('=') {
            entries.push((section.clone(), k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    entries
}

fn unit_values<'a>(entries: &'a [(String, String, String)], key: &str) -> Vec<&'a str> {
    entries
        .iter()
        .filter(|(s, k, _)| s == "Service" && k == key)
        .map(|(_, _, v)| v.as_str())
        .collect()
}

fn unit_value<'a>(entries: &'a [(String, String, String)], key: &str) -> Option<&'a str> {
    unit_values(entries, key).last().copied()
}

/// A systemd time span: `45`, `45s`, `1min 30s`, `500ms`, `2h`.
fn systemd_timespan(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c.is_whitespace())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        total += match unit {
            "ms" | "msec" => Duration::from_millis(n),
            "s" | "sec" | "second" | "seconds" => Duration::from_secs(n),
            "m" | "min" | "minute" | "minutes" => Duration::from_secs(n * 60),
            "h" | "hr" | "hour" | "hours" => Duration::from_secs(n * 3600),
            _ => return None,
        };
    }
    Some(total)
}

/// The program and arguments of an `Exec*=` line (its `-@:+!` prefixes removed).
fn exec_words(line: &str) -> (String, Vec<String>) {
    let mut words = line.split_whitespace().map(str::to_owned);
    let program = words
        .next()
        .unwrap_or_default()
        .trim_start_matches(['-', '@', ':', '+', '!'])
        .to_owned();
    (program, words.collect())
}

fn program_is(program: &str, name: &str) -> bool {
    Path::new(program).file_name().is_some_and(|n| n == name)
}

fn unit_files() -> Vec<PathBuf> {
    let units: Vec<PathBuf> = files_under(&repo().join("deploy/systemd"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .collect();
    for name in [
        "ringtun.service",
        "ringtun@.service",
        "ringtun-edge.service",
    ] {
        assert!(
            units
                .iter()
                .any(|u| u.file_name().is_some_and(|n| n == name)),
            "deploy/systemd/{name} is missing"
        );
    }
    units
}

#[test]
fn systemd_units_drain_and_reload() {
    for file in unit_files() {
        let what = rel(&file);
        let entries = parse_unit(&read(&file));
        let exec =
            unit_value(&entries, "ExecStart").unwrap_or_else(|| panic!("{what}: no ExecStart"));
        let (program, args) = exec_words(exec);
        assert_eq!(
            unit_value(&entries, "KillSignal"),
            Some("SIGTERM"),
            "{what}: KillSignal"
        );
        let stop = unit_value(&entries, "TimeoutStopSec")
            .and_then(systemd_timespan)
            .unwrap_or_else(|| panic!("{what}: no TimeoutStopSec"));
        if program_is(&program, "ringtun") {
            assert_eq!(
                args.get(..2),
                Some(&["tunnel".to_owned(), "run".to_owned()][..]),
                "{what}: ExecStart must run `ringtun tunnel run`"
            );
            let grace = grace_period(&args, &what);
            assert!(
                stop > grace,
                "{what}: TimeoutStopSec {stop:?} must exceed --grace-period {grace:?}, or \
                 systemd's SIGKILL cuts the drain short"
            );
            let reload = unit_value(&entries, "ExecReload")
                .unwrap_or_else(|| panic!("{what}: no ExecReload"));
            let (kill, kill_args) = exec_words(reload);
            assert!(
                program_is(&kill, "kill")
                    && matches!(
                        kill_args.iter().map(String::as_str).collect::<Vec<_>>()[..],
                        ["-HUP" | "-SIGHUP", "$MAINPID"] | ["-s", "HUP" | "SIGHUP", "$MAINPID"]
                    ),
                "{what}: ExecReload must send SIGHUP to $MAINPID, got {reload:?}"
            );
        } else if program_is(&program, "etcd") {
            // The edge cluster's etcd member (deploy/systemd/cluster): checked by
            // `edge_cluster_files_name_real_flags`.
        } else {
            assert!(
                program_is(&program, "ringtun-edge"),
                "{what}: ExecStart runs neither ringtun, ringtun-edge nor etcd: {program}"
            );
        }
        assert_eq!(
            unit_value(&entries, "Restart"),
            Some("on-failure"),
            "{what}: Restart"
        );
        // io_uring must survive the hardening: allowed explicitly, never denied, and any call the
        // filter does block fails with an errno (so the runtime falls back to epoll) instead of
        // killing the process with SIGSYS.
        let filters = unit_values(&entries, "SystemCallFilter");
        if !filters.is_empty() {
            assert!(
                unit_value(&entries, "SystemCallErrorNumber").is_some(),
                "{what}: SystemCallFilter without SystemCallErrorNumber kills the process on a \
                 blocked call instead of letting it fall back"
            );
            let allowed: Vec<&str> = filters
                .iter()
                .filter(|f| !f.starts_with('~'))
                .flat_map(|f| f.split_whitespace())
                .collect();
            for call in ["io_uring_setup", "io_uring_enter", "io_uring_register"] {
                assert!(
                    allowed.contains(&call),
                    "{what}: SystemCallFilter does not allow {call}"
                );
            }
            for deny in filters.iter().filter(|f| f.starts_with('~')) {
                assert!(
                    !deny.contains("io_uring") && !deny.contains("@aio"),
                    "{what}: {deny} denies io_uring"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Flags

/// `ringtun` invocations found in a text: the command path (like `tunnel run`) and the flags
/// given to it.
fn invocations_in_line(line: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let mut found = Vec::new();
    let bytes = line.as_bytes();
    let mut from = 0;
    while let Some(pos) = line[from..].find("ringtun").map(|p| p + from) {
        from = pos + "ringtun".len();
        let before_ok = pos == 0
            || matches!(
                bytes[pos - 1],
                b' ' | b'\t' | b'/' | b'"' | b'`' | b'$' | b'(' | b'\''
            );
        let mut rest = &line[from..];
        if let Some(r) = rest.strip_prefix('"') {
            rest = r;
        }
        let after_ok = rest.starts_with([' ', '\t']);
        if !before_ok || !after_ok {
            continue;
        }
        // The invocation ends at the shell or markup that follows it.
        let end = rest
            .find([';', '|', '&', '>', '#', '`', ')'])
            .unwrap_or(rest.len());
        let words: Vec<&str> = rest[..end].split_whitespace().collect();
        let depth = match words.first().copied() {
            Some("tunnel") if words.get(1) == Some(&"route") => 3,
            Some("tunnel" | "ingress") => 2,
            Some("demo") => 1,
            _ => continue,
        };
        if words.len() < depth || words[..depth].iter().any(|w| w.starts_with('-')) {
            continue;
        }
        let path = words[..depth].iter().map(|w| (*w).to_owned()).collect();
        let flags = words[depth..]
            .iter()
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(|w| w.split('=').next().unwrap_or(w).to_owned())
            .collect();
        found.push((path, flags));
    }
    found
}

/// Every `(command path, flag)` used in `deploy/` and `docs/operations.md`, with where.
fn flag_uses() -> BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> {
    let mut uses: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut add = |path: Vec<String>, flag: Option<String>, source: String| {
        let entry = uses.entry(path).or_default();
        entry
            .entry(flag.unwrap_or_default())
            .or_default()
            .insert(source);
    };
    // Kubernetes containers, structurally.
    for o in kubernetes_objects() {
        if o.kind() != "Deployment" {
            continue;
        }
        for c in connectors(&o.value) {
            for a in c.args.iter().filter(|a| a.starts_with("--")) {
                let flag = a.split('=').next().unwrap_or(a).to_owned();
                add(
                    vec!["tunnel".into(), "run".into()],
                    Some(flag),
                    rel(&o.file),
                );
            }
        }
    }
    // Every text file: unit files, scripts, READMEs, YAML comments, the operations guide.
    let mut files = files_under(&repo().join("deploy"));
    files.push(repo().join("docs/operations.md"));
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for line in logical_lines(&text) {
            for (path, flags) in invocations_in_line(&line) {
                add(path.clone(), None, rel(&file));
                for flag in flags {
                    add(path.clone(), Some(flag), rel(&file));
                }
            }
            // Extra `tunnel run` flags passed through the units' RINGTUN_ARGS.
            if let Some((_, value)) = line.split_once("RINGTUN_ARGS=") {
                for w in value.split_whitespace().filter(|w| w.starts_with("--")) {
                    let flag = w.split('=').next().unwrap_or(w).to_owned();
                    add(vec!["tunnel".into(), "run".into()], Some(flag), rel(&file));
                }
            }
        }
    }
    uses
}

/// `ringtun PATH... --help`, or the error output when the command does not exist.
fn help(path: &[String]) -> Result<String, String> {
    let home = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_ringtun"))
        .args(path)
        .arg("--help")
        .env_clear()
        .env("HOME", home.path())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(home.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ringtun: {e}"));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(stderr.lines().next().unwrap_or("").trim().to_owned())
    }
}

/// Whether `help` documents `flag` (as a whole word: `--metrics` is not `--metrics-foo`).
fn documents(help: &str, flag: &str) -> bool {
    help.match_indices(flag).any(|(i, _)| {
        let next = help[i + flag.len()..].chars().next();
        let prev = help[..i].chars().next_back();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && !prev.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

#[test]
fn every_ringtun_flag_used_in_deploy_exists() {
    let uses = flag_uses();
    assert!(
        uses.contains_key(&vec!["tunnel".to_owned(), "run".to_owned()]),
        "found no `ringtun tunnel run` in deploy/"
    );
    let mut missing = Vec::new();
    for (path, flags) in &uses {
        let command = format!("ringtun {}", path.join(" "));
        match help(path) {
            Err(error) => {
                let sources: BTreeSet<&String> = flags.values().flatten().collect();
                missing.push(format!(
                    "command `{command}` does not exist ({error}); used in {sources:?}"
                ));
            }
            Ok(text) => {
                for (flag, sources) in flags.iter().filter(|(f, _)| !f.is_empty()) {
                    if !documents(&text, flag) {
                        missing.push(format!("`{command} {flag}`, used in {sources:?}"));
                    }
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} command(s)/flag(s) used in deploy/ or docs/operations.md are not in the built \
         binary's --help:\n  {}",
        missing.len(),
        missing.join("\n  ")
    );
}

#[test]
fn invocation_scanner_finds_commands_and_flags() {
    let found = invocations_in_line(
        r#"ExecStart=/usr/local/bin/ringtun tunnel run --config /etc/ringtun/config.yml --metrics=127.0.0.1:2000 $RINGTUN_ARGS"#,
    );
    assert_eq!(
        found,
        vec![(
            vec!["tunnel".to_owned(), "run".to_owned()],
            vec!["--config".to_owned(), "--metrics".to_owned()]
        )]
    );
    let found = invocations_in_line(r#"  "$ringtun" tunnel ready --metrics "$addr" >/dev/null"#);
    assert_eq!(found[0].1, vec!["--metrics".to_owned()]);
    let found = invocations_in_line("`ringtun tunnel route dns web app.example.com`");
    assert_eq!(found[0].0, ["tunnel", "route", "dns"]);
    // Not the connector: other binaries, unit names, paths, images.
    for line in [
        "ringtun-edge --metrics 127.0.0.1:2100",
        "systemctl restart ringtun@1",
        "/etc/ringtun/config.yml",
        "image: ringtun:0.1.0",
        "ringtun-load capacity http://x/ --slo-p99 5ms",
    ] {
        assert!(invocations_in_line(line).is_empty(), "{line}");
    }
    assert!(documents("  --metrics <ADDR>\n", "--metrics"));
    assert!(!documents("  --metrics-x <ADDR>\n", "--metrics"));
    assert_eq!(systemd_timespan("45s"), Some(Duration::from_secs(45)));
    assert_eq!(systemd_timespan("1min 30s"), Some(Duration::from_secs(90)));
    assert_eq!(systemd_timespan("45"), Some(Duration::from_secs(45)));
    assert_eq!(systemd_timespan("soon"), None);
}

// ---------------------------------------------------------------------------------------------
// Grafana dashboard

/// Every metric name the code registers, as `PREFIX_NAME`: each `Registry::with_prefix("P")` of a
/// source file of the connector and the edge, with every `.register("NAME", ...)` (or a
/// collector's `.encode_descriptor("NAME", ...)`) of that file.
fn registered_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for dir in ["connector/src", "edge-sim/src"] {
        for file in files_under(&repo().join(dir)) {
            if file.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = read(&file);
            let literal_after = |marker: &str| -> Vec<String> {
                text.match_indices(marker)
                    .filter_map(|(i, _)| {
                        let rest = text[i + marker.len()..].trim_start();
                        let rest = rest.strip_prefix('"')?;
                        Some(rest[..rest.find('"')?].to_owned())
                    })
                    .collect()
            };
            let prefixes = literal_after("with_prefix(");
            // Families a collector writes at scrape time (`encode_descriptor`) count too.
            let registered: Vec<String> = literal_after(".register(")
                .into_iter()
                .chain(literal_after(".register_with_unit("))
                .chain(literal_after(".encode_descriptor("))
                .collect();
            for p in &prefixes {
                for r in &registered {
                    names.insert(format!("{p}_{r}"));
                }
            }
        }
    }
    names
}

/// Whether `metric`, as a query names it, is one the code exposes: a registered name, or one
/// with the suffix the exposition adds (`_total` for counters; `_bucket`, `_count`, `_sum` for
/// histograms).
fn is_exposed(metric: &str, registered: &BTreeSet<String>) -> bool {
    registered.contains(metric)
        || ["_total", "_bucket", "_count", "_sum"].iter().any(|s| {
            metric
                .strip_suffix(s)
                .is_some_and(|m| registered.contains(m))
        })
}

/// Every `expr` of the dashboard, with where.
fn exprs(v: &serde_json::Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if k == "expr"
                    && let Some(e) = v.as_str()
                {
                    out.push((path.to_owned(), e.to_owned()));
                }
                exprs(v, &format!("{path}.{k}"), out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                exprs(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn grafana_dashboard_uses_only_metrics_the_code_exposes() {
    let registered = registered_metrics();
    for known in [
        "ringtun_requests",
        "ringtun_ready_links",
        "ringtun_edge_connectors",
    ] {
        assert!(
            registered.contains(known),
            "the source scan missed {known}: {registered:?}"
        );
    }
    let path = repo().join("deploy/grafana-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{}: not JSON: {e}", rel(&path)));
    assert!(
        dashboard["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{}: no title",
        rel(&path)
    );
    let mut found = Vec::new();
    exprs(&dashboard, "", &mut found);
    assert!(
        found.len() >= 8,
        "{}: only {} queries",
        rel(&path),
        found.len()
    );
    let mut used = BTreeSet::new();
    let mut unknown = Vec::new();
    for (at, expr) in &found {
        let mut rest = expr.as_str();
        while let Some(i) = rest.find("ringtun_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            if !is_exposed(&name, &registered) {
                unknown.push(format!("{at}: {name}"));
            }
            used.insert(name);
        }
    }
    assert!(
        unknown.is_empty(),
        "{} uses metrics the code does not register:\n{}",
        rel(&path),
        unknown.join("\n")
    );
    assert!(
        used.iter().any(|m| m.starts_with("ringtun_edge_"))
            && used.iter().any(|m| !m.starts_with("ringtun_edge_")),
        "the dashboard should cover both the connectors and the edge: {used:?}"
    );
}

#[test]
fn the_metric_check_refuses_a_made_up_name() {
    let registered = registered_metrics();
    assert!(is_exposed("ringtun_requests_total", &registered));
    assert!(is_exposed(
        "ringtun_request_duration_seconds_bucket",
        &registered
    ));
    assert!(!is_exposed("ringtun_requests_per_hour", &registered));
    assert!(!is_exposed(
        "cloudflared_tunnel_total_requests",
        &registered
    ));
}

// ---------------------------------------------------------------------------------------------
// The edge cluster (deploy/systemd/cluster, deploy/kubernetes/edge-cluster)

/// `PROGRAM --help`'s output (stdout and stderr: etcd prints its usage on stderr).
fn program_help(program: &Path) -> String {
    let out = Command::new(program)
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The built `ringtun-edge`, next to `ringtun`.
fn edge_binary() -> PathBuf {
    ringtun_connector::process::Binaries::locate(Path::new(env!("CARGO_BIN_EXE_ringtun")))
        .unwrap_or_else(|e| panic!("cannot find or build ringtun-edge: {e}"))
        .edge
}

/// The `etcd` binary (on `PATH` or Debian's `/usr/bin/etcd`; `.ci/deps.sh` installs it).
fn etcd_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("etcd"))
            .find(|p| p.is_file())
    });
    let debian = PathBuf::from("/usr/bin/etcd");
    on_path
        .or_else(|| debian.is_file().then_some(debian))
        .unwrap_or_else(|| panic!("etcd not found on PATH or at /usr/bin/etcd: run .ci/deps.sh"))
}

/// The `--flag` names among `args` (`--flag=value` or `--flag value`).
fn flags_of(args: &[String]) -> Vec<String> {
    args.iter()
        .filter(|a| a.starts_with("--"))
        .map(|a| a.split('=').next().unwrap_or(a).to_owned())
        .collect()
}

#[track_caller]
fn assert_flags_exist(what: &str, program: &str, help: &str, flags: &[String]) {
    assert!(!flags.is_empty(), "{what}: no flags found");
    for flag in flags {
        assert!(
            documents(help, flag),
            "{what}: {program} has no flag {flag}"
        );
    }
}

/// The containers of a StatefulSet whose command or image names `program`, with their args.
fn containers_running<'a>(o: &'a Object, program: &str) -> Vec<(&'a Value, Vec<String>)> {
    seq_at(&o.value, &["spec", "template", "spec", "containers"])
        .iter()
        .filter(|c| {
            strings(seq_at(c, &["command"]))
                .first()
                .is_some_and(|p| program_is(p, program))
        })
        .map(|c| (c, strings(seq_at(c, &["args"]))))
        .collect()
}

#[test]
fn edge_cluster_files_name_real_flags() {
    let edge_help = program_help(&edge_binary());
    let etcd_help = program_help(&etcd_binary());
    assert!(documents(&edge_help, "--etcd"), "{edge_help}");

    // Kubernetes: an etcd StatefulSet and an edge StatefulSet pointing at it.
    let objects = kubernetes_objects();
    let sets: Vec<&Object> = objects
        .iter()
        .filter(|o| o.kind() == "StatefulSet")
        .collect();
    let edges: Vec<(&Object, Vec<String>)> = sets
        .iter()
        .flat_map(|o| {
            containers_running(o, "ringtun-edge")
                .into_iter()
                .map(move |(_, args)| (*o, args))
        })
        .collect();
    let etcds: Vec<(&Object, Vec<String>)> = sets
        .iter()
        .flat_map(|o| {
            containers_running(o, "etcd")
                .into_iter()
                .map(move |(_, args)| (*o, args))
        })
        .collect();
    assert!(!edges.is_empty(), "no StatefulSet runs ringtun-edge");
    assert!(!etcds.is_empty(), "no StatefulSet runs etcd");
    for (o, args) in &edges {
        assert_flags_exist(&o.what(), "ringtun-edge", &edge_help, &flags_of(args));
        let etcd = flag_value(args, "--etcd")
            .unwrap_or_else(|| panic!("{}: ringtun-edge without --etcd", o.what()));
        // Every etcd URL names a member of the etcd StatefulSet's headless Service.
        for (e, _) in &etcds {
            let service = str_at(&e.value, &["spec", "serviceName"]).unwrap_or("");
            assert!(
                etcd.split(',').all(|u| u.contains(&format!(".{service}:"))),
                "{}: --etcd {etcd} does not point at {}",
                o.what(),
                e.what()
            );
        }
        let grace = flag_value(args, "--grace-period")
            .and_then(|g| g.parse::<u64>().ok())
            .unwrap_or(30);
        let termination = at(
            &o.value,
            &["spec", "template", "spec", "terminationGracePeriodSeconds"],
        )
        .and_then(int_of)
        .unwrap_or(30);
        assert!(
            termination > i64::try_from(grace).unwrap_or(i64::MAX),
            "{}: terminationGracePeriodSeconds {termination} must exceed --grace-period {grace} \
             (the drain, then the lease revocation)",
            o.what()
        );
    }
    for (o, args) in &etcds {
        assert_flags_exist(&o.what(), "etcd", &etcd_help, &flags_of(args));
    }

    // systemd: the edge node's unit names real flags, and every variable it uses is set in
    // the env file next to it; the etcd env file sets only variables of real etcd flags.
    let dir = repo().join("deploy/systemd/cluster");
    let unit = dir.join("ringtun-edge-cluster.service");
    let entries = parse_unit(&read(&unit));
    let (program, args) = exec_words(
        unit_value(&entries, "ExecStart").unwrap_or_else(|| panic!("{}: no ExecStart", rel(&unit))),
    );
    assert!(program_is(&program, "ringtun-edge"), "{}", rel(&unit));
    assert_flags_exist(&rel(&unit), "ringtun-edge", &edge_help, &flags_of(&args));
    assert!(
        args.iter().any(|a| a == "--etcd"),
        "{}: no --etcd",
        rel(&unit)
    );
    let grace: u64 = flag_value(&args, "--grace-period")
        .and_then(|g| g.parse().ok())
        .unwrap_or(30);
    let stop = unit_value(&entries, "TimeoutStopSec")
        .and_then(systemd_timespan)
        .unwrap_or_default();
    assert!(
        stop > Duration::from_secs(grace),
        "{}: TimeoutStopSec {stop:?} must exceed --grace-period {grace}",
        rel(&unit)
    );
    let env = read(&dir.join("ringtun-edge-cluster.env"));
    let defined: BTreeSet<&str> = env
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .collect();
    for a in &args {
        if let Some(var) = a.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
            assert!(
                defined.contains(var),
                "{}: ${{{var}}} is not set in ringtun-edge-cluster.env",
                rel(&unit)
            );
        }
    }
    let etcd_unit = parse_unit(&read(&dir.join("ringtun-etcd.service")));
    let (program, _) = exec_words(unit_value(&etcd_unit, "ExecStart").unwrap_or_default());
    assert!(
        program_is(&program, "etcd"),
        "ringtun-etcd.service runs {program}"
    );
    let etcd_env = read(&dir.join("etcd.env"));
    let vars: Vec<String> = etcd_env
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_owned()))
        .collect();
    assert!(vars.len() >= 5, "etcd.env sets too little: {vars:?}");
    for var in vars {
        let flag = format!(
            "--{}",
            var.strip_prefix("ETCD_")
                .unwrap_or_else(|| panic!("etcd.env: {var} is not an ETCD_ variable"))
                .to_lowercase()
                .replace('_', "-")
        );
        assert!(
            documents(&etcd_help, &flag),
            "etcd.env: {var} is no etcd flag ({flag})"
        );
    }
}
