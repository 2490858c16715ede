//! Where a node's settings come from: `keel dev` and `keel start` take every
//! setting as a flag, as a `KEEL_<FLAG>` environment variable (etcd's
//! `ETCD_*`), and as a key of a TOML file named by `--config-file` (etcd's
//! `--config-file`, Kafka's `server.properties`, Cassandra's
//! `cassandra.yaml`). A flag beats its variable, a variable beats the file,
//! the file beats the built-in default; `--print-config` shows the effective
//! settings and where each came from.
//!
//! The file's keys are the flags' names without the dashes in front
//! (`data-dir = "/var/lib/keel"`, `num-partitions = 3`, `client-cert-auth =
//! true`); a key that is not a flag is an error that names it. The file's
//! values enter clap as if typed before the command line's own (each node
//! subcommand overrides a repeated flag with its last occurrence), so clap
//! checks them exactly as it checks flags: ranges, choices and `requires`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};

use crate::Cli;

/// The subcommands that run a node and take these settings.
const NODE_COMMANDS: [&str; 2] = ["dev", "start"];

/// Flags that are about this invocation, not the node: never in a file, not
/// printed by --print-config.
const NOT_SETTINGS: [&str; 3] = ["help", "config_file", "print_config"];

/// A setting's origin, for --print-config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env(String),
    File(PathBuf),
    Default,
}

/// The parsed command line, and for a node command the effective settings
/// behind it.
pub struct Parsed {
    pub cli: Cli,
    pub node: Option<Settings>,
}

/// Every setting of a node command: its flag name, its value (None: unset),
/// and where the value came from.
pub struct Settings {
    pub rows: Vec<Setting>,
}

pub struct Setting {
    /// The flag's long name, which is also its key in a config file.
    pub name: String,
    pub value: Option<String>,
    pub source: Source,
    /// A switch (`--tls`), written as a bare flag when on.
    pub switch: bool,
}

/// `KEEL_DATA_DIR` for the flag `--data-dir`.
pub fn env_name(flag: &str) -> String {
    format!("KEEL_{}", flag.replace('-', "_").to_uppercase())
}

/// The command with a `KEEL_<FLAG>` variable behind every setting of the node
/// commands, and a repeated flag taking its last value there.
fn command() -> clap::Command {
    let mut cmd = Cli::command();
    for name in NODE_COMMANDS {
        cmd = cmd.mut_subcommand(name, |sc| {
            let ids: Vec<(String, String)> = sc
                .get_arguments()
                .filter(|a| a.get_id() != "help")
                .filter_map(|a| Some((a.get_id().to_string(), a.get_long()?.to_string())))
                .collect();
            let mut sc = sc.args_override_self(true);
            for (id, long) in ids {
                // clap keeps &'static names; these few are made once a run.
                let env: &'static str = Box::leak(env_name(&long).into_boxed_str());
                sc = sc.mut_arg(id, |a| a.env(env));
            }
            sc
        });
    }
    cmd
}

/// Parses the process's own arguments.
pub fn parse() -> Result<Parsed> {
    parse_from(std::env::args_os().collect(), |k| std::env::var_os(k))
}

/// Parses `argv` with `env` as the environment (tests pass their own).
pub fn parse_from(argv: Vec<OsString>, env: impl Fn(&str) -> Option<OsString>) -> Result<Parsed> {
    let cmd = command();
    let sub = argv.get(1).and_then(|s| s.to_str()).unwrap_or_default();
    if !NODE_COMMANDS.contains(&sub) {
        let m = cmd.get_matches_from(argv);
        let cli = Cli::from_arg_matches(&m).unwrap_or_else(|e| e.exit());
        return Ok(Parsed { cli, node: None });
    }
    // First the command line and the environment alone, to learn which file
    // to read and which settings the flags give.
    let first = cmd.clone().get_matches_from(argv.clone());
    let first = first.subcommand_matches(sub).expect("a node subcommand");
    let node_cmd = cmd
        .find_subcommand(sub)
        .expect("node subcommands exist")
        .clone();
    let file = first.get_one::<PathBuf>("config_file").cloned();
    let mut from_file = BTreeMap::new();
    let mut file_args: Vec<OsString> = Vec::new();
    if let Some(path) = &file {
        let entries = read_file(path, &node_cmd)?;
        for (name, value) in entries {
            let arg = node_cmd
                .get_arguments()
                .find(|a| a.get_long() == Some(name.as_str()))
                .expect("read_file checked the key");
            let id = arg.get_id().as_str();
            // A flag or a variable beats the file.
            if first.value_source(id) == Some(ValueSource::CommandLine)
                || env(&env_name(&name)).is_some()
            {
                continue;
            }
            match value {
                FileValue::Switch(true) => file_args.push(format!("--{name}").into()),
                FileValue::Switch(false) => {}
                FileValue::Text(v) => {
                    file_args.push(format!("--{name}").into());
                    file_args.push(v.into());
                }
            }
            from_file.insert(id.to_string(), path.clone());
        }
    }
    let mut full: Vec<OsString> = argv[..2].to_vec();
    full.extend(file_args);
    full.extend(argv[2..].iter().cloned());
    let m = cmd.get_matches_from(full);
    let cli = Cli::from_arg_matches(&m).unwrap_or_else(|e| e.exit());
    let node_m = m.subcommand_matches(sub).expect("a node subcommand");
    let settings = settings(&node_cmd, node_m, &from_file);
    Ok(Parsed {
        cli,
        node: Some(settings),
    })
}

enum FileValue {
    Switch(bool),
    Text(String),
}

/// The file's keys, checked against the node command's flags: every unknown
/// key is named in one error.
fn read_file(path: &Path, node_cmd: &clap::Command) -> Result<Vec<(String, FileValue)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read the config file {}", path.display()))?;
    parse_file(&text, node_cmd).with_context(|| format!("config file {}", path.display()))
}

fn parse_file(text: &str, node_cmd: &clap::Command) -> Result<Vec<(String, FileValue)>> {
    let table: toml::Table = text.parse().context("not valid TOML")?;
    let mut unknown = Vec::new();
    let mut out = Vec::new();
    for (key, value) in table {
        let arg = node_cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()));
        let Some(arg) = arg.filter(|a| !NOT_SETTINGS.contains(&a.get_id().as_str())) else {
            unknown.push(key);
            continue;
        };
        let switch = matches!(arg.get_action(), ArgAction::SetTrue);
        let v = match (&value, switch) {
            (toml::Value::Boolean(b), true) => FileValue::Switch(*b),
            (_, true) => bail!("{key} is a switch: write {key} = true or {key} = false"),
            (toml::Value::String(s), false) => FileValue::Text(s.clone()),
            (toml::Value::Integer(i), false) => FileValue::Text(i.to_string()),
            (toml::Value::Float(f), false) => FileValue::Text(f.to_string()),
            (toml::Value::Boolean(b), false) => FileValue::Text(b.to_string()),
            (_, false) => bail!("{key}: expected a string, a number or a boolean"),
        };
        out.push((key, v));
    }
    if !unknown.is_empty() {
        bail!(
            "unknown key{} {}: each key is the name of a `keel start` flag without its dashes (keel start --help)",
            if unknown.len() == 1 { "" } else { "s" },
            unknown.join(", ")
        );
    }
    Ok(out)
}

fn settings(
    node_cmd: &clap::Command,
    m: &ArgMatches,
    from_file: &BTreeMap<String, PathBuf>,
) -> Settings {
    let mut rows = Vec::new();
    for arg in node_cmd.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if NOT_SETTINGS.contains(&id) {
            continue;
        }
        let value = m
            .get_raw(id)
            .and_then(|mut v| v.next_back())
            .map(|v| v.to_string_lossy().into_owned());
        let source = match (from_file.get(id), m.value_source(id)) {
            (Some(path), Some(ValueSource::CommandLine)) => Source::File(path.clone()),
            (_, Some(ValueSource::CommandLine)) => Source::Flag,
            (_, Some(ValueSource::EnvVariable)) => Source::Env(env_name(long)),
            _ => Source::Default,
        };
        rows.push(Setting {
            name: long.to_string(),
            value,
            source,
            switch: matches!(arg.get_action(), ArgAction::SetTrue),
        });
    }
    Settings { rows }
}

impl Settings {
    /// The settings as a TOML file would give them, each with its origin in a
    /// comment; one that is unset is a comment alone. The output is itself a
    /// valid config file.
    pub fn render(&self) -> String {
        let width = self
            .rows
            .iter()
            .map(|r| r.name.len() + r.value.as_deref().map_or(0, toml_value_len))
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for r in &self.rows {
            let from = match &r.source {
                Source::Flag => "flag".to_string(),
                Source::Env(name) => format!("environment {name}"),
                Source::File(path) => format!("file {}", path.display()),
                Source::Default => "default".to_string(),
            };
            match &r.value {
                Some(v) => {
                    let line = format!("{} = {}", r.name, toml_value(v, r.switch));
                    out.push_str(&format!("{line:<w$}  # {from}\n", w = width + 3));
                }
                None => out.push_str(&format!("# {} is not set\n", r.name)),
            }
        }
        out
    }

    /// The settings a child node of `keel dev --nodes N` is given, as flags:
    /// every one not at its default, less those each node has its own of.
    pub fn forwarded(&self, per_node: &[&str]) -> Vec<OsString> {
        let mut out = Vec::new();
        for r in &self.rows {
            if r.source == Source::Default || per_node.contains(&r.name.as_str()) {
                continue;
            }
            match (&r.value, r.switch) {
                (Some(v), true) if v == "true" => out.push(format!("--{}", r.name).into()),
                (Some(_), true) | (None, _) => {}
                (Some(v), false) => {
                    out.push(format!("--{}", r.name).into());
                    out.push(v.into());
                }
            }
        }
        out
    }
}

/// A value as TOML writes it: numbers and booleans bare, the rest quoted.
fn toml_value(v: &str, switch: bool) -> String {
    let bare = switch
        || v.parse::<i64>().is_ok()
        || (v.parse::<f64>().is_ok() && v.chars().all(|c| c.is_ascii_digit() || c == '.'));
    if bare {
        v.to_string()
    } else {
        // A JSON string is a TOML basic string: the same escapes (\" \\
        // \n \uXXXX ...), and serde_json writes no others.
        serde_json::to_string(v).expect("a string serializes")
    }
}

fn toml_value_len(v: &str) -> usize {
    toml_value(v, false).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Parsed> {
        let env: Vec<(String, OsString)> =
            env.iter().map(|(k, v)| (k.to_string(), v.into())).collect();
        parse_from(
            std::iter::once("keel")
                .chain(args.iter().copied())
                .map(OsString::from)
                .collect(),
            move |k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
        )
    }

    fn setting<'a>(p: &'a Parsed, name: &str) -> &'a Setting {
        p.node
            .as_ref()
            .unwrap()
            .rows
            .iter()
            .find(|r| r.name == name)
            .unwrap()
    }

    /// A config file holding `text`, in a directory that lives as long as
    /// the returned guard.
    fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keel.toml");
        std::fs::write(&file, text).unwrap();
        (dir, file)
    }

    #[test]
    fn every_setting_has_its_variable() {
        assert_eq!(env_name("data-dir"), "KEEL_DATA_DIR");
        let cmd = command();
        for sub in NODE_COMMANDS {
            for a in cmd.find_subcommand(sub).unwrap().get_arguments() {
                if a.get_id() == "help" {
                    continue;
                }
                let long = a.get_long().unwrap();
                assert_eq!(
                    a.get_env().map(|e| e.to_string_lossy().into_owned()),
                    Some(env_name(long)),
                    "{sub} --{long}"
                );
            }
        }
    }

    #[test]
    fn a_flag_beats_the_file_which_beats_the_default() {
        // Variables are clap's own `env`, read from the process environment:
        // their rank is checked end to end (tests/interop/test_config.py),
        // not here, where tests share one environment.
        let (_dir, file) =
            config_file("num-partitions = 3\nrack = \"r-file\"\nclient-cert-auth = false\n");
        let p = parse(
            &[
                "start",
                "--config-file",
                file.to_str().unwrap(),
                "--rack",
                "r-flag",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            setting(&p, "num-partitions").source,
            Source::File(file.clone())
        );
        assert_eq!(setting(&p, "num-partitions").value.as_deref(), Some("3"));
        assert_eq!(setting(&p, "rack").source, Source::Flag);
        assert_eq!(setting(&p, "rack").value.as_deref(), Some("r-flag"));
        assert_eq!(setting(&p, "node-id").source, Source::Default);
        let crate::Command::Start(args) = p.cli.command else {
            panic!("not start")
        };
        assert_eq!(args.num_partitions, 3);
        assert_eq!(args.rack, "r-flag");
        assert!(!args.client_cert_auth);
    }

    #[test]
    fn a_variable_set_steps_the_file_aside() {
        let (_dir, file) = config_file("num-partitions = 3\n");
        // The parser sees KEEL_NUM_PARTITIONS set: the file's value does not
        // enter as a flag, so clap's own reading of the variable decides.
        let p = parse(
            &["start", "--config-file", file.to_str().unwrap()],
            &[("KEEL_NUM_PARTITIONS", "7")],
        )
        .unwrap();
        assert_ne!(setting(&p, "num-partitions").source, Source::File(file));
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_errors_that_name_them() {
        let (_dir, file) = config_file("data-dir = \"x\"\nnum_partitions = 3\nlisteners = \"y\"\n");
        let e = parse(&["start", "--config-file", file.to_str().unwrap()], &[])
            .err()
            .unwrap();
        let e = format!("{e:#}");
        assert!(e.contains("unknown keys listeners, num_partitions"), "{e}");
        std::fs::write(&file, "tls = \"yes\"\n").unwrap();
        let e = parse(&["dev", "--config-file", file.to_str().unwrap()], &[])
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("tls is a switch"), "{e:#}");
        std::fs::write(&file, "config-file = \"other.toml\"\n").unwrap();
        assert!(parse(&["start", "--config-file", file.to_str().unwrap()], &[]).is_err());
    }

    #[test]
    fn keel_dev_forwards_what_it_was_given_less_each_nodes_own() {
        let p = parse(
            &[
                "dev",
                "--nodes",
                "3",
                "--num-partitions",
                "3",
                "--data-dir",
                "/x",
                "--no-auto-create-topics",
            ],
            &[],
        )
        .unwrap();
        let fwd: Vec<String> = p
            .node
            .unwrap()
            .forwarded(&["nodes", "data-dir"])
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(fwd, ["--num-partitions", "3", "--no-auto-create-topics"]);
    }

    #[test]
    fn print_config_output_is_itself_a_config_file() {
        let p = parse(&["start", "--node-id", "2", "--rack", "a \"b\""], &[]).unwrap();
        let text = p.node.as_ref().unwrap().render();
        assert!(text.contains("node-id = 2"), "{text}");
        assert!(text.contains("# flag"), "{text}");
        assert!(text.contains("# cert-file is not set"), "{text}");
        let cmd = command();
        let back = parse_file(&text, cmd.find_subcommand("start").unwrap()).unwrap();
        let rack = back.iter().find(|(k, _)| k == "rack").unwrap();
        assert!(matches!(&rack.1, FileValue::Text(v) if v == "a \"b\""));
    }
}
