"""A network's weights onto the same architecture for other classes: every weight matched by its
path, the classifier re-initialized.

Used where a trained network meets a data set with other classes: a subnet fine-tuned on them
(`ofa_tf.training.finetune`) and a supernet that progressive shrinking starts from
(``ofa_tf.train --init_weights``). A supernet ``.weights.h5`` is first compared with what this
supernet would save, dataset by dataset (Keras names each by the attribute path of its layer):
anything that differs other than the classifier's number of classes is one error naming the
weight. The file is then loaded with Keras (into a supernet of the file's classes when they
differ) and copied weight by weight, by path, all but the classifier. Keras' file holds the stage
blocks through the supernet's ``blocks`` list, so none is skipped (tested).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

from ofa_tf.errors import BadInput

# The group of a supernet's .weights.h5 that holds the classifier (its attribute ``classifier``).
CLASSIFIER_GROUP = "classifier"


def reinitialized_message(classifier: str, n_before: int, n_after: int) -> str:
    """How the logs name a re-initialized classifier."""
    return f"classifier {classifier!r} re-initialized: {n_before} → {n_after} classes"


def _relative_path(variable, model) -> str:
    path = variable.path
    return path[len(model.name) + 1:] if path.startswith(model.name + "/") else path


def copy_weights_by_path(source, target, skip=()) -> int:
    """Assign every weight of ``target`` except those in ``skip`` from the ``source`` weight of
    the same path (relative to its model) and shape; returns how many were copied."""
    skipped = {id(v) for v in skip}
    by_path = {}
    for variable in source.weights:
        by_path.setdefault(_relative_path(variable, source), []).append(variable)
    copied = 0
    for variable in target.weights:
        if id(variable) in skipped:
            continue
        path = _relative_path(variable, target)
        matches = by_path.get(path, [])
        if len(matches) != 1 or tuple(matches[0].shape) != tuple(variable.shape):
            raise ValueError(f"cannot copy weight {path!r} {tuple(variable.shape)}: the source has "
                             + (f"{len(matches)} weights of that path" if len(matches) != 1
                                else f"shape {tuple(matches[0].shape)}"))
        variable.assign(matches[0])
        copied += 1
    return copied


def h5_shapes(path: str) -> dict:
    """{dataset name: shape} of a Keras .weights.h5 file."""
    import h5py

    shapes = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: shapes.__setitem__(name, tuple(item.shape))
                     if isinstance(item, h5py.Dataset) else None)
    return shapes


def saved_shapes(model) -> dict:
    """What `h5_shapes` reads from the file ``model.save_weights`` writes."""
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "model.weights.h5")
        model.save_weights(path)
        return h5_shapes(path)


@dataclasses.dataclass(frozen=True)
class WeightsFit:
    """How a supernet weights file fits a supernet: the file's classes against the supernet's."""
    path: str
    file_classes: int
    n_classes: int
    file_class_names: list | None   # from the supernet.json beside the file, when there is one
    class_names: list | None        # the classes the supernet is for, when known

    @property
    def same_classes(self) -> bool:
        names_known = self.file_class_names is not None and self.class_names is not None
        return self.file_classes == self.n_classes and (not names_known or self.file_class_names == self.class_names)

    def describe(self, classifier: str) -> str:
        if self.same_classes:
            return f"{self.n_classes} classes, as the data set's"
        other = " (other names)" if self.file_classes == self.n_classes else ""
        return reinitialized_message(classifier, self.file_classes, self.n_classes) + other


def _file_class_names(path: str):
    """The class names of the supernet.json beside ``path`` (a workdir's supernet.weights.h5)."""
    from ofa_tf.artifacts import META_NAME, read_supernet_meta

    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(os.path.join(directory, META_NAME)):
        return None
    try:
        return list(read_supernet_meta(directory)["data"]["class_names"])
    except (ValueError, KeyError, OSError):
        return None


def check_weights_fit(supernet, path: str, class_names=None, what: str = "--init_weights",
                      target: str = "this supernet") -> WeightsFit:
    """Compare the weights file ``path`` with ``supernet``, dataset by dataset; raise one
    `BadInput` naming the first weights that differ, unless only the classifier's number of
    classes does. Loads nothing."""
    expected, found = saved_shapes(supernet), h5_shapes(path)
    group = CLASSIFIER_GROUP + "/"
    kernel = next((k for k, s in sorted(expected.items()) if k.startswith(group) and len(s) == 2), None)
    if kernel is None:
        raise RuntimeError(f"{type(supernet).__name__} saves no classifier kernel under {group}")
    problems = [f"{k!r} is missing from the file" for k in sorted(set(expected) - set(found))]
    problems += [f"{k!r} is in the file but not in {target}" for k in sorted(set(found) - set(expected))]
    for key in sorted(set(expected) & set(found)):
        want, got = expected[key], found[key]
        classifier_only = key.startswith(group) and len(want) == len(got) and want[:-1] == got[:-1]
        if want != got and not classifier_only:
            problems.append(f"{key!r} has shape {got} in the file, {want} in this supernet")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise BadInput(f"{what}={path} does not fit {target} (only the number of classes may differ, "
                       "e.g. it was saved from another search space): "
                       + "; ".join(problems[:3]) + more)
    return WeightsFit(path, file_classes=found[kernel][-1], n_classes=expected[kernel][-1],
                      file_class_names=_file_class_names(path),
                      class_names=list(class_names) if class_names is not None else None)


def load_weights_fit(supernet, fit: WeightsFit) -> str:
    """Load the file `check_weights_fit` accepted into ``supernet``: as it is when the classes are
    the same, else every weight but the classifier's, by path, from a supernet of the file's
    classes (the classifier keeps its fresh initialization). Returns what the log says."""
    if fit.same_classes:
        supernet.load_weights(fit.path)
    else:
        from ofa_tf.networks import family_of

        source = family_of(supernet.space).supernet_class(
            n_classes=fit.file_classes, space=supernet.space, dropout_rate=supernet.dropout_rate,
            bn_momentum=supernet.bn_momentum, bn_epsilon=supernet.bn_epsilon, name=supernet.name)
        source.load_weights(fit.path)
        copy_weights_by_path(source, supernet, skip=supernet.classifier.weights)
    return fit.describe(supernet.classifier.name)
