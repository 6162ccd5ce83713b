//! The deployment files in `deploy/` checked against the binaries they run, with no Docker
//! daemon or cluster: every configuration loads (files and ConfigMap-embedded TOML); every
//! subcommand and flag a file passes exists (asked of the real binaries' `--help`); every
//! port equals a listen port of the configuration it runs with; every path a configuration
//! or command names is mounted, minted or created; the probe paths answer on a real hub and a
//! real gateway started from the compose configuration with the PKI the compose `pki`
//! service mints (over mutual TLS); the Dockerfile copies the workspace's binaries and runs
//! as a non-root user; the systemd unit carries its hardening and passes
//! `systemd-analyze verify` where that tool exists.

mod deploy;

use gatehouse_gateway::config::Config as GatewayConfig;
use gatehouse_hub::HubConfig;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use yaml_rust2::Yaml;

use deploy::*;

#[test]
fn every_configuration_under_deploy_loads() {
    let mut files = Vec::new();
    files_under(&deploy(""), &mut files);
    let (mut hubs, mut gateways) = (0, 0);
    for path in &files {
        let origin = path.display().to_string();
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => match load_any(&read(path), &origin) {
                Loaded::Hub => hubs += 1,
                Loaded::Gateway => gateways += 1,
                // Vendor mappings are read by the gateway from its own file's tables.
                Loaded::Other => assert!(origin.contains("/vendor/"), "{origin}: neither [hub] nor [gateway]"),
            },
            Some("yaml") => {
                for doc in yaml_docs(path) {
                    if doc["kind"].as_str() != Some("ConfigMap") {
                        continue;
                    }
                    for (key, value) in entries(&doc["data"]) {
                        if key.ends_with(".toml") {
                            match load_any(
                                value.as_str().expect("ConfigMap data is text"),
                                &format!("{origin} {key}"),
                            ) {
                                Loaded::Hub => hubs += 1,
                                Loaded::Gateway => gateways += 1,
                                Loaded::Other => panic!("{origin} {key}: neither [hub] nor [gateway]"),
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    // deploy/hub*.toml, compose hub-a/hub-b, the k8s ConfigMap; gateway-a, compose gw-a/b/c, systemd.
    assert!(hubs >= 5, "{hubs} hub configurations found");
    assert!(gateways >= 5, "{gateways} gateway configurations found");
}

#[test]
fn the_dockerfile_ships_the_workspace_binaries_as_a_non_root_user() {
    let d = dockerfile();
    let bins = workspace_bins();
    assert_eq!(bins, BTreeSet::from([HUB.into(), GATEWAY.into(), SIM.into()]));
    assert_eq!(d.copied_bins, bins, "COPY --from=build");
    assert_eq!(d.built_bins, bins, "cargo build --bin");
    assert!(bins.contains(&d.entrypoint), "ENTRYPOINT {}", d.entrypoint);
    let uid = d.user.split(':').next().unwrap_or_default();
    assert!(
        !d.user.is_empty() && uid != "root" && uid != "0",
        "USER {:?} must name a non-root user",
        d.user
    );
    check_command("Dockerfile CMD", &d.entrypoint, &d.cmd);
    for dir in ["/var/lib/gatehouse", "/pki"] {
        assert!(d.owned_dirs.contains(dir), "{dir} is not made for the image's user");
    }
    // The hub's ports, as the compose and Kubernetes configurations set them.
    let (hub, _) = load_hub(&read(&deploy("compose/hub-a.toml")), "hub-a.toml");
    assert_eq!(
        d.exposed,
        BTreeSet::from([hub.hub.grpc_listen.port(), hub.hub.http_listen.port()])
    );
}

/// Compose's runnning whole: PostgreSQL, two hubs, three gateways and their devices, checked
/// against the binaries, the configurations and each other.
#[tokio::test]
async fn compose_matches_the_binaries_and_configurations() {
    let (doc, services) = compose_services();
    let declared: BTreeSet<String> = entries(&doc["volumes"]).into_iter().map(|(k, _)| k).collect();
    let all: BTreeSet<String> = entries(&doc["services"]).into_iter().map(|(k, _)| k).collect();
    for (name, svc) in entries(&doc["services"]) {
        let deps: Vec<String> = match &svc["depends_on"] {
            Yaml::Array(a) => a.iter().filter_map(text).collect(),
            h => entries(h).into_iter().map(|(k, _)| k).collect(),
        };
        for dep in deps {
            assert!(all.contains(&dep), "compose {name}: depends on unknown {dep}");
        }
    }

    // The one-shot PKI service, run for real.
    let pki = services
        .iter()
        .find(|s| s.invocation.subcommands == ["certs"])
        .expect("a certs service");
    let pki_dir = tempfile::tempdir().expect("tempdir");
    mint("compose pki", &pki.invocation, pki_dir.path());
    let pki_out = pki.invocation.value("--out").expect("--out");
    let pki_volume = &pki.mount_of(Path::new(pki_out)).source;
    let hub_names = pki.invocation.values("--hub-name");
    let minted_gateways = pki.invocation.values("--gateway");

    let mut hubs: HashMap<&str, HubConfig> = HashMap::new();
    let mut gateways: HashMap<&str, GatewayConfig> = HashMap::new();
    for s in &services {
        let origin = format!("compose {}", s.name);
        for m in s.mounts.iter().filter(|m| m.named_volume()) {
            assert!(
                declared.contains(&m.source),
                "{origin}: volume {} is not declared",
                m.source
            );
        }
        let pki_path = |p: &Path| {
            let mount = s.mount_of(p);
            assert_eq!(
                &mount.source,
                pki_volume,
                "{origin}: {} is not in the pki volume",
                p.display()
            );
            assert!(mount.read_only, "{origin}: the pki volume is mounted read-only here");
            minted(&origin, p, &mount.target, pki_dir.path());
        };
        match (s.bin.as_str(), s.invocation.subcommands.first().map(String::as_str)) {
            (HUB, None) => {
                let (hub, env) = load_hub(&s.config_text(), &origin);
                hub_tls_paths(&hub).iter().for_each(|p| pki_path(p));
                // The database URL from the environment hub.database_env names.
                let env = env.expect("compose hubs read hub.database_env");
                let url = environment(&s.yaml)
                    .remove(&env)
                    .unwrap_or_else(|| panic!("{origin}: {env} unset"));
                HubConfig::parse_database_url(&url).unwrap_or_else(|e| panic!("{origin}: {env}: {e}"));
                let pg = &doc["services"]["postgres"]["environment"];
                let expected = format!(
                    "postgres://{}:{}@postgres:5432/{}",
                    text(&pg["POSTGRES_USER"]).unwrap_or_default(),
                    text(&pg["POSTGRES_PASSWORD"]).unwrap_or_default(),
                    text(&pg["POSTGRES_DB"]).unwrap_or_default()
                );
                assert_eq!(url, expected, "{origin}: the URL names the postgres service's database");
                let (port, _) = s.healthcheck();
                assert_eq!(port, hub.hub.http_listen.port(), "{origin}: healthcheck port");
                // The other hub forwards changes to this service's name and HTTP port.
                let advertised = hub
                    .cluster
                    .advertise_http
                    .as_deref()
                    .unwrap_or_else(|| panic!("{origin}: cluster.advertise_http"));
                assert_eq!(
                    advertised,
                    format!("http://{}:{}", s.name, hub.hub.http_listen.port()),
                    "{origin}: cluster.advertise_http"
                );
                for p in list(&s.yaml["ports"]) {
                    let container: u16 = text(p).and_then(|p| p.rsplit(':').next()?.parse().ok()).expect("ports");
                    assert!(
                        [hub.hub.http_listen.port(), hub.hub.grpc_listen.port()].contains(&container),
                        "{origin}: port {container} is not one the hub listens on"
                    );
                }
                for g in &hub.gateways {
                    let id = format!("{}:{}", g.id, g.estate);
                    assert!(
                        minted_gateways.contains(&id.as_str()),
                        "{origin}: no certificate for {id}"
                    );
                }
                hubs.insert(&s.name, hub);
            }
            (GATEWAY, None) => {
                let gw = load_gateway(&s.config_text(), &origin);
                uplink_paths(&gw).iter().for_each(|p| pki_path(p));
                let data = s.mount_of(&gw.gateway.data_dir);
                assert!(
                    data.named_volume() && !data.read_only,
                    "{origin}: data_dir on a writable volume"
                );
                let (port, _) = s.healthcheck();
                assert_eq!(
                    Some(port),
                    gw.gateway.http_listen.map(|a| a.port()),
                    "{origin}: healthcheck port"
                );
                gateways.insert(&s.name, gw);
            }
            (HUB, Some("certs")) => {}
            (SIM, _) => {}
            other => panic!("{origin}: unexpected command {other:?}"),
        }
    }
    assert_eq!(hubs.len(), 2, "two hubs");
    // The two hubs differ in their name and address only: either may be the active one.
    let without_name = |s: &Service| {
        let mut t: toml::Table = toml::from_str(&s.config_text()).expect("TOML");
        let hub = t.get_mut("hub").and_then(toml::Value::as_table_mut).expect("[hub]");
        assert!(hub.remove("hub_id").is_some(), "compose {}: hub_id is set", s.name);
        let cluster = t
            .get_mut("cluster")
            .and_then(toml::Value::as_table_mut)
            .expect("[cluster]");
        assert!(
            cluster.remove("advertise_http").is_some(),
            "compose {}: advertise_http is set",
            s.name
        );
        t
    };
    let hub_services: Vec<&Service> = services.iter().filter(|s| hubs.contains_key(s.name.as_str())).collect();
    assert_eq!(
        without_name(hub_services[0]),
        without_name(hub_services[1]),
        "the hubs' files differ"
    );
    let ids: BTreeSet<&str> = hubs.values().map(|h| h.hub.hub_id.as_str()).collect();
    assert_eq!(ids.len(), 2, "each hub its own hub_id");
    assert_eq!(gateways.len(), 3, "three gateways");

    // Gateways list every hub, by a name in the hub certificate, on its gRPC port; every hub
    // accepts every gateway.
    for (name, gw) in &gateways {
        assert_eq!(gw.gateway.hubs.len(), hubs.len(), "compose {name}: lists both hubs");
        for url in &gw.gateway.hubs {
            let authority = url.strip_prefix("https://").expect("https");
            let (host, port) = authority.split_once(':').expect("host:port");
            let hub = hubs
                .get(host)
                .unwrap_or_else(|| panic!("compose {name}: {host} is not a hub service"));
            assert_eq!(
                port.parse::<u16>().ok(),
                Some(hub.hub.grpc_listen.port()),
                "compose {name}: {url}"
            );
            assert!(
                hub_names.contains(&host),
                "compose {name}: {host} is not in the hub certificate"
            );
        }
        for (hub_name, hub) in &hubs {
            assert!(
                hub.gateways
                    .iter()
                    .any(|g| g.id == gw.gateway.id && g.estate == gw.gateway.estate),
                "compose {hub_name} does not accept {name}"
            );
        }
    }

    // Simulated devices: in their gateway's network namespace, on its broker, with a
    // configured id and the password its hash was made from; the pump room where the gateway polls.
    let mut devices = 0;
    for s in services.iter().filter(|s| s.bin == SIM) {
        let origin = format!("compose {}", s.name);
        let mode = s.yaml["network_mode"].as_str().unwrap_or_default();
        let gw_name = mode
            .strip_prefix("service:")
            .unwrap_or_else(|| panic!("{origin}: network_mode"));
        let gw = gateways
            .get(gw_name)
            .unwrap_or_else(|| panic!("{origin}: {gw_name} is not a gateway"));
        match s.invocation.subcommands[0].as_str() {
            "pump-room" => {
                let listen = s.invocation.value("--listen").expect("--listen");
                assert!(
                    gw.devices
                        .iter()
                        .any(|d| d.modbus.as_ref().is_some_and(|m| m.address == listen)),
                    "{origin}: {gw_name} polls no Modbus device at {listen}"
                );
            }
            _ => {
                let broker: SocketAddr = s.invocation.value("--broker").expect("--broker").parse().expect("addr");
                let mqtt = gw.mqtt.as_ref().expect("[mqtt]").listen;
                assert_eq!(broker.port(), mqtt.port(), "{origin}: broker port");
                assert!(broker.ip().is_loopback() && (mqtt.ip() == broker.ip() || mqtt.ip().is_unspecified()));
                let id = s.invocation.value("--id").expect("--id");
                let password = s.invocation.value("--password").expect("--password");
                let hashes = gw
                    .devices
                    .iter()
                    .filter_map(|d| Some((d.id.clone(), d.mqtt_password_hash.clone()?)))
                    .collect();
                let credentials = gatehouse_gateway::adapters::mqtt::auth::Credentials::new(hashes);
                assert!(
                    credentials.verify(id, password.as_bytes()).await,
                    "{origin}: {gw_name} has no device {id} with this password"
                );
                devices += 1;
            }
        }
    }
    assert!(devices >= 3, "{devices} simulated MQTT devices");
}

#[test]
fn kubernetes_manifests_match_the_hub() {
    let docs = k8s_docs();
    // kustomization.yaml lists every other manifest.
    let kustomization = docs
        .iter()
        .find(|(f, _)| f == "kustomization.yaml")
        .expect("kustomization")
        .1
        .clone();
    let listed: BTreeSet<String> = list(&kustomization["resources"]).iter().filter_map(text).collect();
    let files: BTreeSet<String> = docs
        .iter()
        .map(|(f, _)| f.clone())
        .filter(|f| f != "kustomization.yaml")
        .collect();
    assert_eq!(listed, files, "kustomization.yaml resources");

    let deployments = of_kind(&docs, "Deployment");
    assert_eq!(deployments.len(), 1);
    let dep = deployments[0];
    assert_eq!(dep["spec"]["replicas"].as_i64(), Some(2), "two hubs");
    // Both hubs are ready (the standby serves operators): roll one at a time, never below two.
    assert_eq!(dep["spec"]["strategy"]["type"].as_str(), Some("RollingUpdate"));
    assert_eq!(
        dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"].as_i64(),
        Some(0)
    );
    let pod = &dep["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    assert!(
        selects(&dep["spec"]["selector"]["matchLabels"], labels),
        "Deployment selector"
    );
    let spec = &pod["spec"];
    assert_eq!(spec["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let uid = dockerfile().user.split(':').next().unwrap_or_default().to_owned();
    assert_eq!(
        text(&spec["securityContext"]["runAsUser"]),
        Some(uid),
        "the image's user"
    );
    let containers = list(&spec["containers"]);
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert!(c["command"].is_badvalue(), "the image's entrypoint runs");
    let invocation = check_command("k8s hub", &dockerfile().entrypoint, &words(&c["args"]));
    assert_eq!(dockerfile().entrypoint, HUB);

    // Volumes: name → (mountPath, the volume's definition).
    let volumes: HashMap<String, &Yaml> = list(&spec["volumes"])
        .iter()
        .map(|v| (text(&v["name"]).expect("volume name"), v))
        .collect();
    let mounted = |path: &Path| -> (String, &Yaml, String) {
        list(&c["volumeMounts"])
            .iter()
            .filter_map(|m| {
                let at = text(&m["mountPath"])?;
                let rel = path.strip_prefix(&at).ok()?.display().to_string();
                Some((at, volumes[&text(&m["name"])?], rel))
            })
            .max_by_key(|(at, _, _)| at.len())
            .unwrap_or_else(|| panic!("k8s hub: nothing is mounted at {}", path.display()))
    };
    let item_key = |volume: &Yaml, source: &str, rel: &str| -> String {
        let items = list(&volume[source]["items"]);
        items
            .iter()
            .find(|i| i["path"].as_str() == Some(rel))
            .and_then(|i| text(&i["key"]))
            .unwrap_or_else(|| panic!("k8s hub: no {source} item with path {rel}"))
    };

    // The config file: a ConfigMap key, loaded as the hub would.
    let config_path = invocation.value("--config").expect("--config");
    let (_, volume, rel) = mounted(Path::new(config_path));
    let key = item_key(volume, "configMap", &rel);
    let cm_name = volume["configMap"]["name"].as_str().expect("configMap name");
    let cm = of_kind(&docs, "ConfigMap")
        .into_iter()
        .find(|d| d["metadata"]["name"].as_str() == Some(cm_name))
        .unwrap_or_else(|| panic!("no ConfigMap {cm_name}"));
    let (hub, env) = load_hub(cm["data"][key.as_str()].as_str().expect("hub.toml"), "k8s ConfigMap");

    // The TLS files: keys of a Secret that `certs` writes under the same names.
    let pki_dir = tempfile::tempdir().expect("tempdir");
    let certs = check_command("k8s pki", HUB, &["certs".into(), "--out".into(), "pki".into()]);
    mint("k8s pki", &certs, pki_dir.path());
    for path in hub_tls_paths(&hub) {
        let (at, volume, rel) = mounted(&path);
        assert!(
            !volume["secret"].is_badvalue(),
            "k8s hub: {} comes from a Secret",
            path.display()
        );
        let key = item_key(volume, "secret", &rel);
        minted("k8s pki", &Path::new(&at).join(&key), &at, pki_dir.path());
    }

    // The database URL from a Secret, under the name hub.database_env gives.
    let env = env.expect("the k8s hub reads hub.database_env");
    let var = list(&c["env"])
        .iter()
        .find(|e| e["name"].as_str() == Some(env.as_str()))
        .expect("env var");
    let secret = &var["valueFrom"]["secretKeyRef"];
    let cluster = of_kind(&docs, "Cluster");
    if let Some(cluster) = cluster.first() {
        // CloudNativePG writes `<cluster>-app` with the key `uri`.
        let name = format!("{}-app", cluster["metadata"]["name"].as_str().expect("cluster name"));
        assert_eq!(secret["name"].as_str(), Some(name.as_str()));
        assert_eq!(secret["key"].as_str(), Some("uri"));
    } else {
        assert!(
            secret["name"].as_str().is_some(),
            "the database URL comes from a Secret"
        );
    }

    // Each pod advertises its own IP and HTTP port to the other hub, by the variable the hub reads.
    let vars = list(&c["env"]);
    let at = |name: &str| vars.iter().position(|e| e["name"].as_str() == Some(name));
    let pod_ip = at("POD_IP").expect("POD_IP from the downward API");
    assert_eq!(
        vars[pod_ip]["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("status.podIP")
    );
    let advertise = at(gatehouse_hub::cluster::ADVERTISE_ENV).expect("the advertised HTTP URL");
    assert!(pod_ip < advertise, "POD_IP is defined before the variable that uses it");
    assert_eq!(
        vars[advertise]["value"].as_str(),
        Some(format!("http://$(POD_IP):{}", hub.hub.http_listen.port()).as_str())
    );

    // Ports: named container ports equal the listen ports; probes and Services use them.
    let ports: HashMap<String, u16> = list(&c["ports"])
        .iter()
        .map(|p| {
            let port = p["containerPort"]
                .as_i64()
                .and_then(|p| u16::try_from(p).ok())
                .expect("containerPort");
            (text(&p["name"]).expect("named port"), port)
        })
        .collect();
    assert_eq!(ports.get("grpc"), Some(&hub.hub.grpc_listen.port()));
    assert_eq!(ports.get("http"), Some(&hub.hub.http_listen.port()));
    let resolve = |p: &Yaml| -> u16 {
        match p {
            Yaml::Integer(i) => u16::try_from(*i).expect("port"),
            other => ports[&text(other).expect("port name")],
        }
    };
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        assert_eq!(c[probe]["httpGet"]["path"].as_str(), Some(path), "{probe}");
        assert_eq!(
            resolve(&c[probe]["httpGet"]["port"]),
            hub.hub.http_listen.port(),
            "{probe} port"
        );
    }
    let services = of_kind(&docs, "Service");
    assert!(!services.is_empty());
    let mut served = BTreeSet::new();
    for svc in services {
        assert!(selects(&svc["spec"]["selector"], labels), "Service selector");
        for p in list(&svc["spec"]["ports"]) {
            served.insert(resolve(&p["targetPort"]));
        }
    }
    assert_eq!(
        served,
        BTreeSet::from([hub.hub.grpc_listen.port(), hub.hub.http_listen.port()])
    );
    let pdbs = of_kind(&docs, "PodDisruptionBudget");
    assert_eq!(pdbs.len(), 1);
    assert!(
        selects(&pdbs[0]["spec"]["selector"]["matchLabels"], labels),
        "PDB selector"
    );
    for resource in ["cpu", "memory"] {
        assert!(
            text(&c["resources"]["requests"][resource]).is_some(),
            "requests.{resource}"
        );
    }
    // `kubectl kustomize` builds the set offline, where kubectl is installed.
    match Command::new("kubectl").arg("kustomize").arg(deploy("k8s")).output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "kubectl kustomize: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let built = String::from_utf8_lossy(&out.stdout);
            let kinds = built.lines().filter(|l| l.starts_with("kind: ")).count();
            assert_eq!(kinds, docs.len() - 1, "every manifest in the kustomize output");
        }
        Err(_) => println!("skipped: kubectl_kustomize (kubectl not found)"),
    }
}

#[test]
fn the_systemd_unit_runs_the_gateway_hardened() {
    let unit_text = read(&deploy(&format!("systemd/{UNIT}")));
    let unit = unit_settings(&unit_text);
    let one = |k: &str| {
        unit.get(k)
            .and_then(|v| v.last())
            .map(String::as_str)
            .unwrap_or_default()
    };
    let exec: Vec<String> = one("ExecStart").split_whitespace().map(str::to_owned).collect();
    assert_eq!(bin_name(&exec[0]), GATEWAY);
    let invocation = check_command("systemd", GATEWAY, &exec[1..]);
    let config_path = invocation.value("--config").expect("--config");
    let read_only: Vec<&str> = one("ReadOnlyPaths").split_whitespace().collect();
    assert!(
        read_only.iter().any(|p| config_path.starts_with(p)),
        "{config_path} in ReadOnlyPaths"
    );
    let file = Path::new(config_path)
        .file_name()
        .and_then(|f| f.to_str())
        .expect("file name");
    let gw = load_gateway(&read(&deploy("systemd").join(file)), "systemd gateway.toml");

    let state = format!("/var/lib/{}", one("StateDirectory"));
    assert_eq!(gw.gateway.data_dir, Path::new(&state), "data_dir is the StateDirectory");
    assert!(
        one("ReadWritePaths").split_whitespace().any(|p| p == state),
        "ReadWritePaths"
    );
    assert_eq!(one("WorkingDirectory"), state);
    // The TLS files are the unit's credentials.
    let credentials: BTreeSet<String> = unit
        .get("LoadCredential")
        .into_iter()
        .flatten()
        .map(|c| c.split_once(':').expect("ID:PATH").0.to_owned())
        .collect();
    let dir = Path::new("/run/credentials").join(UNIT);
    for path in uplink_paths(&gw) {
        let id = path
            .strip_prefix(&dir)
            .unwrap_or_else(|_| panic!("{} is not a credential", path.display()));
        assert!(
            credentials.contains(&id.display().to_string()),
            "no LoadCredential for {id:?}"
        );
    }
    for (key, value) in [
        ("Restart", "always"),
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallArchitectures", "native"),
    ] {
        assert_eq!(
            unit.get(key).and_then(|v| v.last()).map(String::as_str),
            Some(value),
            "{key}"
        );
    }
    assert!(
        unit.get("SystemCallFilter")
            .is_some_and(|f| f.iter().any(|v| v == "@system-service"))
    );

    // systemd-analyze verify, with ExecStart pointing at the binary built here.
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        println!("skipped: systemd_analyze_verify (systemd-analyze not found)");
        return;
    };
    assert!(out.status.success());
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join(UNIT);
    let real = binary(GATEWAY).display().to_string();
    std::fs::write(&copy, unit_text.replace(&exec[0], &real)).expect("writing the unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
    // The exposure score systemd computes from the hardening (0 = fully locked down, 10 = none);
    // --threshold=20 fails above 2.0.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&copy)
        .output()
        .expect("security");
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().find(|l| l.contains("Overall exposure level")) {
        Some(line) => {
            println!("{}", line.trim_start_matches(['→', ' ']));
            assert!(out.status.success(), "exposure above 2.0: {line}");
        }
        None => println!("skipped: systemd_analyze_security (no --offline in this systemd)"),
    }
}

/// The compose hub and a compose gateway, started here with the PKI the compose `pki`
/// service mints (addresses on loopback; the database in SQLite, or PostgreSQL under
/// GATEHOUSE_TEST_BACKEND=postgres): every probe and
/// healthcheck path the deployments use answers 200, and the gateway gets through to the hub
/// over mutual TLS (its /readyz turns 200).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_paths_answer_on_a_real_hub_and_gateway() {
    let (_, services) = compose_services();
    let pki = services
        .iter()
        .find(|s| s.invocation.subcommands == ["certs"])
        .expect("a certs service");
    let dir = tempfile::tempdir().expect("tempdir");
    let pki_dir = dir.path().join("pki");
    mint("compose pki", &pki.invocation, &pki_dir);
    let pki_at = pki.invocation.value("--out").expect("--out");

    // Every path probed: compose healthchecks (hubs, gateways) and the k8s probes.
    let mut hub_paths = BTreeSet::new();
    let mut gateway_paths = BTreeSet::new();
    for s in &services {
        match (s.bin.as_str(), s.invocation.subcommands.is_empty()) {
            (HUB, true) => hub_paths.insert(s.healthcheck().1),
            (GATEWAY, true) => gateway_paths.insert(s.healthcheck().1),
            _ => false,
        };
    }
    for (_, doc) in k8s_docs()
        .iter()
        .filter(|(_, d)| d["kind"].as_str() == Some("Deployment"))
    {
        for c in list(&doc["spec"]["template"]["spec"]["containers"]) {
            for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
                if let Some(p) = c[probe]["httpGet"]["path"].as_str() {
                    hub_paths.insert(p.to_owned());
                }
            }
        }
    }
    assert!(
        hub_paths.contains("/readyz") && hub_paths.contains("/healthz"),
        "{hub_paths:?}"
    );

    let hub_service = services
        .iter()
        .find(|s| s.bin == HUB && s.invocation.subcommands.is_empty())
        .expect("hub");
    let database = test_database(dir.path()).await;
    let hub_text = rerooted(&hub_service.config_text(), pki_at, &pki_dir, |t| {
        let hub = section(t, "hub");
        hub.remove("database_env");
        hub.insert("database".into(), database.clone().into());
        hub.insert("grpc_listen".into(), "127.0.0.1:0".into());
        hub.insert("http_listen".into(), "127.0.0.1:0".into());
    });
    let hub = gatehouse_hub::start(HubConfig::from_toml(&hub_text).expect("hub config"))
        .await
        .expect("the compose hub starts with the minted PKI");
    for path in &hub_paths {
        let url = format!("http://{}{path}", hub.http_addr());
        assert_eq!(status(&url).await, Some(200), "hub {path}");
    }

    let gw_service = services.iter().find(|s| s.bin == GATEWAY).expect("a gateway");
    let data = dir.path().join("gateway");
    let grpc = hub.grpc_addr().port();
    let gw_text = rerooted(&gw_service.config_text(), pki_at, &pki_dir, |t| {
        let gw = section(t, "gateway");
        gw.insert("data_dir".into(), data.display().to_string().into());
        gw.insert("http_listen".into(), "127.0.0.1:0".into());
        // `localhost` is in every minted hub certificate; the compose names do not resolve here.
        gw.insert("hubs".into(), vec![format!("https://localhost:{grpc}")].into());
        section(t, "mqtt").insert("listen".into(), "127.0.0.1:0".into());
    });
    let gateway = gatehouse_gateway::start(GatewayConfig::from_toml(&gw_text).expect("gateway config"))
        .await
        .expect("the compose gateway starts");
    let http = gateway.http_addr.expect("gateway http_listen");
    for path in &gateway_paths {
        assert_eq!(
            status(&format!("http://{http}{path}")).await,
            Some(200),
            "gateway {path}"
        );
    }
    let ready = format!("http://{http}/readyz");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while status(&ready).await != Some(200) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway did not get through to the hub over mutual TLS with the minted PKI"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gateway.shutdown().await;
    hub.shutdown().await;
}
