"""The paper's ablation on the embedded demo data: progressive shrinking against training every
subnet at once, and against the same subnets trained alone from scratch.

Per seed, same budget of training images for every regime:
  * PS: the demo schedule of ``--flagfile`` (teacher -> kernel -> depth1 -> depth2 -> expand1 ->
    expand2) through `ProgressiveShrinking`;
  * No PS: from the PS run's teacher (copied, not trained again), one phase with every kernel
    size, expand ratio and depth open from the first step (expand2's sampling: 4 subnets a step,
    KD from the teacher) for as many steps as PS's phases after the teacher took together, with
    warm-up and cosine decay; it fills the expand2 slot of its own workdir (`phase_overrides`);
  * From scratch: the smallest, middle and largest subnet and ``--n_scratch_random`` random ones,
    each extracted from a randomly initialized supernet and trained alone as a plain Keras model
    (`SubnetFinetuner`, no KD, the teacher's learning rate, one warm-up epoch then cosine) for
    as many steps as the whole PS run, teacher included, at its own resolution.
Then the corners and ``--n_random`` random subnets (the same archs for every regime and seed,
fixed by ``--arch_seed``) are measured: top-1 on the full validation split, BN recalibrated on
training images for the supernets (a scratch model keeps the statistics it trained with).
Writes ``ablation.md`` (mean and min-max over seeds), ``ablation.json`` and ``ablation.png``
(top-1 against MMACs) to ``--out``. Re-running resumes: finished phases, finished scratch
subnets and finished measurements are reused.

``--teacher_scale=K`` trains the shared teacher K times longer (the phases after it unchanged),
for the question the default budget leaves open: does PS win once the full network has
converged, as the reference's (a released, fully trained network) has? ``--regimes`` runs a
subset (PS always). A workdir keeps its settings (``ablation_settings.json``); other ones are
refused there.

    python benchmarks/bench_ps_ablation.py [--seeds=0,1] [--epochs_scale=0.025] [--workdir=runs/ps_ablation]
    python benchmarks/bench_ps_ablation.py --epochs_scale=0.0125 --teacher_scale=5 --regimes=ps,no_ps \
        --workdir=runs/ps_ablation_teacher5
"""

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import time

from ofa_tf.allocator import reexec_with_tcmalloc

reexec_with_tcmalloc()  # before TensorFlow loads, as the training CLI; OFA_TF_ALLOCATOR=system opts out
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from ofa_tf.arch.complexity import profile_arch  # noqa: E402
from ofa_tf.artifacts import subnet_sidecar_path  # noqa: E402
from ofa_tf.atomic_files import atomic_save_dir, atomic_write_text  # noqa: E402
from ofa_tf.data import load_dataset  # noqa: E402
from ofa_tf.nas.pareto_plot import save_figure  # noqa: E402
from ofa_tf.nas.subnet_measurement import make_validator  # noqa: E402
from ofa_tf.networks import family_of  # noqa: E402
from ofa_tf.training.config import DONE_NAME, TrainConfig  # noqa: E402
from ofa_tf.training.finetune import FinetuneConfig, SubnetFinetuner  # noqa: E402
from ofa_tf.training.phases import phase_validation_archs, progressive_shrinking_phases  # noqa: E402
from ofa_tf.training.pipeline import ProgressiveShrinking, plan_phase  # noqa: E402

REGIMES = ("ps", "no_ps", "scratch")
REGIME_TITLES = {"ps": "PS", "no_ps": "No PS", "scratch": "from scratch"}
CORNERS = ("smallest", "middle", "largest")
NO_PS_WARMUP_EPOCHS = 5     # as the long phases (kernel, depth2, expand2), scaled by epochs_scale


# ------------------------------------------------------------------ settings
def read_flagfile(path: str) -> dict:
    """The TrainConfig fields a flagfile (``--name=value`` lines, # comments) sets, typed as
    the fields' defaults; the workdir is the benchmark's own."""
    fields = TrainConfig.__dataclass_fields__
    values = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, _, value = line.lstrip("-").partition("=")
            if name not in fields:
                raise ValueError(f"{path}:{number}: --{name} is not a training setting")
            if name == "workdir":
                continue
            default = fields[name].default
            if isinstance(default, bool):
                values[name] = value.lower() in ("1", "true", "yes")
            elif isinstance(default, (int, float)) and not isinstance(default, bool):
                values[name] = type(default)(value)
            elif isinstance(default, tuple):
                values[name] = tuple(v for v in value.split(",") if v)
            else:
                values[name] = value
    if "image_size_list" in values:
        values["image_size_list"] = tuple(int(v) for v in values["image_size_list"])
    return values


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flagfile", default=os.path.join(os.path.dirname(__file__), "..", "configs", "demo.flags"),
                        help="the PS schedule's training settings (default: configs/demo.flags)")
    parser.add_argument("--workdir", default="runs/ps_ablation",
                        help="root of the runs: <workdir>/seed<S>/{ps,no_ps,scratch}; re-running resumes")
    parser.add_argument("--out", default=None, help="report directory (default: <workdir>/report)")
    parser.add_argument("--seeds", default="0,1", help="comma-separated training seeds (>= 2 for a spread)")
    parser.add_argument("--epochs_scale", type=float, default=None,
                        help="multiplies every phase's epochs (default: the flagfile's, 0.025 for the demo)")
    parser.add_argument("--steps_per_epoch", type=int, default=None,
                        help="cap on steps per epoch (default: the flagfile's; 0 = a pass over the data)")
    parser.add_argument("--n_random", type=int, default=5, help="random subnets measured besides the corners")
    parser.add_argument("--n_scratch_random", type=int, default=2,
                        help="how many of the random subnets are also trained from scratch")
    parser.add_argument("--arch_seed", type=int, default=0, help="seed of the random subnets (the same for every seed)")
    parser.add_argument("--no_ps_lr", type=float, default=None,
                        help="No PS learning rate per 64 images before --lr_scale (default: expand2's)")
    parser.add_argument("--n_calibration_images", type=int, default=None,
                        help="BN recalibration images per measured subnet (default: the flagfile's)")
    parser.add_argument("--teacher_scale", type=float, default=1.0,
                        help="the teacher phase this many times its scheduled epochs (PS and No PS share it; "
                             "the phases after it unchanged): a converged teacher, as the reference starts from")
    parser.add_argument("--regimes", default=",".join(REGIMES),
                        help=f"comma-separated subset of {','.join(REGIMES)} (ps always runs: the others build on it)")
    parser.add_argument("--eval_images", type=int, default=0,
                        help="measure on the first this many validation images (0: the full split)")
    args = parser.parse_args(argv)
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds={args.seeds!r} must be comma-separated integers")
    if not args.seeds or len(set(args.seeds)) != len(args.seeds):
        parser.error("--seeds must list at least one seed, without repeats")
    if args.n_random < 0 or not 0 <= args.n_scratch_random <= args.n_random:
        parser.error(f"need 0 <= --n_scratch_random ({args.n_scratch_random}) <= --n_random ({args.n_random})")
    if not args.teacher_scale > 0:
        parser.error(f"--teacher_scale must be > 0, got {args.teacher_scale}")
    regimes = [r for r in args.regimes.split(",") if r]
    if not regimes or any(r not in REGIMES for r in regimes):
        parser.error(f"--regimes={args.regimes!r}: choose from {','.join(REGIMES)}")
    args.regimes = ["ps"] + [r for r in REGIMES[1:] if r in regimes]
    if args.eval_images < 0:
        parser.error(f"--eval_images must be >= 0, got {args.eval_images}")
    if args.no_ps_lr is not None and not args.no_ps_lr > 0:
        parser.error(f"--no_ps_lr must be > 0, got {args.no_ps_lr}")
    if not os.path.isfile(args.flagfile):
        parser.error(f"--flagfile={args.flagfile}: no such file")
    try:
        settings = read_flagfile(args.flagfile)
        for name in ("epochs_scale", "steps_per_epoch", "n_calibration_images"):
            if getattr(args, name) is not None:
                settings[name] = getattr(args, name)
        TrainConfig(workdir=args.workdir, **settings)   # checks every setting before any work
    except ValueError as err:
        parser.error(str(err))
    if settings.get("epochs_scale", 1.0) > 1:
        parser.error("--epochs_scale must be <= 1 (the No PS phase is matched to PS's steps in whole epochs)")
    args.settings = settings
    args.out = args.out or os.path.join(args.workdir, "report")
    return args


# ------------------------------------------------------------------ the regimes' schedules
@dataclasses.dataclass(frozen=True)
class Budget:
    """Steps of each regime for one seed (the same for every seed)."""
    steps_per_epoch: int
    global_batch: int
    ps_steps: dict           # phase -> steps
    ps_subnet_passes: int    # sum over PS steps of the subnets trained in that step
    no_ps_phase: object      # the Phase standing in for PS's phases after the teacher
    teacher_phase: object    # the teacher both supernet regimes share (--teacher_scale)

    @property
    def total_ps_steps(self) -> int:
        return sum(self.ps_steps.values())

    @property
    def after_teacher_steps(self) -> int:
        return self.total_ps_steps - self.ps_steps["teacher"]

    @property
    def scratch_epochs(self) -> int:
        return self.total_ps_steps // self.steps_per_epoch


def plan_budget(config: TrainConfig, n_train: int, no_ps_lr: float | None, teacher_scale: float = 1.0) -> Budget:
    """PS's steps from its phase plans (the teacher ``teacher_scale`` times its epochs), and the
    No PS phase: expand2's sampling with epochs chosen so that its plan has exactly PS's steps
    after the teacher."""
    teacher = progressive_shrinking_phases(config.search_space())["teacher"]
    teacher = dataclasses.replace(teacher, epochs=max(1, round(teacher.epochs * teacher_scale)))
    phases = progressive_shrinking_phases(config.search_space(), {"teacher": teacher})
    global_batch = config.batch_size
    names = list(phases)   # the space's phases in training order (no width phases in MBv3 spaces)
    plans = {name: plan_phase(phases[name], config, n_train, global_batch) for name in names}
    steps_per_epoch = plans["teacher"].steps_per_epoch
    target_epochs = sum(plans[name].epochs for name in names[1:])
    expand2 = phases["expand2"]
    # plan_phase scales (epochs + warm-up) by epochs_scale and rounds: invert it.
    guess = round(target_epochs / config.epochs_scale) - NO_PS_WARMUP_EPOCHS
    for epochs in sorted(range(max(1, guess - 3), guess + 4), key=lambda e: abs(e - guess)):
        no_ps = dataclasses.replace(expand2, epochs=epochs, warmup_epochs=NO_PS_WARMUP_EPOCHS,
                                    lr=no_ps_lr or expand2.lr, sort_channels=0)
        if plan_phase(no_ps, config, n_train, global_batch).epochs == target_epochs:
            break
    else:
        raise ValueError(f"no phase length gives {target_epochs} epochs at epochs_scale {config.epochs_scale}")
    return Budget(steps_per_epoch, global_batch, {n: p.total_steps for n, p in plans.items()},
                  sum(plans[n].total_steps * phases[n].dynamic_batch_size for n in names), no_ps, teacher)


def budget_lines(budget: Budget) -> list:
    batch = budget.global_batch
    ps_images = budget.total_ps_steps * batch
    teacher = budget.ps_steps["teacher"]
    no_ps_passes = teacher + budget.after_teacher_steps * budget.no_ps_phase.dynamic_batch_size
    return [
        f"- PS: {budget.total_ps_steps} steps of {batch} images ({ps_images} images; "
        + ", ".join(f"{n} {s}" for n, s in budget.ps_steps.items())
        + f"); 1-4 subnets share a step's images: {budget.ps_subnet_passes * batch} subnet-images in all.",
        f"- No PS: the same {teacher} teacher steps (shared with PS), then {budget.after_teacher_steps} steps "
        f"with {budget.no_ps_phase.dynamic_batch_size} subnets each ({ps_images} images, "
        f"{no_ps_passes * batch} subnet-images).",
        f"- From scratch: each subnet {budget.total_ps_steps} steps of {batch} images alone ({ps_images} "
        f"images, as the whole PS run), i.e. it sees every image of the budget itself, while a PS step's "
        f"images are shared by 1-4 subnets ({budget.ps_subnet_passes / budget.total_ps_steps:.2f} on average) "
        "and a subnet is sampled in only some of them.",
    ]


# ------------------------------------------------------------------ the archs
def chosen_archs(config: TrainConfig, n_random: int, arch_seed: int) -> dict:
    space = config.search_space()
    archs = phase_validation_archs(space, space.ks_list, space.expand_ratio_list, space.depth_list,
                                   config.resolutions)
    rng = np.random.default_rng(arch_seed)
    for i in range(1, n_random + 1):
        arch = space.sample(rng)
        arch["r"] = [int(rng.choice(config.resolutions))]
        archs[f"random{i}"] = arch
    return json.loads(json.dumps(archs))   # as a record read back from JSON compares


# ------------------------------------------------------------------ resumable records
def read_json(path: str):
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json(path: str, value) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_text(path, json.dumps(value, indent=2))


def measure(pipeline, archs: dict, args, config: TrainConfig, seed: int) -> dict:
    validator = make_validator(pipeline.supernet, pipeline.source, "val", eval_images=args.eval_images,
                               n_calibration_images=config.n_calibration_images,
                               calibration_batch_size=config.calibration_batch_size,
                               eval_batch_size=config.eval_batch_size, seed=seed)
    return {name: validator.evaluate(arch)["top1"] for name, arch in archs.items()}


def check_same_settings(workdir: str, settings: dict) -> None:
    """Record the training settings in ``workdir`` (first run) or refuse different ones: a
    rerun resumes the finished phases, which other settings would silently mix in."""
    path = os.path.join(workdir, "ablation_settings.json")
    recorded = read_json(path)
    wanted = json.loads(json.dumps(settings))
    if recorded is None:
        write_json(path, wanted)
    elif recorded != wanted:
        changed = sorted(k for k in set(recorded) | set(wanted) if recorded.get(k) != wanted.get(k))
        raise SystemExit(f"error: {workdir} holds a run with other settings ({', '.join(changed)}); "
                         "use another --workdir or the same settings to resume")


def run_supernet_regime(regime: str, config: TrainConfig, archs: dict, args, seed: int, overrides=None,
                        shared=()) -> dict:
    """Train (or resume) a supernet regime and measure ``archs``; the record is kept in
    ``<workdir>/result.json`` so a rerun reuses it. ``shared``: phases another regime trained."""
    path = os.path.join(config.workdir, "result.json")
    record = read_json(path)
    if record is not None and record["archs"] == archs and record["eval_images"] == args.eval_images:
        return record
    resumed = any(os.path.exists(os.path.join(config.workdir, p, DONE_NAME)) for p in config.phases
                  if p not in shared)
    started = time.time()
    pipeline = ProgressiveShrinking(config, phase_overrides=overrides)
    pipeline.run()
    trained = time.time() - started
    top1 = measure(pipeline, archs, args, config, seed)
    record = {"regime": regime, "seed": seed, "archs": archs, "eval_images": args.eval_images, "top1": top1,
              "train_seconds": trained, "measure_seconds": time.time() - started - trained,
              "resumed": resumed}
    write_json(path, record)
    return record


def share_teacher(ps_workdir: str, no_ps_workdir: str) -> None:
    """The No PS workdir starts from PS's finished teacher phase (a copy, written atomically)."""
    target = os.path.join(no_ps_workdir, "teacher")
    if os.path.exists(os.path.join(target, DONE_NAME)):
        return
    source = os.path.join(ps_workdir, "teacher")
    if not os.path.exists(os.path.join(source, DONE_NAME)):
        raise RuntimeError(f"{source} has no finished teacher phase to share")
    os.makedirs(no_ps_workdir, exist_ok=True)
    atomic_save_dir(target, lambda tmp: shutil.copytree(source, tmp, dirs_exist_ok=True))


def run_scratch(config: TrainConfig, archs: dict, names, budget: Budget, args, seed: int) -> dict:
    """Train each of ``names`` alone from a random supernet's weights; one record per subnet."""
    directory = os.path.join(args.workdir, f"seed{seed}", "scratch")
    source = load_dataset(config.dataset, config.data_dir)
    plan = plan_phase(progressive_shrinking_phases(config.search_space())["teacher"], config,
                      source.info.n_train, budget.global_batch)
    supernet = None
    results = {}
    for name in names:
        result_path = os.path.join(directory, f"{name}.result.json")
        record = read_json(result_path)
        if record is not None and record["arch"] == archs[name]:
            results[name] = record
            continue
        out = os.path.join(directory, f"{name}.keras")
        started = time.time()
        finished = read_json(subnet_sidecar_path(out))
        if finished is None:
            if supernet is None:   # the same random initialization for every subnet of a seed
                keras.utils.set_random_seed(seed)
                space = config.search_space()
                supernet = family_of(space).supernet_class(
                    n_classes=source.info.num_classes, space=space, dropout_rate=config.dropout,
                    bn_momentum=config.bn_momentum, seed=seed)
            settings = FinetuneConfig(
                out=out, epochs=budget.scratch_epochs - 1, warmup_epochs=1, batch_size=config.batch_size,
                steps_per_epoch=config.steps_per_epoch, lr=plan.lr, momentum=config.momentum,
                nesterov=config.nesterov, weight_decay=config.weight_decay,
                label_smoothing=config.label_smoothing, kd_ratio=0.0, n_calibration_images=0,
                eval_split="val", eval_images=args.eval_images, eval_batch_size=config.eval_batch_size,
                seed=seed, checkpoint_every=config.checkpoint_every, tensorboard=False)
            finetuner = SubnetFinetuner(supernet, source.info, archs[name], source, settings,
                                        dataset=config.dataset, data_dir=config.data_dir)
            if finetuner.total_steps != budget.total_ps_steps:
                raise RuntimeError(f"scratch {name}: {finetuner.total_steps} steps, PS took {budget.total_ps_steps}")
            finished = {"finetune": finetuner.run()}
            seconds = time.time() - started
        else:
            seconds = None   # trained by an earlier invocation that stopped before its record
        record = {"arch": archs[name], "top1": 100 * finished["finetune"]["val_top1"],
                  "steps": finished["finetune"]["steps"], "seconds": seconds}
        write_json(result_path, record)
        results[name] = record
    return results


# ------------------------------------------------------------------ the report
def spread(values):
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize(archs, per_seed, mmacs) -> dict:
    """arch name -> regime -> mean/min/max over seeds (regimes that measured it)."""
    table = {}
    for name in archs:
        row = {}
        for regime in REGIMES:
            values = [per_seed[s][regime]["top1"][name] for s in per_seed
                      if regime in per_seed[s] and name in per_seed[s][regime]["top1"]]
            if values:
                row[regime] = spread(values)
        table[name] = {"arch": archs[name], "r": archs[name]["r"][0], "mmacs": mmacs[name], "top1": row}
    return table


def cell(stats) -> str:
    if stats is None:
        return "not trained"
    return f"{stats['mean']:.1f} ({stats['min']:.1f}–{stats['max']:.1f})"


def markdown(table, seeds, budget_text, times, args, settings) -> str:
    lines = [f"Top-1 (%) on the {'full validation split' if not args.eval_images else f'first {args.eval_images} validation images'}"
             f", mean (min–max) over seeds {','.join(map(str, seeds))}; epochs_scale {settings.get('epochs_scale', 1.0)}"
             + (f", teacher {args.teacher_scale:g}x its epochs" if args.teacher_scale != 1 else "")
             + (f", steps_per_epoch {settings['steps_per_epoch']}" if settings.get("steps_per_epoch") else "") + ".",
             "", "| subnet | r | MMACs | " + " | ".join(REGIME_TITLES[r] for r in args.regimes) + " |",
             "|---|---|---|" + "---|" * len(args.regimes)]
    for name, row in table.items():
        lines.append(f"| {name} | {row['r']} | {row['mmacs']:.1f} | "
                     + " | ".join(cell(row["top1"].get(r)) for r in args.regimes) + " |")
    common = [n for n, row in table.items() if all(r in row["top1"] for r in args.regimes)]
    if common:
        means = {r: statistics.fmean(table[n]["top1"][r]["mean"] for n in common) for r in args.regimes}
        lines.append(f"| mean of the {len(common)} subnets all regimes have | | | "
                     + " | ".join(f"{means[r]:.1f}" for r in args.regimes) + " |")
    lines += ["", "Budgets per seed:", *budget_text, "", "Wall time per regime per seed (s; training + measuring, "
              "this or the earlier invocation that finished it; * = resumed, partial):", "",
              "| seed | " + " | ".join(REGIME_TITLES[r] for r in args.regimes) + " |", "|---|" + "---|" * len(args.regimes)]
    for seed in seeds:
        lines.append(f"| {seed} | " + " | ".join(times[seed][r] for r in args.regimes) + " |")
    lines += ["", "Supernet regimes: BN recalibrated on training images before each measurement. "
              "From scratch: each model keeps the BN statistics it trained with; only the corners and "
              f"the first {args.n_scratch_random} random subnets are trained that way."]
    return "\n".join(lines) + "\n"


def save_plot(path: str, table) -> None:
    """Top-1 against MMACs, one marker per regime, error bars min–max over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    markers = {"ps": "o", "no_ps": "s", "scratch": "^"}
    for regime in REGIMES:
        rows = sorted((row for row in table.values() if regime in row["top1"]), key=lambda row: row["mmacs"])
        if not rows:
            continue
        x = np.array([row["mmacs"] for row in rows])
        stats = [row["top1"][regime] for row in rows]
        mean = np.array([s["mean"] for s in stats])
        err = np.array([[s["mean"] - s["min"] for s in stats], [s["max"] - s["mean"] for s in stats]])
        ax.errorbar(x, mean, yerr=err, fmt=markers[regime], ms=5, capsize=3, lw=1,
                    label=REGIME_TITLES[regime])
    ax.set_xscale("log")   # the tiny space's subnets span ~30x in MACs
    ax.set(xlabel="MMACs", ylabel="top-1 (%), min–max over seeds",
           title="Progressive shrinking ablation (demo data)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path)


def seconds_text(record) -> str:
    seconds = record.get("seconds")
    return "?" if seconds is None else f"{seconds:.0f}" + ("*" if record.get("resumed") else "")


def main(argv=None):
    args = parse_args(argv)
    settings = args.settings
    base = TrainConfig(workdir=args.workdir, **settings)
    info = load_dataset(base.dataset, base.data_dir).info
    budget = plan_budget(base, info.n_train, args.no_ps_lr, args.teacher_scale)
    teacher = {"teacher": budget.teacher_phase}
    archs = chosen_archs(base, args.n_random, args.arch_seed)
    space = base.search_space()
    mmacs = {name: profile_arch(arch, space, n_classes=info.num_classes).mmacs for name, arch in archs.items()}
    scratch_names = list(CORNERS) + [f"random{i}" for i in range(1, args.n_scratch_random + 1)]
    text = budget_lines(budget)
    print("\n".join(["Budgets per seed:", *text]), flush=True)

    check_same_settings(args.workdir, {**settings, "teacher_scale": args.teacher_scale,
                                       "no_ps_lr": args.no_ps_lr})
    per_seed, times = {}, {}
    for seed in args.seeds:
        root = os.path.join(args.workdir, f"seed{seed}")
        ps_config = dataclasses.replace(base, workdir=os.path.join(root, "ps"), seed=seed)
        no_ps_config = dataclasses.replace(ps_config, workdir=os.path.join(root, "no_ps"),
                                           phases=("teacher", "expand2"))
        ps = run_supernet_regime("ps", ps_config, archs, args, seed, overrides=teacher)
        print(f"[seed {seed}] PS: {ps['train_seconds']:.0f}s training, {ps['measure_seconds']:.0f}s measuring",
              flush=True)
        per_seed[seed] = {"ps": ps}
        times[seed] = {"ps": seconds_text({"seconds": ps["train_seconds"] + ps["measure_seconds"],
                                           "resumed": ps["resumed"]})}
        if "no_ps" in args.regimes:
            share_teacher(ps_config.workdir, no_ps_config.workdir)
            no_ps = run_supernet_regime("no_ps", no_ps_config, archs, args, seed,
                                        overrides={**teacher, "expand2": budget.no_ps_phase}, shared=("teacher",))
            print(f"[seed {seed}] No PS: {no_ps['train_seconds']:.0f}s training (teacher shared with PS), "
                  f"{no_ps['measure_seconds']:.0f}s measuring", flush=True)
            per_seed[seed]["no_ps"] = no_ps
            times[seed]["no_ps"] = seconds_text({"seconds": no_ps["train_seconds"] + no_ps["measure_seconds"],
                                                 "resumed": no_ps["resumed"]})
        if "scratch" in args.regimes:
            started = time.time()
            scratch = run_scratch(ps_config, archs, scratch_names, budget, args, seed)
            scratch_seconds = [r["seconds"] for r in scratch.values()]
            scratch_total = None if None in scratch_seconds else sum(scratch_seconds)
            print(f"[seed {seed}] from scratch: {len(scratch)} subnets, "
                  + (f"{scratch_total:.0f}s" if scratch_total is not None else "time partly unknown (resumed)")
                  + f" ({time.time() - started:.0f}s in this invocation)", flush=True)
            per_seed[seed]["scratch"] = {"top1": {n: r["top1"] for n, r in scratch.items()}, "subnets": scratch,
                                         "seconds": scratch_total}
            times[seed]["scratch"] = seconds_text({"seconds": scratch_total})

    table = summarize(archs, per_seed, mmacs)
    report = markdown(table, args.seeds, text, times, args, settings)
    os.makedirs(args.out, exist_ok=True)
    atomic_write_text(os.path.join(args.out, "ablation.md"), report)
    atomic_write_text(os.path.join(args.out, "ablation.json"), json.dumps({
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]), "settings": settings,
        "seeds": args.seeds, "arch_seed": args.arch_seed, "budget": {
            "steps_per_epoch": budget.steps_per_epoch, "global_batch": budget.global_batch,
            "ps_steps": budget.ps_steps, "ps_subnet_passes": budget.ps_subnet_passes,
            "no_ps_phase": dataclasses.asdict(budget.no_ps_phase)},
        "table": table, "per_seed": {str(s): v for s, v in per_seed.items()}}, indent=2))
    save_plot(os.path.join(args.out, "ablation.png"), table)
    print(report, flush=True)
    print(f"wrote {args.out}/ablation.md, .json, .png", flush=True)


if __name__ == "__main__":
    main()
