"""`python -m trainer {train, generate, model, corpus build|critic, critic score, monitor}`: the trainer's command surface.

User errors (TrainerError) print one line and exit non-zero; only bugs give tracebacks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainer.errors import TrainerError


def _train(args: argparse.Namespace) -> int:
    from trainer.config import load_config
    from trainer.train import train

    overrides = list(args.set or [])
    if args.init:
        overrides += ["training.mode=pretrain", "model.preset=null", "model.path=null",
                      f"model.init_arch={args.init}", f"model.init_weights={args.init}"]
    output = Path(args.output) if args.output else None
    if args.resume and args.config is None:
        if output is None:
            raise TrainerError("--resume needs --output DIR (or --config to derive it)")
        config = None
    else:
        if args.config is None:
            raise TrainerError("train needs --config (a YAML path or a packaged name: tiny-lora, tiny-qlora, ...)")
        config = load_config(args.config, overrides)
        output = output or Path("experiments") / config.name
    metrics = train(config, output, resume=args.resume, overwrite=args.overwrite)
    print(f"experiment: {output}")
    best = f"best {_loss(metrics['best_val_loss'])} at step {metrics['best_step']}" if metrics["best_step"] else "no step improved on it"
    print(f"validation loss: step 0 {_loss(metrics['initial_val_loss'])} -> final {_loss(metrics['final_val_loss'])} ({best})")
    if metrics.get("task") == "classify" and metrics.get("accuracy") is not None:
        from trainer.classify import summary

        print(f"classification at step {metrics['final_eval_step']}: {summary(metrics)}")
    if metrics.get("divergence"):
        print(f"warning: training loss diverging from step {metrics['divergence']['step']} (recorded in metrics.json)")
    if metrics["converged"] is None:
        print("converged: not claimed (no training.target_val_loss stated)")
    else:
        print(f"converged: {'yes' if metrics['converged'] else 'NO'} (target validation loss {metrics['target_val_loss']})")
    return 0


def _loss(value: float | None) -> str:
    """A loss for the summary line; a run can end without one (no evaluation yet)."""
    return "n/a" if value is None else f"{value:.4f}"


def _generate(args: argparse.Namespace) -> int:
    from trainer.generate import generate_file

    summary = generate_file(Path(args.experiment), Path(args.input), Path(args.out), checkpoint=args.checkpoint, limit=args.limit,
                            context=args.context, allow_rejected=args.allow_rejected, temperature=args.temperature,
                            candidates=args.candidates, critic=args.critic)
    rate = summary["tokens_per_s"]
    if "rerank" in summary:
        r = summary["rerank"]
        print(f"critic kept candidate 1 of {args.candidates} for {r['chose_first']} of {r['functions']} functions; "
              f"first candidates in {r['first_candidates']}")
    print(f"wrote {summary['functions']} samples to {args.out}; {summary['new_tokens']} tokens, "
          f"{rate:.1f} tok/s" if rate else f"wrote {summary['functions']} samples to {args.out}")
    return 0


def _model(args: argparse.Namespace) -> int:
    from trainer import pretrained

    if args.action == "list":
        for model in pretrained.KNOWN.values():
            where = pretrained.is_prepared(model.name)
            print(f"{model.name}\t{model.hub_id}\t{where or 'not prepared'}")
        return 0
    model = pretrained.known(args.name)
    if args.action == "check":
        path = pretrained.verify_gguf(model)
        print(f"ok: {path} sha256 {model.sha256}")
        return 0
    result = pretrained.prepare(model.name, progress=True)
    done = f"prepared {model.name} in {result.seconds:.1f} s" if result.converted else f"{model.name} is already prepared"
    print(done, file=sys.stderr)
    print(result.path)
    return 0


def _corpus(argv: list[str]) -> int:
    if argv[:1] == ["critic"]:
        from trainer.corpus import critic

        return critic.main(argv[1:])
    from trainer.corpus import build as corpus

    return corpus.main(argv)


def _critic(argv: list[str]) -> int:
    from trainer import critic

    return critic.main(argv)


def _monitor(argv: list[str]) -> int:
    from trainer.monitor import live as monitor

    return monitor.main(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train; writes an experiment directory")
    p.add_argument("--config", help="YAML file or packaged config name")
    p.add_argument("--output", help="experiment directory (default experiments/<name>)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing experiment directory")
    p.add_argument("--init", metavar="PATH", help="pretrain from an initial checkpoint directory (arch + weights)")
    p.set_defaults(func=_train)

    p = sub.add_parser("generate", help="write generated tests for each function")
    p.add_argument("--experiment", required=True)
    p.add_argument("--input", required=True, help="JSONL of functions (corpus records or samples)")
    p.add_argument("--out", required=True)
    p.add_argument("--checkpoint", default="best",
                   help="best | last | step-N | base (the base model without the adapter: the zero-shot side of base vs tuned)")
    p.add_argument("--allow-rejected", action="store_true",
                   help="generate even from an adapter that the report's gates rejected (adapter-rejected.json)")
    p.add_argument("--limit", type=int, default=None, help="only the first N functions")
    p.add_argument("--context", action="store_true",
                   help="show the model the crate context a corpus record carries (its file's use lines, the types it names)")
    p.add_argument("--candidates", type=int, default=1,
                   help="draw N sampled candidates per function and keep the one --critic rates best (needs --temperature > 0)")
    p.add_argument("--critic", type=Path, help="a test critic (a training.task=classify experiment) that picks among --candidates")
    p.add_argument("--temperature", type=float, help="sampling temperature (default: the experiment's generation.temperature; 0 = greedy)")
    p.set_defaults(func=_generate)

    p = sub.add_parser("model", help="real base models, offline: prepare NAME | check NAME | list")
    p.add_argument("action", choices=["prepare", "check", "list"],
                   help="prepare: convert once into the cache and print its directory; check: the source file's sha256; list")
    p.add_argument("name", nargs="?", default="smollm2-135m-instruct", help="a known model (default smollm2-135m-instruct)")
    p.set_defaults(func=_model)

    sub.add_parser("corpus", help="corpus build --source DIR --out DIR | corpus critic --corpus DIR --out DIR", add_help=False)
    sub.add_parser("critic", help="critic score --experiment DIR --samples IN.jsonl --out OUT.jsonl [--metrics FILE]", add_help=False)
    sub.add_parser("monitor", help="monitor --experiment DIR [--once] [--json]", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["corpus"]:
            return _corpus(argv[1:])
        if argv[:1] == ["critic"]:
            return _critic(argv[1:])
        if argv[:1] == ["monitor"]:
            return _monitor(argv[1:])
        args = build_parser().parse_args(argv)
        return args.func(args)
    except TrainerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
