"""The architecture core every family plugs into, without Keras: the search space, the layout
description that supernet, static builder, counters and latency tables walk, and MACs / params."""
