"""The StyleGAN2-ADA adapter in this process (no Flower run): seeded identical starts, what is averaged and what
stays local, one model serving several nodes."""

import random
import threading
import time

import numpy as np
import pytest

from keras_medgan import config as config_lib
from keras_medgan.data import schema
from keras_medgan.recipes.federated_gans import DCGANAdapter, StyleGANAdapter


@pytest.fixture(scope="module")
def cfg(fed_env):
    _, _, smoke = fed_env
    return config_lib.replace(smoke, {"gan": "stylegan2-ada"})


def _equal(xs, ys):
    return len(xs) == len(ys) and all(np.array_equal(x, y) for x, y in zip(xs, ys))


def test_server_and_clients_build_identical_starts(cfg):
    import keras

    server = StyleGANAdapter(cfg, None)
    keras.random.normal((3,))  # other randomness in between must not matter: the build is seeded ...
    keras.utils.set_random_seed(123)
    done = threading.Event()

    def draw():  # ... nor other threads drawing from Python's `random` meanwhile (Flower's and Ray's do)
        while not done.is_set():
            random.random()
            time.sleep(1e-4)

    thread = threading.Thread(target=draw, daemon=True)
    thread.start()
    try:
        client = StyleGANAdapter(cfg, cfg.federation.client_dirs[1])
    finally:
        done.set()
    assert _equal(server.shared_weights(), client.shared_weights())
    assert _equal(server.local_state(), client.local_state())
    m = client.model
    assert len(client.shared_weights()) == len(m.generator.variables) + len(m.g_ema.variables) + len(
        m.discriminator.variables)
    assert client.num_train_examples == schema.read_dataset_info(client.data_dir).num_examples("train") > 0
    other = config_lib.replace(cfg, {"train": {"seed": 1}})
    assert not _equal(StyleGANAdapter(other, None).shared_weights(), server.shared_weights())


def test_averaged_parts_and_local_state(cfg):
    a = StyleGANAdapter(cfg, cfg.federation.client_dirs[0], averaged="g")
    m = a.model
    ids = lambda vs: {id(v) for v in vs}  # noqa: E731
    assert ids(a._shared) == ids(m.generator.variables) | ids(m.g_ema.variables)
    local = ids(a._local)
    assert ids(m.discriminator.variables) <= local and ids(m.training_state()) <= local
    assert ids(m.g_optimizer.variables) | ids(m.d_optimizer.variables) <= local
    # Loading global weights leaves ADA p, the step counter and D alone.
    m.ada_p.assign(0.3)
    m.step_counter.assign(7)
    d_before = [np.array(v) for v in m.discriminator.variables]
    a.set_shared_weights([w + 1.0 if w.dtype.kind == "f" else w for w in a.shared_weights()])
    assert float(m.ada_p.numpy()) == pytest.approx(0.3) and int(m.step_counter.numpy()) == 7
    assert _equal(d_before, [np.array(v) for v in m.discriminator.variables])
    assert a.progress() == {"step": 7, "kimg": 7 * 8 / 1000, "ada-p": pytest.approx(0.3)}
    state = a.local_state()
    m.ada_p.assign(0.9)
    a.set_local_state(state)
    assert float(m.ada_p.numpy()) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="expected .* arrays, received 1"):
        a.set_shared_weights([np.zeros(1)])
    with pytest.raises(ValueError, match="has shape"):
        a.set_local_state([np.zeros(5)] + state[1:])


def test_one_model_serves_several_nodes(cfg):
    from keras_medgan.federated import client

    built = []

    def build(config, data_dir):
        built.append(data_dir)
        return DCGANAdapter(config_lib.replace(cfg, {"gan": "cdcgan"}), data_dir)

    d0, d1 = cfg.federation.client_dirs
    a, initial = client.node_adapter(build, {}, d0, ("run", "hash"))
    n0 = a.num_train_examples
    b, initial_b = client.node_adapter(build, {}, d1, ("run", "hash"))
    assert b is a and initial_b is initial and built == [d0]
    assert a.data_dir == d1 and a.num_train_examples != n0
    assert _equal(initial, a.local_state())
    client.node_adapter(build, {}, d0, ("run", "other config"))
    assert built == [d0, d0]
