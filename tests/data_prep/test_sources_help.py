import pytest

from data_prep.cli import SOURCE_MODULES
from tests.data_prep.conftest import run_cli

COMMANDS = ["folder", "manifest", "ham10000", "isic", "chestxray14", "kermany", "medmnist", "fitzpatrick17k"]


def test_every_adapter_is_registered():
    assert sorted(SOURCE_MODULES) == sorted(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_has_an_example(name):
    result = run_cli([name, "--help"])
    assert "Example:" in result.output and f"medgan-data {name} " in result.output
    assert "--out" in result.output and "--max-bad" in result.output
