//! The loader's rules, one row per rule: each row writes a small repository to a temp dir,
//! reads it the way `keel validate` and the agent do (`source::dir` + `manifest::load`), and
//! compares every diagnostic — file, line, column, field path, message — exactly.

use std::path::Path;

use keel::manifest::{self, Limits};
use keel::model::snapshot::SizeLimits;
use keel::source;

/// A valid docker deployment `web` in `demo` (lines 1–5); `extra` starts at line 6 and is
/// indented four spaces.
fn web(extra: &str) -> String {
    format!("deployments:\n  web:\n    name: web\n    namespace: demo\n    image: busybox:1.36\n{extra}")
}

/// A cloud-hypervisor deployment `edge` (lines 1–5); `extra` starts at line 6.
fn vm(extra: &str) -> String {
    format!("deployments:\n  edge:\n    name: edge\n    namespace: demo\n    runtime: cloud-hypervisor\n{extra}")
}

const VM_BOOT: &str = "    vm:\n      kernel: /k/vmlinux\n      initramfs: /k/initrd\n";

struct Case {
    name: &'static str,
    files: Vec<(&'static str, String)>,
    setup: Option<fn(&Path)>,
    limits: Limits,
    /// Every diagnostic, rendered, in order.
    expect: Vec<&'static str>,
    /// Whether the revision is accepted (only warnings, or nothing).
    valid: bool,
}

fn case(name: &'static str, files: Vec<(&'static str, String)>, expect: Vec<&'static str>) -> Case {
    Case {
        name,
        files,
        setup: None,
        limits: Limits::default(),
        expect,
        valid: false,
    }
}

fn one(name: &'static str, content: String, expect: Vec<&'static str>) -> Case {
    case(name, vec![("app.yaml", content)], expect)
}

fn run(c: &Case) -> (bool, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in &c.files {
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }
    if let Some(setup) = c.setup {
        setup(dir.path());
    }
    let entries = source::dir::read_entries(dir.path(), c.limits.size).unwrap();
    match manifest::load(&entries, &c.limits) {
        Ok(loaded) => (
            true,
            loaded.warnings.iter().map(ToString::to_string).collect(),
        ),
        Err(diags) => (false, diags.iter().map(ToString::to_string).collect()),
    }
}

/// The default limits with the operator's variables.
fn with_variables(vars: &[(&str, &str)]) -> Limits {
    Limits {
        variables: Some(
            vars.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..Limits::default()
    }
}

/// The default limits with `[cloud_hypervisor]` boot defaults, as keel.toml would set them.
fn with_vm_defaults(kernel: Option<&str>, firmware: Option<&str>) -> Limits {
    Limits {
        vm_defaults: keel::model::manifest::VmSpec {
            kernel: kernel.map(str::to_owned),
            firmware: firmware.map(str::to_owned),
            initramfs: None,
            cmdline: None,
        },
        ..Limits::default()
    }
}

fn billion_laughs() -> String {
    let mut text = String::from("lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let p = format!("*l{}", i - 1);
        text.push_str(&format!(
            "lol{i}: &l{i} [{p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}]\n"
        ));
    }
    text
}

fn cases() -> Vec<Case> {
    vec![

        one("unknown_field_suggests_the_nearest_name", web("    replica: 2\n"), vec![
            "app.yaml:6:5: deployments.web.replica: unknown field \"replica\", did you mean \"replicas\"?",
        ]),
        one("unknown_field_without_a_close_match_lists_the_valid_ones", web("    restart_policy: always\n"), vec![
            "app.yaml:6:5: deployments.web.restart_policy: unknown field \"restart_policy\"; expected one of: name, namespace, runtime, image, kind, schedule, timezone, concurrency, starting_deadline, history, replicas, command, environment, volumes, ports, labels, resources, health_checks, stable_after, rollback, config, network, vm",
        ]),
        one("unknown_top_level_section_suggests_the_nearest", "deployment:\n  web: {}\n".into(), vec![
            "app.yaml:1:1: deployment: unknown field \"deployment\", did you mean \"deployments\"?",
        ]),
        one("unknown_kind_suggests_the_nearest", web("    kind: wroker\n"), vec![
            "app.yaml:6:11: deployments.web.kind: unknown value \"wroker\", did you mean \"worker\"?",
        ]),
        one("every_missing_required_field_is_reported_at_once", "deployments:\n  web:\n    replicas: 1\n".into(), vec![
            "app.yaml:3:5: deployments.web: missing required field \"name\"",
            "app.yaml:3:5: deployments.web: missing required field \"namespace\"",
            "app.yaml:3:5: deployments.web: missing required field \"image\" (e.g. \"busybox:1.36\")",
        ]),
        one("messages_use_the_users_words_not_type_names", web("    kind:\n    network: host\n    health_checks:\n      - {type: tcp, port: 80, on_failure: [x]}\n"), vec![
            "app.yaml:7:5: deployments.web.kind: expected one of worker, job, cronjob, found null",
            "app.yaml:7:14: deployments.web.network: expected a mapping, found string \"host\"",
            "app.yaml:9:43: deployments.web.health_checks[0].on_failure: expected one of restart, stop, alert, found a sequence",
        ]),
        one("a_cronjob_needs_a_schedule", web("    kind: cronjob\n"), vec![
            "app.yaml:3:5: deployments.web.schedule: a cronjob needs a schedule, e.g. schedule: \"*/15 * * * *\" (minute hour day-of-month month day-of-week)",
        ]),
        one("a_bad_schedule_is_reported_at_the_schedule", web("    kind: cronjob\n    schedule: \"61 * * * *\"\n"), vec![
            "app.yaml:7:15: deployments.web.schedule: \"61 * * * *\" is not a cron schedule (number out of bounds); write minute hour day-of-month month day-of-week (e.g. \"*/15 * * * *\"), optionally with a leading seconds field, or one of @hourly, @daily, @weekly, @monthly, @yearly",
        ]),
        one("a_schedule_that_never_comes_is_refused", web("    kind: cronjob\n    schedule: \"0 0 30 2 *\"\n"), vec![
            "app.yaml:7:15: deployments.web.schedule: \"0 0 30 2 *\" never comes (no date matches it)",
        ]),
        one("an_unknown_time_zone_is_reported_at_the_timezone", web("    kind: cronjob\n    schedule: \"@daily\"\n    timezone: Mars/Olympus\n"), vec![
            "app.yaml:8:15: deployments.web.timezone: \"Mars/Olympus\" is not an IANA time zone (e.g. UTC, Europe/Paris, America/New_York)",
        ]),
        one("cron_fields_only_on_a_cronjob", web("    schedule: \"@daily\"\n    concurrency: allow\n"), vec![
            "app.yaml:6:15: deployments.web.schedule: \"schedule\" is only for kind: cronjob (this is a worker)",
            "app.yaml:7:18: deployments.web.concurrency: \"concurrency\" is only for kind: cronjob (this is a worker)",
        ]),
        one("a_cronjobs_runs_have_no_health_checks_and_bounded_history", web("    kind: cronjob\n    schedule: \"*/5 * * * *\"\n    history: {successful: 1000}\n    health_checks:\n      - {type: tcp, port: 80}\n"), vec![
            "app.yaml:8:27: deployments.web.history.successful: history.successful keeps at most 100 runs, got 1000",
            "app.yaml:10:7: deployments.web.health_checks: a cronjob's runs have no health checks: each run is judged by its exit code",
        ]),
        Case { valid: true, ..one("a_cronjob_with_every_setting_is_valid", web("    kind: cronjob\n    schedule: \"0 30 2 * * 1-5\"\n    timezone: Europe/Paris\n    concurrency: replace\n    starting_deadline: 5m\n    history: {successful: 5, failed: 2}\n"), vec![]) },
        one("unknown_runtime_is_rejected", web("    runtime: kvm\n"), vec![
            "app.yaml:6:14: deployments.web.runtime: unknown value \"kvm\"; expected one of: docker, cloud-hypervisor",
        ]),
        one("ring_runtimes_keel_does_not_drive_are_refused_by_name", web("    runtime: firecracker\n"), vec![
            "app.yaml:6:14: deployments.web.runtime: runtime firecracker is not supported: keel runs microVMs on cloud-hypervisor (runtime: cloud-hypervisor)",
        ]),
        one("missing_required_field_is_named", "deployments:\n  web:\n    name: web\n    image: busybox\n".into(), vec![
            "app.yaml:3:5: deployments.web: missing required field \"namespace\"",
        ]),
        one("name_must_be_a_dns_label", web("").replace("name: web", "name: Web_1"), vec![
            "app.yaml:3:11: deployments.web.name: \"Web_1\" is not a valid name: use lower-case letters, digits and '-', starting and ending with a letter or digit",
        ]),
        one("namespace_must_be_a_dns_label", web("").replace("namespace: demo", "namespace: -demo"), vec![
            "app.yaml:4:16: deployments.web.namespace: \"-demo\" is not a valid name: use lower-case letters, digits and '-', starting and ending with a letter or digit",
        ]),
        one("name_longer_than_63_is_rejected", web("").replace("name: web", &format!("name: {}", "a".repeat(64))), vec![
            "app.yaml:3:11: deployments.web.name: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" is longer than 63 characters",
        ]),
        one("replicas_above_256_is_rejected", web("    replicas: 257\n"), vec![
            "app.yaml:6:15: deployments.web.replicas: replicas must be between 0 and 256, got 257",
        ]),
        one("negative_replicas_is_rejected", web("    replicas: -1\n"), vec![
            "app.yaml:6:15: deployments.web.replicas: expected a whole number, 0 or more, found integer `-1`",
        ]),
        one("replicas_must_be_a_number", web("    replicas: two\n"), vec![
            "app.yaml:6:15: deployments.web.replicas: expected a whole number, 0 or more, found string \"two\"",
        ]),
        Case { valid: true, ..one("job_with_several_replicas_is_only_a_warning", web("    kind: job\n    replicas: 3\n"), vec![
            "app.yaml:7:15: deployments.web.replicas: warning: a job with 3 replicas runs 3 copies of the same task; is that intended?",
        ]) },
        // Ring's volume fields on every volume type.
        Case { valid: true, ..one("ring_driver_local_on_a_secret_volume_is_only_a_warning", web("    volumes:\n      - type: secret\n        source: db-password\n        destination: /run/secrets/db\n        driver: local\n        permission: ro\n"), vec![
            "app.yaml:10:17: deployments.web.volumes[0].driver: warning: driver: local has no effect on a secret volume (Ring requires the field; keel ignores it here)",
        ]) },
        one("ring_driver_nfs_is_refused", web("    volumes:\n      - type: volume\n        source: data\n        destination: /data\n        driver: nfs\n"), vec![
            "app.yaml:10:17: deployments.web.volumes[0].driver: driver nfs is not supported: keel mounts local storage only; mount the share on the host and use a bind volume below a path the agent allows",
        ]),
        one("a_secret_volume_cannot_be_read_write", web("    volumes:\n      - type: secret\n        source: db-password\n        destination: /run/secrets/db\n        permission: rw\n"), vec![
            "app.yaml:10:21: deployments.web.volumes[0].permission: secret volumes are always read-only; write permission: ro or leave it out",
        ]),
        one("ring_autoscale_is_refused_with_what_to_write_instead", web("    autoscale:\n      min: 1\n      max: 4\n      target_cpu: 70\n"), vec![
            "app.yaml:6:5: deployments.web.autoscale: autoscale is not supported yet; set replicas (keel runs exactly that many instances)",
        ]),
        one("ring_user_group_without_an_id_is_refused", web("    command: [sleep, \"60\"]\n    config:\n      user:\n        group: 100\n"), vec![
            "app.yaml:9:16: deployments.web.config.user.group: a group needs a user id: set config.user.id as well (the container runs as id:group)",
        ]),
        Case { valid: true, ..one("ring_privileged_is_a_warning_naming_the_operator_key", web("    config:\n      user:\n        id: 1000\n        privileged: true\n"), vec![
            "app.yaml:9:21: deployments.web.config.user.privileged: warning: a privileged container runs only on hosts whose keel.toml sets allow_privileged = true under [docker]; elsewhere it is refused with config_error",
        ]) },
        one("ring_plain_text_registry_password_is_refused_without_repeating_it", web("    config:\n      username: robot\n      password: hunter2\n"), vec![
            "app.yaml:8:17: deployments.web.config.password: a registry password must not be written in Git: put it in a file in the agent's secrets directory and write password: {secretRef: NAME}",
        ]),
        one("a_registry_password_reference_stays_in_the_secrets_directory", web("    config:\n      username: robot\n      password:\n        secretRef: ../../etc/shadow\n"), vec![
            "app.yaml:9:20: deployments.web.config.password.secretRef: \"../../etc/shadow\" is not a valid secret name: use letters, digits, '.', '_' and '-', not starting with '.' (it names a file in the agent's secrets directory)",
        ]),
        one("image_pull_secret_or_username_not_both", web("    config:\n      image_pull_secret: regcred\n      username: robot\n      password:\n        secretRef: pw\n"), vec![
            "app.yaml:7:26: deployments.web.config.image_pull_secret: use either image_pull_secret or username/password, not both",
        ]),
        Case { valid: true, ..one("ring_use_host_auth_is_only_a_warning", web("    config:\n      use_host_auth: true\n"), vec![
            "app.yaml:7:22: deployments.web.config.use_host_auth: warning: keel uses the host's Docker credentials for every deployment when the agent's keel.toml sets use_host_auth = true under [docker]; this field changes nothing",
        ]) },
        one("another_driver_applies_to_named_volumes_only", web("    volumes:\n      - type: bind\n        source: /srv/data\n        destination: /data\n        driver: rexray\n"), vec![
            "app.yaml:10:17: deployments.web.volumes[0].driver: driver \"rexray\" only applies to type: volume",
        ]),
        // Ring's list form of labels.
        Case { valid: true, ..one("ring_labels_as_a_list_of_one_entry_maps", web("    labels:\n      - traefik.enable: \"true\"\n      - app: web\n"), vec![]) },
        one("a_label_list_entry_holds_one_label", web("    labels:\n      - {a: \"1\", b: \"2\"}\n"), vec![
            "app.yaml:7:9: deployments.web.labels[0]: a label list entry holds one label (- key: value); put the others in entries of their own",
        ]),
        one("published_port_zero_is_rejected", web("    ports:\n      - published: 0\n        target: 80\n"), vec![
            "app.yaml:7:20: deployments.web.ports[0].published: port must be between 1 and 65535, got 0",
        ]),
        one("target_port_above_65535_is_rejected", web("    ports:\n      - published: 8080\n        target: 70000\n"), vec![
            "app.yaml:8:17: deployments.web.ports[0].target: port must be between 1 and 65535, got 70000",
        ]),
        one("published_port_twice_on_same_address_and_protocol", web("    ports:\n      - published: 8080\n        target: 80\n      - published: 8080\n        target: 81\n"), vec![
            "app.yaml:9:20: deployments.web.ports[1].published: port 8080 is already published by ports[0] on the same address and protocol",
        ]),
        one("stable_after_is_a_workers", web("    kind: job\n    stable_after: 5s\n"), vec![
            "app.yaml:7:19: deployments.web.stable_after: stable_after applies to workers; a job is judged by its exit code",
        ]),
        Case { valid: true, ..one("stable_after_beside_readiness_checks_is_only_a_warning", web("    stable_after: 5s\n    health_checks:\n      - {type: tcp, port: 80, readiness: true}\n"), vec![
            "app.yaml:6:19: deployments.web.stable_after: warning: not used: readiness checks decide when this worker counts as stable (min_healthy_time)",
        ]) },
        one("two_replicas_cannot_share_one_host_port", web("    replicas: 2\n    ports:\n      - published: 8080\n        target: 80\n"), vec![
            "app.yaml:8:20: deployments.web.ports[0].published: host port 8080 can be bound by one instance per host, but replicas: 2 starts 2 on this host; set replicas: 1, or drop `ports` (instances reach each other on the namespace's network without a host port)",
        ]),
        one("overlapping_cron_runs_cannot_share_one_host_port", web("    kind: cronjob\n    schedule: \"@hourly\"\n    concurrency: allow\n    ports:\n      - published: 8080\n        target: 80\n"), vec![
            "app.yaml:8:18: deployments.web.concurrency: runs that overlap would each bind host port 8080; use concurrency: forbid or replace, or drop `ports`",
        ]),
        Case { valid: true, ..one("same_port_on_tcp_and_udp_is_fine", web("    ports:\n      - published: 53\n        target: 53\n      - published: 53\n        target: 53\n        protocol: udp\n"), vec![]) },
        one("host_ip_must_be_an_ip_address", web("    ports:\n      - published: 8080\n        target: 80\n        host_ip: localhost\n"), vec![
            "app.yaml:9:18: deployments.web.ports[0].host_ip: \"localhost\" is not an IP address",
        ]),
        one("host_network_rejects_ports", web("    network:\n      mode: host\n    ports:\n      - published: 8080\n        target: 80\n"), vec![
            "app.yaml:7:13: deployments.web.network.mode: host networking cannot be combined with ports: the container already uses the host's ports",
        ]),
        one("host_network_rejects_several_replicas", web("    replicas: 2\n    network:\n      mode: host\n"), vec![
            "app.yaml:8:13: deployments.web.network.mode: host networking allows one replica (replicas: 2): several would fight over the same ports",
        ]),
        Case { valid: true, ..one("min_healthy_time_without_readiness_is_a_warning", web("    health_checks:\n      - type: tcp\n        port: 80\n        min_healthy_time: 30s\n"), vec![
            "app.yaml:9:27: deployments.web.health_checks[0].min_healthy_time: warning: min_healthy_time only applies to readiness checks (set readiness: true); it is ignored here",
        ]) },
        one("http_check_needs_a_url", web("    health_checks:\n      - type: http\n        port: 80\n"), vec![
            "app.yaml:7:9: deployments.web.health_checks[0]: an http check needs \"url\"",
            "app.yaml:8:15: deployments.web.health_checks[0].port: \"port\" does not apply to an http check (it uses \"url\")",
        ]),
        one("tcp_check_needs_a_port", web("    health_checks:\n      - type: tcp\n        readiness: true\n"), vec![
            "app.yaml:7:9: deployments.web.health_checks[0]: a tcp check needs \"port\"",
        ]),
        one("command_check_needs_a_command", web("    health_checks:\n      - type: command\n"), vec![
            "app.yaml:7:9: deployments.web.health_checks[0]: a command check needs \"command\"",
        ]),
        one("http_url_must_be_http_with_a_host", web("    health_checks:\n      - type: http\n        url: localhost:8080/health\n"), vec![
            "app.yaml:8:14: deployments.web.health_checks[0].url: \"localhost:8080/health\" is not an http:// URL with a host",
        ]),
        one("https_probe_url_is_rejected", web("    health_checks:\n      - type: http\n        url: https://localhost/\n"), vec![
            "app.yaml:8:14: deployments.web.health_checks[0].url: \"https://localhost/\": https probes are not supported; probe the instance's plain http port (it is reached inside its own network)",
        ]),
        one("threshold_zero_is_rejected", web("    health_checks:\n      - type: tcp\n        port: 80\n        threshold: 0\n"), vec![
            "app.yaml:9:20: deployments.web.health_checks[0].threshold: threshold must be at least 1",
        ]),
        one("duration_without_a_unit_is_rejected", web("    health_checks:\n      - type: tcp\n        port: 80\n        interval: 10\n"), vec![
            "app.yaml:9:19: deployments.web.health_checks[0].interval: invalid duration \"10\": write a whole number followed by ms, s, m or h (e.g. \"500ms\", \"10s\", \"5m\")",
        ]),
        one("unknown_on_failure_action_suggests", web("    health_checks:\n      - type: tcp\n        port: 80\n        on_failure: restrat\n"), vec![
            "app.yaml:9:21: deployments.web.health_checks[0].on_failure: unknown value \"restrat\", did you mean \"restart\"?",
        ]),
        one("config_volume_needs_a_key", "configs:\n  c:\n    name: site\n    namespace: demo\n    data:\n      index.html: hi\n".to_owned() + &web("    volumes:\n      - type: config\n        source: site\n        destination: /www/index.html\n"), vec![
            "app.yaml:13:9: deployments.web.volumes[0]: a config volume needs \"key\": the config entry to mount as the file",
        ]),
        one("config_volume_needs_a_declared_config", web("    volumes:\n      - type: config\n        source: site\n        key: index.html\n        destination: /www/index.html\n"), vec![
            "app.yaml:8:17: deployments.web.volumes[0].source: config demo/site is not declared in this revision",
        ]),
        case("config_volume_key_must_exist_in_the_config", vec![
            ("configs.yaml", "configs:\n  c:\n    name: site\n    namespace: demo\n    data: '{\"index.html\": \"hi\"}'\n".into()),
            ("web.yaml", web("    volumes:\n      - type: config\n        source: site\n        key: index.htm\n        destination: /www/index.html\n")),
        ], vec![
            "web.yaml:9:14: deployments.web.volumes[0].key: config demo/site has no key \"index.htm\", did you mean \"index.html\"?",
        ]),
        one("read_write_named_volume_with_several_replicas", web("    replicas: 2\n    volumes:\n      - type: volume\n        source: data\n        destination: /data\n"), vec![
            "app.yaml:8:9: deployments.web.volumes[0]: read-write named volume \"data\" cannot be shared by 2 replicas; use permission: ro or one replica",
        ]),
        one("volume_destination_must_be_absolute", web("    volumes:\n      - type: volume\n        source: data\n        destination: data\n"), vec![
            "app.yaml:9:22: deployments.web.volumes[0].destination: must be an absolute path inside the container, got \"data\"",
        ]),
        one("bind_source_must_be_absolute", web("    volumes:\n      - type: bind\n        source: ./data\n        destination: /data\n"), vec![
            "app.yaml:8:17: deployments.web.volumes[0].source: a bind source must be an absolute host path, got \"./data\"",
        ]),
        one("docker_only_fields_are_rejected_on_cloud_hypervisor", vm(&format!("{VM_BOOT}    command: [sh]\n    network:\n      mode: bridge\n")), vec![
            "app.yaml:9:14: deployments.edge.command: \"command\" is docker-only and not supported on runtime: cloud-hypervisor",
            "app.yaml:11:7: deployments.edge.network: \"network\" is docker-only and not supported on runtime: cloud-hypervisor",
        ]),
        one("command_probes_are_refused_on_microvms", vm(&format!("{VM_BOOT}    health_checks:\n      - type: command\n        command: \"true\"\n")), vec![
            "app.yaml:10:15: deployments.edge.health_checks[0].type: command health checks cannot run inside a microVM: use tcp or http (they reach the guest's address)",
        ]),
        one("vm_block_is_rejected_on_docker", web(VM_BOOT), vec![
            "app.yaml:7:7: deployments.web.vm: \"vm\" is only for runtime: cloud-hypervisor",
        ]),
        Case { valid: true, limits: with_variables(&[("REGISTRY", "registry.example.com")]), ..one("ring_variables_expand_before_validation", web("    environment:\n      HOME_DIR: \"$$HOME\"\n").replace("busybox:1.36", "${REGISTRY}/busybox:1.36"), vec![]) },
        Case { valid: true, limits: with_variables(&[]), ..one("an_aliased_value_is_expanded_once_wherever_it_is_used", web("    command: [sh, -c, &greet \"echo $$HOME\"]\n    environment:\n      GREETING: *greet\n"), vec![]) },
        Case { limits: with_variables(&[]), ..one("an_undefined_variable_is_named_where_it_is_used", web("    command: [sh, -c, \"echo $GREETING\"]\n"), vec![
            "app.yaml:6:23: deployments.web.command[2]: undefined variable GREETING: define it in a file of [variables] in the agent's keel.toml (keel validate --vars FILE), or write $$ for a literal $",
        ]) },
        Case { limits: with_variables(&[("TAG", "Not A Tag")]), ..one("a_substituted_value_is_validated_where_the_variable_is_used", web("").replace("busybox:1.36", "busybox:$TAG"), vec![
            "app.yaml:5:12: deployments.web.image: \"busybox:Not A Tag\" is not a valid image reference: the tag may hold letters, digits, '_', '.' and '-' (at most 128)",
        ]) },
        one("cloud_hypervisor_without_a_boot_names_both_places_to_set_one", vm(""), vec![
            "app.yaml:3:5: deployments.edge.vm: nothing to boot: set vm.kernel or vm.firmware in the manifest, or kernel or firmware under [cloud_hypervisor] in the agent's keel.toml (keel validate --config <keel.toml> reads it)",
        ]),
        Case { valid: true, limits: with_vm_defaults(Some("/k/vmlinux"), None), ..one("ring_cloud_hypervisor_with_only_a_disk_boots_the_operator_defaults", vm("    image: /img/disk.raw\n"), vec![]) },
        Case { limits: with_vm_defaults(None, Some("/k/fw")), ..one("a_default_firmware_still_needs_the_deployments_disk", vm(""), vec![
            "app.yaml:3:5: deployments.edge.vm: a firmware boot needs a disk: set \"image\" to a raw disk image path",
        ]) },
        one("vm_takes_kernel_or_firmware_not_both", vm("    image: /img/disk.raw\n    vm:\n      kernel: /k/vmlinux\n      firmware: /k/fw\n"), vec![
            "app.yaml:9:17: deployments.edge.vm.firmware: set either \"kernel\" or \"firmware\", not both",
        ]),
        one("vm_disk_image_must_be_an_absolute_path", vm(&format!("    image: busybox:1.36\n{VM_BOOT}")), vec![
            "app.yaml:6:12: deployments.edge.image: on cloud-hypervisor, image is the absolute path of a raw disk image, got \"busybox:1.36\"",
        ]),
        one("image_reference_must_be_well_formed", web("").replace("busybox:1.36", "BusyBox:latest"), vec![
            "app.yaml:5:12: deployments.web.image: \"BusyBox:latest\" is not a valid image reference: repository names use lower-case letters, digits and single separators ('.', '_', '__' or '-') between them",
        ]),
        one("docker_deployment_needs_an_image", "deployments:\n  web:\n    name: web\n    namespace: demo\n".into(), vec![
            "app.yaml:3:5: deployments.web.image: missing required field \"image\" (e.g. \"busybox:1.36\")",
        ]),
        one("secret_ref_name_must_be_a_plain_file_name", web("    environment:\n      TOKEN:\n        secretRef: ../etc/shadow\n"), vec![
            "app.yaml:8:20: deployments.web.environment.TOKEN.secretRef: \"../etc/shadow\" is not a valid secret name: use letters, digits, '.', '_' and '-', not starting with '.' (it names a file in the agent's secrets directory)",
        ]),
        one("environment_variable_name_must_be_valid", web("    environment:\n      1BAD: x\n"), vec![
            "app.yaml:7:13: deployments.web.environment.1BAD: \"1BAD\" is not a valid environment variable name (letters, digits and '_', not starting with a digit)",
        ]),
        one("memory_quantity_must_be_well_formed", web("    resources:\n      limits:\n        memory: 256MB\n"), vec![
            "app.yaml:8:17: deployments.web.resources.limits.memory: invalid memory quantity \"256MB\": write bytes or a number with Ki, Mi, Gi, Ti, K, M, G or T (e.g. \"256Mi\", \"1Gi\")",
        ]),
        one("request_above_limit_is_rejected", web("    resources:\n      limits:\n        memory: 128Mi\n      requests:\n        memory: 1Gi\n"), vec![
            "app.yaml:10:17: deployments.web.resources.requests.memory: the memory request is larger than its limit",
        ]),
        one("billion_laughs_fails_fast", billion_laughs(), vec![
            "app.yaml:6:12: aliases expand to more than 100000 nodes (max_alias_nodes; an alias bomb such as \"billion laughs\"?); write the values out or use fewer aliases",
        ]),
        one("excessive_nesting_is_rejected", format!("deployments: {}{}\n", "[".repeat(100), "]".repeat(100)), vec![
            "app.yaml:1:77: nesting deeper than 64 levels",
        ]),
        one("invalid_yaml_syntax_is_located", "deployments:\n  web:\n    name: web\n   namespace: demo\n".into(), vec![
            "app.yaml:4:13: invalid YAML: while parsing a block mapping, did not find expected key",
        ]),
        one("duplicate_yaml_key_is_rejected", web("    image: busybox:1.35\n"), vec![
            "app.yaml:6:5: duplicate key \"image\" (first at line 5)",
        ]),
        Case {
            setup: Some(|root| std::fs::write(root.join("latin1.yaml"), b"labels: caf\xe9\n").unwrap()),
            ..case("file_must_be_utf8", vec![], vec![
            "latin1.yaml: not valid UTF-8 (first bad byte at offset 11)",
        ])
        },
        one("manifest_root_must_be_a_mapping", "- web\n- api\n".into(), vec![
            "app.yaml:1:1: a manifest must be a mapping with the keys namespaces, configs and deployments",
        ]),
        case("duplicate_identity_across_files_names_both_places", vec![
            ("a/web.yaml", web("")),
            ("b/web.yml", format!("# same deployment again\n{}", web("    replicas: 2\n"))),
        ], vec![
            "b/web.yml:4:11: deployments.web.name: deployment demo/web is also declared at a/web.yaml:3",
        ]),
        case("duplicate_config_identity_is_rejected", vec![
            ("a.yaml", "configs:\n  one:\n    name: site\n    namespace: demo\n    data: {}\n".into()),
            ("b.yaml", "configs:\n  two:\n    name: site\n    namespace: demo\n    data: {}\n".into()),
        ], vec![
            "b.yaml:3:11: configs.two.name: config demo/site is also declared at a.yaml:3",
        ]),
        case("host_port_shared_by_two_deployments_is_rejected", vec![
            ("a.yaml", web("    ports:\n      - published: 8080\n        target: 80\n")),
            ("b.yaml", web("    ports:\n      - published: 8080\n        target: 80\n").replace("web", "api")),
        ], vec![
            "b.yaml:7:20: deployments.api.ports[0].published: host port 8080 is also published by deployment demo/web (ports[0], declared at a.yaml:3)",
        ]),
        case("json_files_are_located_too", vec![
            ("web.json", "{\n  \"deployments\": {\n    \"web\": {\n      \"name\": \"web\",\n      \"namespace\": \"demo\",\n      \"image\": \"busybox\",\n      \"replicaz\": 2\n    }\n  }\n}\n".into()),
        ], vec![
            "web.json:7:7: deployments.web.replicaz: unknown field \"replicaz\", did you mean \"replicas\"?",
        ]),
        one("errors_in_later_documents_have_their_own_lines", format!("{}---\n{}", web(""), web("    replicas: 1000\n").replace("web", "api")), vec![
            "app.yaml:12:15: deployments.api.replicas: replicas must be between 0 and 256, got 1000",
        ]),
        one("several_problems_in_one_deployment_are_all_reported", web("    replicas: 300\n    replica: 2\n    ports:\n      - published: 0\n        target: 80\n    kind: jb\n"), vec![
            "app.yaml:6:15: deployments.web.replicas: replicas must be between 0 and 256, got 300",
            "app.yaml:7:5: deployments.web.replica: unknown field \"replica\", did you mean \"replicas\"?",
            "app.yaml:9:20: deployments.web.ports[0].published: port must be between 1 and 65535, got 0",
            "app.yaml:11:11: deployments.web.kind: unknown value \"jb\", did you mean \"job\"?",
        ]),
        Case {
            setup: Some(|root| {
                std::os::unix::fs::symlink("/etc/passwd", root.join("escape.yaml")).unwrap();
            }),
            ..case("symlink_escaping_the_root_is_rejected", vec![("ok.yaml", web(""))], vec![
            "escape.yaml: symbolic link points outside the repository (to /etc/passwd); only links within the repository are followed",
        ])
        },
        Case {
            setup: Some(|root| {
                std::fs::create_dir(root.join("apps")).unwrap();
                std::os::unix::fs::symlink("../shared/web.yaml", root.join("apps/web.yaml")).unwrap();
            }),
            valid: true,
            ..case("symlink_inside_the_root_is_followed", vec![(".keelignore", "/shared/\n".into()), ("shared/web.yaml", web(""))], vec![])
        },
        Case {
            limits: Limits { size: SizeLimits { max_file_bytes: 200, max_revision_bytes: 64 << 20 }, ..Limits::default() },
            ..case("oversized_file_is_rejected", vec![("big.yaml", web(&format!("    labels:\n      note: \"{}\"\n", "x".repeat(300))))], vec![
            "big.yaml: file is 405 bytes, over the limit of 200 bytes per file",
        ])
        },
        Case {
            limits: Limits { size: SizeLimits { max_file_bytes: 1 << 20, max_revision_bytes: 100 }, ..Limits::default() },
            ..case("revision_over_its_total_size_is_rejected", vec![("a.yaml", web("")), ("b.yaml", web("").replace("web", "api"))], vec![
            "b.yaml: the revision's manifests exceed 100 bytes in total; this file was not read",
        ])
        },
        Case { valid: true, ..case("keelignore_and_dotfiles_are_skipped", vec![
            (".keelignore", "drafts/\n".into()),
            ("drafts/broken.yaml", "deployments: [\n".into()),
            (".hidden.yaml", "nonsense: 1\n".into()),
            (".github/workflow.yml", "on: push\n".into()),
            ("README.md", "# not a manifest\n".into()),
            ("web.yaml", web("")),
        ], vec![]) },
    ]
}

#[test]
fn every_rule_reports_its_exact_location_and_message() {
    let cases = cases();
    assert!(
        cases.len() >= 40,
        "the table must cover at least 40 bad inputs"
    );
    let mut failures = Vec::new();
    for c in &cases {
        let (valid, got) = run(c);
        if valid != c.valid || got != c.expect {
            failures.push(format!(
                "{}: valid={valid} (expected {})\n  got:\n    {}\n  expected:\n    {}",
                c.name,
                c.valid,
                got.join("\n    "),
                c.expect.join("\n    ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn ten_thousand_deployments_in_one_document_are_no_alias_bomb() {
    let mut text = String::from("deployments:\n");
    for i in 0..10_000 {
        text.push_str(&format!(
            "  w{i}:\n    name: w{i}\n    namespace: big\n    image: busybox:1.36\n    replicas: 0\n    environment:\n      INDEX: \"{i}\"\n"
        ));
    }
    let entries = vec![keel::model::snapshot::SnapshotEntry::File {
        path: "big.yaml".into(),
        bytes: text.into_bytes(),
    }];
    let limits = keel::manifest::Limits {
        size: keel::model::snapshot::SizeLimits {
            max_file_bytes: 64 << 20,
            max_revision_bytes: 64 << 20,
        },
        ..keel::manifest::Limits::default()
    };
    let loaded = keel::manifest::load(&entries, &limits)
        .unwrap_or_else(|d| panic!("{:?}", &d[..d.len().min(3)]));
    assert_eq!(loaded.state.deployments.len(), 10_000);
}

#[test]
fn ring_list_labels_read_into_the_same_map_as_a_map() {
    let load = |text: String| {
        let entries = vec![keel::model::snapshot::SnapshotEntry::File {
            path: "app.yaml".into(),
            bytes: text.into_bytes(),
        }];
        let loaded = manifest::load(&entries, &Limits::default()).expect("valid");
        let web = keel::model::desired::DeploymentId::new("demo", "web");
        loaded.state.deployments[&web].spec.labels.clone()
    };
    let list = load(web(
        "    labels:\n      - traefik.enable: \"true\"\n      - app: web\n",
    ));
    let map = load(web(
        "    labels:\n      traefik.enable: \"true\"\n      app: web\n",
    ));
    assert_eq!(list, map);
    assert_eq!(list.0.len(), 2);
}
