use super::*;
use crate::body_scan::BodyScanner;
use crate::endpoint::{classify, Endpoint};
use crate::policy::Conversation;
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
    /// Instances whose in-flight count was read.
    inflight_asked: std::cell::RefCell<Vec<String>>,
    /// Requests in flight per instance for the model asked about.
    model_inflight: HashMap<&'static str, u64>,
}

impl Load for FakeLoad {
    fn inflight(&self, i: &str) -> u64 {
        self.inflight_asked.borrow_mut().push(i.to_string());
        self.inflight.get(i).copied().unwrap_or(0)
    }
    fn model_inflight(&self, i: &str, _model: &str) -> u64 {
        self.model_inflight.get(i).copied().unwrap_or(0)
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
    let map = RoutingMap::new(fleet());
    let Endpoint::Body(route) = classify("POST", path) else {
        panic!("{path}")
    };
    let mut s = BodyScanner::for_route(route);
    s.feed(body.as_bytes());
    s.finish();
    let err = |e: LbError| (e.status(), e.message(route.api));
    let model = route.model(s.result().unwrap()).map_err(err)?;
    let mut picker = Picker::new(1);
    let choice = Choice {
        policy: Policy::LoadedLeastRequest,
        picker: &mut picker,
        affinity: None,
        conversation: None,
    };
    for_model(&map, route, &model, load, choice, 1)
        .map(|ranked| ranked[0].cluster.clone())
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
        route_body("/api/copy", r#"{"source":"nope","destination":"x"}"#, &idle),
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
        route_body(
            "/v1/chat/completions",
            r#"{"model":"nope","messages":[{"role":"user","content":"hi"}]}"#,
            &idle
        ),
        Err((404, "model 'nope' not found".into()))
    );
    assert_eq!(
        route_body("/api/embed", r#"{"model":"nope","input":"x"}"#, &idle),
        Err((
            404,
            r#"model "nope" not found, try pulling it first"#.into()
        ))
    );
}

#[test]
fn a_cloud_model_no_instance_lists_goes_to_any_healthy_instance() {
    let idle = FakeLoad::default();
    for body in [
        r#"{"model":"gpt-oss:120b-cloud"}"#,
        r#"{"model":"gpt-oss:cloud"}"#,
    ] {
        let routed = route_body("/api/chat", body, &idle);
        assert!(
            matches!(routed.as_deref(), Ok("ollama_a" | "ollama_b")),
            "{body}: {routed:?}"
        );
    }
    assert_eq!(
        route_body("/api/chat", r#"{"model":"gpt-oss:120b"}"#, &idle),
        Err((404, "model 'gpt-oss:120b' not found".into())),
        "a local name still needs a holder"
    );
}

#[test]
fn any_and_pinned() {
    let map = RoutingMap::new(fleet());
    let load = FakeLoad {
        inflight: [("a", 3), ("b", 1)].into_iter().collect(),
        ..Default::default()
    };
    let mut picker = Picker::new(1);
    let choice = Choice {
        policy: Policy::LoadedLeastRequest,
        picker: &mut picker,
        affinity: None,
        conversation: None,
    };
    assert_eq!(any(&map, &load, choice, 1).unwrap()[0].name, "b");
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
    let mut down = fleet();
    down.instances.iter_mut().for_each(|i| i.healthy = false);
    let down = RoutingMap::new(down);
    let choice = Choice {
        policy: Policy::Random,
        picker: &mut picker,
        affinity: None,
        conversation: None,
    };
    assert_eq!(
        any(&down, &load, choice, 3).unwrap_err(),
        LbError::NoHealthyInstance
    );
}

#[test]
fn endpoints_mode_lists_addresses_and_allows_one_retry_per_fallback() {
    let a = crate::test_fixtures::instance("a", true, None);
    let b = crate::test_fixtures::instance("b", true, None);
    let headers = routing_headers(RouteBy::Endpoints, "x-ollama-lb-endpoints", &[&a, &b]);
    assert_eq!(
        headers,
        [
            (
                "x-ollama-lb-endpoints",
                "10.0.0.97:11434,10.0.0.98:11434".into()
            ),
            ("x-envoy-max-retries", "1".into())
        ]
    );
    let alone = routing_headers(RouteBy::Endpoints, "x-ollama-lb-endpoints", &[&a]);
    assert_eq!(alone[1], ("x-envoy-max-retries", "0".into()));
    assert!(routing_headers(RouteBy::Endpoints, "h", &[]).is_empty());
}

#[test]
fn host_mode_rewrites_the_authority_and_names_the_instance() {
    let a = crate::test_fixtures::instance("gpu-a", true, None);
    let b = crate::test_fixtures::instance("gpu-b", true, None);
    let headers = routing_headers(RouteBy::Host, "x-ollama-lb-endpoints", &[&a, &b]);
    assert_eq!(
        headers,
        [
            (":authority", "gpu-a:11434".into()),
            ("x-ollama-lb-instance", "gpu-a".into())
        ]
    );
}

#[test]
fn recent_sends_are_not_asked_about_while_a_holder_has_it_loaded() {
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
    assert!(load.asked.borrow().is_empty(), "{:?}", load.asked.borrow());
    // With a cooling down, no candidate left has it loaded: the rank goes
    // on to recent sends, and b is asked about.
    let cooling = FakeLoad {
        cooling: ["a"].into_iter().collect(),
        sent: ["b"].into_iter().collect(),
        ..Default::default()
    };
    assert_eq!(
        route_body("/api/chat", r#"{"model":"llama3"}"#, &cooling),
        Ok("ollama_b".into())
    );
    let asked = cooling.asked.borrow();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(asked[0].starts_with("b ") && asked[0].contains("llama3"));
}

/// A fleet of `n` healthy instances `i0`… all holding model `m`, loaded
/// on those `loaded` says.
fn wide_fleet(n: usize, loaded: impl Fn(usize) -> bool) -> RoutingMap {
    use crate::test_fixtures::{entry, instance, replica};
    let names: Vec<String> = (0..n).map(|i| format!("i{i}")).collect();
    let replicas = names
        .iter()
        .enumerate()
        .map(|(k, n)| replica(n, "d", 1, loaded(k).then_some(9)))
        .collect();
    RoutingMap::new(
        model_map::ModelMap::new(
            names.iter().map(|n| instance(n, true, None)).collect(),
            vec![entry("m", "d", replicas)],
        )
        .sealed(),
    )
}

fn route_m(map: &RoutingMap, load: &FakeLoad, policy: Policy, seed: u64) -> String {
    let Endpoint::Body(route) = classify("POST", "/api/generate") else {
        panic!()
    };
    let mut s = BodyScanner::for_route(route);
    s.feed(br#"{"model":"m"}"#);
    s.finish();
    let model = route.model(s.result().unwrap()).unwrap();
    let mut picker = Picker::new(seed);
    let choice = Choice {
        policy,
        picker: &mut picker,
        affinity: None,
        conversation: None,
    };
    for_model(map, route, &model, load, choice, 1).unwrap()[0]
        .name
        .clone()
}

#[test]
fn many_holders_cost_a_bounded_number_of_inflight_reads() {
    // 100 holders, 40 with the model loaded, all busy but i7 (loaded) and
    // i50 (not loaded).
    let map = wide_fleet(100, |k| k < 40);
    let mut inflight: HashMap<&'static str, u64> = HashMap::new();
    let names: Vec<&'static str> = (0..100)
        .map(|i| &*Box::leak(format!("i{i}").into_boxed_str()))
        .collect();
    for (k, n) in names.iter().enumerate() {
        if k != 7 && k != 50 {
            inflight.insert(n, 5 + k as u64 % 3);
        }
    }
    let load = FakeLoad {
        inflight,
        ..Default::default()
    };
    let mut hits = 0;
    for seed in 0..200 {
        load.inflight_asked.borrow_mut().clear();
        let got = route_m(&map, &load, Policy::LoadedLeastRequest, seed);
        let asked = load.inflight_asked.borrow();
        assert_eq!(asked.len(), MAX_COMPARED, "{asked:?}");
        assert!(
            asked.iter().all(|n| n[1..].parse::<usize>().unwrap() < 40),
            "only loaded holders compete: {asked:?}"
        );
        let got_k: usize = got[1..].parse().unwrap();
        assert!(got_k < 40, "{got}");
        let busy = |n: &str| load.inflight.get(n).copied().unwrap_or(0);
        let least = asked.iter().map(|n| busy(n)).min().unwrap();
        assert_eq!(busy(&got), least, "the least busy of the drawn");
        hits += usize::from(got == "i7");
    }
    // i7 is drawn in 8 of 40 cases: about 40 of 200.
    assert!((20..70).contains(&hits), "{hits}");
    // least_request draws from all 100.
    load.inflight_asked.borrow_mut().clear();
    route_m(&map, &load, Policy::LeastRequest, 1);
    assert_eq!(load.inflight_asked.borrow().len(), MAX_COMPARED);
}

#[test]
fn few_holders_are_all_compared_and_pickers_without_load_read_none() {
    let map = wide_fleet(MAX_COMPARED, |_| true);
    let load = FakeLoad {
        inflight: [
            ("i0", 1),
            ("i1", 1),
            ("i2", 1),
            ("i4", 1),
            ("i5", 1),
            ("i6", 1),
            ("i7", 1),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    for seed in 0..20 {
        assert_eq!(route_m(&map, &load, Policy::LoadedLeastRequest, seed), "i3");
    }
    load.inflight_asked.borrow_mut().clear();
    for policy in [Policy::Random, Policy::RoundRobin] {
        route_m(&map, &load, policy, 1);
    }
    assert!(load.inflight_asked.borrow().is_empty());
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
    let map = RoutingMap::new(map);
    assert_eq!(map.sole_copies("a"), 1);
    assert_eq!(map.sole_copies("b"), 0);
    let load = FakeLoad {
        inflight: [("b", 2)].into_iter().collect(),
        ..Default::default()
    };
    for seed in 0..10 {
        assert_eq!(
            route_m(&map, &load, Policy::LoadedLeastRequest, seed),
            "b",
            "a's load would evict x, served nowhere else"
        );
    }
}

#[test]
fn the_models_own_queue_counts_before_the_instances_load() {
    // Ollama queues a model's requests for its own parallel slots: i0 is
    // busier overall but has fewer requests for m waiting.
    let map = wide_fleet(2, |_| true);
    let load = FakeLoad {
        inflight: [("i0", 6), ("i1", 3)].into_iter().collect(),
        model_inflight: [("i0", 1), ("i1", 3)].into_iter().collect(),
        ..Default::default()
    };
    for seed in 0..10 {
        assert_eq!(route_m(&map, &load, Policy::LoadedLeastRequest, seed), "i0");
        assert_eq!(
            route_m(&map, &load, Policy::LeastRequest, seed),
            "i1",
            "least_request counts the instance's requests only"
        );
    }
}

#[test]
fn loaded_on_reads_the_canonical_holders() {
    let map = RoutingMap::new(fleet());
    let key = |n| model_map::ModelName::parse(n).unwrap().key();
    assert!(loaded_on(&map, &key("llama3"), "a"));
    assert!(!loaded_on(&map, &key("llama3"), "b"), "on disk only");
    assert!(
        !loaded_on(&map, &key("user/tiny:1b"), "b"),
        "another digest"
    );
    assert!(!loaded_on(&map, &key("nope"), "a"));
}

fn ranked_names(
    map: &RoutingMap,
    model: &str,
    load: &FakeLoad,
    picker: &mut Picker,
    policy: Policy,
    n: usize,
) -> Vec<String> {
    let Endpoint::Body(route) = classify("POST", "/api/generate") else {
        panic!()
    };
    let mut s = BodyScanner::new(route.fields);
    s.feed(format!(r#"{{"model":"{model}"}}"#).as_bytes());
    s.finish();
    let model = route.model(s.result().unwrap()).unwrap();
    let choice = Choice {
        policy,
        picker,
        affinity: None,
        conversation: None,
    };
    for_model(map, route, &model, load, choice, n)
        .unwrap()
        .iter()
        .map(|i| i.name.clone())
        .collect()
}

#[test]
fn fallbacks_are_the_other_canonical_holders_and_never_more() {
    let map = RoutingMap::new(fleet());
    let mut picker = Picker::new(3);
    let idle = FakeLoad::default();
    let llr = Policy::LoadedLeastRequest;
    assert_eq!(
        ranked_names(&map, "llama3", &idle, &mut picker, llr, 3),
        ["a", "b"],
        "loaded first; c is down; two holders make two places"
    );
    assert_eq!(
        ranked_names(&map, "user/tiny:1b", &idle, &mut picker, llr, 3),
        ["a"],
        "b holds another digest: no retry may land there"
    );
    let cooling = FakeLoad {
        cooling: ["a"].into_iter().collect(),
        ..Default::default()
    };
    assert_eq!(
        ranked_names(&map, "llama3", &cooling, &mut picker, llr, 3),
        ["b", "a"],
        "an instance cooling down is tried last, not dropped"
    );
    assert_eq!(
        ranked_names(&map, "llama3", &idle, &mut picker, llr, 1),
        ["a"]
    );
}

#[test]
fn places_follow_the_ranking_and_each_count_is_read_once() {
    let map = wide_fleet(6, |i| i < 3);
    let load = FakeLoad {
        inflight: [("i0", 5), ("i1", 1), ("i2", 3), ("i3", 0)]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let mut picker = Picker::new(9);
    let ranked = ranked_names(&map, "m", &load, &mut picker, Policy::LoadedLeastRequest, 4);
    assert_eq!(&ranked[..3], ["i1", "i2", "i0"], "loaded, least busy first");
    assert!(["i3", "i4", "i5"].contains(&ranked[3].as_str()));
    let mut asked = load.inflight_asked.borrow().clone();
    let total = asked.len();
    asked.sort();
    asked.dedup();
    assert_eq!(asked.len(), total, "no instance's count read twice");
}

#[test]
fn round_robin_turns_only_the_first_place() {
    let map = wide_fleet(3, |_| true);
    let idle = FakeLoad::default();
    let mut picker = Picker::new(5);
    let firsts: HashSet<String> = (0..3)
        .map(|_| ranked_names(&map, "m", &idle, &mut picker, Policy::RoundRobin, 3))
        .inspect(|r| assert_eq!(r.len(), 3))
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(firsts.len(), 3, "three requests start on three instances");
}

fn route_conversation(map: &RoutingMap, load: &FakeLoad, key: u64, seed: u64) -> String {
    let Endpoint::Body(route) = classify("POST", "/api/generate") else {
        panic!()
    };
    let mut s = BodyScanner::for_route(route);
    s.feed(br#"{"model":"m"}"#);
    s.finish();
    let model = route.model(s.result().unwrap()).unwrap();
    let mut picker = Picker::new(seed);
    let choice = Choice {
        policy: Policy::LoadedLeastRequest,
        picker: &mut picker,
        affinity: None,
        conversation: Some(Conversation { key, slack: 2 }),
    };
    for_model(map, route, &model, load, choice, 1).unwrap()[0]
        .name
        .clone()
}

#[test]
fn a_conversation_keeps_its_loaded_instance_until_it_is_busier_or_cooling() {
    // 20 holders, 12 with the model loaded: more than MAX_COMPARED.
    let map = wide_fleet(20, |k| k < 12);
    let idle = FakeLoad::default();
    let mut homes = HashSet::new();
    for key in 0..30u64 {
        let home = route_conversation(&map, &idle, key, 1);
        let index: usize = home.trim_start_matches('i').parse().unwrap();
        assert!(index < 12, "a loaded holder: {home}");
        for seed in 2..12 {
            assert_eq!(route_conversation(&map, &idle, key, seed), home);
        }
        homes.insert(home.clone());
        let mut busy = FakeLoad::default();
        let name: &'static str = Box::leak(home.clone().into_boxed_str());
        busy.model_inflight.insert(name, 2);
        assert_eq!(route_conversation(&map, &busy, key, 1), home, "slack 2");
        busy.model_inflight.insert(name, 3);
        assert_ne!(route_conversation(&map, &busy, key, 1), home, "3 > 0 + 2");
        let mut cooling = FakeLoad::default();
        cooling.cooling.insert(name);
        assert_ne!(route_conversation(&map, &cooling, key, 1), home);
    }
    assert!(homes.len() >= 8, "conversations spread: {homes:?}");
}
