"""The official ollama client manages the whole fleet through the balancer:
a pull reaches every instance with one progress stream, and delete, copy,
create (from a base and from an uploaded blob) and unload act on every
instance they should, and on no other."""

import json
import time
import urllib.request

import ollama
import pytest


@pytest.fixture(scope="module")
def fleet_urls(fleet):
    urls = {
        "a": fleet.emulator("a", "--model", "llama3.2", "--loaded", "llama3.2", "--pull-time", "1s"),
        "b": fleet.emulator("b", "--model", "llama3.2", "--loaded", "llama3.2", "--pull-time", "1s"),
        "c": fleet.emulator("c", "--model", "qwen2.5", "--pull-time", "1s"),
    }
    base = fleet.balancer(urls)
    return base, urls


@pytest.fixture(scope="module")
def client(fleet_urls):
    return ollama.Client(host=fleet_urls[0])


def get(url):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def holders(urls, model):
    """Instances whose own /api/tags list `model`, with the digest."""
    out = {}
    for name, url in urls.items():
        for m in get(f"{url}/api/tags")["models"]:
            if m["name"] == model:
                out[name] = m["digest"]
    return out


def loaded(urls, model):
    return sorted(n for n, u in urls.items() if any(m["name"] == model for m in get(f"{u}/api/ps")["models"]))


def until(check, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not so after {timeout}s: {what}")


def listed(client, model):
    return any(m.model == model for m in client.list().models)


def test_pull_streams_per_layer_progress_and_reaches_every_instance(client, fleet_urls):
    _, urls = fleet_urls
    parts = list(client.pull("llama3.2", stream=True))
    statuses = [p.status for p in parts]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success", statuses
    layers = {}
    for p in parts:
        if p.digest:
            layers[p.digest] = p
            assert p.status == f"pulling {p.digest[7:19]}"
    assert len(layers) >= 1
    for p in layers.values():
        assert p.total and p.completed == p.total, p
    assert "verifying sha256 digest" in statuses and "writing manifest" in statuses
    held = holders(urls, "llama3.2:latest")
    assert sorted(held) == ["a", "b", "c"]
    assert len(set(held.values())) == 1, held


def test_copy_and_delete_act_on_the_holders_only(client, fleet_urls):
    _, urls = fleet_urls
    client.copy("qwen2.5", "qwen-mine")
    assert sorted(holders(urls, "qwen-mine:latest")) == ["c"]
    until(lambda: listed(client, "qwen-mine:latest"), "the map lists the copy")
    client.delete("qwen-mine")
    assert holders(urls, "qwen-mine:latest") == {}
    until(lambda: not listed(client, "qwen-mine:latest"), "the map drops the copy")
    with pytest.raises(ollama.ResponseError) as err:
        client.delete("qwen-mine")
    assert err.value.status_code == 404 and "not found" in err.value.error


def test_create_from_a_base_goes_where_the_base_is(client, fleet_urls):
    _, urls = fleet_urls
    resp = client.create(model="qwen-brief", from_="qwen2.5", system="Answer in one word.")
    assert resp.status == "success"
    assert sorted(holders(urls, "qwen-brief:latest")) == ["c"]


def test_create_from_an_uploaded_blob_reaches_every_instance(client, fleet_urls, tmp_path):
    _, urls = fleet_urls
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + bytes(range(256)) * 4096)
    digest = client.create_blob(gguf)
    for name, url in urls.items():
        req = urllib.request.Request(f"{url}/api/blobs/{digest}", method="HEAD")
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200, name
    parts = list(client.create(model="tiny-local", files={"tiny.gguf": digest}, stream=True))
    assert parts[-1].status == "success"
    assert sorted(holders(urls, "tiny-local:latest")) == ["a", "b", "c"]


def test_unload_frees_every_replica(client, fleet_urls):
    _, urls = fleet_urls
    until(lambda: loaded(urls, "llama3.2:latest") == ["a", "b"], "llama3.2 loaded on a and b")
    resp = client.generate(model="llama3.2", keep_alive=0)
    assert resp.done and resp.done_reason == "unload"
    until(lambda: loaded(urls, "llama3.2:latest") == [], "llama3.2 unloaded everywhere")
