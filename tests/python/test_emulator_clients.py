"""The official `ollama` and `openai` Python clients against the emulator.

Starts the `ollama-emu` binary (env OLLAMA_EMU_BIN, default
<repo>/target/debug/ollama-emu) on an ephemeral port, read from its first
stdout line, and stops it at the end.
"""

import os
import subprocess
from pathlib import Path

import httpx
import ollama
import openai
import pytest

REPO = Path(__file__).resolve().parents[2]
EMU_BIN = os.environ.get("OLLAMA_EMU_BIN", str(REPO / "target" / "debug" / "ollama-emu"))


@pytest.fixture(scope="module")
def emu():
    proc = subprocess.Popen(
        [
            EMU_BIN,
            "--listen", "127.0.0.1:0",
            "--name", "py-emu",
            "--model", "llama3.2",
            "--model", "qwen2.5:0.5b",
            "--load-time", "100ms",
            "--tokens-per-second", "500",
            "--pull-time", "100ms",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert " listening on " in line, f"unexpected first line {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        yield line.split(" listening on ", 1)[1].strip()
    finally:
        proc.terminate()
        try:
            assert proc.wait(timeout=5) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.fixture
def client(emu):
    return ollama.Client(host=emu)


@pytest.fixture
def oai(emu):
    return openai.OpenAI(base_url=emu + "/v1", api_key="unused")


def test_first_line_and_instance_header(emu):
    r = httpx.get(emu + "/")
    assert r.status_code == 200
    assert r.text == "Ollama is running"
    assert r.headers["x-emu-instance"] == "py-emu"


def test_chat_not_streamed(client):
    r = client.chat(model="llama3.2", messages=[{"role": "user", "content": "hello"}])
    assert r.message.role == "assistant"
    assert r.message.content
    assert r.done and r.done_reason == "stop"
    assert r.model == "llama3.2"
    assert r.eval_count > 0 and r.total_duration > 0


def test_chat_streamed(client):
    parts = list(client.chat(model="LLAMA3.2", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert len(parts) > 2
    assert all(p.model == "LLAMA3.2" for p in parts)
    assert not parts[0].done and parts[-1].done
    assert parts[-1].done_reason == "stop"
    assert "".join(p.message.content for p in parts).strip()


def test_generate(client):
    r = client.generate(model="llama3.2", prompt="Why is the sky blue?")
    assert r.response and r.done
    streamed = list(client.generate(model="llama3.2", prompt="again", stream=True))
    assert streamed[-1].done and streamed[-1].eval_count == len(streamed) - 1


def test_generate_unknown_model_raises(client):
    with pytest.raises(ollama.ResponseError) as e:
        client.generate(model="nope", prompt="x")
    assert e.value.status_code == 404
    assert e.value.error == "model 'nope' not found"


def test_embed(client):
    r = client.embed(model="llama3.2", input=["a", "b"])
    assert len(r.embeddings) == 2 and len(r.embeddings[0]) == 8
    again = client.embed(model="llama3.2", input="a")
    assert again.embeddings[0] == r.embeddings[0]


def test_list_show_ps(client):
    names = {m.model for m in client.list().models}
    assert {"llama3.2:latest", "qwen2.5:0.5b"} <= names
    show = client.show("llama3.2")
    assert show.details.family == "llama"
    assert "completion" in show.capabilities
    client.generate(model="llama3.2", prompt="warm up")
    ps = client.ps().models
    assert any(m.model == "llama3.2:latest" and m.context_length == 4096 for m in ps)


def test_pull_then_use(client):
    progress = list(client.pull("tinyllama:1.1b", stream=True))
    statuses = [p.status for p in progress]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert any(s.startswith("pulling ") and p.total for s, p in zip(statuses, progress))
    assert client.pull("tinyllama:1.1b").status == "success"
    assert "tinyllama:1.1b" in {m.model for m in client.list().models}
    assert client.generate(model="tinyllama:1.1b", prompt="x").done


def test_openai_chat(oai):
    r = oai.chat.completions.create(model="llama3.2", messages=[{"role": "user", "content": "hi"}])
    assert r.object == "chat.completion"
    assert r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens > 0


def test_openai_chat_streamed(oai):
    chunks = list(
        oai.chat.completions.create(
            model="llama3.2",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_openai_embeddings_and_models(oai):
    e = oai.embeddings.create(model="llama3.2", input=["one", "two"])
    assert len(e.data) == 2 and len(e.data[0].embedding) == 8
    # The client asks for base64 by default; explicit floats must agree.
    floats = oai.embeddings.create(model="llama3.2", input=["one"], encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(e.data[0].embedding, abs=1e-6)
    ids = {m.id for m in oai.models.list()}
    assert "llama3.2:latest" in ids
    assert oai.models.retrieve("llama3.2").id == "llama3.2"


def test_openai_unknown_model(oai):
    with pytest.raises(openai.NotFoundError) as e:
        oai.chat.completions.create(model="missing", messages=[{"role": "user", "content": "x"}])
    assert e.value.body["type"] == "not_found_error" or e.value.code is None
