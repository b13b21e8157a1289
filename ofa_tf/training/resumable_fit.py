"""``model.fit`` that continues from the optimizer's step, for runs resumed after a kill.

The training pipelines are deterministic given their seed and ``skip`` (`ofa_tf.data.pipelines`),
so a stream started at ``step * batch`` examples is the stream an uninterrupted run would have
read from there. A resumed run first finishes its interrupted epoch, then runs whole epochs.
"""

from __future__ import annotations

from typing import Callable


def fit_from_step(model, data_from: Callable[[int], object], step: Callable[[], int], total_steps: int,
                  steps_per_epoch: int, **fit_kwargs) -> None:
    """Fit ``model`` until ``step()`` (the optimizer's iterations) reaches ``total_steps``.

    ``data_from(step)`` returns the training stream as it continues after ``step`` steps;
    ``fit_kwargs`` go to every ``model.fit`` call (callbacks, verbose, validation_data...).
    """
    epochs = total_steps // steps_per_epoch
    while step() < total_steps:
        done = step()
        epoch, done_in_epoch = divmod(done, steps_per_epoch)
        model.fit(data_from(done), initial_epoch=epoch, epochs=epoch + 1 if done_in_epoch else epochs,
                  steps_per_epoch=steps_per_epoch - done_in_epoch, shuffle=False, **fit_kwargs)
