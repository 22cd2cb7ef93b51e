use super::*;
use crate::body_scan::BodyScanner;
use crate::endpoint::{classify, Endpoint};
use crate::test_fixtures::fleet;
use std::collections::{HashMap, HashSet};

#[derive(Default)]
struct FakeLoad {
    inflight: HashMap<&'static str, u64>,
    cooling: HashSet<&'static str>,
    /// Instances a request for llama3 was sent to recently.
    sent: HashSet<&'static str>,
    /// `instance model` of every `recently_sent` question.
    asked: std::cell::RefCell<Vec<String>>,
}

impl Load for FakeLoad {
    fn inflight(&self, i: &str) -> u64 {
        self.inflight.get(i).copied().unwrap_or(0)
    }
    fn cooling(&self, i: &str) -> bool {
        self.cooling.contains(i)
    }
    fn recently_sent(&self, i: &str, model: &str) -> bool {
        self.asked.borrow_mut().push(format!("{i} {model}"));
        model.contains("llama3") && self.sent.contains(i)
    }
}

fn route_body(path: &str, body: &str, load: &FakeLoad) -> Result<String, (u32, String)> {
    let map = fleet();
    let Endpoint::Body(route) = classify("POST", path) else {
        panic!("{path}")
    };
    let mut s = BodyScanner::new(route.fields);
    s.feed(body.as_bytes());
    s.finish();
    let err = |e: LbError| (e.status(), e.message(route.api));
    let model = route.model(s.result().unwrap()).map_err(err)?;
    let mut picker = Picker::new(1);
    let choice = Choice {
        policy: Policy::LoadedLeastRequest,
        picker: &mut picker,
        affinity: None,
    };
    for_model(&map, route, &model, load, choice)
        .map(|i| i.cluster.clone())
        .map_err(err)
}

#[test]
fn model_requests_go_to_a_healthy_canonical_holder() {
    let idle = FakeLoad::default();
    assert_eq!(
        route_body("/api/generate", r#"{"model":"llama3"}"#, &idle),
        Ok("ollama_a".into()),
        "loaded there"
    );
    let busy = FakeLoad {
        cooling: ["a"].into_iter().collect(),
        ..Default::default()
    };
    assert_eq!(
        route_body("/api/chat", r#"{"model":"LLAMA3:latest"}"#, &busy),
        Ok("ollama_b".into())
    );
    assert_eq!(
        route_body("/api/embed", r#"{"model":"user/tiny:1b"}"#, &idle),
        Ok("ollama_a".into()),
        "b holds another digest, even though loaded there"
    );
}

#[test]
fn missing_and_unavailable_models() {
    let idle = FakeLoad::default();
    assert_eq!(
        route_body("/api/generate", r#"{"model":"Nope"}"#, &idle),
        Err((404, "model 'Nope' not found".into()))
    );
    assert_eq!(
        route_body("/api/show", r#"{"name":"nope"}"#, &idle),
        Err((404, "model 'nope:latest' not found".into()))
    );
    assert_eq!(
        route_body("/api/copy", r#"{"source":"nope"}"#, &idle),
        Err((404, r#"model "nope" not found"#.into()))
    );
    assert_eq!(
        route_body("/api/generate", r#"{"model":"qwen"}"#, &idle),
        Err((
            503,
            "model 'qwen' is not available: every instance holding it is down".into()
        ))
    );
    assert_eq!(
        route_body("/v1/chat/completions", r#"{"model":"nope"}"#, &idle),
        Err((404, "model 'nope' not found".into()))
    );
}

#[test]
fn any_and_pinned() {
    let map = fleet();
    let load = FakeLoad {
        inflight: [("a", 3), ("b", 1)].into_iter().collect(),
        ..Default::default()
    };
    let mut picker = Picker::new(1);
    let choice = Choice {
        policy: Policy::LoadedLeastRequest,
        picker: &mut picker,
        affinity: None,
    };
    assert_eq!(any(&map, &load, choice).unwrap().name, "b");
    assert_eq!(
        pinned(&map, "c").unwrap().name,
        "c",
        "pinning ignores health"
    );
    let e = pinned(&map, "zz").unwrap_err();
    assert_eq!(
        e.message(crate::errors::Api::Native),
        r#"unknown instance "zz" in x-ollama-instance; known instances: a, b, c"#
    );
    let mut down = map.clone();
    down.instances.iter_mut().for_each(|i| i.healthy = false);
    let choice = Choice {
        policy: Policy::Random,
        picker: &mut picker,
        affinity: None,
    };
    assert_eq!(
        any(&down, &load, choice).unwrap_err(),
        LbError::NoHealthyInstance
    );
}

#[test]
fn cluster_mode_sets_only_the_cluster_header() {
    let i = crate::test_fixtures::instance("gpu-a", true, None);
    let headers: Vec<_> = routing_headers(RouteBy::Cluster, "x-ollama-lb-cluster", &i).collect();
    assert_eq!(headers, [("x-ollama-lb-cluster", "ollama_gpu-a")]);
}

#[test]
fn host_mode_rewrites_the_authority_and_names_the_instance() {
    let i = crate::test_fixtures::instance("gpu-a", true, None);
    let headers: Vec<_> = routing_headers(RouteBy::Host, "x-ollama-lb-cluster", &i).collect();
    assert_eq!(
        headers,
        [
            (":authority", "gpu-a:11434"),
            ("x-ollama-lb-instance", "gpu-a")
        ]
    );
}

#[test]
fn recent_sends_are_asked_about_unloaded_holders_only() {
    // llama3: loaded on a (per the map), on disk on b, which got a
    // request for it a moment ago; a is busier.
    let load = FakeLoad {
        inflight: [("a", 3)].into_iter().collect(),
        sent: ["b"].into_iter().collect(),
        ..Default::default()
    };
    assert_eq!(
        route_body("/api/chat", r#"{"model":"llama3"}"#, &load),
        Ok("ollama_a".into()),
        "the map's loaded outranks a recent send (the map knows evictions)"
    );
    let asked = load.asked.borrow();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(
        asked[0].starts_with("b ") && asked[0].contains("llama3"),
        "{asked:?}"
    );
}

#[test]
fn a_cold_load_goes_where_it_evicts_no_sole_copy() {
    use crate::test_fixtures::{entry, instance, replica};
    // m is loaded nowhere; a alone has x loaded, b shares y with c.
    let mut models = vec![
        entry(
            "m",
            "d",
            vec![replica("a", "d", 1, None), replica("b", "d", 1, None)],
        ),
        entry("x", "d", vec![replica("a", "d", 1, Some(9))]),
        entry(
            "y",
            "d",
            vec![replica("b", "d", 1, Some(9)), replica("c", "d", 1, Some(9))],
        ),
    ];
    models.sort_by(|p, q| p.key.cmp(&q.key));
    let map = model_map::ModelMap::new(
        ["a", "b", "c"]
            .into_iter()
            .map(|n| instance(n, true, None))
            .collect(),
        models,
    )
    .sealed();
    assert_eq!(sole_loaded_copies(&map, "a"), 1);
    assert_eq!(sole_loaded_copies(&map, "b"), 0);
    let Endpoint::Body(route) = classify("POST", "/api/generate") else {
        panic!()
    };
    let mut s = BodyScanner::new(route.fields);
    s.feed(br#"{"model":"m"}"#);
    s.finish();
    let model = route.model(s.result().unwrap()).unwrap();
    let load = FakeLoad {
        inflight: [("b", 2)].into_iter().collect(),
        ..Default::default()
    };
    for seed in 0..10 {
        let mut picker = Picker::new(seed);
        let choice = Choice {
            policy: Policy::LoadedLeastRequest,
            picker: &mut picker,
            affinity: None,
        };
        let got = for_model(&map, route, &model, &load, choice).unwrap();
        assert_eq!(got.name, "b", "a's load would evict x, served nowhere else");
    }
}
