//! `reconcile::diff`, one row per behaviour: the desired state of a revision against a stored
//! state (built from an earlier revision), and the exact plan.

mod support;

use keel::model::desired::DesiredState;
use keel::model::status::DeploymentStatus;
use keel::model::stored::{StoredDeployment, StoredState};
use keel::model::time::Timestamp;
use keel::reconcile::diff::{diff, Action};
use support::{deployment, desired};

/// What the store would hold after applying `state`.
fn stored(state: &DesiredState) -> StoredState {
    let deployments = state
        .deployments
        .iter()
        .map(|(id, d)| {
            let row = StoredDeployment {
                uuid: format!("uuid-{id}"),
                id: id.clone(),
                spec: d.spec.clone(),
                mounted_configs: d.mounted_configs.clone(),
                spec_hash: d.spec_hash.clone(),
                template: keel::model::desired::template_hash(&d.spec, &d.mounted_configs),
                generation: 1,
                status: DeploymentStatus::Running,
                status_since: Timestamp(0),
                restart_count: 0,
                revision: "r1".into(),
                in_revision: true,
                created_at: Timestamp(0),
                updated_at: Timestamp(0),
                next_run_at: None,
                health: None,
                ready: 0,
                desired: 0,
                live: 0,
                waiting_on: None,
            };
            (id.clone(), row)
        })
        .collect();
    StoredState { deployments }
}

fn plan_lines(before: &[(&str, &str)], after: &[(&str, &str)]) -> Vec<String> {
    let old = if before.is_empty() {
        StoredState::default()
    } else {
        stored(&desired(before))
    };
    render(&diff(&desired(after), &old))
}

fn render(plan: &keel::reconcile::diff::Plan) -> Vec<String> {
    plan.items
        .iter()
        .map(|item| match &item.action {
            Action::Create => format!("create {}", item.id),
            Action::Update { changed } => format!("update {}: {}", item.id, changed.join(", ")),
            Action::Delete => format!("delete {}", item.id),
            Action::Unchanged => format!("unchanged {}", item.id),
        })
        .collect()
}

/// (behaviour, files before, files after, expected plan lines)
type Row<'a> = (
    &'a str,
    Vec<(&'a str, &'a str)>,
    Vec<(&'a str, &'a str)>,
    Vec<&'a str>,
);

#[test]
fn diff_table() {
    let web = deployment(
        "demo",
        "web",
        "    replicas: 2\n    environment:\n      A: one\n      B: two\n",
    );
    let api = deployment("demo", "api", "");
    let web_reordered = "deployments:\n  web:\n    environment: {B: two, A: one}\n    replicas: 2\n    image: \"busybox:1.36\"\n    namespace: demo\n    name: web\n";
    let web_changed = deployment(
        "demo",
        "web",
        "    replicas: 3\n    environment:\n      A: uno\n      B: two\n",
    )
    .replace("1.36", "1.37");
    let web_with_check = deployment("demo", "web", "    replicas: 2\n    environment:\n      A: one\n      B: two\n    health_checks:\n      - type: http\n        url: http://localhost:8080/\n");
    let web_check_moved = web_with_check.replace("8080", "9090");
    let web_other_ns = web.replace("namespace: demo", "namespace: prod");
    let config =
        "configs:\n  c:\n    name: site\n    namespace: demo\n    data: {index.html: hello}\n";
    let config_edited = config.replace("hello", "bonjour");
    let mounting = deployment("demo", "web", "    volumes:\n      - {type: config, source: site, key: index.html, destination: /www/index.html}\n");

    let rows: Vec<Row> = vec![
        (
            "new_deployments_are_created",
            vec![],
            vec![("a.yaml", &web), ("b.yaml", &api)],
            vec!["create demo/api", "create demo/web"],
        ),
        (
            "same_spec_is_unchanged",
            vec![("a.yaml", &web)],
            vec![("a.yaml", &web)],
            vec!["unchanged demo/web"],
        ),
        (
            "reordered_and_reformatted_is_unchanged",
            vec![("a.yaml", &web)],
            vec![("a.yaml", web_reordered)],
            vec!["unchanged demo/web"],
        ),
        (
            "moved_to_another_file_is_unchanged",
            vec![("a.yaml", &web)],
            vec![("deep/er/b.yml", &web)],
            vec!["unchanged demo/web"],
        ),
        (
            "changed_fields_are_listed_exactly",
            vec![("a.yaml", &web)],
            vec![("a.yaml", &web_changed)],
            vec!["update demo/web: environment.A, image, replicas"],
        ),
        (
            "added_block_is_listed_by_its_path",
            vec![("a.yaml", &web)],
            vec![("a.yaml", &web_with_check)],
            vec!["update demo/web: health_checks"],
        ),
        (
            "changed_list_item_is_listed_by_index",
            vec![("a.yaml", &web_with_check)],
            vec![("a.yaml", &web_check_moved)],
            vec!["update demo/web: health_checks[0].url"],
        ),
        (
            "vanished_deployments_are_deleted",
            vec![("a.yaml", &web), ("b.yaml", &api)],
            vec![("a.yaml", &web)],
            vec!["delete demo/api", "unchanged demo/web"],
        ),
        (
            "namespace_change_is_delete_plus_create",
            vec![("a.yaml", &web)],
            vec![("a.yaml", &web_other_ns)],
            vec!["delete demo/web", "create prod/web"],
        ),
        (
            "mounted_config_content_change_is_an_update",
            vec![("c.yaml", config), ("a.yaml", &mounting)],
            vec![("c.yaml", &config_edited), ("a.yaml", &mounting)],
            vec!["update demo/web: configs.site"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, before, after, expect) in rows {
        let got = plan_lines(&before, &after);
        if got != expect {
            failures.push(format!(
                "{name}:\n  got      {got:?}\n  expected {expect:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn pruned_deployments_are_not_deleted_again_and_come_back_as_creates() {
    let web = deployment("demo", "web", "");
    let mut old = stored(&desired(&[("a.yaml", &web)]));
    for row in old.deployments.values_mut() {
        row.in_revision = false;
        row.status = DeploymentStatus::Deleted;
    }
    let empty = desired(&[]);
    assert!(
        diff(&empty, &old).items.is_empty(),
        "a pruned deployment was planned again"
    );
    assert_eq!(
        render(&diff(&desired(&[("a.yaml", &web)]), &old)),
        ["create demo/web"]
    );
}

#[test]
fn plan_counts_and_change_flag() {
    let web = deployment("demo", "web", "");
    let plan = diff(
        &desired(&[("a.yaml", &web)]),
        &stored(&desired(&[("a.yaml", &web)])),
    );
    assert!(!plan.has_changes());
    assert_eq!(plan.counts().unchanged, 1);
}

#[test]
fn the_diff_reads_the_stored_spec_of_updated_deployments_only() {
    let (a, b, c) = (
        deployment("demo", "a", ""),
        deployment("demo", "b", ""),
        deployment("demo", "c", ""),
    );
    let b2 = deployment("demo", "b", "    replicas: 2\n");
    let before = stored(&desired(&[("a.yaml", &a), ("b.yaml", &b), ("c.yaml", &c)]));
    let want = desired(&[("a.yaml", &a), ("b.yaml", &b2), ("c.yaml", &c)]);
    let summaries: Vec<_> = before
        .deployments
        .values()
        .map(keel::model::stored::StoredSummary::from)
        .collect();
    let mut asked = Vec::new();
    let plan = keel::reconcile::diff::diff_with(&want, &summaries, |id| {
        asked.push(id.name.clone());
        Ok::<_, std::convert::Infallible>(
            before
                .deployments
                .get(id)
                .map(|d| keel::model::desired::canonical_json(&d.spec, &d.mounted_configs)),
        )
    })
    .unwrap();
    assert_eq!(asked, ["b"]);
    assert_eq!(plan, diff(&want, &before));
    assert_eq!(render(&plan)[1], "update demo/b: replicas");
}
