//! Load time, token pace, parallel slots, the queue, eviction and
//! keep-alive, as a balancer would observe them.

mod common;

use std::time::{Duration, Instant};

use common::{config, gen, start};
use serde_json::json;

#[tokio::test]
async fn cold_start_pays_the_load_time_and_warm_does_not() {
    let mut c = config(&["llama3"]);
    c.load_time = Duration::from_millis(300);
    let emu = start(c).await;

    let t = Instant::now();
    let (status, cold) = emu.call("/api/generate", gen("llama3")).await;
    let cold_wall = t.elapsed();
    assert_eq!(status, 200, "{cold}");
    let t = Instant::now();
    let (_, warm) = emu.call("/api/generate", gen("llama3")).await;
    let warm_wall = t.elapsed();

    let cold_load = cold["load_duration"].as_u64().unwrap();
    let warm_load = warm["load_duration"].as_u64().unwrap();
    assert!(cold_load >= 250_000_000, "cold load_duration {cold_load}");
    assert!(
        warm_load * 10 < cold_load,
        "warm {warm_load} vs cold {cold_load}"
    );
    assert!(
        cold_wall > warm_wall + Duration::from_millis(200),
        "{cold_wall:?} vs {warm_wall:?}"
    );
    assert_eq!(cold["done_reason"], "stop");
    assert_eq!(cold["eval_count"], 5);
    let stats = emu.stats().await;
    assert_eq!(stats["cold_loads"], 1);
    assert_eq!(stats["cold_loads_by_model"]["llama3:latest"], 1);
}

#[tokio::test]
async fn concurrent_requests_share_one_load() {
    let emu = start(config(&["llama3"])).await;
    let (a, b) =
        tokio::join!(emu.call("/api/generate", gen("llama3")), emu.call("/api/chat", json!({
        "model": "llama3", "messages": [{"role": "user", "content": "hi"}], "stream": false
    })));
    assert_eq!((a.0, b.0), (200, 200));
    assert_eq!(emu.stats().await["cold_loads"], 1);
}

#[tokio::test]
async fn num_parallel_slots_overlap_and_the_rest_wait() {
    let mut c = config(&["llama3"]);
    c.models[0].loaded = true;
    c.num_parallel = 2;
    c.tokens_per_second = 20.0;
    c.response_tokens = 10; // 500 ms per reply; two in series take 1 s
    let emu = start(c).await;

    let timed = || async {
        let t = Instant::now();
        let (status, _) = emu.call("/api/generate", gen("llama3")).await;
        assert_eq!(status, 200);
        t.elapsed()
    };
    let (a, b, c3) = tokio::join!(timed(), timed(), timed());
    let mut times = [a, b, c3];
    times.sort();
    assert!(
        times[1] < Duration::from_millis(700),
        "two overlap: {times:?}"
    );
    assert!(
        times[2] > times[1] + Duration::from_millis(250),
        "third waits: {times:?}"
    );
    let stats = emu.stats().await;
    assert_eq!(stats["max_in_flight_seen"], 2);
    assert_eq!(stats["cold_loads"], 0);
}

#[tokio::test]
async fn a_full_queue_answers_503_with_ollamas_text() {
    let mut c = config(&["llama3"]);
    c.max_queue = 1;
    c.load_time = Duration::from_millis(800);
    let emu = start(c).await;

    let first = emu.call("/api/generate", gen("llama3"));
    let second = async {
        emu.wait_stats(|s| s["queued"] == 1).await;
        emu.call("/api/generate", gen("llama3")).await
    };
    let ((s1, _), (s2, body)) = tokio::join!(first, second);
    assert_eq!(s1, 200);
    assert_eq!(s2, 503);
    assert_eq!(
        body,
        json!({"error": "server busy, please try again.  maximum pending requests exceeded"})
    );
    assert_eq!(emu.stats().await["rejected_503"], 1);

    // On /v1 the same error has the OpenAI shape.
    emu.control("/_emu/unload", json!({"name": "llama3"})).await;
    let v1 = json!({"model": "llama3", "messages": [{"role": "user", "content": "x"}]});
    let (_, (s, body)) = tokio::join!(emu.call("/api/generate", gen("llama3")), async {
        emu.wait_stats(|s| s["queued"] == 1).await;
        emu.call("/v1/chat/completions", v1.clone()).await
    });
    assert_eq!(s, 503);
    assert_eq!(body["error"]["type"], "api_error");
}

#[tokio::test]
async fn loading_past_max_loaded_models_evicts_the_idle_one() {
    let mut c = config(&["llama3", "qwen2.5:0.5b"]);
    c.max_loaded_models = 1;
    c.load_time = Duration::from_millis(50);
    let emu = start(c).await;

    emu.call("/api/generate", gen("llama3")).await;
    assert_eq!(emu.loaded().await, ["llama3:latest"]);
    emu.call("/api/generate", gen("qwen2.5:0.5b")).await;
    assert_eq!(emu.loaded().await, ["qwen2.5:0.5b"]);
    let stats = emu.stats().await;
    assert_eq!(stats["evictions"], 1);
    assert_eq!(stats["cold_loads"], 2);
}

#[tokio::test]
async fn a_busy_model_is_not_evicted_the_newcomer_waits() {
    let mut c = config(&["a", "b"]);
    c.max_loaded_models = 1;
    c.load_time = Duration::from_millis(50);
    c.tokens_per_second = 20.0; // 5 tokens: 250 ms
    let emu = start(c).await;

    let t = Instant::now();
    let (a, b) = tokio::join!(emu.call("/api/generate", gen("a")), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        emu.call("/api/generate", gen("b")).await
    });
    assert_eq!((a.0, b.0), (200, 200));
    // b needed a's 250 ms reply to end, then its own load and reply.
    assert!(
        t.elapsed() >= Duration::from_millis(550),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn idle_models_unload_when_keep_alive_expires() {
    let emu = start(config(&["llama3", "b"])).await;

    let mut req = gen("llama3");
    req["keep_alive"] = json!("300ms");
    emu.call("/api/generate", req).await;
    assert_eq!(emu.loaded().await, ["llama3:latest"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(emu.loaded().await.is_empty());

    let mut req = gen("llama3");
    req["keep_alive"] = json!(0);
    emu.call("/api/generate", req).await;
    assert!(
        emu.loaded().await.is_empty(),
        "keep_alive 0 unloads at once"
    );

    let mut req = gen("b");
    req["keep_alive"] = json!(-1);
    emu.call("/api/generate", req).await;
    let ps = emu.get_json("/api/ps").await;
    let expires = ps["models"][0]["expires_at"].as_str().unwrap();
    assert!(
        expires.starts_with("23"),
        "forever is about year 2318: {expires}"
    );
    assert_eq!(ps["models"][0]["context_length"], 4096);
    assert_eq!(ps["models"][0]["size_vram"], ps["models"][0]["size"]);
}

#[tokio::test]
async fn empty_prompts_load_and_unload() {
    let emu = start(config(&["llama3"])).await;
    let (s, body) = emu.call("/api/generate", json!({"model": "llama3"})).await;
    assert_eq!(s, 200);
    assert_eq!(body["done_reason"], "load");
    assert_eq!(body["done"], true);
    assert_eq!(emu.loaded().await, ["llama3:latest"]);

    let (_, body) = emu
        .call(
            "/api/chat",
            json!({"model": "llama3", "messages": [], "keep_alive": 0}),
        )
        .await;
    assert_eq!(body["done_reason"], "unload");
    assert_eq!(body["message"], json!({"role": "assistant", "content": ""}));
    assert!(emu.loaded().await.is_empty());
}

#[tokio::test]
async fn tokens_arrive_at_the_configured_rate() {
    let mut c = config(&["llama3"]);
    c.models[0].loaded = true;
    c.tokens_per_second = 50.0;
    c.response_tokens = 10; // 200 ms
    let emu = start(c).await;
    let t = Instant::now();
    let (_, body) = emu.call("/api/generate", gen("llama3")).await;
    let wall = t.elapsed();
    assert!(wall >= Duration::from_millis(190), "{wall:?}");
    assert!(body["eval_duration"].as_u64().unwrap() >= 190_000_000);

    let mut capped = gen("llama3");
    capped["options"] = json!({"num_predict": 3});
    let (_, body) = emu.call("/api/generate", capped).await;
    assert_eq!(body["eval_count"], 3);
    assert_eq!(body["done_reason"], "length");
}

#[tokio::test]
async fn a_client_that_goes_away_frees_its_slot() {
    let mut c = config(&["llama3"]);
    c.models[0].loaded = true;
    c.tokens_per_second = 10.0;
    c.response_tokens = 50; // 5 s if nobody hangs up
    let emu = start(c).await;

    let r = emu
        .post(
            "/api/generate",
            json!({"model": "llama3", "prompt": "long"}),
        )
        .await;
    emu.wait_stats(|s| s["in_flight"] == 1).await;
    drop(r);
    emu.wait_stats(|s| s["in_flight"] == 0).await;

    emu.control("/_emu/config", json!({"tokens_per_second": 1000}))
        .await;
    let t = Instant::now();
    let (status, _) = emu.call("/api/generate", gen("llama3")).await;
    assert_eq!(status, 200);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}

#[tokio::test]
async fn raising_num_parallel_live_lets_a_waiting_request_in() {
    let mut c = config(&["llama3"]);
    c.models[0].loaded = true;
    c.tokens_per_second = 10.0;
    c.response_tokens = 8; // 800 ms per reply
    let emu = start(c).await;

    let first = emu.call("/api/generate", gen("llama3"));
    let second = async {
        emu.wait_stats(|s| s["in_flight"] == 1).await;
        let t = Instant::now();
        let call = emu.call("/api/generate", gen("llama3"));
        let raise = async {
            emu.wait_stats(|s| s["queued"] == 1).await;
            emu.control("/_emu/config", json!({"num_parallel": 2}))
                .await;
        };
        let ((status, _), ()) = tokio::join!(call, raise);
        (status, t.elapsed())
    };
    let (_, (status, waited)) = tokio::join!(first, second);
    assert_eq!(status, 200);
    assert!(waited < Duration::from_millis(1400), "{waited:?}");
    assert_eq!(emu.stats().await["max_in_flight_seen"], 2);
}
