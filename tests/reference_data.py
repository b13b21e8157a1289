"""The reference's published files (latency tables, predictors), for checks that skip without them.

They are not part of the repository: a test looks for them in ``$OFA_TF_REFERENCE_DATA`` when
set, else in ``../shared/reference-data`` relative to the project root, laid out as the reference
publishes them (``ofa/note10/160_lookup_table.yaml``, ``ofa/acc_predictor.pth``, ...).
"""

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV_VAR = "OFA_TF_REFERENCE_DATA"


def reference_data_dir() -> str:
    return os.environ.get(ENV_VAR) or os.path.join(os.path.dirname(REPO), "shared", "reference-data")


def reference_file(*parts: str) -> str:
    """The path of one published file (or directory); skips the test when it is absent."""
    path = os.path.join(reference_data_dir(), *parts)
    if not os.path.exists(path):
        pytest.skip(f"the reference's published file {'/'.join(parts)} is not in {reference_data_dir()} "
                    f"(set {ENV_VAR} to where they are)")
    return path


def reference_modules(*names: str) -> list:
    """The installed reference's ``ofa.*`` modules; skips the test when they cannot be imported."""
    from ofa_tf.interop.reference_package import import_reference

    try:
        return [import_reference(name) for name in names]
    except ImportError as err:
        pytest.skip(f"reference ofa package not importable: {err}")
