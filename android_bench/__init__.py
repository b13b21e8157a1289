"""Latency of OFA subnets on a phone over adb (TFLite's ``benchmark_model``) or on the host
(LiteRT), latency lookup tables built from those measurements, and their validation.

    python -m android_bench.build_lut --backend=host --space=mbv3_w1.0 --resolutions=160 --out=host160
    python -m android_bench.calibrate --backend=host --space=mbv3_w1.0 --table=host160 --out=host160_cal
    python -m android_bench.validate --backend=host --space=mbv3_w1.0 --table=host160_cal --n=30
"""
