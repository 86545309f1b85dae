"""tools/bench.py: the tables, --compare, option errors, and one tiny real run (no timing assertions)."""

import argparse
import json

import pytest

from tools import bench, bench_report

MACHINE = {"cpu": "Test CPU 9000", "cores": 2, "avx512_bf16": True, "gpus": [], "tensorflow": "2.21.0",
           "keras": "3.15.1"}


def _step(model="dermgan", size=256, batch=4, precision="mixed_bfloat16", images_per_s=2.0, first=5.0, **extra):
    row = {"benchmark": "train_step", "model": model, "variant": "resize_conv, base 64", "image_size": size,
           "batch_size": batch, "precision": precision, "jit": False, "strategy": "default",
           "first_step_s": first, "median_step_s": batch / images_per_s, "images_per_s": images_per_s,
           "peak_host_mb": 3000.0}
    row.update(extra)
    return row


def _result(rows):
    return {"version": 1, "machine": MACHINE, "load_1m": {"start": 0.5, "end": 1.25}, "command": "bench", "results": rows}


OLD = _result([
    _step(images_per_s=2.0, first=5.0),
    _step(batch=1, images_per_s=1.0),
    {"benchmark": "pipeline", "image_size": 256, "batch_size": 64, "format": "png", "images": 1000,
     "cold_images_per_s": 800.0, "cached_images_per_s": 5000.0},
])
NEW = _result([
    _step(images_per_s=3.0, first=4.0),
    _step(model="cdcgan", size=64, batch=64, precision="float32", images_per_s=100.0),
    {"benchmark": "pipeline", "image_size": 256, "batch_size": 64, "format": "png", "images": 1000,
     "cold_images_per_s": 400.0, "cached_images_per_s": 5000.0},
])


def test_compare_gives_new_over_old_ratios_and_flags_rows_in_one_run_only():
    rows = {(r["what"], r["metric"]): r for r in bench_report.compare(OLD, NEW)}
    step = rows[("DermGAN (resize_conv, base 64) 256px b4 mixed_bfloat16", "images_per_s")]
    assert step["ratio"] == pytest.approx(1.5) and step["higher_is_better"]
    assert rows[("DermGAN (resize_conv, base 64) 256px b4 mixed_bfloat16", "first_step_s")]["ratio"] == pytest.approx(0.8)
    assert rows[("pipeline 256 64 png", "cold_images_per_s")]["ratio"] == pytest.approx(0.5)
    assert rows[("pipeline 256 64 png", "cached_images_per_s")]["ratio"] == pytest.approx(1.0)
    gone = rows[("DermGAN (resize_conv, base 64) 256px b1 mixed_bfloat16", "images_per_s")]
    assert gone["ratio"] is None and gone["new"] is None
    added = rows[("cDCGAN (resize_conv, base 64) 64px b64 float32", "images_per_s")]
    assert added["ratio"] is None and added["old"] is None


def test_compare_cli_prints_ratio_table_without_measuring(tmp_path, capsys):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(OLD))
    new.write_text(json.dumps(NEW))
    assert bench.main(["--compare", str(old), "--current", str(new)]) == 0
    out = capsys.readouterr().out
    assert "| DermGAN (resize_conv, base 64) 256px b4 mixed_bfloat16 | images_per_s | 2 | 3 | 1.500x better |" in out
    assert "| pipeline 256 64 png | cold_images_per_s | 800 | 400 | 0.500x worse |" in out
    assert "only in old" in out and "only in new" in out


def test_compare_reads_the_older_dermgan_subcommand_format():
    old = {"results": [{"benchmark": "dermgan_train_step", "image_size": 256, "batch_size": 4,
                        "precision": "mixed_bfloat16", "jit": False, "upsampling": "resize_conv", "base_filters": 64,
                        "images_per_s": 2.0, "first_step_s": 5.0, "median_step_s": 2.0}], "machine": MACHINE}
    rows = bench_report.compare(old, NEW)
    ratio = next(r for r in rows if r["metric"] == "images_per_s" and "b4" in r["what"])["ratio"]
    assert ratio == pytest.approx(1.5)


def test_markdown_names_the_machine_and_load_and_fills_every_table():
    result = _result([
        _step(gflop_per_step=500.0, gflops_achieved=250.0, load_1m=[0.5, 0.75]),
        _step(model="ucgan", size=128, batch=12, precision="mixed_float16", error="TypeError: boom"),
        {"benchmark": "pipeline", "image_size": 256, "batch_size": 64, "format": "png", "images": 1000,
         "cold_images_per_s": 800.0, "cached_images_per_s": 5000.0},
        {"benchmark": "features", "extractor": "inception_v3", "weights": "random", "source_size": 256,
         "input_size": 299, "batch_size": 32, "images": 128, "images_per_s": 12.5, "model_images_per_s": 14.0,
         "resize_share": 0.125, "first_batch_s": 3.0, "peak_host_mb": 1500.0},
        {"benchmark": "matmul_peak", "dtype": "bfloat16", "size": 4096, "gflops": 364.1},
    ])
    text = bench_report.markdown(result)
    assert text.startswith("Machine: Test CPU 9000, 2 cores (AVX512_BF16), GPU: none, TensorFlow 2.21.0, Keras 3.15.1; "
                           "1-minute load average 0.5 at start, 1.25 at end")
    assert ("| DermGAN (resize_conv, base 64) | 256 | 4 | mixed_bfloat16 | False | default | 5.00 | 2 | 2 | 500 | 250 "
            "| - | 3000 | - | 0.50→0.75 |") in text
    assert "| UCGAN (resize_conv, base 64) | 128 | 12 | mixed_float16 | False | default | failed: TypeError: boom |" in text
    # Pipeline headroom over the fastest 256-px train step (2 img/s): 800 / 2 and 5000 / 2.
    assert "| 256 | 1000 | 64 | png | 800 | 5000 | 400x | 2500x |" in text
    assert "| inception_v3 | random | 256 | 299 | 32 | 128 | 12.5 | 14 | 12.5% | 3.00 | 1500 |" in text
    assert "| bfloat16 | 4096 | 364.1 |" in text


@pytest.mark.parametrize("argv, message", [
    (["--precision", "float64"], "--precision: 'float64' is not one of float32, mixed_bfloat16, mixed_float16"),
    (["--models", "biggan64"], "--models: 'biggan64' is not a model"),
    (["--models", "dermgan100"], "dermgan100: the image size must be a power of two"),
    (["--models", "cdcgan512"], "the DCGAN networks stop at 256 px"),
    (["--batch-sizes", "4,0"], "--batch-sizes must be >= 1"),
    (["--batch-sizes", "four"], "--batch-sizes: 'four' is not a valid int"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--warmup", "-1"], "--warmup must be >= 0"),
    (["--what", "steps,speed"], "--what: 'speed' is not one of steps, pipeline, features, peak"),
    (["--strategy", "mirrored", "--jit", "--models", "dermgan64"], "XLA fails under MirroredStrategy"),
    (["--strategy", "mirrored", "--models", "ucgan128"], "leave ucgan out of --models"),
    (["--current", "new.json"], "--current NEW.json only makes sense with --compare OLD.json"),
    (["--compare", "no-such-file.json"], "--compare: no-such-file.json does not exist"),
])
def test_bad_options_exit_2_naming_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_compare_refuses_a_file_that_is_not_a_benchmark(tmp_path, capsys):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"fid": 12.0}))
    with pytest.raises(SystemExit):
        bench.main(["--compare", str(other), "--current", str(other)])
    assert "no `results` list" in capsys.readouterr().err


def test_tiny_real_run_writes_json_and_markdown(tmp_path, capsys):
    out_json, out_md = tmp_path / "b.json", tmp_path / "b.md"
    assert bench.main(["--what", "steps", "--models", "cdcgan32", "--batch-sizes", "2", "--base-filters", "8",
                       "--steps", "1", "--warmup", "1", "--json", str(out_json), "--markdown", str(out_md)]) == 0
    result = json.loads(out_json.read_text())
    assert result["version"] == 1
    assert {"cpu", "cores", "gpus", "tensorflow", "keras"} <= set(result["machine"])
    assert set(result["load_1m"]) == {"start", "end"}
    [row] = result["results"]
    assert "error" not in row
    assert (row["benchmark"], row["model"], row["image_size"], row["batch_size"], row["precision"]) == (
        "train_step", "cdcgan", 32, 2, "float32")
    assert row["jit"] is False and row["strategy"] == "default" and row["replicas"] == 1
    assert row["first_step_s"] > 0 and row["median_step_s"] > 0 and len(row["step_times_s"]) == 1
    assert row["images_per_s"] == pytest.approx(2 / row["median_step_s"], rel=0.01)
    assert row["traces"] == 1  # no retracing between steps
    assert row["gflop_per_step"] > 0 and row["peak_host_mb"] > 0 and len(row["load_1m"]) == 2
    markdown = out_md.read_text()
    assert markdown.startswith("Machine: ") and "| cDCGAN (4 classes, base 8) | 32 | 2 | float32 |" in markdown
    assert markdown in capsys.readouterr().out


def test_times_keep_four_significant_digits_so_fast_steps_stay_exact():
    # Rounding to 4 decimal places turned a 4.73 ms step into 4.7 ms, 0.6 % off its images/s.
    assert bench.seconds(0.0047312) == 0.004731 and bench.seconds(1.234567) == 1.235
    assert bench.seconds(0.0) == 0.0


def test_stylegan_minibatch_amortises_the_lazy_regularisation():
    # main 0.3 s; G reg every 4 adds 0.2 s / 4, D reg every 16 adds 0.16 s / 16: 0.3 + 0.05 + 0.01.
    assert bench.amortised_step(0.3, 0.5, 0.46, 4, 16) == pytest.approx(0.36)
    assert bench.amortised_step(0.3, 0.29, 0.3, 4, 16) == pytest.approx(0.3)  # noise never lowers the cost
    row = {"benchmark": "train_step", "model": "stylegan", "variant": "demo model", "image_size": 32,
           "batch_size": 16, "median_step_s": 0.3, "sec_per_kimg": 22.5}
    table = bench_report.markdown({"results": [row]})
    assert "| StyleGAN2-ADA (demo model) | 32 | 16 |" in table and "| 22.5 |" in table
    assert bench.batches_for("stylegan", argparse.Namespace(batch_sizes=None), 32) == [16]
    assert bench.batches_for("stylegan", argparse.Namespace(batch_sizes=None), 256) == [4]


def test_quick_leaves_out_the_256px_stylegan_unless_asked():
    parse = bench.build_parser().parse_args
    quick = bench.resolve_options(parse(["--quick"]))
    assert ("stylegan", 32) in quick.models and ("stylegan", 256) not in quick.models
    assert ("dermgan", 256) in quick.models
    assert ("stylegan", 256) in bench.resolve_options(parse([])).models
    assert bench.resolve_options(parse(["--quick", "--models", "stylegan256"])).models == [("stylegan", 256)]


REFERENCE = {"version": 1, "machine": {"cpu": "Test CPU 9000", "cores": 2, "gpus": [], "torch": "2.13.0"},
             "results": [
                 _step(model="pix2pix_reference", batch=4, precision="bfloat16 channels_last", images_per_s=4.0),
                 _step(model="pix2pix_reference", batch=4, precision="float32", images_per_s=3.0),
                 _step(model="pix2pix_reference", batch=1, precision="bfloat16", images_per_s=2.0),
             ]}


def test_reference_ratio_takes_each_sides_fastest_row_and_checks_the_target():
    ours = _result([_step(batch=4, images_per_s=5.6), _step(batch=4, precision="float32", images_per_s=3.0),
                    _step(batch=1, images_per_s=2.4), _step(model="cdcgan", batch=1, images_per_s=99.0)])
    rows = bench_report.reference_ratios(ours, REFERENCE)
    assert {r["update_rule"] for r in rows} == {"alternating"}
    assert [(r["batch_size"], r["dermgan_precision"], r["reference_precision"]) for r in rows] == [
        (1, "mixed_bfloat16", "bfloat16"), (4, "mixed_bfloat16", "bfloat16 channels_last")]
    # batch 1: 2.4 / 2.0 = 1.2x < 1.3 (needs 0.5 / 1.3 = 0.3846 s); batch 4: 5.6 / 4.0 = 1.4x.
    assert [round(r["ratio"], 4) for r in rows] == [1.2, 1.4]
    assert [r["meets"] for r in rows] == [False, True]
    assert rows[0]["target_s"] == pytest.approx(0.5 / 1.3)
    table = bench_report.reference_table(rows)
    assert ("| 256 | 4 | alternating | 0.7143 (mixed_bfloat16) | 1 (bfloat16 channels_last) | 1.40x | 1.30x | "
            "<= 0.7692 | - | meets |") in table  # no GFLOP count in these rows: no rate needed
    assert "1.20x" in table and "misses" in table


def test_reference_ratio_states_the_rate_the_target_needs_against_the_matmul_peak():
    # Reference 1 s/step at batch 4; target 1.3x -> 1 / 1.3 s. 400 GFLOP in 0.769 s = 520 GFLOP/s, 65 % of 800.
    ours = _result([_step(batch=4, images_per_s=5.0, gflop_per_step=400.0),
                    {"benchmark": "matmul_peak", "dtype": "float32", "size": 4096, "gflops": 200.0},
                    {"benchmark": "matmul_peak", "dtype": "bfloat16", "size": 4096, "gflops": 800.0}])
    (row,) = bench_report.reference_ratios(ours, REFERENCE)
    assert row["gflops_needed"] == pytest.approx(520.0)
    assert row["peak_gflops"] == 800.0 and row["peak_share_needed"] == pytest.approx(0.65)
    assert "| 520 (65 % of 800) | misses |" in bench_report.reference_table([row])
    # Without a peak row the rate is still stated; a float32 step is held against the float32 peak.
    (row,) = bench_report.reference_ratios(_result([_step(batch=4, images_per_s=5.0, gflop_per_step=400.0)]),
                                           REFERENCE)
    assert row["peak_share_needed"] is None and "| 520 | misses |" in bench_report.reference_table([row])
    ours["results"][0]["precision"] = "float32"
    (row,) = bench_report.reference_ratios(ours, REFERENCE)
    assert row["peak_gflops"] == 200.0 and row["peak_share_needed"] == pytest.approx(2.6)


def test_reference_ratio_reports_the_simultaneous_update_on_its_own_row():
    ours = _result([_step(batch=4, images_per_s=5.0), _step(model="dermgansim", batch=4, images_per_s=6.0)])
    rows = bench_report.reference_ratios(ours, REFERENCE)
    assert [(r["update_rule"], round(r["ratio"], 3)) for r in rows] == [("alternating", 1.25), ("simultaneous", 1.5)]


def test_reference_cli_compares_saved_files_without_measuring(tmp_path, capsys):
    ours, ref = tmp_path / "ours.json", tmp_path / "ref.json"
    ours.write_text(json.dumps(_result([_step(batch=4, images_per_s=5.6)])))
    ref.write_text(json.dumps(REFERENCE))
    assert bench.main(["--reference", str(ref), "--current", str(ours)]) == 0
    assert "| 256 | 4 |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--reference", str(tmp_path / "missing.json"), "--current", str(ours)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--reference:" in err and "missing.json does not exist" in err


def test_reference_machine_line_names_pytorch():
    assert "PyTorch 2.13.0" in bench_report.machine_line(REFERENCE)
    assert "TensorFlow" not in bench_report.machine_line(REFERENCE)
