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


def randomize_reference_tensors(torch, module, seed: int = 0, last_bn: str = "point_linear"):
    """Every float tensor of a reference torch ``module`` random (BN statistics and kernel
    transform matrices included; small gammas on the BNs named ``last_bn``, a block's last before
    its residual add: MBConv's projections, a bottleneck's ``conv3``, keep residual sums near unit
    scale), in inference mode; returns ``module``."""
    import numpy as np

    generator = torch.Generator().manual_seed(seed)
    uniform = lambda t, low, high: low + (high - low) * torch.rand(t.shape, generator=generator)  # noqa: E731
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var") or ("bn." in name and name.endswith(".weight")):
                tensor.copy_(uniform(tensor, 0.5, 1.5) if last_bn not in name or "running" in name
                             else uniform(tensor, 0.1, 0.5))
            elif name.endswith("_matrix"):
                tensor.copy_(torch.eye(tensor.shape[0]) + 0.1 * torch.randn(tensor.shape, generator=generator))
            elif tensor.dim() > 1:
                scale = 1.5 / float(np.prod(tensor.shape[1:])) ** 0.5
                tensor.copy_(scale * torch.randn(tensor.shape, generator=generator))
            else:   # BN beta, running mean, classifier bias
                tensor.copy_(0.2 * torch.randn(tensor.shape, generator=generator))
    return module.eval()
