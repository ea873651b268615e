"""Experiment configuration: typed dataclasses, YAML in, `--set key=value` overrides.

Unknown keys and wrong types are errors that name the file, the line, the key and the
expected type, because a typo that silently falls back to a default is exactly the kind
of quiet failure this project exists to catch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainer.errors import TrainerError
from trainer.files import write_atomic
from trainer.typed_yaml import build as _build
from trainer.typed_yaml import compose_with_lines as _compose_with_lines
from trainer.typed_yaml import load_scalar

PACKAGED_CONFIGS = Path(__file__).parent / "configs"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MODES = ("lora", "qlora", "full", "pretrain")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "bf16-where-native")
TASKS = ("generate", "classify")
CLASS_WEIGHTS = ("auto", "none")
CLASSIFY_MODES = ("lora", "qlora", "full")


@dataclass
class ModelConfig:
    preset: str | None = "tiny"  # tiny | qwen2.5-0.5b | llama-124m (random init, said loudly); the default yields to path/init_arch
    path: str | None = None  # a local HF model directory, a prepared model's name, or a hub id in the local cache (trainer.pretrained)
    init_arch: str | None = None  # pretrain from an initial checkpoint: its config.json (or dir)
    init_weights: str | None = None  # ... and its weights (dir or .safetensors); both or neither
    tokenizer_vocab_size: int | None = None  # presets: BPE vocab to train (None: the preset's)


@dataclass
class LoraConfig:
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))


@dataclass
class DataConfig:
    train: str = "experiments/corpus/train.jsonl"
    validation: str = "experiments/corpus/validation.jsonl"
    max_seq_len: int = 512
    max_train_samples: int | None = None  # take the first N (after the deterministic order)
    max_validation_samples: int | None = 64
    packing: bool = False


@dataclass
class ClassifyConfig:
    """training.task=classify: the classes and how they are weighted (trainer.classify)."""

    labels: list[str] = field(default_factory=list)  # the class names, in order: class i is labels[i]
    multi_label: bool = False  # false: one `label` per record (softmax); true: a `labels` list per record (one sigmoid per class)
    class_weights: str = "auto"  # auto: inverse training-set frequency (multi-label: of each class's positives, as BCE pos_weight),
    # normalised so that the count-weighted mean weight is 1; none: every class weighs 1


@dataclass
class TrainingConfig:
    task: str = "generate"  # generate: causal LM on {input, output} pairs; classify: sequence classification (see `classify`)
    mode: str = "qlora"
    epochs: int = 1
    max_steps: int | None = None  # optimizer steps; None: epochs x steps per epoch
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-4
    warmup_ratio: float = 0.03
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    gradient_clipping: float | None = 1.0
    save_steps: int = 50
    eval_steps: int = 50
    max_checkpoints: int = 3
    seed: int = 42
    device: str = "auto"
    target_val_loss: float | None = None  # "converged" is only ever claimed against this
    log_steps: int = 1
    sample_steps: int = 0  # >0: every N steps, generate a short sample for the monitor
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU; fp32; bf16 (autocast on any device);
    # bf16-where-native: bf16 on CUDA and on CPUs with bf16 instructions (avx512_bf16, amx_bf16), fp32 elsewhere
    divergence_factor: float | None = 2.0  # window mean of the training loss above factor x its lowest: diverging (null: off)
    divergence_window: int = 10  # optimizer steps in that window
    stop_on_divergence: bool = False  # true: divergence ends the run (exit 3); false: it is recorded only


@dataclass
class GenerationConfig:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0


@dataclass
class Config:
    name: str = "experiment"
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- loading


def resolve_config_path(name_or_path: str) -> Path:
    """A YAML path, or the name of a packaged config (tiny-lora, tiny-qlora, ...)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise TrainerError(f"config file not found: {path}")
        return path
    packaged = PACKAGED_CONFIGS / f"{name_or_path}.yaml"
    if not packaged.is_file():
        names = sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml"))
        raise TrainerError(f"no config file '{name_or_path}' and no packaged config of that name (packaged: {', '.join(names)})")
    return packaged


def parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise TrainerError(f"--set expects key=value, got '{item}'")
    key, raw = item.split("=", 1)
    try:
        value = load_scalar(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _apply_override(data: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise TrainerError(f"--set {key}: '{part}' is not a section")
    node[parts[-1]] = value


def load_config(name_or_path: str | Path | None = None, overrides: list[str] | None = None, data: dict | None = None) -> Config:
    """Load a config file (or a dict), apply `key=value` overrides, validate everything."""
    lines: dict[str, int] = {}
    source = "<dict>"
    if name_or_path is not None:
        path = resolve_config_path(str(name_or_path))
        source = str(path)
        data, lines = _compose_with_lines(path.read_text(encoding="utf-8"), source)
    data = dict(data or {})
    for item in overrides or []:
        key, value = parse_override(item)
        _apply_override(data, key, value)
        lines[key] = 0
    model = data.get("model")
    if isinstance(model, dict) and "preset" not in model and (model.get("path") is not None or model.get("init_arch") is not None):
        data["model"] = {**model, "preset": None}  # the default preset yields to a model the config names; a stated one conflicts
    config = _build(Config, data, "", source, lines)
    validate(config, source)
    if config.model.path is not None:
        from trainer.pretrained import resolve_model_path

        try:
            config.model.path = str(resolve_model_path(config.model.path))  # resolved once: config.yaml records the directory
        except TrainerError as exc:
            raise TrainerError(f"{source}: {exc}") from None
    return config


def validate(config: Config, source: str = "<config>") -> None:
    """Semantic checks the types alone cannot express."""
    t, m = config.training, config.model

    def bad(key: str, expected: str, got: Any) -> TrainerError:
        return TrainerError(f"{source}: key '{key}' expects {expected}, got {got!r}")

    if t.task not in TASKS:
        raise bad("training.task", " | ".join(TASKS), t.task)
    if t.mode not in MODES:
        raise bad("training.mode", " | ".join(MODES), t.mode)
    if t.device not in DEVICES:
        raise bad("training.device", " | ".join(DEVICES), t.device)
    if t.precision not in PRECISIONS:
        raise bad("training.precision", " | ".join(PRECISIONS), t.precision)
    if t.divergence_factor is not None and not t.divergence_factor > 1:
        raise bad("training.divergence_factor", "a number > 1 or null", t.divergence_factor)
    for key in ("batch_size", "gradient_accumulation_steps", "epochs", "save_steps", "eval_steps", "max_checkpoints", "log_steps",
                "divergence_window"):
        if getattr(t, key) < 1:
            raise bad(f"training.{key}", "an integer >= 1", getattr(t, key))
    if t.max_steps is not None and t.max_steps < 1:
        raise bad("training.max_steps", "an integer >= 1 or null", t.max_steps)
    if not t.learning_rate > 0:
        raise bad("training.learning_rate", "a number > 0", t.learning_rate)
    if not 0 <= t.warmup_ratio < 1:
        raise bad("training.warmup_ratio", "a number in [0, 1)", t.warmup_ratio)
    if not 0 <= t.min_lr_ratio <= 1:
        raise bad("training.min_lr_ratio", "a number in [0, 1]", t.min_lr_ratio)
    if t.gradient_clipping is not None and not t.gradient_clipping > 0:
        raise bad("training.gradient_clipping", "a number > 0 or null", t.gradient_clipping)
    if config.data.max_seq_len < 8:
        raise bad("data.max_seq_len", "an integer >= 8", config.data.max_seq_len)
    if config.lora.rank < 1:
        raise bad("lora.rank", "an integer >= 1", config.lora.rank)
    if not 0 <= config.lora.dropout < 1:
        raise bad("lora.dropout", "a number in [0, 1)", config.lora.dropout)
    if not config.lora.target_modules:
        raise bad("lora.target_modules", "a non-empty list of module names", config.lora.target_modules)
    if m.preset is not None and m.path is not None:
        raise TrainerError(f"{source}: model.preset and model.path are exclusive; set one of them to null")
    if m.preset is None and m.path is None and m.init_arch is None:
        raise TrainerError(f"{source}: no model: set model.preset, model.path, or (pretrain) model.init_arch + model.init_weights")
    if (m.init_arch is None) != (m.init_weights is None):
        raise TrainerError(
            f"{source}: model.init_arch and model.init_weights come as a pair or not at all "
            f"(init_arch={m.init_arch!r}, init_weights={m.init_weights!r})"
        )
    if m.init_arch is not None and (m.preset is not None or m.path is not None):
        raise TrainerError(f"{source}: model.init_arch/init_weights replace model.preset and model.path; set those to null")
    if m.init_arch is not None and t.mode != "pretrain":
        raise TrainerError(f"{source}: model.init_arch/init_weights (--init) need training.mode=pretrain, got {t.mode!r}")
    validate_classify(config, source, bad)


def validate_classify(config: Config, source: str, bad) -> None:
    """`training.task` and the `classify` section agree; a classifier's settings make sense for one."""
    t, c = config.training, config.classify
    if c.class_weights not in CLASS_WEIGHTS:
        raise bad("classify.class_weights", " | ".join(CLASS_WEIGHTS), c.class_weights)
    if t.task != "classify":
        if c != ClassifyConfig():
            raise TrainerError(f"{source}: the classify section is set but training.task is {t.task!r}; "
                               "set training.task=classify, or remove the classify section")
        return
    least = 1 if c.multi_label else 2
    if len(c.labels) < least:
        raise bad("classify.labels", f"a list of at least {least} class names{' (single-label)' if least == 2 else ''}", c.labels)
    for name in c.labels:
        if not name.strip():
            raise bad("classify.labels", "non-empty class names", c.labels)
    repeated = sorted({name for name in c.labels if c.labels.count(name) > 1})
    if repeated:
        raise bad("classify.labels", f"distinct class names ({', '.join(repeated)} repeated)", c.labels)
    if t.mode not in CLASSIFY_MODES:
        raise bad("training.mode", f"{' | '.join(CLASSIFY_MODES)} with training.task=classify", t.mode)
    if config.data.packing:
        raise bad("data.packing", "false with training.task=classify (one text is one example)", True)
    if t.sample_steps:
        raise bad("training.sample_steps", "0 with training.task=classify (a classifier generates no samples)", t.sample_steps)


def save_config(config: Config, path: Path) -> None:
    write_atomic(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
