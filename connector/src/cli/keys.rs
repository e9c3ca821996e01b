//! Parsing the command line together with the config file, as cloudflared does: any flag can be
//! written as a top-level key of the config file (`metrics: 127.0.0.1:2000`, `loglevel: debug`,
//! `no-autoupdate: true`), and a flag given on the command line or in the environment wins over
//! the key.
//!
//! [`parse_args`] parses once, finds the config file (`--config`, else the default places of
//! [`crate::config::find_config_file`]), turns each key that names a flag of the command into that flag
//! and parses again. Keys the config itself reads (`tunnel`, `credentials-file`,
//! `ha-connections`, `ingress`, `originRequest`) are left to [`crate::config::Config`]. Logging
//! is not set up yet while this runs (`--loglevel` may come from the file), so what there is to
//! say comes back as [`StartupNote`]s for the caller to log afterwards.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use serde_yaml_ng::Value;

use super::Cli;

/// Something to log about start-up once logging is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupNote {
    /// No `--config` was given and this file was found in the default places: it is used.
    ConfigFound(PathBuf),
    /// These keys of the config file were applied as flags.
    KeysApplied {
        /// The config file.
        path: PathBuf,
        /// The keys, in file order.
        keys: Vec<String>,
    },
    /// The config file could not be read for flag keys (the command that loads it says why
    /// again, if it needs the file).
    KeysUnreadable {
        /// The config file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// cloudflared flags that mean nothing here were given.
    Ignored(Vec<&'static str>),
}

impl StartupNote {
    /// Logs the note (one line).
    pub fn log(&self) {
        match self {
            StartupNote::ConfigFound(path) => tracing::info!(
                file = %path.display(),
                "using config file found in the default places (pass --config FILE to use another)"
            ),
            StartupNote::KeysApplied { path, keys } => tracing::debug!(
                file = %path.display(),
                keys = %keys.join(","),
                "config keys applied as flags"
            ),
            StartupNote::KeysUnreadable { path, reason } => tracing::warn!(
                file = %path.display(),
                %reason,
                "cannot read flags from the config file"
            ),
            StartupNote::Ignored(flags) => tracing::warn!(
                flags = %flags.join(","),
                "ignoring cloudflared options that have no meaning in ringtun"
            ),
        }
    }
}

/// Keys of the config file that are the config's own, not flags.
fn config_own_key(key: &str) -> bool {
    key == "config" || crate::config::raw::top_keys().contains(&key)
}

/// Whether `key` is the long name of a flag of some `ringtun` command (so that, at the top of a
/// config file, it is a flag written as a key, not an unknown field).
pub fn is_flag_key(key: &str) -> bool {
    static NAMES: OnceLock<BTreeSet<String>> = OnceLock::new();
    NAMES
        .get_or_init(|| {
            let mut cmd = Cli::command();
            cmd.build();
            let mut names = BTreeSet::new();
            collect_longs(&cmd, &mut names);
            names
        })
        .contains(key)
}

fn collect_longs(cmd: &clap::Command, names: &mut BTreeSet<String>) {
    for a in cmd.get_arguments() {
        if let Some(long) = a.get_long() {
            names.insert(long.to_owned());
        }
    }
    for sub in cmd.get_subcommands() {
        collect_longs(sub, names);
    }
}

/// Parses `args` (the program name first) with the config file's keys as defaults for flags.
/// A config file found in the default places is put into `--config`, so every command reads the
/// same file, and named in a [`StartupNote::ConfigFound`].
pub fn parse_args<I, T>(args: I) -> Result<(Cli, Vec<StartupNote>), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut matches = Cli::command().try_get_matches_from(&args)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    let mut notes = Vec::new();
    let explicit = cli.global.config.is_some();
    if let Ok(path) = crate::config::find_config_file(cli.global.config.as_deref()) {
        if !explicit {
            notes.push(StartupNote::ConfigFound(path.clone()));
        }
        match flag_args(&path, &matches) {
            Ok((extra, keys)) if !extra.is_empty() => {
                args.extend(extra);
                matches = Cli::command().try_get_matches_from(&args).map_err(|e| {
                    Cli::command().error(
                        ErrorKind::ValueValidation,
                        format!(
                            "in config file {}: {}",
                            path.display(),
                            e.to_string().trim().trim_start_matches("error: ")
                        ),
                    )
                })?;
                cli = Cli::from_arg_matches(&matches)?;
                notes.push(StartupNote::KeysApplied {
                    path: path.clone(),
                    keys,
                });
            }
            Ok(_) => {}
            // A missing file named by --config is the command's error to report, not a note.
            Err(reason) if path.exists() => notes.push(StartupNote::KeysUnreadable {
                path: path.clone(),
                reason,
            }),
            Err(_) => {}
        }
        cli.global.config = Some(path);
    }
    cli.global.edge_api_given = !matches!(
        leaf(&matches).value_source("edge_api"),
        None | Some(ValueSource::DefaultValue)
    );
    let ignored = cli.global.cloudflared_only.given();
    if !ignored.is_empty() {
        notes.push(StartupNote::Ignored(ignored));
    }
    Ok((cli, notes))
}

/// The innermost subcommand's matches (where global flags are propagated to).
fn leaf(matches: &ArgMatches) -> &ArgMatches {
    let mut m = matches;
    while let Some((_, sub)) = m.subcommand() {
        m = sub;
    }
    m
}

/// The extra arguments (`--key=value`) for the config file's keys that name flags of the command
/// in `matches` and were not given otherwise, and those keys.
fn flag_args(
    path: &std::path::Path,
    matches: &ArgMatches,
) -> Result<(Vec<OsString>, Vec<String>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let doc: Value = serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())?;
    let Value::Mapping(top) = doc else {
        return Ok((Vec::new(), Vec::new()));
    };
    let mut root = Cli::command();
    root.build();
    let mut cmd = &root;
    let mut m = matches;
    while let Some((name, sub)) = m.subcommand() {
        match cmd.find_subcommand(name) {
            Some(c) => cmd = c,
            None => break,
        }
        m = sub;
    }
    let mut extra = Vec::new();
    let mut keys = Vec::new();
    for (key, value) in &top {
        let Some(key) = key.as_str() else { continue };
        if config_own_key(key) {
            continue;
        }
        let Some(arg) = cmd.get_arguments().find(|a| a.get_long() == Some(key)) else {
            continue;
        };
        let id = arg.get_id().as_str();
        if matches!(
            m.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let before = extra.len();
        if arg.get_action().takes_values() {
            let values = match value {
                Value::Sequence(items) => items.iter().filter_map(scalar).collect(),
                other => scalar(other).into_iter().collect::<Vec<_>>(),
            };
            extra.extend(values.into_iter().map(|v| format!("--{key}={v}").into()));
        } else {
            match value {
                Value::Bool(true) => extra.push(format!("--{key}").into()),
                Value::Bool(false) | Value::Null => {}
                // Not a boolean: passed on as a value, which the parser refuses by name.
                other => {
                    extra.push(format!("--{key}={}", scalar(other).unwrap_or_default()).into())
                }
            }
        }
        if extra.len() > before {
            keys.push(key.to_owned());
        }
    }
    Ok((extra, keys))
}

/// A YAML scalar as flag text; `None` for null.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(
            serde_yaml_ng::to_string(other)
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command, TunnelCommand};

    fn with_config(yaml: &str, args: &[&str]) -> (Cli, Vec<StartupNote>) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("config.yml");
        std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("{e}"));
        let mut all = vec!["ringtun".to_owned()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        all.push("--config".to_owned());
        all.push(path.display().to_string());
        parse_args(all).unwrap_or_else(|e| panic!("{e}"))
    }

    fn run_args(cli: &Cli) -> &crate::cli::RunArgs {
        match &cli.command {
            Command::Tunnel(TunnelCommand::Run(a)) => a,
            other => panic!("not tunnel run: {other:?}"),
        }
    }

    #[test]
    fn keys_fill_flags_and_flags_win() {
        let yaml = "tunnel: web\nmetrics: 127.0.0.1:2000\nloglevel: debug\nweight: 7\n\
                    standby: true\nno-autoupdate: true\nprotocol: quic\nedge: [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n";
        let (cli, notes) = with_config(yaml, &["tunnel", "run"]);
        let a = run_args(&cli);
        assert_eq!(a.metrics.as_deref(), Some("127.0.0.1:2000"));
        assert_eq!((a.weight, a.standby), (7, true));
        assert_eq!(a.edge, ["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(cli.global.loglevel, Some(crate::cli::LogLevel::Debug));
        assert!(
            notes.contains(&StartupNote::Ignored(vec!["--no-autoupdate", "--protocol"])),
            "{notes:?}"
        );
        // The command line wins.
        let (cli, _) = with_config(yaml, &["tunnel", "run", "--metrics", "127.0.0.1:9"]);
        assert_eq!(run_args(&cli).metrics.as_deref(), Some("127.0.0.1:9"));
        // Keys of flags another command has are not applied (nor refused).
        let (cli, _) = with_config(yaml, &["tunnel", "list"]);
        assert!(matches!(
            cli.command,
            Command::Tunnel(TunnelCommand::List(_))
        ));
        assert!(!cli.global.edge_api_given);
        let (cli, _) = with_config("edge-api: 10.0.0.1:7800\n", &["tunnel", "list"]);
        assert!(cli.global.edge_api_given);
        assert_eq!(cli.global.edge_api, "10.0.0.1:7800");
    }

    #[test]
    fn a_bad_key_names_the_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("c.yml");
        std::fs::write(&path, "weight: 5000\n").unwrap_or_else(|e| panic!("{e}"));
        let p = path.display().to_string();
        let e = parse_args(["ringtun", "tunnel", "run", "--config", p.as_str()])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(&p) && e.contains("weight must be"), "{e}");
        std::fs::write(&path, "standby: maybe\n").unwrap_or_else(|e| panic!("{e}"));
        let e = parse_args(["ringtun", "tunnel", "run", "--config", p.as_str()])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(&p) && e.contains("--standby"), "{e}");
        std::fs::write(&path, "ingress: [\n").unwrap_or_else(|e| panic!("{e}"));
        let (_, notes) = parse_args(["ringtun", "tunnel", "run", "--config", p.as_str()])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            notes
                .iter()
                .any(|n| matches!(n, StartupNote::KeysUnreadable { .. })),
            "{notes:?}"
        );
    }

    #[test]
    fn edge_api_given_anywhere_counts() {
        for args in [
            &["ringtun", "--edge-api", "10.0.0.1:7800", "tunnel", "run"][..],
            &["ringtun", "tunnel", "run", "--edge-api", "10.0.0.1:7800"],
        ] {
            let (cli, _) = parse_args(args.iter().copied()).unwrap_or_else(|e| panic!("{e}"));
            assert!(cli.global.edge_api_given, "{args:?}");
        }
        let (cli, _) = parse_args(["ringtun", "tunnel", "run"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(!cli.global.edge_api_given);
    }

    #[test]
    fn flag_keys_are_known() {
        for k in [
            "metrics",
            "loglevel",
            "logfile",
            "pidfile",
            "no-autoupdate",
            "protocol",
        ] {
            assert!(is_flag_key(k), "{k}");
        }
        assert!(!is_flag_key("warp-routing"));
    }
}
