//! Management through the real Envoy: pull, delete, copy, create (from a
//! base and from an uploaded blob) and the unload idiom reach every
//! instance that should see them and no other; a pull failing on one
//! instance ends the stream with an error naming it while the others
//! finish; a second identical pull joins the first; `x-ollama-instance`
//! pins each request to one instance; bad names get Ollama's 400s.

// Test helpers: a failed unwrap here is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use e2e::{Emu, Envoy, Rig, Syncd};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

struct Fleet {
    rig: Rig,
    emus: Vec<Emu>,
    syncd: Syncd,
    envoy: Envoy,
}

const LLAMA: &str = "llama3.2:latest";
const QWEN: &str = "qwen2.5:latest";

/// a and b hold llama3.2 (loaded on both), c holds qwen2.5 (loaded).
async fn fleet(test: &str) -> anyhow::Result<Fleet> {
    let mut rig = Rig::new(test);
    let common = ["--pull-time", "1500ms", "--load-time", "50ms"];
    let mut emus = Vec::new();
    for (name, model) in [("a", "llama3.2"), ("b", "llama3.2"), ("c", "qwen2.5")] {
        let mut args = vec!["--model", model, "--loaded", model];
        args.extend(common);
        emus.push(rig.emulator(name, &args).await?);
    }
    let refs: Vec<&Emu> = emus.iter().collect();
    let syncd = rig.syncd(&refs, &[]).await?;
    let config = rig.envoy_config(&refs, syncd.addr);
    let envoy = rig.envoy(&config, 2).await?;
    let fleet = Fleet {
        rig,
        emus,
        syncd,
        envoy,
    };
    fleet
        .until("both models routable", || async {
            let tags = fleet.get(&fleet.envoy.url, "/api/tags").await?;
            let text = tags.to_string();
            (text.contains(LLAMA) && text.contains(QWEN)).then_some(())
        })
        .await?;
    Ok(fleet)
}

impl Fleet {
    fn emu(&self, name: &str) -> &Emu {
        self.emus.iter().find(|e| e.name == name).expect("emulator")
    }

    async fn until<T, F, Fut>(&self, what: &str, check: F) -> anyhow::Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let start = Instant::now();
        loop {
            if let Some(v) = check().await {
                return Ok(v);
            }
            if start.elapsed() > Duration::from_secs(60) {
                anyhow::bail!("{what}: not so after 60 s\n{}", self.rig.logs());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn get(&self, base: &str, path: &str) -> Option<Value> {
        let resp = e2e::http().get(format!("{base}{path}")).send().await.ok()?;
        resp.json().await.ok()
    }

    /// `(status, body)` of a request through Envoy.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
        pin: Option<&str>,
    ) -> (u16, String) {
        let mut req = e2e::http()
            .request(method, format!("{}{path}", self.envoy.url))
            .json(&body);
        if let Some(name) = pin {
            req = req.header("x-ollama-instance", name);
        }
        let resp = req.send().await.expect("request through Envoy");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// Which emulators list `model` in their own `/api/tags`, with digests.
    async fn holders(&self, model: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for e in &self.emus {
            let tags = self.get(&e.url, "/api/tags").await.unwrap_or_default();
            for m in tags["models"].as_array().into_iter().flatten() {
                if m["name"] == model {
                    out.push((e.name.clone(), m["digest"].as_str().unwrap_or("").into()));
                }
            }
        }
        out
    }

    async fn held_on(&self, model: &str) -> Vec<String> {
        self.holders(model).await.into_iter().map(|h| h.0).collect()
    }

    async fn loaded_on(&self, model: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in &self.emus {
            let ps = self.get(&e.url, "/api/ps").await.unwrap_or_default();
            if ps["models"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["name"] == model)
            {
                out.push(e.name.clone());
            }
        }
        out
    }

    /// Waits until the balancer's merged tags list (or stop listing) `model`.
    async fn map_lists(&self, model: &str, listed: bool) -> anyhow::Result<()> {
        self.until(&format!("map lists {model}: {listed}"), || async {
            let tags = self.get(&self.envoy.url, "/api/tags").await?;
            let has = tags["models"]
                .as_array()?
                .iter()
                .any(|m| m["name"] == model);
            (has == listed).then_some(())
        })
        .await
    }

    async fn control(&self, emu: &str, what: &str, body: Value) {
        let url = format!("{}/_emu/{what}", self.emu(emu).url);
        let resp = e2e::http()
            .post(url)
            .json(&body)
            .send()
            .await
            .expect("control");
        assert!(resp.status().is_success(), "control {what}");
    }
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn every_management_request_reaches_the_instances_it_should() -> anyhow::Result<()> {
    let f = fleet("fleet_manage").await?;
    let post = reqwest::Method::POST;
    let delete = reqwest::Method::DELETE;

    // Unload: everywhere llama3.2 is loaded (a, b); c keeps qwen loaded.
    let (status, body) = f
        .send(
            post.clone(),
            "/api/generate",
            json!({"model": "llama3.2", "keep_alive": 0}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body)?;
    assert_eq!(
        (answer["done_reason"].as_str(), answer["model"].as_str()),
        (Some("unload"), Some("llama3.2"))
    );
    f.until("llama3.2 unloaded on a and b", || async {
        f.loaded_on(LLAMA).await.is_empty().then_some(())
    })
    .await?;
    assert_eq!(f.loaded_on(QWEN).await, names(&["c"]));

    // Update: llama3.2 moved on in the registry; the pull reaches every
    // healthy instance, one stream, layers summed, ending in success.
    let new = hex::encode(Sha256::digest(b"llama3.2 v2"));
    for e in ["a", "b", "c"] {
        f.control(e, "registry", json!({"name": "llama3.2", "digest": new}))
            .await;
    }
    let (status, body) = f
        .send(
            post.clone(),
            "/api/pull",
            json!({"model": "llama3.2"}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let progress = lines(&body);
    assert_eq!(progress[0]["status"], "pulling manifest", "{body}");
    assert_eq!(progress.last().unwrap()["status"], "success", "{body}");
    let layers: Vec<&Value> = progress
        .iter()
        .filter(|l| l.get("digest").is_some())
        .collect();
    let last = layers
        .iter()
        .rev()
        .find(|l| l["status"] == layers[0]["status"])
        .unwrap();
    assert_eq!(last["completed"], last["total"], "{body}");
    let mut sizes = 0;
    for e in &f.emus {
        let tags = f.get(&e.url, "/api/tags").await.unwrap_or_default();
        let models = tags["models"].as_array().cloned().unwrap_or_default();
        let llama = models.iter().find(|m| m["name"] == LLAMA);
        sizes += llama.and_then(|m| m["size"].as_u64()).unwrap_or(0);
    }
    assert_eq!(
        last["total"].as_u64(),
        Some(sizes),
        "summed over three instances: {body}"
    );
    let held = f.holders(LLAMA).await;
    assert_eq!(held.len(), 3, "{held:?}");
    assert!(held.iter().all(|(_, d)| *d == new), "{held:?}");

    // Copy: on every holder of the source (c only), nowhere else.
    let (status, body) = f
        .send(
            post.clone(),
            "/api/copy",
            json!({"source": "qwen2.5", "destination": "qwen-copy"}),
            None,
        )
        .await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(f.held_on("qwen-copy:latest").await, names(&["c"]));
    // syncd answered once its map had the copy (it polls at once after a
    // change it made), so the filters' long poll already carries it.
    let map = f.get(&f.syncd.url, "/v1/map").await.unwrap_or_default();
    assert!(map.to_string().contains("qwen-copy:latest"), "{map}");

    // Create from a base: on the holders of the base.
    let create =
        json!({"model": "qwen-sys", "from": "qwen2.5", "system": "be brief", "stream": false});
    let (status, body) = f.send(post.clone(), "/api/create", create, None).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"success"}"#));
    assert_eq!(f.held_on("qwen-sys:latest").await, names(&["c"]));

    // Delete: every holder; then Ollama's 404.
    f.map_lists("qwen-copy:latest", true).await?;
    let (status, body) = f
        .send(
            delete.clone(),
            "/api/delete",
            json!({"model": "qwen-copy"}),
            None,
        )
        .await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert!(f.held_on("qwen-copy:latest").await.is_empty());
    f.map_lists("qwen-copy:latest", false).await?;
    let (status, body) = f
        .send(
            delete.clone(),
            "/api/delete",
            json!({"model": "qwen-copy"}),
            None,
        )
        .await;
    assert_eq!(
        (status, body.as_str()),
        (404, r#"{"error":"model 'qwen-copy' not found"}"#)
    );

    // A blob, checked and uploaded through the balancer, reaches every
    // instance; a model created from it is on every instance.
    let blob: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&blob)));
    let blob_url = format!("{}/api/blobs/{digest}", f.envoy.url);
    let head = e2e::http().head(&blob_url).send().await?;
    assert_eq!(head.status(), 404);
    let upload = e2e::http()
        .post(&blob_url)
        .body(blob.clone())
        .send()
        .await?;
    assert_eq!(upload.status(), 201, "{:?}", upload.text().await);
    assert_eq!(e2e::http().head(&blob_url).send().await?.status(), 200);
    for e in &f.emus {
        let on = e2e::http()
            .head(format!("{}/api/blobs/{digest}", e.url))
            .send()
            .await?;
        assert_eq!(on.status(), 200, "blob on {}", e.name);
    }
    let create = json!({"model": "local", "files": {"model.gguf": digest}});
    let (status, body) = f.send(post.clone(), "/api/create", create, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(lines(&body).last().unwrap()["status"], "success", "{body}");
    assert_eq!(f.held_on("local:latest").await, names(&["a", "b", "c"]));

    // Pinned: each request reaches only the instance named.
    let (status, body) = f
        .send(
            post.clone(),
            "/api/pull",
            json!({"model": "phi3", "stream": false}),
            Some("b"),
        )
        .await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"success"}"#));
    assert_eq!(f.held_on("phi3:latest").await, names(&["b"]));
    let (status, _) = f
        .send(
            delete.clone(),
            "/api/delete",
            json!({"model": "local"}),
            Some("a"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(f.held_on("local:latest").await, names(&["b", "c"]));
    let (status, _) = f
        .send(
            post.clone(),
            "/api/copy",
            json!({"source": "local", "destination": "pinned-copy"}),
            Some("c"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(f.held_on("pinned-copy:latest").await, names(&["c"]));
    let pinned_create = json!({"model": "pinned-sys", "from": "local", "stream": false});
    let (status, _) = f
        .send(post.clone(), "/api/create", pinned_create, Some("b"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(f.held_on("pinned-sys:latest").await, names(&["b"]));
    let unload = json!({"model": "qwen2.5", "keep_alive": 0, "messages": []});
    let (status, body) = f.send(post.clone(), "/api/chat", unload, Some("c")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"unload\""), "{body}");

    // Bad names get Ollama's texts; nothing is pulled.
    let (status, body) = f
        .send(
            post.clone(),
            "/api/pull",
            json!({"model": "bad name"}),
            None,
        )
        .await;
    assert_eq!(
        (status, body.as_str()),
        (400, r#"{"error":"invalid model name"}"#)
    );
    let (status, body) = f
        .send(
            delete.clone(),
            "/api/delete",
            json!({"model": "bad name"}),
            None,
        )
        .await;
    assert_eq!(
        (status, body.as_str()),
        (400, r#"{"error":"name \"bad name\" is invalid"}"#)
    );
    let (status, body) = f
        .send(
            post.clone(),
            "/api/copy",
            json!({"source": "nope", "destination": "x"}),
            None,
        )
        .await;
    assert_eq!(
        (status, body.as_str()),
        (404, r#"{"error":"model \"nope\" not found"}"#)
    );
    let logs = f.rig.output_of(f.syncd.proc);
    assert!(!logs.contains("ERROR"), "{logs}");
    Ok(())
}

#[tokio::test]
async fn a_failing_instance_is_named_and_a_second_pull_joins_the_first() -> anyhow::Result<()> {
    let f = fleet("fleet_pull").await?;
    let post = reqwest::Method::POST;

    // b fails mid-pull; a and c finish; the stream ends with b's error.
    f.control(
        "b",
        "fault",
        json!({"kind": "fail_pull", "after_chunks": 2}),
    )
    .await;
    let (status, body) = f
        .send(post.clone(), "/api/pull", json!({"model": "gemma3"}), None)
        .await;
    assert_eq!(status, 200);
    let last = lines(&body).pop().unwrap();
    let error = last["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("(on b)") && error.contains("emulated fault"),
        "{body}"
    );
    assert_eq!(f.held_on("gemma3:latest").await, names(&["a", "c"]));
    f.control("b", "fault", json!({"kind": "none"})).await;

    // Unknown to the registry: Ollama's error, once, naming each instance.
    for e in ["a", "b", "c"] {
        f.control(e, "registry", json!({"name": "nothere", "digest": null}))
            .await;
    }
    let (status, body) = f
        .send(
            post.clone(),
            "/api/pull",
            json!({"model": "nothere", "stream": false}),
            None,
        )
        .await;
    assert_eq!(status, 500);
    assert_eq!(
        serde_json::from_str::<Value>(&body)?["error"],
        "pull model manifest: file does not exist (on a, b, c)"
    );

    // Two identical pulls: the second joins the first; each instance
    // sees one pull.
    for e in &f.emus {
        let url = format!("{}/_emu/reset_stats", e.url);
        e2e::http().post(url).send().await?;
    }
    let first = e2e::http()
        .post(format!("{}/api/pull", f.envoy.url))
        .json(&json!({"model": "mistral"}))
        .send()
        .await?;
    let mut first_stream = first.bytes_stream();
    use futures_util::StreamExt;
    let mut seen = String::new();
    while !seen.contains("\"digest\"") {
        let chunk = first_stream.next().await.expect("progress")?;
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let (status, second) = f
        .send(post.clone(), "/api/pull", json!({"name": "mistral"}), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        lines(&second).last().unwrap()["status"],
        "success",
        "{second}"
    );
    while let Some(chunk) = first_stream.next().await {
        seen.push_str(&String::from_utf8_lossy(&chunk?));
    }
    assert_eq!(lines(&seen).last().unwrap()["status"], "success", "{seen}");
    for e in &f.emus {
        let stats = f.get(&e.url, "/_emu/stats").await.unwrap_or_default();
        assert_eq!(
            stats["requests_by_path"]["/api/pull"], 1,
            "{}: {stats}",
            e.name
        );
    }
    assert!(f
        .rig
        .output_of(f.syncd.proc)
        .contains("joining the running one"));

    // syncd reports each fleet pull, newest first, with its outcome.
    let report = f
        .get(&f.syncd.url, "/v1/fleet/pulls")
        .await
        .unwrap_or_default();
    let pulls = report["pulls"].as_array().cloned().unwrap_or_default();
    let states: Vec<(&str, &str)> = pulls
        .iter()
        .map(|p| {
            (
                p["model"].as_str().unwrap_or(""),
                p["state"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("mistral:latest", "done"),
            ("nothere:latest", "failed"),
            ("gemma3:latest", "failed")
        ],
        "{report}"
    );
    assert_eq!(pulls[0]["completed"], pulls[0]["total"], "{report}");
    Ok(())
}
