"""Elastic Keras layers: weights at their largest shape, sliced to the active choice."""

from ofa_tf.layers.elastic_conv import ElasticDepthwiseConv2D, ElasticPointwiseConv2D
from ofa_tf.layers.elastic_norm import ElasticBatchNormalization
from ofa_tf.layers.elastic_se import ElasticSqueezeExcite
from ofa_tf.layers.mbconv import ElasticMBConv

__all__ = ["ElasticBatchNormalization", "ElasticDepthwiseConv2D", "ElasticMBConv",
           "ElasticPointwiseConv2D", "ElasticSqueezeExcite"]
