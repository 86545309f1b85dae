"""tools/bench_pix2pix_reference.py: option errors, the no-PyTorch message, and (where torch exists) one real row."""

import importlib.util
import json

import pytest

from tools import bench_pix2pix_reference as ref

HAS_TORCH = importlib.util.find_spec("torch") is not None


@pytest.mark.parametrize("argv, message", [
    (["--precision", "float16"], "--precision accepts float32, bfloat16; got float16"),
    (["--layouts", "nchw"], "--layouts accepts channels_last, contiguous; got nchw"),
    (["--batch-sizes", "four"], "--batch-sizes takes integers >= 1"),
    (["--batch-sizes", "0"], "--batch-sizes takes integers >= 1"),
    (["--size", "128"], "--size must be 256"),
])
def test_bad_options_exit_2_naming_the_option(argv, message, capsys):
    assert ref.main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(HAS_TORCH, reason="PyTorch is installed here")
def test_without_pytorch_says_how_to_run_it(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert ref.main(["--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert "needs PyTorch" in err and "tools/bench.py --reference" in err
    assert not out.exists()


@pytest.mark.skipif(not HAS_TORCH, reason="needs PyTorch (not a keras-medgan dependency)")
def test_one_real_row_writes_a_result_bench_can_read(tmp_path):
    import torch

    from tools import bench_report

    generator, discriminator = ref.build_networks(torch)
    # Counted by hand: U-Net convs 19,532,800 down + 34,871,296 up, BatchNorm 4,864 + 4,992, output bias 3
    # (pix2pix prints 54.414 M); PatchGAN 6,208 + 131,328 + 524,800 + 2,098,176 + 8,193 (2.769 M).
    assert sum(p.numel() for p in generator.parameters()) == 54_413_955
    assert sum(p.numel() for p in discriminator.parameters()) == 2_768_705
    out = tmp_path / "r.json"
    assert ref.main(["--batch-sizes", "1", "--precision", "float32", "--layouts", "contiguous", "--steps", "1",
                     "--warmup", "0", "--json", str(out)]) == 0
    result = bench_report.load_result(str(out))
    (row,) = result["results"]
    assert row["model"] == "pix2pix_reference" and row["median_step_s"] > 0
    assert json.loads(out.read_text())["machine"]["torch"] == torch.__version__
