"""Import the reference's pretrained OFA-MobileNetV3 weights (PyTorch) as an ofa_tf supernet.

    python tools/import_torch.py --checkpoint ofa_mbv3_d234_e346_k357_w1.0 --out runs/ofa_mbv3_w1.0

Same flags as ``python -m ofa_tf.interop.import_torch`` (``--helpfull`` lists them).
"""

from ofa_tf.interop.import_torch import run

if __name__ == "__main__":
    run()
