"""Export a subnet of a trained supernet to a verified .tflite (same flags as python -m ofa_tf.export).

    python tools/export_subnet.py --supernet=runs/demo --preset=max --mode=float32,int8
"""

from ofa_tf.export.__main__ import run

if __name__ == "__main__":
    run()
