"""The federated recipe's command line and config, without running a federation (the runs themselves are in
``tests/federated/``)."""

import json
import os

import pytest

pytest.importorskip("flwr")

from keras_medgan import config as config_lib  # noqa: E402
from keras_medgan.recipes import federated  # noqa: E402
from keras_medgan.recipes import stylegan2_ada  # noqa: E402
from keras_medgan.recipes.federated_gans import ADAPTERS, StyleGANAdapter  # noqa: E402


def test_gan_registry_and_presets():
    assert tuple(ADAPTERS) == federated.GANS and all(ADAPTERS.values())
    assert ADAPTERS["stylegan2-ada"] is StyleGANAdapter
    for preset in federated.PRESETS:
        cfg = federated.get_config(preset)
        # The stylegan2 section is the StyleGAN2-ADA recipe's preset of the same name.
        sg = stylegan2_ada.get_config(preset)
        assert (cfg.stylegan2.model, cfg.stylegan2.loss, cfg.stylegan2.augment, cfg.stylegan2.ema) == (
            sg.model, sg.loss, sg.augment, sg.ema)
    paper = federated.get_config("paper")
    assert paper.gan == "stylegan2-ada" and paper.data.image_size == 256 and paper.data.classes == (
        "benign", "malignant")
    assert paper.federation.sizes == (2000, 12000, 20000) and paper.federation.local_steps == 100


def test_dry_run_with_stylegan2_settings(recipe_env, capsys):
    assert federated.main(["--preset", "smoke", "--gan", "stylegan2-ada", "--dry-run",
                           "--set", "stylegan2.augment.pipeline=bg"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["gan"] == "stylegan2-ada" and cfg["stylegan2"]["augment"]["pipeline"] == "bg"
    assert cfg["stylegan2"]["model"]["channel_max"] == stylegan2_ada.get_config("smoke").model.channel_max


def test_bad_settings_are_clear_errors(recipe_env, capsys):
    with pytest.raises(SystemExit):
        federated.main(["--preset", "smoke", "--gan", "stylegan2-ada", "--set", "data.batch_size=6", "--dry-run"])
    err = capsys.readouterr().err
    assert "data.batch_size=6 must be a multiple of model.mbstd_group_size=4" in err and "stylegan2.model" in err
    with pytest.raises(SystemExit):
        federated.main(["--preset", "smoke", "--gan", "stylegan3", "--dry-run"])
    assert "invalid choice: 'stylegan3'" in capsys.readouterr().err
    assert federated.main(["--preset", "smoke", "--set", "federation.secagg=true"]) == 1
    assert "SecAgg+" in capsys.readouterr().err
    for text in (federated.__doc__, federated.get_config.__doc__, open(os.path.join(
            os.path.dirname(federated.__file__), "..", "..", "recipes", "federated", "README.md")).read()):
        assert "not ready" not in text


def test_resume_may_change_rounds_arms_and_failures_only(recipe_env, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    cfg = config_lib.replace(federated.get_config("smoke"), {"gan": "stylegan2-ada"})
    (run / "config.json").write_text(json.dumps(config_lib.to_dict(cfg)))
    assert federated.main(["--resume", "--run-dir", str(run), "--set", "federation.rounds=5",
                           "--set", "federation.arms=federated", "--dry-run"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["federation"]["rounds"] == 5 and out["train"]["steps"] == 5 * cfg.federation.local_steps
    with pytest.raises(SystemExit):
        federated.main(["--resume", "--run-dir", str(run), "--set", "federation.local_steps=7", "--dry-run"])
    assert "federation.local_steps=7" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        federated.main(["--resume", "--run-dir", str(run), "--gan", "cdcgan", "--dry-run"])
    assert "a resumed run keeps its GAN" in capsys.readouterr().err
