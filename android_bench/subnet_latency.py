"""Whole subnets timed end to end next to what a lookup table predicts for them: the common
step of validating a table and of calibrating one.

Each subnet is built by the static builder, exported as float32 .tflite with a batch of 1 and
timed by a ``Runner``. Every measurement is appended to a JSONL journal as it finishes (the
NAS code's arch-keyed store), so a re-run measures only what is missing.
"""

from __future__ import annotations

import os


def sample_subnets(predictor, n: int, seed: int, resolutions=(), exclude=()) -> list:
    """``n`` distinct random archs at ``resolutions`` (default: every one the table covers),
    none of them one of ``exclude`` (e.g. the subnets a table was calibrated on)."""
    import dataclasses

    from ofa_tf.nas.accuracy_dataset import sample_distinct_archs

    covered = predictor.supported_resolutions()
    if not covered:
        first_missing = predictor.missing_key(predictor.space.resolutions[0])
        raise ValueError(f"the table covers no resolution of the space completely (e.g. it lacks "
                         f"{first_missing!r}): build it with python -m android_bench.build_lut")
    resolutions = list(resolutions) or list(covered)
    uncovered = [r for r in resolutions if r not in covered]
    if uncovered:
        raise ValueError(f"the table does not cover resolution {uncovered[0]} (it covers {list(covered)})")
    space = dataclasses.replace(predictor.space, resolutions=tuple(resolutions))
    excluded = {predictor.encoder.arch2feature(arch).tobytes() for arch in exclude}
    archs = sample_distinct_archs(space, n + len(excluded), seed)
    return [a for a in archs if predictor.encoder.arch2feature(a).tobytes() not in excluded][:n]


def measure_subnets(layout, archs, predictor, runner, journal_path: str, statistic: str = "median") -> list[dict]:
    """Predicted and measured latency (``statistic`` of the timed runs) of each arch; finished
    measurements come from the journal, predictions always from ``predictor`` (so one journal
    serves a table and its calibrated copy)."""
    import dataclasses
    import tempfile

    import keras

    from android_bench.progress import Progress
    from ofa_tf.arch.value import arch_to_json
    from ofa_tf.export import to_tflite
    from ofa_tf.nas.accuracy_dataset import AccuracyDataset
    from ofa_tf.networks import family_of

    build_static_model = family_of(layout.space).build_static_model
    journal = AccuracyDataset(journal_path)   # the generic arch-keyed JSONL store of the NAS code
    todo = [arch for arch in archs if arch not in journal]
    progress = Progress(len(archs), len(archs) - len(todo))
    predicted = predictor.predict(todo) if todo else []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (arch, predicted_ms) in enumerate(zip(todo, predicted)):
            size = arch["r"][0]
            model = build_static_model(layout, arch, size, batch_size=1)
            path = os.path.join(tmp, f"subnet{i}.tflite")
            with open(path, "wb") as f:
                f.write(to_tflite(model, "float32"))
            keras.backend.clear_session()
            result = runner.benchmark(path)
            os.remove(path)
            record = {"arch": arch, "predicted_ms": float(predicted_ms),
                      "measured_ms": result.statistic(statistic),
                      "result": {k: v for k, v in dataclasses.asdict(result).items() if k != "op_profile"}}
            journal.append(record)
            progress.step(f"r{size}: predicted {record['predicted_ms']:.3f} ms, measured "
                          f"{record['measured_ms']:.3f} ms")
    return [{**journal.records[arch_to_json(arch)], "predicted_ms": float(ms)}
            for arch, ms in zip(archs, predictor.predict(archs))]
