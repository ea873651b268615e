"""Models: presets, local directories, pretrain-from-init, and the LoRA/QLoRA wrapping.

Every path that yields weights goes through `from_pretrained` of a local directory with
its loading report checked: a missing or unexpected tensor is an error, because
transformers would otherwise quietly initialise the missing ones at random.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedTokenizerBase,
    Qwen2Config,
)

from trainer.config import ClassifyConfig, Config
from trainer.errors import TrainerError

log = logging.getLogger("trainer")

# The shapes. `bpe_vocab` is what the corpus tokenizer is trained to; the embedding table
# has `vocab` rows (None: exactly the tokenizer's size).
PRESETS: dict[str, dict] = {
    "tiny": {
        "family": "qwen2",
        "vocab": None,
        "bpe_vocab": 4096,
        "shape": dict(hidden_size=256, intermediate_size=704, num_hidden_layers=4, num_attention_heads=8,
                      num_key_value_heads=2, max_position_embeddings=2048, rope_theta=10000.0,
                      rms_norm_eps=1e-6, tie_word_embeddings=True),
    },
    "qwen2.5-0.5b": {
        "family": "qwen2",
        "vocab": 151936,
        "bpe_vocab": 32768,
        "shape": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                      num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1000000.0,
                      rms_norm_eps=1e-6, tie_word_embeddings=True),
    },
    "llama-124m": {
        "family": "llama",
        "vocab": 32000,
        "bpe_vocab": 32000,
        "shape": dict(hidden_size=768, intermediate_size=2560, num_hidden_layers=12, num_attention_heads=12,
                      num_key_value_heads=12, max_position_embeddings=2048, rms_norm_eps=1e-5,
                      tie_word_embeddings=True),
    },
}
ENCODER_ONLY_TYPES = {"bert", "roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2",
                      "xlm-roberta", "mpnet", "modernbert", "camembert", "ernie", "nomic_bert"}
VOCAB_SLACK = 1024  # embedding tables are padded (Qwen2.5: 151,665 tokens in 151,936 rows)
# A classifier loaded from a causal LM's weights: its head is new (initialised from the run's seed) and an untied LM head
# is left behind. Exactly these tensors may be missing / unexpected; any other is an error as for the LM.
CLASSIFIER_NEW_KEYS = {"score.weight"}
CLASSIFIER_DROPPED_KEYS = {"lm_head.weight"}


def preset_config(name: str, vocab_size: int | None = None, **overrides) -> PretrainedConfig:
    """The transformers config of a preset; `vocab_size` is required where the preset leaves it open."""
    if name not in PRESETS:
        raise TrainerError(f"model.preset expects one of {', '.join(PRESETS)}, got {name!r}")
    spec = PRESETS[name]
    vocab = spec["vocab"] or vocab_size
    if vocab is None:
        raise TrainerError(f"preset {name!r} takes its vocab size from the tokenizer; none was given")
    cls = Qwen2Config if spec["family"] == "qwen2" else LlamaConfig
    return cls(vocab_size=vocab, **{**spec["shape"], **overrides})


def count_parameters(config: PretrainedConfig, lora=None) -> tuple[int, int]:
    """(total, trainable) on the meta device: no memory, real module code.

    With `lora` (a trainer.config.LoraConfig) the LoRA modules are added by peft and
    only they count as trainable; total then includes them.
    """
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    if lora is None:
        total = sum(p.numel() for p in model.parameters())
        return total, total
    model = apply_lora(model, lora)
    return sum(p.numel() for p in model.parameters()), sum(p.numel() for p in model.parameters() if p.requires_grad)


# ------------------------------------------------------------------- preflight checks


def read_config_json(path: str | Path, what: str) -> dict:
    path = Path(path)
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise TrainerError(f"{what}: no config.json at {path}")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TrainerError(f"{what}: {file} is not valid JSON ({exc.msg}, line {exc.lineno})") from None


def check_decoder_only(arch: dict, where: str) -> None:
    """Pretraining from an init checkpoint needs a causal decoder; encoders are refused."""
    model_type = arch.get("model_type", "?")
    architectures = arch.get("architectures") or []
    causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)
    if arch.get("is_encoder_decoder") or model_type in ENCODER_ONLY_TYPES or (architectures and not causal):
        raise TrainerError(
            f"{where}: architecture {model_type!r} ({', '.join(architectures) or 'no architectures'}) is not a "
            "decoder-only causal LM; pretrain --init accepts decoder-only models (e.g. qwen2, llama)"
        )


def check_vocab(tokenizer_size: int, model_vocab: int, where: str) -> None:
    """The tokenizer must fit the embedding table and not be a different family's tokenizer."""
    if tokenizer_size > model_vocab or model_vocab - tokenizer_size > VOCAB_SLACK:
        raise TrainerError(
            f"{where}: tokenizer vocab size {tokenizer_size} does not match model vocab size {model_vocab} "
            f"(allowed: tokenizer <= model and at most {VOCAB_SLACK} unused rows); wrong tokenizer for this model?"
        )


def tokenizer_size_on_disk(path: Path) -> int:
    """Count tokens from tokenizer.json without building anything big (preflight)."""
    file = path / "tokenizer.json"
    if not file.is_file():
        raise TrainerError(f"no tokenizer.json in {path}")
    state = json.loads(file.read_text(encoding="utf-8"))
    ids = set(state["model"]["vocab"].values()) | {t["id"] for t in state.get("added_tokens", [])}
    return max(ids) + 1


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """The directory's tokenizer, exactly as saved.

    Our presets save a plain `tokenizers` tokenizer; AutoTokenizer would pick the model
    family's class from config.json (Qwen2Tokenizer) and swap in its own pre-tokenizer,
    so the reloaded tokenizer would encode differently from the one trained on (caught
    by FALSIFY-RUN-003). Such directories load through PreTrainedTokenizerFast.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    path = Path(path)
    if not path.is_dir():
        raise TrainerError(f"tokenizer directory not found: {path}")
    try:
        saved = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        saved = {}
    try:
        if saved.get("tokenizer_class") in ("TokenizersBackend", "PreTrainedTokenizerFast"):
            return PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True)
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # transformers raises many types here; all mean "cannot load"
        raise TrainerError(f"cannot load tokenizer from {path}: {exc}") from None


# -------------------------------------------------------------------- weights loading


def load_pretrained(path: str | Path, *, config: PretrainedConfig | None = None, classifier: bool = False,
                    **kwargs) -> torch.nn.Module:
    """`from_pretrained` of a local directory; any missing/unexpected/mismatched tensor is an error.

    `classifier`: AutoModelForSequenceClassification (a directory from `classifier_base`), whose
    head `score` may be the one missing tensor (CLASSIFIER_NEW_KEYS) and an untied `lm_head`
    the one unexpected tensor (CLASSIFIER_DROPPED_KEYS).
    """
    path = Path(path)
    if not path.is_dir():
        raise TrainerError(f"model directory not found: {path}")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise TrainerError(f"no weights (*.safetensors or *.bin) in {path}; refusing to fall back to random init")
    try:
        model, info = (AutoModelForSequenceClassification if classifier else AutoModelForCausalLM).from_pretrained(
            path, config=config, local_files_only=True, output_loading_info=True, **kwargs
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise TrainerError(f"cannot load model weights from {path}: {exc}") from None
    if classifier:
        info = {**info, "missing_keys": set(info.get("missing_keys") or ()) - CLASSIFIER_NEW_KEYS,
                "unexpected_keys": set(info.get("unexpected_keys") or ()) - CLASSIFIER_DROPPED_KEYS}
    problems = {k: sorted(v) for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if problems or info.get("error_msgs"):
        detail = "; ".join(f"{k}: {', '.join(map(str, v[:5]))}{' ...' if len(v) > 5 else ''}" for k, v in problems.items())
        raise TrainerError(f"weights in {path} do not match the model ({detail or info['error_msgs']}); refusing to random-init them")
    return model


def quantization_config(device: torch.device):
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=False,
        bnb_4bit_compute_dtype=torch.bfloat16 if device.type == "cuda" else torch.float32,
    )


def disable_cpu_bf16_inference_kernel(model: torch.nn.Module) -> None:
    """Keep NF4 layers on one numeric path in train and eval mode.

    On CPUs with AVX512-BF16, bitsandbytes repacks NF4 weights in place the first time a
    layer runs under no_grad in eval mode and then computes in bf16. Eval losses would
    then differ from train-mode losses (and between machines with and without the
    instruction), which breaks the eval-pollution and reproducibility falsifiers.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def apply_lora(model: torch.nn.Module, lora, task_type: str = "CAUSAL_LM") -> torch.nn.Module:
    """LoRA adapters on `lora.target_modules`. task_type SEQ_CLS (a classifier): peft also trains and saves the head
    (`score` joins modules_to_save), and that is checked, because a head left out would reload at random init."""
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in lora.target_modules if t not in present]
    if missing:
        raise TrainerError(f"lora.target_modules: {missing} not found in the model (it has e.g. {sorted(present)[:12]})")
    peft_config = LoraConfig(
        r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules), bias="none", task_type=task_type,
    )
    model = get_peft_model(model, peft_config)
    if task_type == "SEQ_CLS" and not any(p.requires_grad and "modules_to_save" in n for n, p in model.named_parameters()):
        raise TrainerError(f"LoRA for classification: peft found no classification head among {peft_config.modules_to_save} "
                           "to train and save with the adapter")
    return model


# --------------------------------------------------------------- the base model source


@dataclass
class BaseModel:
    """Where the frozen (or initial) weights come from, and whether they are random."""

    path: Path  # a local Hugging Face directory: config.json + weights (+ tokenizer)
    tokenizer: PreTrainedTokenizerBase
    random_init: bool
    description: str
    config: PretrainedConfig | None = None  # pretrain --init: architecture given separately


def prepare_base(cfg: Config, train_records: list[dict], saved: Path) -> BaseModel:
    """Resolve the model source into a loadable directory, preflight checks first.

    Presets are built with the run's seed, saved to `saved` (the experiment's base model
    directory) with their tokenizer, and later loaded back from there (the same code
    path as a real model).
    """
    m = cfg.model
    if m.path is not None:
        from trainer.pretrained import resolve_model_path

        path = resolve_model_path(m.path)  # load_config resolved it already; a Config built by hand may not have
        arch = read_config_json(path, "model.path")
        tokenizer = load_tokenizer(path)
        check_vocab(len(tokenizer), int(arch.get("vocab_size", 0)), f"model.path {path}")
        return BaseModel(path, tokenizer, False, f"local directory {path}")
    if m.init_arch is not None:
        arch = read_config_json(m.init_arch, "model.init_arch")
        check_decoder_only(arch, f"model.init_arch {m.init_arch}")
        arch_dir = Path(m.init_arch) if Path(m.init_arch).is_dir() else Path(m.init_arch).parent
        weights_dir = Path(m.init_weights)
        tok_dir = next((d for d in (weights_dir, arch_dir) if (d / "tokenizer.json").is_file()), None)
        if tok_dir is None:
            raise TrainerError(f"pretrain --init: no tokenizer.json in {weights_dir} or {arch_dir}")
        # Preflight before any allocation: read sizes from the files.
        check_vocab(tokenizer_size_on_disk(tok_dir), int(arch.get("vocab_size", 0)), f"pretrain --init {weights_dir}")
        config = AutoConfig.from_pretrained(arch_dir, local_files_only=True)
        return BaseModel(weights_dir, load_tokenizer(tok_dir), False, f"init checkpoint {weights_dir}", config=config)
    # A preset: random init, said loudly, saved so that everything downstream loads it.
    spec = PRESETS.get(m.preset or "")
    if spec is None:
        raise TrainerError(f"model.preset expects one of {', '.join(PRESETS)}, got {m.preset!r}")
    if (saved / "config.json").is_file():
        tokenizer = load_tokenizer(saved)
    else:
        from trainer.tokenizer import train_tokenizer, train_tokenizer_on

        if cfg.training.task == "classify":  # labelled texts (trainer.classify): the tokenizer learns the texts themselves
            tokenizer = train_tokenizer_on([r["text"] for r in train_records], m.tokenizer_vocab_size or spec["bpe_vocab"], spec["vocab"])
        else:
            tokenizer = train_tokenizer(train_records, m.tokenizer_vocab_size or spec["bpe_vocab"], spec["vocab"])
        config = preset_config(m.preset, vocab_size=len(tokenizer))
        config.eos_token_id = tokenizer.eos_token_id
        config.pad_token_id = tokenizer.pad_token_id
        torch.manual_seed(cfg.training.seed)
        model = AutoModelForCausalLM.from_config(config)
        saved.parent.mkdir(parents=True, exist_ok=True)
        tmp = saved.with_name(f".tmp-{saved.name}")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.rename(saved)
        del model
    desc = f"preset {m.preset} (RANDOM INIT, seed {cfg.training.seed}; no pretrained weights)"
    log.warning("model: %s", desc)
    return BaseModel(saved, tokenizer, True, desc)


def classifier_base(base: BaseModel, classes: ClassifyConfig, out: Path) -> BaseModel:
    """The base as the source of a sequence classifier: `out` holds the base's config with the classification fields
    (num_labels, id2label / label2id, problem_type, pad_token_id), the tokenizer, and links to the base's weight files.

    Loading `out` with AutoModelForSequenceClassification builds the classifier; so does peft's
    AutoPeftModelForSequenceClassification from a checkpoint, whose adapter_config.json names
    `out` as its base. pad_token_id is what the head pools by (the last token that is not it),
    so a tokenizer without a pad token is an error. The links are relative: a moved experiment
    keeps its own base_model/.
    """
    tokenizer = base.tokenizer
    if tokenizer.pad_token_id is None:
        raise TrainerError(f"training.task=classify: the tokenizer of {base.path} has no pad token; the classifier pools at the "
                           "last non-pad token, so it needs one")
    source = Path(base.path).resolve()
    weights = sorted(p for p in source.iterdir() if p.name.endswith((".safetensors", ".bin", ".index.json")))
    if not weights:
        raise TrainerError(f"no weights (*.safetensors or *.bin) in {source}; refusing to fall back to random init")
    config = AutoConfig.from_pretrained(source, local_files_only=True)
    config.num_labels = len(classes.labels)
    config.id2label = dict(enumerate(classes.labels))
    config.label2id = {name: i for i, name in enumerate(classes.labels)}
    config.problem_type = "multi_label_classification" if classes.multi_label else "single_label_classification"
    config.pad_token_id = tokenizer.pad_token_id
    config.architectures = [a.replace("ForCausalLM", "ForSequenceClassification") for a in config.architectures or []]
    out = Path(out)
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    for file in weights:
        os.symlink(os.path.relpath(file, out.resolve()), tmp / file.name)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    kind = "multi-label" if classes.multi_label else "single-label"
    return BaseModel(out, tokenizer, base.random_init, f"{base.description}; {kind} classifier over {len(classes.labels)} labels "
                     "(new head `score`)")


def load_base_weights(cfg: Config, base: BaseModel, device: torch.device) -> torch.nn.Module:
    """The base weights as `training.mode` trains them, on `device`: NF4 (qlora), bf16 (lora on CUDA), else fp32.

    training.task=classify: the sequence classifier of `base` (a `classifier_base` directory)."""
    mode = cfg.training.mode
    kwargs: dict = {"dtype": torch.float32}
    if mode == "qlora":
        device_map = {"": device.index or 0} if device.type == "cuda" else "cpu"
        kwargs = {"quantization_config": quantization_config(device), "device_map": device_map}
    elif device.type == "cuda" and mode == "lora":
        kwargs = {"dtype": torch.bfloat16}  # frozen base in bf16; adapters stay fp32 (peft upcasts them)
    model = load_pretrained(base.path, config=base.config, classifier=cfg.training.task == "classify", **kwargs)
    if mode == "qlora" and device.type == "cpu":
        disable_cpu_bf16_inference_kernel(model)
    if mode != "qlora":
        model.to(device)
    return model


def load_for_training(cfg: Config, base: BaseModel, device: torch.device) -> torch.nn.Module:
    """Load the base weights for the chosen mode and wrap them (LoRA / QLoRA) as needed."""
    model = load_base_weights(cfg, base, device)
    if cfg.training.mode in ("lora", "qlora"):
        if cfg.training.task == "classify":
            return apply_lora(model, cfg.lora, task_type="SEQ_CLS")
        return apply_lora(model, cfg.lora)
    return model.requires_grad_(True)
