"""Command line: ``innerloop train | eval | predict | reproduce | finetune | plot | data | victim | configs``.

User mistakes print one line, ``innerloop: error: ...``, and exit with code 2.
"""

from __future__ import annotations

import argparse
import os
import json
import sys

from innerloop.errors import UserError


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help, with ``(default: X)`` after every option that has a default and does not say it already."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (action.help is argparse.SUPPRESS or not action.option_strings or action.required or action.nargs == 0
                or action.default in (None, [], argparse.SUPPRESS) or "default" in text.lower()):
            return action.help
        return f"{text} (default: %(default)s)".lstrip()


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)  # every (sub)command's --help shows the defaults
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if action.help is None and action.option_strings and action.nargs != 0 and action.default not in (None, []):
            action.help = "(default: %(default)s)"  # argparse lists no help for an option without help text
        return action

    def error(self, message: str):  # one line, exit 2 (argparse's default prints usage too)
        sys.stderr.write(f"innerloop: error: {message} (see '{self.prog} --help')\n")
        sys.exit(2)


def _version() -> str:
    """``innerloop X (torch Y)``, without importing torch."""
    from importlib.metadata import PackageNotFoundError, version

    from innerloop import __version__

    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = "not installed"
    return f"innerloop {__version__} (torch {torch_version})"


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="innerloop", description="Few-shot meta-learning with learned inner loops.")
    p.add_argument("--version", action="version", version=_version(), help="print innerloop's and torch's versions")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="meta-train from a config file or shipped config name")
    t.add_argument("config", nargs="?", default=None,
                   help="a TOML file, or a shipped name such as sinusoid/alfa-maml (see 'innerloop configs'); "
                        "optional with --resume (the run's saved config is used)")
    t.add_argument("--out", required=True, help="run directory (config.toml, metrics.jsonl, checkpoint.pt)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. inner.steps=1")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint, with its saved config (--set may change only "
                        "train.iterations, eval.*, train.meta_lr, train.clip_grad, the divergence guards, "
                        "train.checkpoint_every / log_every and train.checkpoint_unroll); an error if --out holds no "
                        "checkpoint")
    t.add_argument("--resume-or-start", action="store_true",
                   help="continue the run in --out if it holds a checkpoint, else start it (e.g. in a restart loop)")
    t.add_argument("--quiet", action="store_true", help="no progress lines")
    t.add_argument("--json", action="store_true",
                   help="print the training summary and the test result as two JSON lines (for scripts) instead of "
                        "a short table")
    t.add_argument("--no-eval", action="store_true", help="skip the evaluation at the end")
    t.add_argument("--data", default=None, help="folder holding the datasets, e.g. omniglot/ (default: $INNERLOOP_DATA)")
    t.add_argument("--nproc", type=int, default=None, metavar="N",
                   help="train in N processes on this machine, the meta-batch's tasks split across them (launches "
                        "torchrun --standalone; same result as one process; default: one process)")

    e = sub.add_parser("eval", help="evaluate a trained run on its fixed test tasks")
    e.add_argument("run_dir")
    e.add_argument("--tasks", type=int, default=None, help="number of test tasks (default: eval.tasks)")
    e.add_argument("--steps", type=int, default=None, help="inner steps at test time (default: eval.steps or inner.steps)")
    e.add_argument("--sources", default=None,
                   help="comma-separated test sources of a mixture or records run, e.g. mnist,cifar10 (default: task.eval_sources)")
    e.add_argument("--json", action="store_true",
                   help="print one JSON object (with the per-task scores, \"values\"; no progress lines)")
    e.add_argument("--quiet", action="store_true", help="no progress lines")
    e.add_argument("--dataset", default=None,
                   help="evaluate on this dataset's fixed episodes instead (cross-domain), e.g. mnist or cub; its "
                        "images are loaded at the model's input size (default: the run's own test episodes)")
    e.add_argument("--split", default=None, help="the split of --dataset (default: test) or of the run's dataset")
    e.add_argument("--ways", type=int, default=None,
                   help="N-way episodes (must equal the model's output classes; default: the run's)")
    e.add_argument("--shots", type=int, default=None, help="K-shot support sets (default: the run's)")
    e.add_argument("--query", type=int, default=None, help="query examples per class (default: task.eval_query)")
    e.add_argument("--data", default=None, help="folder holding the datasets (default: $INNERLOOP_DATA)")
    e.add_argument("--nproc", type=int, default=None, metavar="N",
                   help="evaluate in N processes on this machine, the test tasks shared out (same scores as one; "
                        "default: one process)")

    r = sub.add_parser("reproduce", help="train and evaluate a paper table")
    r.add_argument("name", help="alfa-sinusoid | lft-sinusoid | omniglot | lft-uap | lft-classification | "
                   "alfa-meta-dataset | meta-dataset-mini")
    r.add_argument("--budget", default="smoke", help="smoke | paper (sinusoid); smoke | cpu | paper (omniglot); smoke | cpu (lft-uap); smoke | cpu | paper (lft-classification); smoke | paper (alfa-meta-dataset); smoke | cpu (meta-dataset-mini)")
    r.add_argument("--data", default=None, help="folder holding the datasets (e.g. omniglot/); default $INNERLOOP_DATA")
    r.add_argument("--out", required=True)
    r.add_argument("--jobs", type=int, default=1, help="rows trained in parallel processes")
    r.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    r.add_argument("--only", default=None,
                   help="comma-separated rows to run: a full row id picks that row, any other text every id containing "
                        "it (default: every row)")
    r.add_argument("--nproc", type=int, default=None, metavar="N",
                   help="run each row in N processes on this machine, its tasks split across them (launches torchrun "
                        "--standalone; same results as one process; rows still run one after another; default: one "
                        "process)")

    f = sub.add_parser("finetune", help="fine-tune your model on your examples with a trained update rule")
    f.add_argument("run_dir", nargs="?", default=None,
                   help="run directory of a fine-tuner you trained (e.g. innerloop train sinusoid/lft-stable); or --tuner")
    f.add_argument("--tuner", default=None, metavar="NAME",
                   help="a fine-tuner shipped with innerloop instead of a run directory: default (an LSTM modulating "
                        "Adam) or stable-lstm (the earlier additive one)")
    f.add_argument("--model", required=True, help="'package.module:factory' returning your nn.Module")
    f.add_argument("--weights", default=None,
                   help="state_dict to load into the model first (torch.save file; default: the factory's weights)")
    f.add_argument("--data", required=True, help="torch.save'd dict or .npz with tensors 'x' and 'y'")
    f.add_argument("--steps", type=int, default=100, help="fine-tuning steps")
    f.add_argument("--lr", type=float, default=None, metavar="RATE",
                   help="a shared-ALFA fine-tuner (rule.kind = alfa_shared) anchored at your model's SGD rate RATE, "
                        "its learned multipliers kept (default: the rate it was trained with)")
    f.add_argument("--oracle", default="fo", choices=["fo", "zo"], help="fo: gradients; zo: loss values only")
    f.add_argument("--zo-q", type=int, default=20, metavar="Q", help="zo: random directions per step")
    f.add_argument("--zo-mu", type=float, default=0.005, metavar="MU", help="zo: smoothing radius")
    f.add_argument("--zo-directions", default="gaussian", choices=["gaussian", "sphere", "orthogonal"],
                   help="zo: direction distribution (orthogonal: Q <= the model's parameters)")
    f.add_argument("--zo-antithetic", action="store_true",
                   help="zo: central differences, 2Q + 1 loss queries per step instead of Q + 1")
    f.add_argument("--loss", default="mse", choices=["mse", "cross_entropy"], help="the loss on your examples")
    f.add_argument("--out", required=True, help="where to write the fine-tuned state_dict")
    f.add_argument("--seed", type=int, default=0, help="seed of the random draws (e.g. zo directions)")

    pr = sub.add_parser("predict", help="classify your images: adapt a trained run to a support folder, label a query folder")
    pr.add_argument("run_dir", help="run directory of a trained image-classification run (task.family = episodes)")
    pr.add_argument("--support", required=True, metavar="DIR",
                    help="DIR/<class>/<image>: one folder per class, as many as the run's task.ways")
    pr.add_argument("--query", required=True, metavar="DIR",
                    help="images to classify: DIR/<image>, or DIR/<class>/<image> to also report the accuracy")
    pr.add_argument("--steps", type=int, default=None, metavar="N", help="inner steps (default: the run's eval.steps)")
    pr.add_argument("--json", action="store_true", help="print one JSON object instead of one line per image")

    pl = sub.add_parser("plot", help="plot an ALFA run's generated learning rates and weight decays (Figure 3)")
    pl.add_argument("run_dir")
    pl.add_argument("--out", default=None, help="PNG path (default: RUN_DIR/hyperparameters.png)")
    pl.add_argument("--tasks", type=int, default=100, help="test tasks to average over")
    pl.add_argument("--steps", type=int, default=None, help="inner steps (default: inner.steps)")

    from innerloop.data.cli import register as register_data

    register_data(sub)

    from innerloop.victims.cli import register as register_victim

    register_victim(sub)

    c = sub.add_parser("configs", help="list the shipped configs (with expected training times); NAME: its settings",
                       description="Without NAME: one line per shipped config (name, expected training time on a "
                                   "2-core CPU, description). With NAME: its resolved settings, every key with what "
                                   "it means and its allowed values (the output is a valid config file).")
    c.add_argument("name", nargs="?", default=None,
                   help="a shipped config (e.g. sinusoid/maml) or a TOML file: print its resolved settings")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="with NAME: override, as for train (e.g. inner.steps=1)")
    c.add_argument("--keys", action="store_true", help="print the reference of every config key (Markdown tables)")
    return p


def _one_line_notes() -> None:
    """innerloop's own warnings (``"innerloop: ..."``) print as one plain line on stderr; others unchanged."""
    import warnings

    plain = warnings.formatwarning
    if getattr(plain, "_innerloop", False):
        return

    def fmt(message, category, filename, lineno, line=None):
        text = str(message)
        return text + "\n" if text.startswith("innerloop:") else plain(message, category, filename, lineno, line)

    fmt._innerloop = True
    warnings.formatwarning = fmt


def _launch(nproc: int, argv: list[str]) -> int:
    """``innerloop train|eval --nproc N ...``: the same command in N processes, as ``torchrun --standalone
    --nproc_per_node N -m innerloop ...`` runs it (torch's launcher, in this process). The processes' own errors
    are their one-line ``innerloop: error:`` messages; the launcher's report of a failed process is not shown."""
    import logging

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    if nproc < 1:
        raise UserError(f"--nproc {nproc} must be >= 1")
    from innerloop import distributed
    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            rest.append(a)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))  # the cores, shared out
    os.environ[distributed.REPORTED_BY_LAUNCHER] = "1"  # a process that lost a peer exits quietly: the line is here
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        run(parse_args(["--standalone", f"--nproc_per_node={nproc}", "-m", "innerloop", *rest]))
    except ChildFailedError as e:
        return _report_failures(e.failures, nproc, rest[0] if rest else "")
    return 0


_SIGNALS = {"SIGKILL": "killed from outside, by the out-of-memory killer, or by the launcher once it stopped answering",
            "SIGSEGV": "a crash inside a native library", "SIGABRT": "aborted: a NCCL timeout or a native error",
            "SIGTERM": "terminated from outside", "SIGBUS": "a crash inside a native library"}
PEER_LOST = 3  # exit status of a process that stopped because another process of its job is gone


def _report_failures(failures: dict, nproc: int, command: str) -> int:
    """One ``innerloop: error:`` line per process that died without saying why (a signal), or, where every failed
    process only lost contact, one line for that; processes that exited with their own error line (status 2) or
    a traceback (1) have spoken already. Returns the exit status of the command."""
    fix = {"train": "the run directory keeps its last checkpoint: run the same command with --resume (any number "
                    "of processes)",
           "reproduce": "run the same command again: finished rows are kept and the unfinished row resumes",
           }.get(command, "run the command again")
    codes = {f.exitcode for f in failures.values()}
    died = sorted(((r, f) for r, f in failures.items() if f.exitcode < 0), key=lambda x: x[0])
    # the launcher stops the other processes with SIGTERM once one fails: those are not causes
    causes = [(r, f) for r, f in died if f.signal_name() != "SIGTERM"]
    # a process whose peer vanished can abort inside gloo/NCCL (SIGABRT): a consequence when another died otherwise
    if any(f.signal_name() != "SIGABRT" for _, f in causes):
        causes = [(r, f) for r, f in causes if f.signal_name() != "SIGABRT"]
    if not causes and not codes & {1, 2}:
        causes = died[:1] if len(died) == 1 else []
        if len(died) > 1:
            ranks = ", ".join(str(r) for r, _ in died)
            sys.stderr.write(f"innerloop: error: processes {ranks} of {nproc} were terminated (SIGTERM: from outside, "
                             f"or by the launcher after the first) — {fix}\n")
    for rank, f in causes:
        name = f.signal_name()
        why = f" ({_SIGNALS[name]})" if name in _SIGNALS else ""
        sys.stderr.write(f"innerloop: error: process rank {rank} of {nproc} died of {name}{why}; the other "
                         f"processes were stopped — {fix}\n")
    if not died and codes <= {PEER_LOST}:
        from innerloop.distributed import timeout_s

        sys.stderr.write(f"innerloop: error: the {nproc} processes of this job lost contact (one stopped answering "
                         f"for {timeout_s():.0f} s) — {fix}\n")
    return 2 if 2 in codes else 1


def _threads(quiet: bool) -> None:
    """``INNERLOOP_THREADS`` sets this process's thread count (else torch's default, all cores); a machine already
    busy gets a one-line warning on stderr."""
    import torch

    from innerloop.threads import busy_machine_warning, env_threads

    threads = env_threads()
    if threads:
        torch.set_num_threads(threads)
    warning = None if quiet else busy_machine_warning(torch.get_num_threads())
    if warning:
        print(warning, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import torch

    torch.set_flush_denormal(True)  # denormals slow long unrolls on CPU by up to 10x (measured on the LSTM fine-tuner)
    _one_line_notes()
    try:
        if args.command == "configs":
            from innerloop.configs_cli import run as run_configs

            text, note = run_configs(args.name, args.set, args.keys)
            try:
                print(text, flush=True)
            except BrokenPipeError:  # innerloop configs | head: the reader has all it wanted
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return 0
            if note:
                sys.stderr.write(note + "\n")
        elif args.command == "train":
            from innerloop import config
            from innerloop.evaluate import evaluate_run, format_result, format_training, without_values
            from innerloop.train import train

            from innerloop import distributed

            from innerloop.train import resume_config

            if args.data:
                os.environ["INNERLOOP_DATA"] = args.data  # not baked into the config: the run resumes anywhere

            if args.resume and args.resume_or_start:
                raise UserError("pass --resume (continue; an error without a checkpoint) or --resume-or-start, not both")
            resume: bool | str = True if args.resume else "auto" if args.resume_or_start else False
            if args.resume:  # the saved config is the truth; a bad one fails here, once, before any process starts
                cfg = resume_config(args.out, args.config, args.set)
            elif args.config is None:
                raise UserError("train needs a CONFIG (a shipped name such as sinusoid/maml, or a TOML file), or "
                                "--resume to continue the run in --out")
            else:
                cfg = config.load(args.config, args.set)  # a bad config fails here, once, before any process starts
            if args.nproc is not None and not distributed.launched():
                return _launch(args.nproc, argv if argv is not None else sys.argv[1:])
            world = distributed.World()
            if distributed.launched():  # one of torchrun's processes: join the group, one GPU per process
                world, cfg.train.device = distributed.init_from_env(cfg.train.device)
            else:
                _threads(args.quiet)
            try:
                summary = train(cfg, args.out, resume=resume, progress=not args.quiet)
                if world.main:
                    print(json.dumps({"run": args.out, **summary}) if args.json else
                          format_training(args.out, summary), flush=True)
                if not args.no_eval:
                    # sharded over the job's processes, gathered on every one
                    result = evaluate_run(args.out, progress=not (args.quiet or args.json))
                    if world.main:  # per-task scores: innerloop eval RUN --json
                        print(json.dumps(without_values(result)) if args.json else format_result(result), flush=True)
                distributed.barrier(world)  # nobody leaves the group while another process still works in it
            finally:
                distributed.leave()
        elif args.command == "eval":
            from innerloop import distributed
            from innerloop.evaluate import evaluate_run, format_result

            if args.nproc is not None and not distributed.launched():
                return _launch(args.nproc, argv if argv is not None else sys.argv[1:])
            sources = [x for x in args.sources.split(",") if x] if args.sources else None
            world = distributed.World()
            if distributed.launched():  # torchrun: the test tasks are shared out, every process gets all scores
                world, _ = distributed.init_from_env("cuda" if torch.cuda.is_available() else "cpu")
            from innerloop.evaluate import eval_task_settings

            if args.data:
                os.environ["INNERLOOP_DATA"] = args.data
            task = eval_task_settings(args.dataset, args.split, args.ways, args.shots, args.query)
            try:
                result = evaluate_run(args.run_dir, args.tasks, args.steps, sources=sources, task=task or None,
                                      progress=not (args.quiet or args.json))
                distributed.barrier(world)
            finally:
                distributed.leave()
            if world.main and args.json:
                print(json.dumps(result))
            elif world.main:
                print(format_result(result))
        elif args.command == "finetune":
            from innerloop.finetune_cli import run_finetune

            print(json.dumps(run_finetune(args)))
        elif args.command == "predict":
            from innerloop.predict_cli import run_predict

            print(run_predict(args))
        elif args.command in ("data", "victim"):
            return args.func(args)
        elif args.command == "plot":
            from innerloop.plots import plot_run

            print(plot_run(args.run_dir, args.out, args.tasks, args.steps))
        elif args.command == "reproduce":

            from innerloop.reproduce import run_reproduction

            from innerloop import distributed
            from innerloop.reproduce.runner import default_device

            if args.data:
                os.environ["INNERLOOP_DATA"] = args.data  # not baked into the rows' configs: runs resume anywhere
            if args.nproc is not None and not distributed.launched():
                if args.jobs > 1:
                    raise UserError("--jobs trains rows side by side in one process each, --nproc splits each row's "
                                    "tasks over processes: use one of them")
                return _launch(args.nproc, argv if argv is not None else sys.argv[1:])
            device = args.device
            if distributed.launched():  # one of torchrun's processes: join the group, one GPU per process
                _, device = distributed.init_from_env(default_device(device))
            try:
                run_reproduction(args.name, args.budget, args.out, jobs=args.jobs, device=device, only=args.only)
                distributed.barrier(distributed.current())
            finally:
                distributed.leave()
    except UserError as e:
        return _fail(e)
    except KeyboardInterrupt:  # outside training (which saves a checkpoint and says so): nothing half-written
        sys.stderr.write("innerloop: interrupted\n")
        return 130
    except RuntimeError as e:  # a collective outside training (evaluation, a table's rows) whose peer is gone
        from innerloop import distributed

        if not (distributed.launched() and distributed.collective_failure(e)):
            raise
        kept = {"reproduce": "finished rows are kept: run the same command again"}.get(args.command,
                                                                                      "run the command again")
        return _fail(distributed.lost(e, distributed.World(int(os.environ.get("RANK", 0)),
                                                           int(os.environ["WORLD_SIZE"])), kept))
    return 0


def _fail(e: UserError) -> int:
    """Print ``e`` as the one ``innerloop: error:`` line (unless another process or the launcher reports the cause)."""
    from innerloop.distributed import REPORTED_BY_LAUNCHER, PeerFailed, PeerLost

    if isinstance(e, PeerLost) and os.environ.get(REPORTED_BY_LAUNCHER):
        # innerloop's launcher names the process that failed; leave now: tearing down a process group whose peer
        # is gone can abort in native code ("terminate called ...") and turn this quiet exit into a second report
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(PEER_LOST)
    if not isinstance(e, PeerFailed):  # another process of the job printed the cause
        sys.stderr.write(f"innerloop: error: {e}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
