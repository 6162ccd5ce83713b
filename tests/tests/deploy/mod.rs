//! Helpers of `deploy_files.rs`: reading the deployment files (YAML with merge keys, the
//! Dockerfile, systemd units), loading configurations as the binaries do, asking the real
//! binaries' `--help` whether a command line is theirs, and minting the PKI a deployment names.

use gatehouse_gateway::config::Config as GatewayConfig;
use gatehouse_hub::HubConfig;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use yaml_rust2::{Yaml, YamlLoader, yaml::Hash};

pub const HUB: &str = "gatehouse-hub";
pub const GATEWAY: &str = "gatehouse-gateway";
pub const SIM: &str = "gatehouse-sim";

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn deploy(rel: &str) -> PathBuf {
    repo().join("deploy").join(rel)
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A workspace binary, built beside this test (`target/<profile>/`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("this test's path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} not found: build the binaries first (`cargo build --bins`)",
        path.display()
    );
    path
}

// ---------------------------------------------------------------- YAML

/// Every document of a YAML file, `<<` merge keys resolved (the own keys win).
pub fn yaml_docs(path: &Path) -> Vec<Yaml> {
    let docs = YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    docs.into_iter().map(merge_keys).filter(|d| !d.is_null()).collect()
}

pub fn merge_keys(y: Yaml) -> Yaml {
    match y {
        Yaml::Hash(h) => {
            let mut out = Hash::new();
            let mut merged = Vec::new();
            for (k, v) in h {
                if k.as_str() == Some("<<") {
                    match v {
                        Yaml::Array(a) => merged.extend(a),
                        other => merged.push(other),
                    }
                } else {
                    out.insert(k, merge_keys(v));
                }
            }
            for m in merged {
                if let Yaml::Hash(mh) = merge_keys(m) {
                    for (k, v) in mh {
                        out.entry(k).or_insert(v);
                    }
                }
            }
            Yaml::Hash(out)
        }
        Yaml::Array(a) => Yaml::Array(a.into_iter().map(merge_keys).collect()),
        other => other,
    }
}

/// A scalar as text (`8080` and `"8080"` alike); `None` for anything else.
pub fn text(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A command as a list (a string is split on white space, as compose does).
pub fn words(y: &Yaml) -> Vec<String> {
    match y {
        Yaml::Array(a) => a.iter().map(|w| text(w).expect("a command word is a scalar")).collect(),
        Yaml::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

pub fn list(y: &Yaml) -> &[Yaml] {
    y.as_vec().map(Vec::as_slice).unwrap_or_default()
}

pub fn entries(y: &Yaml) -> Vec<(String, &Yaml)> {
    y.as_hash()
        .map(|h| h.iter().filter_map(|(k, v)| Some((text(k)?, v))).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------- configurations

/// A hub configuration as the binary would load it. `hub.database_env` would read the
/// environment here: it is taken out (and returned) and a URL stands in for it.
pub fn load_hub(toml_text: &str, origin: &str) -> (HubConfig, Option<String>) {
    let mut table: toml::Table = toml::from_str(toml_text).unwrap_or_else(|e| panic!("{origin}: {e}"));
    let hub = table
        .get_mut("hub")
        .and_then(toml::Value::as_table_mut)
        .unwrap_or_else(|| panic!("{origin}: no [hub]"));
    let env = hub
        .remove("database_env")
        .map(|v| v.as_str().expect("database_env is a string").to_owned());
    if env.is_some() {
        hub.insert("database".into(), "postgres://check@localhost/check".into());
    }
    let text = toml::to_string(&table).expect("re-serialising");
    let config = HubConfig::from_toml(&text).unwrap_or_else(|e| panic!("{origin}: {e}"));
    (config, env)
}

pub fn load_gateway(toml_text: &str, origin: &str) -> GatewayConfig {
    GatewayConfig::from_toml(toml_text).unwrap_or_else(|e| panic!("{origin}: {e}"))
}

pub enum Loaded {
    Hub,
    Gateway,
    Other,
}

/// Loads a TOML document with the loader its top-level section names.
pub fn load_any(toml_text: &str, origin: &str) -> Loaded {
    let table: toml::Table = toml::from_str(toml_text).unwrap_or_else(|e| panic!("{origin}: {e}"));
    if table.contains_key("hub") {
        load_hub(toml_text, origin);
        Loaded::Hub
    } else if table.contains_key("gateway") {
        load_gateway(toml_text, origin);
        Loaded::Gateway
    } else {
        Loaded::Other
    }
}

pub fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

// ---------------------------------------------------------------- command lines

/// What `--help` lists for one (sub)command: its flags (with whether each takes a value)
/// and its subcommands.
pub struct Help {
    pub flags: BTreeMap<String, bool>,
    pub commands: BTreeSet<String>,
}

pub fn help(bin: &str, chain: &[String]) -> Help {
    let out = Command::new(binary(bin))
        .args(chain)
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("running {bin}: {e}"));
    assert!(out.status.success(), "{bin} {} --help failed", chain.join(" "));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut help = Help {
        flags: BTreeMap::new(),
        commands: BTreeSet::new(),
    };
    let mut section = "";
    for line in text.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line;
            continue;
        }
        let trimmed = line.trim_start();
        match section {
            "Commands:" if line.starts_with("  ") && !trimmed.is_empty() => {
                help.commands
                    .insert(trimmed.split_whitespace().next().unwrap_or_default().to_owned());
            }
            "Options:" if trimmed.starts_with('-') => {
                let tokens: Vec<&str> = trimmed.split_whitespace().collect();
                for (i, token) in tokens.iter().enumerate() {
                    if !token.starts_with('-') {
                        break;
                    }
                    let takes = tokens.get(i + 1).is_some_and(|t| t.starts_with('<'));
                    help.flags.insert(token.trim_end_matches(',').to_owned(), takes);
                }
            }
            _ => {}
        }
    }
    help
}

/// A command line checked against the binary: the subcommands it names and each flag's value.
#[derive(Debug)]
pub struct Invocation {
    pub subcommands: Vec<String>,
    pub flags: Vec<(String, String)>,
}

impl Invocation {
    pub fn values(&self, flag: &str) -> Vec<&str> {
        self.flags
            .iter()
            .filter(|(f, _)| f == flag)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn value(&self, flag: &str) -> Option<&str> {
        self.values(flag).first().copied()
    }
}

pub fn check_command(origin: &str, bin: &str, args: &[String]) -> Invocation {
    let mut chain: Vec<String> = Vec::new();
    let mut current = help(bin, &chain);
    let mut flags = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg.starts_with('-') {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (arg.as_str(), None),
            };
            let takes = *current
                .flags
                .get(name)
                .unwrap_or_else(|| panic!("{origin}: `{bin} {}` has no flag {name}", chain.join(" ")));
            let value = match (takes, inline) {
                (true, Some(v)) => v,
                (true, None) => {
                    i += 1;
                    args.get(i)
                        .cloned()
                        .unwrap_or_else(|| panic!("{origin}: {name} needs a value"))
                }
                (false, _) => String::new(),
            };
            flags.push((name.to_owned(), value));
        } else {
            assert!(
                current.commands.contains(arg),
                "{origin}: `{bin} {}` has no subcommand {arg}",
                chain.join(" ")
            );
            chain.push(arg.clone());
            current = help(bin, &chain);
        }
        i += 1;
    }
    Invocation {
        subcommands: chain,
        flags,
    }
}

pub fn bin_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_owned()
}

// ---------------------------------------------------------------- the Dockerfile

pub struct Dockerfile {
    /// The entrypoint's binary and the default arguments (CMD).
    pub entrypoint: String,
    pub cmd: Vec<String>,
    pub copied_bins: BTreeSet<String>,
    pub built_bins: BTreeSet<String>,
    pub user: String,
    /// Directories made in the runtime image and given to its user.
    pub owned_dirs: BTreeSet<String>,
    pub exposed: BTreeSet<u16>,
}

pub fn json_words(line: &str) -> Vec<String> {
    serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("Dockerfile: {line}: {e}"))
}

pub fn dockerfile() -> Dockerfile {
    let text = read(&deploy("Dockerfile")).replace("\\\n", " ");
    let mut d = Dockerfile {
        entrypoint: String::new(),
        cmd: Vec::new(),
        copied_bins: BTreeSet::new(),
        built_bins: BTreeSet::new(),
        user: String::new(),
        owned_dirs: BTreeSet::new(),
        exposed: BTreeSet::new(),
    };
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        let (instr, rest) = line.split_once(' ').unwrap_or((line, ""));
        let tokens: Vec<&str> = rest.split_whitespace().collect();
        match instr {
            "ENTRYPOINT" => d.entrypoint = bin_name(&json_words(rest)[0]),
            "CMD" => d.cmd = json_words(rest),
            "USER" => d.user = rest.trim().to_owned(),
            "EXPOSE" => d
                .exposed
                .extend(tokens.iter().map(|p| p.parse::<u16>().expect("EXPOSE port"))),
            "COPY" if rest.starts_with("--from=") => {
                d.copied_bins
                    .extend(tokens[1..tokens.len() - 1].iter().map(|p| bin_name(p)));
            }
            "RUN" => {
                for (i, t) in tokens.iter().enumerate() {
                    if *t == "--bin" {
                        d.built_bins.insert(tokens[i + 1].to_owned());
                    }
                    if *t == "chown" {
                        d.owned_dirs.extend(
                            tokens[i + 2..]
                                .iter()
                                .take_while(|t| t.starts_with('/'))
                                .map(|t| t.to_string()),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    d
}

/// The `[[bin]]` names of the workspace's members.
pub fn workspace_bins() -> BTreeSet<String> {
    let root: toml::Table = toml::from_str(&read(&repo().join("Cargo.toml"))).expect("Cargo.toml");
    let members = root["workspace"]["members"].as_array().expect("members");
    let mut bins = BTreeSet::new();
    for m in members {
        let manifest: toml::Table =
            toml::from_str(&read(&repo().join(m.as_str().expect("member")).join("Cargo.toml"))).expect("manifest");
        for bin in manifest
            .get("bin")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
        {
            bins.insert(bin["name"].as_str().expect("bin name").to_owned());
        }
    }
    bins
}

// ---------------------------------------------------------------- the PKI

/// Runs `gatehouse-hub certs` with a deployment's arguments but `--out` in `dir`: the files a
/// deployment's paths name must be among those it writes.
pub fn mint(origin: &str, invocation: &Invocation, dir: &Path) {
    assert_eq!(invocation.subcommands, ["certs"], "{origin}");
    let mut args = vec!["certs".to_owned(), "--out".to_owned(), dir.display().to_string()];
    for (flag, value) in &invocation.flags {
        if flag != "--out" {
            args.extend([flag.clone(), value.clone()]);
        }
    }
    let out = Command::new(binary(HUB)).args(&args).output().expect("running certs");
    assert!(
        out.status.success(),
        "{origin}: certs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `path` re-rooted from `mount` (a directory in the container) to `dir`, where the file must exist.
pub fn minted(origin: &str, path: &Path, mount: &str, dir: &Path) -> PathBuf {
    let rel = path
        .strip_prefix(mount)
        .unwrap_or_else(|_| panic!("{origin}: {} is not under {mount}", path.display()));
    let local = dir.join(rel);
    assert!(
        local.is_file(),
        "{origin}: {} is not a file `certs` writes",
        path.display()
    );
    local
}

pub fn hub_tls_paths(hub: &HubConfig) -> Vec<PathBuf> {
    let tls = hub.tls.as_ref().expect("[tls]");
    assert!(!tls.plaintext, "a deployment's hub speaks TLS");
    [&tls.cert, &tls.key, &tls.client_ca, &tls.crl]
        .into_iter()
        .map(|p| p.clone().expect("tls.cert, key, client_ca and crl are set"))
        .collect()
}

pub fn uplink_paths(gw: &GatewayConfig) -> Vec<PathBuf> {
    [&gw.uplink.ca, &gw.uplink.cert, &gw.uplink.key]
        .into_iter()
        .map(|p| p.clone().expect("uplink.ca, cert and key are set"))
        .collect()
}

// ---------------------------------------------------------------- compose

pub struct Mount {
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

impl Mount {
    pub fn named_volume(&self) -> bool {
        !self.source.starts_with('.') && !self.source.starts_with('/')
    }
}

pub struct Service {
    pub name: String,
    pub bin: String,
    pub invocation: Invocation,
    pub mounts: Vec<Mount>,
    pub yaml: Yaml,
}

impl Service {
    /// The mount whose target holds `path`.
    pub fn mount_of(&self, path: &Path) -> &Mount {
        self.mounts
            .iter()
            .filter(|m| path.starts_with(&m.target))
            .max_by_key(|m| m.target.len())
            .unwrap_or_else(|| panic!("compose {}: nothing is mounted at {}", self.name, path.display()))
    }

    /// The file mounted at this service's `--config`, read from deploy/compose/.
    pub fn config_text(&self) -> String {
        let path = self.invocation.value("--config").expect("--config");
        let mount = self.mount_of(Path::new(path));
        assert_eq!(
            mount.target, path,
            "compose {}: the config file is mounted itself",
            self.name
        );
        assert!(
            mount.read_only,
            "compose {}: the config is mounted read-only",
            self.name
        );
        read(&deploy("compose").join(&mount.source))
    }

    /// The port of `http://127.0.0.1:PORT/PATH` in the healthcheck, and the path.
    pub fn healthcheck(&self) -> (u16, String) {
        let test = words(&self.yaml["healthcheck"]["test"]);
        let url = test
            .iter()
            .find_map(|w| w.strip_prefix("http://127.0.0.1:"))
            .unwrap_or_else(|| panic!("compose {}: no healthcheck URL", self.name));
        let (port, path) = url.split_once('/').expect("URL with a path");
        (port.parse().expect("port"), format!("/{path}"))
    }
}

pub fn compose_services() -> (Yaml, Vec<Service>) {
    let d = dockerfile();
    let doc = yaml_docs(&deploy("compose/compose.yaml")).remove(0);
    let mut services = Vec::new();
    for (name, svc) in entries(&doc["services"]) {
        if svc["image"].as_str() != Some("gatehouse:dev") {
            continue;
        }
        let entry = words(&svc["entrypoint"]);
        let bin = entry
            .first()
            .map(|e| bin_name(e))
            .unwrap_or_else(|| d.entrypoint.clone());
        let args = if svc["command"].is_badvalue() {
            d.cmd.clone()
        } else {
            words(&svc["command"])
        };
        let origin = format!("compose {name}");
        let invocation = check_command(&origin, &bin, &args);
        let mounts = list(&svc["volumes"])
            .iter()
            .map(|v| {
                let v = v.as_str().expect("short volume syntax");
                let parts: Vec<&str> = v.split(':').collect();
                Mount {
                    source: parts[0].to_owned(),
                    target: parts[1].to_owned(),
                    read_only: parts.get(2) == Some(&"ro"),
                }
            })
            .collect();
        services.push(Service {
            name,
            bin,
            invocation,
            mounts,
            yaml: svc.clone(),
        });
    }
    (doc, services)
}

pub fn environment(svc: &Yaml) -> HashMap<String, String> {
    entries(&svc["environment"])
        .into_iter()
        .map(|(k, v)| (k, text(v).unwrap_or_default()))
        .collect()
}

// ---------------------------------------------------------------- Kubernetes

pub fn k8s_docs() -> Vec<(String, Yaml)> {
    let mut docs = Vec::new();
    let mut files = Vec::new();
    files_under(&deploy("k8s"), &mut files);
    files.sort();
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        docs.extend(yaml_docs(path).into_iter().map(|d| (name.clone(), d)));
    }
    docs
}

pub fn of_kind<'a>(docs: &'a [(String, Yaml)], kind: &str) -> Vec<&'a Yaml> {
    docs.iter()
        .filter(|(_, d)| d["kind"].as_str() == Some(kind))
        .map(|(_, d)| d)
        .collect()
}

/// Whether every label of `selector` is on `labels`.
pub fn selects(selector: &Yaml, labels: &Yaml) -> bool {
    let wanted = entries(selector);
    !wanted.is_empty() && wanted.iter().all(|(k, v)| labels[k.as_str()].as_str() == v.as_str())
}

// ---------------------------------------------------------------- systemd

pub const UNIT: &str = "gatehouse-gateway.service";

/// The unit's settings: key → every value given (in order).
pub fn unit_settings(text: &str) -> HashMap<String, Vec<String>> {
    let mut settings: HashMap<String, Vec<String>> = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            settings.entry(k.to_owned()).or_default().push(v.to_owned());
        }
    }
    settings
}

// ---------------------------------------------------------------- live: the probe paths

/// A TOML document with every path under `from` moved under `to`, and `edit` applied.
pub fn rerooted(toml_text: &str, from: &str, to: &Path, edit: impl FnOnce(&mut toml::Table)) -> String {
    pub fn walk(v: &mut toml::Value, from: &str, to: &Path) {
        match v {
            toml::Value::String(s) => {
                if let Ok(rel) = Path::new(s.as_str()).strip_prefix(from) {
                    *s = to.join(rel).display().to_string();
                }
            }
            toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| walk(v, from, to)),
            toml::Value::Array(a) => a.iter_mut().for_each(|v| walk(v, from, to)),
            _ => {}
        }
    }
    let mut value = toml::Value::Table(toml::from_str(toml_text).expect("TOML"));
    walk(&mut value, from, to);
    let toml::Value::Table(mut table) = value else {
        unreachable!("a table stays a table")
    };
    edit(&mut table);
    toml::to_string(&table).expect("TOML")
}

pub fn section<'a>(table: &'a mut toml::Table, name: &str) -> &'a mut toml::Table {
    table
        .get_mut(name)
        .and_then(toml::Value::as_table_mut)
        .expect("section")
}

pub async fn status(url: &str) -> Option<u16> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    Some(client.get(url).send().await.ok()?.status().as_u16())
}

/// The live test hub's database: SQLite in `dir`, or with `GATEHOUSE_TEST_BACKEND=postgres` a
/// fresh database on the server `GATEHOUSE_TEST_PG_URL` names (as the hub tests choose theirs;
/// named `gh_test_…`, which `.ci/run` drops), so the compose hub runs on PostgreSQL as deployed.
pub async fn test_database(dir: &Path) -> String {
    if std::env::var("GATEHOUSE_TEST_BACKEND").as_deref() != Ok("postgres") {
        return format!("sqlite://{}", dir.join("hub.db").display());
    }
    use sqlx::Connection as _;
    let admin =
        std::env::var("GATEHOUSE_TEST_PG_URL").expect("GATEHOUSE_TEST_PG_URL with GATEHOUSE_TEST_BACKEND=postgres");
    let name = format!(
        "gh_test_deploy_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("connecting to {admin}: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
    let mut url = url::Url::parse(&admin).expect("GATEHOUSE_TEST_PG_URL is a URL");
    url.set_path(&name);
    url.to_string()
}
