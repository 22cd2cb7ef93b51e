use super::*;
use model_map::map::canonical_digest;
use model_map::{InstanceState, Loaded, ModelMap, Replica};

/// A map of `instances` (`name` or `name!` for down) and holdings written
/// `instance model digest` with a trailing `*` on the digest when loaded.
fn map(instances: &[&str], holdings: &[&str]) -> ModelMap {
    let instances: Vec<InstanceState> = instances
        .iter()
        .map(|i| InstanceState {
            name: i.trim_end_matches('!').into(),
            url: format!("http://{}:11434", i.trim_end_matches('!')),
            cluster: i.trim_end_matches('!').into(),
            authority: String::new(),
            address: String::new(),
            healthy: !i.ends_with('!'),
            version: None,
        })
        .collect();
    let mut by_key: BTreeMap<String, (String, Vec<Replica>)> = BTreeMap::new();
    for h in holdings {
        let [inst, model, digest] = h.split(' ').collect::<Vec<_>>()[..] else {
            panic!("{h}");
        };
        let name = ModelName::parse(model).unwrap();
        let loaded = digest.ends_with('*').then(|| Loaded {
            size: 1,
            size_vram: 1,
            expires_at: String::new(),
            expires_unix: 0,
            context_length: None,
            entry: None,
        });
        by_key
            .entry(name.key())
            .or_insert((name.display_shortest(), vec![]))
            .1
            .push(Replica {
                instance: inst.into(),
                digest: digest.trim_end_matches('*').into(),
                size: 1,
                modified_at: String::new(),
                modified_unix: 0,
                details: model_map::RawJson::null(),
                loaded,
                listed: None,
            });
    }
    let models = by_key
        .into_iter()
        .map(|(key, (name, replicas))| {
            let healthy =
                |r: &&Replica| instances.iter().any(|i| i.name == r.instance && i.healthy);
            let voters = replicas
                .iter()
                .filter(healthy)
                .map(|r| (r.digest.as_str(), 0));
            let canonical = canonical_digest(voters).unwrap_or_default();
            ModelEntry {
                key,
                name,
                digest_mismatch: replicas.iter().any(|r| r.digest != canonical),
                canonical_digest: canonical,
                replicas,
            }
        })
        .collect();
    ModelMap::new(instances, models)
}

/// The plan as short lines: `pull e1 m:latest missing`, `repair …`, `warm …`.
fn lines(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .map(|a| match (a.kind, a.reason) {
            (ActionKind::Pull, Some(Reason::DigestMismatch)) => {
                format!(
                    "repair {} {} {}",
                    a.instance,
                    a.model,
                    a.want.as_deref().unwrap_or("?")
                )
            }
            (ActionKind::Pull, _) => format!("pull {} {}", a.instance, a.model),
            (ActionKind::Warm, _) => format!("warm {} {}", a.instance, a.model),
        })
        .collect()
}

fn placement(toml: &str) -> Placement {
    let names: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
    Placement::from_toml(toml, "test", Some(&names)).unwrap()
}

#[test]
fn planner_table() {
    struct Case {
        what: &'static str,
        instances: &'static [&'static str],
        holdings: &'static [&'static str],
        placement: Option<&'static str>,
        want: &'static [&'static str],
    }
    let cases = [
        Case {
            what: "union: every healthy instance gets every model",
            instances: &["a", "b", "c"],
            holdings: &["a m d1", "b n d2"],
            placement: None,
            want: &[
                "pull b m:latest",
                "pull c m:latest",
                "pull a n:latest",
                "pull c n:latest",
            ],
        },
        Case {
            what: "in sync: nothing to do",
            instances: &["a", "b"],
            holdings: &["a m d1", "b m d1"],
            placement: None,
            want: &[],
        },
        Case {
            what: "down instances are not targets, but their models count",
            instances: &["a", "b!"],
            holdings: &["b m d1"],
            placement: None,
            want: &["pull a m:latest"],
        },
        Case {
            what: "digest mismatch: the minority is re-pulled",
            instances: &["a", "b", "c"],
            holdings: &["a m d1", "b m d1", "c m d2"],
            placement: None,
            want: &["repair c m:latest d1"],
        },
        Case {
            what: "a stale copy on a down instance does not vote",
            instances: &["a", "b!"],
            holdings: &["a m d1", "b m d2"],
            placement: None,
            want: &[],
        },
        Case {
            what: "replicas: holders kept, then fewest models, then name",
            instances: &["a", "b", "c"],
            holdings: &["a x d9", "a y d9", "b x d9", "c m d1"],
            placement: Some("[[model]]\nname = \"m\"\nreplicas = 2\n"),
            want: &["pull b m:latest"],
        },
        Case {
            what: "replicas: ties go by name",
            instances: &["c", "b", "a"],
            holdings: &[],
            placement: Some("[[model]]\nname = \"m\"\nreplicas = 2\n"),
            want: &["pull a m:latest", "pull b m:latest"],
        },
        Case {
            what: "replicas: canonical holders preferred over mismatched ones",
            instances: &["a", "b", "c"],
            holdings: &["a m d1", "b m d1", "c m d2"],
            placement: Some("[[model]]\nname = \"m\"\nreplicas = 2\n"),
            want: &[],
        },
        Case {
            what: "replicas: already more than asked, nothing deleted",
            instances: &["a", "b", "c"],
            holdings: &["a m d1", "b m d1", "c m d1"],
            placement: Some("[[model]]\nname = \"m\"\nreplicas = 1\n"),
            want: &[],
        },
        Case {
            what: "instances list; unlisted models kept by default",
            instances: &["a", "b", "c"],
            holdings: &["a m d1", "c z d3"],
            placement: Some("[[model]]\nname = \"m\"\ninstances = [\"b\", \"c\"]\n"),
            want: &["pull b m:latest", "pull c m:latest"],
        },
        Case {
            what: "default all: unlisted models go everywhere",
            instances: &["a", "b"],
            holdings: &["a z d3"],
            placement: Some("default = \"all\"\n[[model]]\nname = \"m\"\nreplicas = 1\n"),
            want: &["pull b m:latest", "pull b z:latest"],
        },
        Case {
            what: "warm: the holder that is loaded counts, one more is loaded",
            instances: &["a", "b", "c"],
            holdings: &["a m d1*", "b m d1", "c m d1"],
            placement: Some("[[model]]\nname = \"m\"\nreplicas = 3\nwarm = 2\n"),
            want: &["warm b m:latest"],
        },
        Case {
            what: "warm: prefers instances already holding, then fewest loaded",
            instances: &["a", "b", "c"],
            holdings: &["b m d1", "b x d9*", "c m d1"],
            placement: Some("[[model]]\nname = \"m\"\nreplicas = 3\nwarm = 2\n"),
            want: &["pull a m:latest", "warm c m:latest", "warm b m:latest"],
        },
        Case {
            what: "warm on a fresh pull",
            instances: &["a"],
            holdings: &[],
            placement: Some("[[model]]\nname = \"m\"\nwarm = 1\n"),
            want: &["pull a m:latest", "warm a m:latest"],
        },
    ];
    for c in cases {
        let p = c.placement.map(placement);
        let got = lines(&plan(&map(c.instances, c.holdings), p.as_ref()));
        assert_eq!(got, c.want, "{}", c.what);
    }
}

#[test]
fn notes_say_what_cannot_be_met() {
    let p = placement(
        "[[model]]\nname = \"m\"\nreplicas = 3\n[[model]]\nname = \"n\"\ninstances = [\"b\"]\n",
    );
    let out = plan(&map(&["a", "b!"], &[]), Some(&p));
    assert_eq!(lines(&out), ["pull a m:latest"]);
    assert_eq!(
        out.notes,
        [
            "m:latest: wants 3 replicas, only 1 healthy instances",
            "n:latest: instance b is not healthy; skipped"
        ]
    );
}

#[test]
fn table_lists_actions_and_counts() {
    let out = plan(&map(&["a", "b"], &["a m d1", "b m d2", "a n d3"]), None);
    let table = render_table(&out);
    assert!(table.starts_with("INSTANCE"), "{table}");
    assert!(table.contains("pull    missing"), "{table}");
    assert!(table.contains("digest mismatch"), "{table}");
    assert!(table.contains("2 pulls, 0 loads"), "{table}");
    let none = render_table(&Plan::default());
    assert!(none.starts_with("nothing to do"), "{none}");
}
