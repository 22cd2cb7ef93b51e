//! A live fleet through the real Envoy, whose process is never restarted:
//! instances added to syncd's instance file (on SIGHUP, and by editing the
//! file alone) receive traffic; a broken file keeps the fleet and names
//! the line; instances appearing under a DNS name (a server the test
//! controls) receive traffic, and one disappearing gets no new request
//! while its in-flight stream completes. The times measured are printed.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use e2e::dns_server::DnsServer;
use e2e::load::{fast_model_args, summary, Load};
use e2e::{Emu, Envoy, Rig, Syncd};

const WAIT: Duration = Duration::from_secs(30);

fn instance_file(emus: &[&Emu]) -> String {
    emus.iter()
        .map(|e| {
            format!(
                "[[instance]]\nname = \"{}\"\nurl = \"{}\"\n\n",
                e.name, e.url
            )
        })
        .collect()
}

async fn routable(envoy: &Envoy) -> anyhow::Result<()> {
    e2e::until("the balancer routes m", WAIT, || async {
        let tags = e2e::http()
            .get(format!("{}/api/tags", envoy.url))
            .send()
            .await
            .ok()?;
        tags.text().await.ok()?.contains("m:latest").then_some(())
    })
    .await
}

/// Waits until `instance` has been routed a request, returns how long.
async fn served(envoy: &Envoy, instance: &str, since: Instant) -> anyhow::Result<Duration> {
    e2e::until(&format!("{instance} gets traffic"), WAIT, || async {
        (envoy.routed(instance).await > 0).then_some(())
    })
    .await?;
    Ok(since.elapsed())
}

async fn start_syncd(rig: &mut Rig, args: &[&str]) -> anyhow::Result<Syncd> {
    let syncd = rig.syncd(&[], args).await?;
    Ok(syncd)
}

#[tokio::test]
async fn instances_added_to_the_file_get_traffic_and_a_broken_file_changes_nothing(
) -> anyhow::Result<()> {
    let mut rig = Rig::new("live_fleet_file");
    let a = rig.emulator("a", &fast_model_args("m")).await?;
    let b = rig.emulator("b", &fast_model_args("m")).await?;
    let c = rig.emulator("c", &fast_model_args("m")).await?;
    let file = rig.dir.join("instances.toml");
    std::fs::write(&file, instance_file(&[&a]))?;
    let path = file.display().to_string();
    let syncd = start_syncd(&mut rig, &["--config", &path]).await?;
    let config = rig.envoy_config(&[], syncd.addr);
    let envoy = rig.envoy(&config, 2).await?;
    let envoy_pid = rig.proc(envoy.proc).pid();
    routable(&envoy).await?;
    let load = Load::start(&envoy.url, "m", 4);
    served(&envoy, "a", Instant::now()).await?;

    std::fs::write(&file, instance_file(&[&a, &b]))?;
    rig.signal(syncd.proc, "HUP")?;
    let after_hup = served(&envoy, "b", Instant::now()).await?;

    std::fs::write(&file, instance_file(&[&a, &b, &c]))?;
    let after_edit = served(&envoy, "c", Instant::now()).await?;

    std::fs::write(&file, "[[instance]]\nname = \"d\"\nurl = \n")?;
    rig.signal(syncd.proc, "HUP")?;
    let line = e2e::until("syncd reports the broken file", WAIT, || async {
        rig.output_of(syncd.proc)
            .lines()
            .find(|l| l.contains("reload failed") && l.contains("line"))
            .map(str::to_string)
    })
    .await?;
    let routed: Vec<i64> = [
        envoy.routed("a").await,
        envoy.routed("b").await,
        envoy.routed("c").await,
    ]
    .to_vec();
    let moved_on = e2e::until("all three still get traffic", WAIT, || async {
        for (name, before) in ["a", "b", "c"].iter().zip(&routed) {
            if envoy.routed(name).await <= *before {
                return None;
            }
        }
        Some(())
    })
    .await;
    let outcomes = load.stop().await;
    println!(
        "file: b routed {after_hup:?} after SIGHUP, c {after_edit:?} after the edit; \
         broken file: {line}; {}",
        summary(&outcomes)
    );
    moved_on?;
    assert!(
        outcomes.iter().all(|o| !o.failed()),
        "{}",
        summary(&outcomes)
    );
    assert_eq!(rig.proc(envoy.proc).pid(), envoy_pid);
    assert!(
        rig.proc(envoy.proc).exited().is_none(),
        "Envoy kept running"
    );
    Ok(())
}

/// A stream of `tokens` tokens pinned to `instance`, once its response
/// has begun.
async fn pinned_stream(
    url: &str,
    instance: &str,
    tokens: u32,
) -> anyhow::Result<reqwest::Response> {
    let body = serde_json::json!({
        "model": "m", "prompt": "hi", "options": {"num_predict": tokens},
    });
    let resp = e2e::http()
        .post(format!("{url}/api/generate"))
        .header("x-ollama-instance", instance)
        .json(&body)
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 200, "status {}", resp.status());
    Ok(resp)
}

#[tokio::test]
async fn instances_under_a_dns_name_come_and_go() -> anyhow::Result<()> {
    let mut rig = Rig::new("live_fleet_dns");
    let one = rig
        .emulator_on("one", "127.0.0.2:0", &fast_model_args("m"))
        .await?;
    let port = one.addr.port();
    let _two = rig
        .emulator_on("two", &format!("127.0.0.3:{port}"), &fast_model_args("m"))
        .await?;
    let (ip1, ip2) = (Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3));
    let dns = DnsServer::start(&[ip1]).await?;
    let discover = format!("dns:ollama.test:{port}");
    let server = dns.addr.to_string();
    let syncd = start_syncd(
        &mut rig,
        &["--discover", &discover, "--dns-server", &server],
    )
    .await?;
    let config = rig.envoy_config(&[], syncd.addr);
    let envoy = rig.envoy(&config, 2).await?;
    let envoy_pid = rig.proc(envoy.proc).pid();
    let (name1, name2) = (format!("127.0.0.2_{port}"), format!("127.0.0.3_{port}"));
    routable(&envoy).await?;
    let load = Load::start(&envoy.url, "m", 4);
    served(&envoy, &name1, Instant::now()).await?;

    dns.set(&[ip1, ip2]);
    let appeared = served(&envoy, &name2, Instant::now()).await?;

    // A long stream on the first instance, then its address goes away.
    let resp = pinned_stream(&envoy.url, &name1, 300).await?;
    let stream = tokio::spawn(resp.text());
    dns.set(&[ip2]);
    let gone = Instant::now();
    let id = e2e::until("syncd drops the first instance", WAIT, || async {
        let map: model_map::ModelMap = e2e::http()
            .get(format!("{}/v1/map", syncd.url))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        map.instance(&name1).is_none().then_some(map.id)
    })
    .await?;
    envoy.installed(&rig, &id, 2).await?;
    let dropped_after = gone.elapsed();
    let before = envoy.routed(&name1).await;
    let target = envoy.routed(&name2).await + 40;
    e2e::until("the load moves on", WAIT, || async {
        (envoy.routed(&name2).await >= target).then_some(())
    })
    .await?;
    let after = envoy.routed(&name1).await;
    let text = stream.await??;
    let outcomes = load.stop().await;
    println!(
        "dns: the new address routed {appeared:?} after it appeared; the old one left the \
         map {dropped_after:?} after it vanished; {}",
        summary(&outcomes)
    );
    assert_eq!(after, before, "no new request to the instance that left");
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.contains("\"done\":true"),
        "the in-flight stream completed: {last}"
    );
    assert!(
        outcomes.iter().all(|o| !o.failed()),
        "{}",
        summary(&outcomes)
    );
    assert_eq!(rig.proc(envoy.proc).pid(), envoy_pid);
    Ok(())
}
