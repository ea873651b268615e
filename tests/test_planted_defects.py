"""Every check must FAIL when the defect it exists to catch is planted.

Each case names a check, its params, the defect, and a `plant(monkeypatch)` that injects
it with a monkeypatch of the trainer (or of a library the trainer relies on): small and
explicit, never a second copy of the trainer. CASES doubles as the table
check -> planted defect -> caught that the README shows.
"""

from __future__ import annotations

import time

import pytest
import torch

from falsify.checks import CHECKS, fixtures, runs


def _wrap(monkeypatch, target, name, make):
    original = getattr(target, name)
    monkeypatch.setattr(target, name, make(original))


# ------------------------------------------------------------------ the defects


def shape_drift(mp):
    import trainer.models as models

    mp.setitem(models.PRESETS["qwen2.5-0.5b"], "shape", {**models.PRESETS["qwen2.5-0.5b"]["shape"], "intermediate_size": 4096})


def lora_misses_mlp(mp):
    import trainer.config as config

    mp.setattr(config, "LORA_TARGETS", ["q_proj", "k_proj", "v_proj", "o_proj"])


def nf4_small_blocks(mp):
    import bitsandbytes.functional as bnb_functional

    _wrap(mp, bnb_functional, "quantize_4bit", lambda f: lambda A, *a, **k: f(A, *a, **{**k, "blocksize": 32}))


def quantization_skips_linears(mp):
    import trainer.models as models

    def make(original):
        def config(device):
            q = original(device)
            q.llm_int8_skip_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]
            return q
        return config
    _wrap(mp, models, "quantization_config", make)


def bidirectional_attention(mp):
    import transformers.models.qwen2.modeling_qwen2 as qwen2

    mp.setattr(qwen2, "create_causal_mask", lambda **kw: None)
    def make(init):
        def bidirectional(self, *a, **k):
            init(self, *a, **k)
            self.is_causal = False
        return bidirectional
    _wrap(mp, qwen2.Qwen2Attention, "__init__", make)


def rmsnorm_wrong_statistic(mp):
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm

    mp.setattr(Qwen2RMSNorm, "forward", lambda self, x: self.weight * x / (x.abs().mean(-1, keepdim=True) + self.variance_epsilon))


def head_layout_mismatch(mp):
    import trainer.models as models

    mp.setitem(models.PRESETS["tiny"], "shape", {**models.PRESETS["tiny"]["shape"], "head_dim": 16})


def lora_b_nonzero_init(mp):
    import trainer.models as models

    def make(apply):
        def apply_lora(model, lora):
            wrapped = apply(model, lora)
            with torch.no_grad():
                for name, p in wrapped.named_parameters():
                    if "lora_B" in name:
                        p.normal_(0, 0.02)
            return wrapped
        return apply_lora
    _wrap(mp, models, "apply_lora", make)


def base_not_frozen(mp):
    import trainer.models as models

    _wrap(mp, models, "apply_lora", lambda apply: lambda model, lora: apply(model, lora).requires_grad_(True))


def one_layer_detached(mp):
    import trainer.models as models

    def make(apply):
        def apply_lora(model, lora):
            wrapped = apply(model, lora)
            for name, p in wrapped.named_parameters():
                if "layers.2.mlp.up_proj.lora_A" in name:
                    p.requires_grad_(False)
            return wrapped
        return apply_lora
    _wrap(mp, models, "apply_lora", make)


def merge_double_scaling(mp):
    from peft.tuners.lora import layer

    _wrap(mp, layer.Linear, "get_delta_weight", lambda f: lambda self, adapter: 2 * f(self, adapter))


def loss_overflows(mp):
    import torch.nn.functional as F

    _wrap(mp, F, "cross_entropy", lambda f: lambda logits, *a, **k: f(logits * 1e38, *a, **k))


def init_scale_too_large(mp):
    import trainer.models as models

    mp.setitem(models.PRESETS["tiny"], "shape", {**models.PRESETS["tiny"]["shape"], "initializer_range": 1.0})


def loss_mean_per_micro_batch(mp):
    import trainer.train as loop
    from trainer.data import count_label_tokens

    _wrap(mp, loop, "forward_loss_sum", lambda f: lambda model, batch, device: f(model, batch, device) / count_label_tokens(batch))


def padding_labelled(mp):
    import trainer.data as data

    def make(collate):
        def padded(examples, pad_id):
            out = collate(examples, pad_id)
            out["labels"] = torch.where(out["attention_mask"] == 0, out["input_ids"], out["labels"])
            return out
        return padded
    _wrap(mp, data, "collate", make)


def labels_from_pad_shortcut(mp):
    import trainer.data as data

    def classic(tokenizer, function_code, tests, max_seq_len):
        ids = tokenizer.encode(data.render_prompt(function_code) + tests + data.IM_END, add_special_tokens=False)[:max_seq_len]
        return data.Example(ids, [data.IGNORE if i == tokenizer.pad_token_id else i for i in ids])
    mp.setattr(data, "encode_chat", classic)


def masked_batch_counts_one(mp):
    import trainer.train as loop

    _wrap(mp, loop, "count_label_tokens", lambda f: lambda batch: max(1, f(batch)))


def eval_reads_scaled_train_buffer(mp, divisor: float):
    import trainer.train as loop

    last = {}

    def make(f):
        def forward(model, batch, device):
            if torch.is_grad_enabled():
                last["loss"] = f(model, batch, device)
                return last["loss"]
            return last["loss"].detach() / divisor if last else f(model, batch, device)
        return forward
    _wrap(mp, loop, "forward_loss_sum", make)


def eval_reads_train_buffer(mp, divisor: float = 1500.0):  # the seeds' bug: eval 1500x below training
    eval_reads_scaled_train_buffer(mp, divisor)


def eval_buffer_ten_percent_low(mp):  # the same bug at the boundary: 10% low, twice the check's 5% threshold
    eval_reads_scaled_train_buffer(mp, 1.1)


def dropout_left_on(mp):
    mp.setattr(torch.nn.Module, "eval", lambda self: self)


def loader_falls_back_to_random(mp):
    from transformers import AutoModelForCausalLM

    import trainer.models as models
    from trainer.errors import TrainerError

    def make(load):
        def lenient(path, **kwargs):
            try:
                return load(path, **kwargs)
            except TrainerError:  # "could not load: start from scratch" -- the seeds' silent random init
                return AutoModelForCausalLM.from_config(fixtures.tiny_config())
        return lenient
    _wrap(mp, models, "load_pretrained", make)


def cuda_quietly_cpu(mp):
    import trainer.runtime as runtime

    mp.setattr(runtime, "resolve_device", lambda requested: (torch.device("cpu"), None))


def init_pair_unchecked(mp):
    import trainer.config as config

    mp.setattr(config, "validate", lambda cfg, source="<config>": None)


def encoder_accepted(mp):
    import trainer.models as models

    mp.setattr(models, "check_decoder_only", lambda arch, where: None)


def vocab_unchecked(mp):
    import trainer.models as models

    mp.setattr(models, "check_vocab", lambda *a: None)


def rules_silent(mp):
    import trainer.hparams as hparams

    _wrap(mp, hparams, "diagnose", lambda f: lambda cfg, **kw: [type(x)(x.rule, "ok", x.message) for x in f(cfg, **kw)])


def unseeded_data_order(mp):
    import time

    import trainer.data as data

    def clock_seeded(n, seed, epoch):
        return torch.randperm(n, generator=torch.Generator().manual_seed(time.time_ns() % 2**31)).tolist()
    mp.setattr(data, "epoch_order", clock_seeded)


def resume_skips_rng(mp):
    import trainer.train as loop

    mp.setattr(loop, "set_rng_state", lambda state: None)


def checkpoint_drops_lora_b(mp):
    import peft.peft_model as peft_model

    _wrap(mp, peft_model, "get_peft_model_state_dict",
          lambda f: lambda *a, **k: {n: t for n, t in f(*a, **k).items() if not ("layers.0." in n and "lora_B" in n)})


def learning_rate_zero(mp):
    import trainer.train as loop

    mp.setattr(loop, "cosine_schedule", lambda total, warmup, floor: lambda step: 0.0)


def init_weights_randomised(mp):
    import trainer.models as models

    def make(load):
        def load_then_reinit(path, **kwargs):
            model = load(path, **kwargs)
            generator = torch.Generator().manual_seed(0)
            with torch.no_grad():
                for p in model.parameters():
                    if p.dim() >= 2:
                        p.normal_(0, 0.02, generator=generator)
            return model
        return load_then_reinit
    _wrap(mp, models, "load_pretrained", make)


def loaded_weights_reinitialised(mp):
    """from_pretrained reports every tensor loaded, then re-initialises them: the weights are silently not the checkpoint's.

    GGUF reads (the conversion's source) are left alone, so a conversion under the plant refuses to publish instead of
    caching random weights; the defect sits where training loads a saved directory.
    """
    from transformers import PreTrainedModel

    original = PreTrainedModel.__dict__["from_pretrained"].__func__

    def from_pretrained(cls, *args, **kwargs):
        loaded = original(cls, *args, **kwargs)
        if kwargs.get("gguf_file"):
            return loaded
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in (loaded[0] if isinstance(loaded, tuple) else loaded).parameters():
                if p.dim() >= 2 and p.is_floating_point():
                    p.copy_(torch.empty(p.shape, dtype=p.dtype).normal_(0, 0.02, generator=generator))
        return loaded
    mp.setattr(PreTrainedModel, "from_pretrained", classmethod(from_pretrained))


def guard_swallowed(mp):
    import trainer.train as loop
    from trainer.errors import AndonStop

    def make(step_fn):
        def lenient(*args, **kwargs):
            try:
                return step_fn(*args, **kwargs)
            except AndonStop:
                for group in args[1].param_groups:
                    for p in group["params"]:
                        p.grad = None
                return float("nan"), float("nan")
        return lenient
    _wrap(mp, loop, "train_step", make)


def tautology_detector_off(mp):
    import falsify.evaluate.assertions as assertions

    def make(analyse):
        def blind(tests, function_code):
            facts = analyse(tests, function_code)
            facts.assertions = {**facts.assertions, "trivial": 0, "tautological": 0}
            return facts
        return blind
    _wrap(mp, assertions, "analyse", make)


def packing_keeps_row_mask(mp):
    import trainer.train as loop

    def make(f):
        def inputs(batch, device):
            out = f(batch, device)
            if "position_ids" in out:  # packed: hand the model the row's plain 2D mask, as a naive packer would
                out.pop("position_ids")
                out["attention_mask"] = batch["attention_mask"].to(device)
            return out
        return inputs
    _wrap(mp, loop, "model_inputs", make)


def in_subprocesses(mp, code: str) -> None:
    """Plant a defect in the trainer processes torchrun starts: a sitecustomize on their PYTHONPATH."""
    import os
    import tempfile
    import textwrap

    root = tempfile.mkdtemp(prefix="rtf-plant-")
    with open(os.path.join(root, "sitecustomize.py"), "w") as fh:
        fh.write(textwrap.dedent(code))
    mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))


def ranks_share_one_shard(mp):
    in_subprocesses(mp, """
        import trainer.data as data
        _init = data.BatchStream.__init__
        def init(self, examples, batch_size, seed, pad_id, rank=0, world_size=1):
            _init(self, examples, batch_size, seed, pad_id, 0, world_size)  # every rank takes rank 0's shard
        data.BatchStream.__init__ = init
    """)


def other_ranks_rng_not_restored(mp):
    in_subprocesses(mp, """
        import os
        if os.environ.get("RANK", "0") != "0":
            import trainer.train as loop
            loop.set_rng_state = lambda state: None  # only rank 0 gets its dropout stream back
    """)


def quantization_dropped(mp):
    import trainer.models as models

    mp.setattr(models, "quantization_config", lambda device: None)  # the QLoRA base loads unquantized, in the checkpoint's fp32


def loss_scale_left_on(mp):
    import trainer.train as loop

    def make(forward):
        def scaled(self, labels, **inputs):  # the path Qwen2 takes (LabelLoss), under mixed precision only
            loss = forward(self, labels, **inputs)
            return loss * 2.0**16 if torch.is_autocast_enabled(labels.device.type) else loss
        return scaled
    _wrap(mp, loop.LabelLoss, "forward", make)


def synchronize_every_layer(mp):
    import trainer.train as loop

    def make(f):
        def slow(*args, **kwargs):
            time.sleep(2.0)  # a stall per step, as a host sync or copy would add
            return f(*args, **kwargs)
        return slow
    _wrap(mp, loop, "forward_loss_sum", make)


def pad_pooled(mp):
    import json

    import trainer.models as models

    def make(classifier_base):
        def eos_as_pad(base, classes, out):
            made = classifier_base(base, classes, out)
            config = json.loads((out / "config.json").read_text())
            config["pad_token_id"] = made.tokenizer.eos_token_id  # never in the texts: the head pools the last position
            (out / "config.json").write_text(json.dumps(config))
            return made
        return eos_as_pad
    _wrap(mp, models, "classifier_base", make)


def class_weights_unnormalised(mp):
    import trainer.classify as classify

    mp.setattr(classify, "inverse_frequency_weights", lambda counts: [sum(counts) / max(c, 1) for c in counts])


def head_not_saved(mp):
    import peft.peft_model as peft_model

    def make(state_dict_of):
        def without_head(model, *args, **kwargs):
            return {k: v for k, v in state_dict_of(model, *args, **kwargs).items() if ".score." not in k}
        return without_head
    _wrap(mp, peft_model, "get_peft_model_state_dict", make)


def leak_guard_off(mp):
    import trainer.classify as classify

    mp.setattr(classify, "leaked_texts", lambda train, validation: [])


# The tier-3 checks on their CPU stand-ins (device="cpu"; see falsify/checks/gpu.py): the tiny preset, small batches.
# The VRAM limit sits between the tiny NF4 step (about 5 MiB held) and the same step unquantized (about 14 MiB).
CPU_VRAM = dict(preset="tiny", batch_size=2, seq_len=32, max_gb=0.01, device="cpu")
CPU_THROUGHPUT = dict(preset="tiny", batch_size=2, seq_len=32, steps=2, min_tokens_per_s=40.0, device="cpu")  # the stall caps it at 32
CPU_PARITY = {"device": "cpu"}
LOSS_SCALED = "a loss scale (2**16) left on the mixed-precision path's loss"

ROW_MASK_KEPT = "packed rows keep the plain 2D mask (no attention or position reset)"

# check, params, defect, plant, slow
CASES = [
    ("parameter_count", dict(preset="qwen2.5-0.5b", expected_total=494032768, lora_rank=16, expected_trainable=8798208,
                             fraction_min=0.0175, fraction_max=0.018), "0.5B preset shape drifted (intermediate 4096)", shape_drift, False),
    ("parameter_count", dict(preset="qwen2.5-0.5b", expected_total=494032768, lora_rank=16, expected_trainable=8798208,
                             fraction_min=0.0175, fraction_max=0.018), "LoRA targets only attention (4 of 7 projections)",
     lora_misses_mlp, False),
    ("qlora_storage_reduction", dict(preset="qwen2.5-0.5b"), "bitsandbytes quantizes in 32-value blocks (2x absmax overhead)",
     nf4_small_blocks, True),
    ("qlora_storage_reduction", dict(preset="tiny"), "quantization config skips every linear layer", quantization_skips_linears, True),
    ("causal_masking", {}, "bidirectional attention (no causal mask)", bidirectional_attention, False),
    ("rmsnorm_properties", {"max_examples": 10}, "RMSNorm divides by mean |x| instead of RMS", rmsnorm_wrong_statistic, False),
    ("attention_shapes", {"max_examples": 5}, "projections sized for head_dim 16, not hidden/heads", head_layout_mismatch, False),
    ("lora_identity_at_step0", {"mode": "lora"}, "LoRA B initialised non-zero", lora_b_nonzero_init, False),
    ("one_step_changes_only_adapters", {"mode": "lora"}, "base weights left trainable", base_not_frozen, False),
    ("gradient_flow", {"mode": "lora"}, "one adapted layer detached from the graph", one_layer_detached, False),
    ("merge_fidelity", {}, "merge applies the LoRA delta twice", merge_double_scaling, False),
    ("finite_loss", {"mode": "lora"}, "logits overflow (x1e38) before the loss", loss_overflows, False),
    ("step0_loss_random_init", {}, "init std 1.0 instead of 0.02", init_scale_too_large, False),
    ("grad_accum_equivalence", {}, "loss averaged per micro-batch instead of per window label token", loss_mean_per_micro_batch, False),
    ("padding_invariance", {}, "padding positions carry labels", padding_labelled, False),
    ("label_masking", {"pad_equals_eos": True}, "labels = input_ids masked where == pad (classic shortcut)",
     labels_from_pad_shortcut, False),
    ("all_masked_batch_is_error", {}, "an all-masked window counted as one label token", masked_batch_counts_one, False),
    ("eval_not_polluted", {}, "eval reads the training step's loss buffer (1500x low)", eval_reads_train_buffer, False),
    ("eval_not_polluted", {}, "eval reads the training step's loss buffer, 10% low", eval_buffer_ten_percent_low, False),
    ("eval_deterministic", {}, "dropout left on in eval (eval() is a no-op)", dropout_left_on, False),
    ("no_silent_random_init", {}, "loader falls back to random init", loader_falls_back_to_random, False),
    ("no_silent_cpu_fallback", {}, "a 'cuda' run quietly uses the CPU", cuda_quietly_cpu, False),
    ("init_args_paired", {}, "config validation skipped (half init pair accepted)", init_pair_unchecked, False),
    ("encoder_rejected", {"model_type": "bert"}, "encoder accepted for causal pretraining", encoder_accepted, False),
    ("vocab_preflight", {}, "vocab check removed (mismatch found only after allocating)", vocab_unchecked, False),
    ("hyperparameter_rule", dict(rule="C-HP-003", expect="warn", overrides={"lora.alpha": 16, "lora.rank": 16}),
     "diagnostics report every rule as ok", rules_silent, False),
    ("same_seed_identical", {"mode": "lora", "steps": 4}, "data order seeded from the clock", unseeded_data_order, True),
    ("exact_resume", {"mode": "lora", "steps": 12, "kill_after_step": 5}, "resume does not restore RNG states", resume_skips_rng, True),
    ("best_checkpoint_reloads", {"mode": "lora", "steps": 4}, "checkpoint drops layer-0 LoRA B tensors", checkpoint_drops_lora_b, True),
    ("validation_loss_falls", {"mode": "lora", "steps": 4}, "learning rate schedule stuck at zero", learning_rate_zero, True),
    ("step0_loss_from_init", {"warm_steps": 20}, "init weights silently re-randomised after loading", init_weights_randomised, True),
    ("pretrained_weights_loaded", {"mode": "lora"}, "from_pretrained silently re-initialises the weights it reports loaded",
     loaded_weights_reinitialised, True),
    ("andon_stops_on_nan", {}, "guard swallows non-finite loss and training goes on", guard_swallowed, True),
    ("evaluator_discriminates", {}, "assertion analysis never flags trivial or tautological asserts", tautology_detector_off, True),
    ("packed_loss_equals_unpacked", {}, ROW_MASK_KEPT, packing_keeps_row_mask, False),
    ("packing_no_cross_attention", {}, ROW_MASK_KEPT, packing_keeps_row_mask, False),
    ("ddp_equals_single_process", {}, "every rank trains on rank 0's shard", ranks_share_one_shard, True),
    ("ddp_resume_exact", {}, "resume restores the RNG of rank 0 only", other_ranks_rng_not_restored, True),
    ("vram_ceiling", CPU_VRAM, "QLoRA base loaded unquantized (quantization config dropped)", quantization_dropped, True),
    ("cuda_cpu_forward_parity", CPU_PARITY, LOSS_SCALED, loss_scale_left_on, False),
    ("cuda_cpu_loss_curve_parity", {**CPU_PARITY, "steps": 4}, LOSS_SCALED, loss_scale_left_on, True),
    ("throughput_floor", CPU_THROUGHPUT, "a 2-second stall per step", synchronize_every_layer, True),
    ("classifier_pools_last_real_token", {}, "the classifier's pad id is the eos id (it pools a pad position)", pad_pooled, False),
    ("class_weights_keep_loss_scale", {}, "class weights left as raw inverse frequencies (not normalised)",
     class_weights_unnormalised, False),
    ("classifier_head_saved", {}, "the adapter is saved without the classification head (peft state dict)", head_not_saved, True),
    ("no_validation_text_in_training", {}, "the leak guard finds nothing (validation repeats training)", leak_guard_off, False),
]
CPU_STAND_INS = [("vram_ceiling", CPU_VRAM), ("cuda_cpu_forward_parity", CPU_PARITY),
                 ("cuda_cpu_loss_curve_parity", {**CPU_PARITY, "steps": 4})]


def _case_id(case) -> str:
    return f"{case[0]}:{case[2]}"


@pytest.mark.parametrize("case", [pytest.param(c, marks=[pytest.mark.slow] if c[4] else [], id=_case_id(c)) for c in CASES])
def test_planted_defect_is_caught(case, monkeypatch):
    name, params, _defect, plant, _slow = case
    fixtures.clear_caches()
    runs.cached_run.cache_clear()
    plant(monkeypatch)
    try:
        verdict = CHECKS[name](**params)
    except Exception as exc:  # the defect crashed the check: still a failed prediction, but say so
        pytest.fail(f"check {name} raised {type(exc).__name__}: {exc} instead of returning a failing verdict")
    assert verdict.passed is False, f"planted defect NOT caught by {name}: {verdict.message}"
    fixtures.clear_caches()
    runs.cached_run.cache_clear()


@pytest.mark.slow
@pytest.mark.parametrize("name, params", CPU_STAND_INS, ids=[c[0] for c in CPU_STAND_INS])
def test_cpu_stand_in_passes_without_the_defect(name, params):
    """A stand-in that failed anyway would prove nothing: unplanted, it passes (throughput is left out: a timing)."""
    fixtures.clear_caches()
    verdict = CHECKS[name](**params)
    assert verdict.passed is True, f"{name} on its CPU stand-in fails with no defect planted: {verdict.message}"


@pytest.mark.slow
def test_pretrained_weights_check_passes_without_the_defect():
    """The control: unplanted, the real model's step-0 loss is far below ln(vocab) (a check that always failed would catch anything)."""
    verdict = CHECKS["pretrained_weights_loaded"](mode="lora")
    assert verdict.passed is True, f"pretrained_weights_loaded fails with no defect planted: {verdict.message}"


def test_every_check_has_a_planted_defect():
    covered = {c[0] for c in CASES}
    missing = sorted(set(CHECKS) - covered)
    assert not missing, f"checks without a planted-defect case: {missing}"
