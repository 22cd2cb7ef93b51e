"""The official ollama and openai clients, pointed at Envoy, see the fleet
as one Ollama: every call below goes through the real Envoy, the filter and
syncd to emulated instances."""

import ollama
import openai
import pytest


@pytest.fixture(scope="module")
def base(fleet):
    a = fleet.emulator("a", "--model", "llama3.2", "--model", "nomic-embed-text", "--loaded", "llama3.2",
                       "--load-time", "200ms", "--tokens-per-second", "200")
    b = fleet.emulator("b", "--model", "llama3.2", "--model", "mistral",
                       "--load-time", "200ms", "--tokens-per-second", "200")
    return fleet.balancer({"a": a, "b": b})


@pytest.fixture(scope="module")
def client(base):
    return ollama.Client(host=base)


@pytest.fixture(scope="module")
def oai(base):
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused")


def test_list_merges_the_fleet(client):
    names = sorted(m.model for m in client.list().models)
    assert names == ["llama3.2:latest", "mistral:latest", "nomic-embed-text:latest"]


def test_chat_non_streaming(client):
    resp = client.chat(model="mistral", messages=[{"role": "user", "content": "hi"}])
    assert resp.done and resp.message.role == "assistant" and resp.message.content


def test_chat_streaming(client):
    parts = list(client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert len(parts) > 2 and parts[-1].done and not parts[0].done
    assert "".join(p.message.content for p in parts)


def test_generate(client):
    resp = client.generate(model="MISTRAL", prompt="why is the sky blue?")
    assert resp.done and resp.response and resp.model == "MISTRAL"


def test_embed(client):
    resp = client.embed(model="nomic-embed-text", input=["a", "b"])
    assert len(resp.embeddings) == 2 and len(resp.embeddings[0]) > 0


def test_show(client):
    resp = client.show("library/mistral")
    assert resp.details.format == "gguf"


def test_ps_shows_loaded_models(client):
    names = [m.model for m in client.ps().models]
    assert "llama3.2:latest" in names


def test_missing_model_is_ollamas_404(client):
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 404
    assert err.value.error == "model 'nope' not found"


def test_openai_chat(oai):
    resp = oai.chat.completions.create(model="mistral", messages=[{"role": "user", "content": "hi"}])
    assert resp.choices[0].message.content and resp.object == "chat.completion"


def test_openai_chat_streaming(oai):
    chunks = list(oai.chat.completions.create(model="llama3.2", stream=True,
                                              messages=[{"role": "user", "content": "hi"}]))
    assert len(chunks) > 2
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_openai_embeddings(oai):
    resp = oai.embeddings.create(model="nomic-embed-text", input="hello")
    assert len(resp.data[0].embedding) > 0


def test_openai_models(oai):
    ids = sorted(m.id for m in oai.models.list())
    assert ids == ["llama3.2:latest", "mistral:latest", "nomic-embed-text:latest"]


def test_openai_missing_model(oai):
    with pytest.raises(openai.NotFoundError) as err:
        oai.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert "model 'nope' not found" in str(err.value)
