"""Adam with TensorFlow's fused update kernel: the same update as ``keras.optimizers.Adam``, in one op per variable.

Keras 3's Adam writes its update as seven element-wise ops per variable (two ``assign_add``, an
``assign_sub`` and the temporaries between them), each a full pass over the variable's memory. For the
pix2pix U-Net's 39 M parameters that was 52 ms per step on the 2-core CPU of ``docs/benchmarks.md``,
about 7 % of a DermGAN step at 256 px. ``ResourceApplyAdam`` does the same arithmetic in one pass:
14 ms (``tools/bench.py``, issue 7).
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="keras_medgan")
class FusedAdam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` whose dense updates run as TensorFlow's fused ``ResourceApplyAdam``.

    The update is Kingma & Ba (2015), Algorithm 1, with the bias corrections folded into the step
    size, exactly as ``keras.optimizers.Adam`` writes it::

        m <- m + (g - m) (1 - beta_1)
        v <- v + (g^2 - v) (1 - beta_2)
        w <- w - lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)

    so the two agree to float32 rounding (``tests/test_optimizers.py``) and checkpoints move freely
    between them: the slot variables are Keras Adam's own. Everything else (weight decay, clipping,
    EMA, loss scaling, ``get_config``) is inherited unchanged.

    Falls back to Keras Adam's own update, with the same result, where the fused kernel does not apply:
    another backend than TensorFlow, ``amsgrad=True``, sparse (``IndexedSlices``) gradients, and under a
    ``tf.distribute`` strategy (where each replica's variable is a component of a distributed variable,
    and the element-wise ops are what Keras tests there).

    Args: as ``keras.optimizers.Adam``.

    Example:

    >>> opt = FusedAdam(2e-4, beta_1=0.5)   # pix2pix's Adam (Isola et al. 2017, Sec. 3.3)
    >>> gan.compile(g_optimizer=opt, d_optimizer=FusedAdam(2e-4, beta_1=0.5))
    """

    def update_step(self, gradient, variable, learning_rate):
        if not self._fusable(gradient):
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        var = variable.value if isinstance(variable, keras.Variable) else variable
        index = self._get_variable_index(variable)
        m, v = self._momentums[index].value, self._velocities[index].value
        dtype = var.dtype
        local_step = tf.cast(self.iterations + 1, dtype)
        return tf.raw_ops.ResourceApplyAdam(
            var=var.handle, m=m.handle, v=v.handle,
            beta1_power=tf.pow(tf.cast(self.beta_1, dtype), local_step),
            beta2_power=tf.pow(tf.cast(self.beta_2, dtype), local_step),
            lr=tf.cast(learning_rate, dtype), beta1=tf.cast(self.beta_1, dtype),
            beta2=tf.cast(self.beta_2, dtype), epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype), use_locking=False, use_nesterov=False,
        )

    def _fusable(self, gradient) -> bool:
        if keras.backend.backend() != "tensorflow" or self.amsgrad:
            return False
        import tensorflow as tf

        return not isinstance(gradient, tf.IndexedSlices) and not tf.distribute.has_strategy()
