"""Sampling subnets and resolutions inside a compiled train step.

Random draws come from a Keras ``SeedGenerator``, whose state is a variable of
the trainer: it is saved with checkpoints, so a resumed run samples the same
subnets as an uninterrupted one, and no Python randomness is baked into the trace.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from ofa_tf.arch.space import SearchSpace


class SubnetSampler:
    """Uniform per-slot kernel size and expand ratio, per-stage depth (and the skippable stem's),
    per-stage width index (a space with elastic width), per-batch resolution."""

    def __init__(self, space: SearchSpace, ks_list, expand_ratio_list, depth_list, resolutions,
                 seed_generator: keras.random.SeedGenerator, width_list=()):
        widths = tuple(range(len(space.width_mult_list)))
        for name, values, allowed in (("ks_list", ks_list, space.ks_list),
                                      ("expand_ratio_list", expand_ratio_list, space.expand_ratio_list),
                                      ("depth_list", depth_list, space.depth_list),
                                      ("resolutions", resolutions, space.resolutions),
                                      ("width_list", width_list, widths)):
            bad = [v for v in values if v not in allowed]
            if (allowed and not values) or bad:
                raise ValueError(f"{name} {list(values)} must be a non-empty subset of the space's {list(allowed)}")
        self.space = space
        self.ks_list, self.expand_ratio_list = tuple(ks_list), tuple(expand_ratio_list)
        self.depth_list, self.resolutions = tuple(depth_list), tuple(resolutions)
        self.width_list = tuple(width_list)
        self.seed_generator = seed_generator

    def _pick(self, choices, n, dtype):
        if len(choices) == 1:
            return tf.fill([n], tf.constant(choices[0], dtype))
        index = keras.random.randint((n,), 0, len(choices), dtype="int32", seed=self.seed_generator)
        return tf.gather(tf.constant(choices, dtype), index)

    def _depths(self):
        stages = self._pick(self.depth_list, self.space.n_stages, tf.int32)
        if not self.space.skippable_stem:
            return stages
        return tf.concat([self._pick(self.space.stem_depth_choices(self.depth_list), 1, tf.int32), stages], 0)

    def sample_arch(self) -> dict:
        """The supernet's ``assign_active_subnet`` arguments, the space's arch keys but ``r``:
        ``ks`` / ``e`` [n_blocks] (int32 / float32), ``d`` [n_depths] int32, ``w`` [n_widths] int32."""
        draw = {"ks": lambda: self._pick(self.ks_list, self.space.n_blocks, tf.int32),
                "e": lambda: self._pick(self.expand_ratio_list, self.space.n_blocks, tf.float32),
                "d": self._depths,
                "w": lambda: self._pick(self.width_list, self.space.n_widths, tf.int32)}
        return {key: draw[key]() for key in self.space.arch_keys[:-1]}

    def sample_resolution_index(self):
        """Index into ``resolutions`` of this batch's resolution (the draw `sample_resolution` makes)."""
        if len(self.resolutions) == 1:
            return tf.constant(0, tf.int32)
        return keras.random.randint((1,), 0, len(self.resolutions), dtype="int32", seed=self.seed_generator)[0]

    def sample_resolution(self):
        return tf.gather(tf.constant(self.resolutions, tf.int32), self.sample_resolution_index())
