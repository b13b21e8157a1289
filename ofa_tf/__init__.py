"""ofa-tf: Once-for-All supernets in TensorFlow/Keras, from training to a measured .tflite."""

__version__ = "0.1.0"
