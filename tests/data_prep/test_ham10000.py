import collections
import io
import os

import numpy as np
from PIL import Image

from data_prep.sources.ham10000 import CLASS_NAMES, read_ham10000
from tests.data_prep.conftest import (FAST, SKIN, all_records, assert_boxes, assert_patient_disjoint, by_source,
                                      read_dataset, run_cli, skipped_reasons, write_csv, write_jpeg, write_mask,
                                      write_truncated_jpeg)

HEADER = "lesion_id,image_id,dx,dx_type,age,sex,localization"
# What the public copy in shared/fixtures really holds: besides one blank line (line 2), eight rows lack an
# image_id, a dx or a lesion_id; they are skipped with their line number.
REAL_SKIPPED = {
    "HAM10000_metadata.csv line 2": "blank row",
    "HAM10000_metadata.csv line 5 (ISIC_0025661)": "no lesion_id",
    "HAM10000_metadata.csv line 7 (ISIC_0027850)": "no dx; no lesion_id",
    "HAM10000_metadata.csv line 10 (HAM_0005132)": "no image_id",
    "HAM10000_metadata.csv line 12 (ISIC_0025276)": "no dx",
    "HAM10000_metadata.csv line 21": "no image_id; no lesion_id",
    "HAM10000_metadata.csv line 22 (ISIC_0032343)": "no lesion_id",
    "HAM10000_metadata.csv line 30 (ISIC_0025567)": "no dx",
    "HAM10000_metadata.csv line 34 (ISIC_0031017)": "no dx; no lesion_id",
}


def test_real_metadata_rows(shared_fixtures):
    metadata = os.path.join(shared_fixtures, "HAM10000_metadata.csv")
    items, skipped, _ = read_ham10000(metadata, image_dir="imgs")
    assert len(items) == 10015 - 9
    assert len({it.patient_id for it in items}) == 7468  # 7,470 lesions in the file; two only on skipped rows
    assert {s["input"]: s["reason"] for s in skipped} == REAL_SKIPPED
    assert len({it.source_id for it in items}) == len(items)
    counts = collections.Counter(CLASS_NAMES[it.label] for it in items)
    assert counts == {"nv": 6705, "mel": 1113, "bkl": 1090, "bcc": 514, "akiec": 327, "vasc": 142, "df": 115}
    assert items[0].path == os.path.join("imgs", "ISIC_0025030.jpg") and items[0].patient_id == "HAM_0000118"


def test_real_metadata_end_to_end(shared_fixtures, tmp_path):
    metadata = os.path.join(shared_fixtures, "HAM10000_metadata.csv")
    items, _, _ = read_ham10000(metadata)
    buf = io.BytesIO()
    Image.fromarray(np.full((9, 12, 3), SKIN, dtype=np.uint8)).save(buf, format="JPEG")
    for k, part in enumerate(("HAM10000_images_part_1", "HAM10000_images_part_2")):
        os.makedirs(tmp_path / "HAM10000" / part)
        for it in items[k::2]:
            (tmp_path / "HAM10000" / part / f"{it.source_id}.jpg").write_bytes(buf.getvalue())
    out = tmp_path / "out"
    result = run_cli(["ham10000", "--metadata", metadata, "--images", tmp_path / "HAM10000", "--out", out,
                      "--image-size", "16", "--workers", "2", "--shards", "2"])
    info, records = read_dataset(out)

    recs = all_records(records)
    assert len(recs) == 10006 == sum(info["counts"][s].get(c, 0) for s in info["counts"] for c in CLASS_NAMES)
    assert skipped_reasons(info) == REAL_SKIPPED
    assert "line 2: blank row" in result.output
    assert info["split_unit"] == "lesion" and info["class_names"] == list(CLASS_NAMES)
    assert_patient_disjoint(records)
    assert {len(records[s]) for s in ("val", "test")} <= set(range(900, 1100))
    assert all(r["fitzpatrick_estimated"] == 1 and r["fitzpatrick"] == 3 for r in recs)


def _small_ham(root):
    """The newer CSV variant (image ids with .jpg, a dataset column) over part_1/part_2 folders and masks."""
    images = root / "HAM10000"
    write_jpeg(images / "HAM10000_images_part_1" / "ISIC_0000001.jpg", size=(20, 16), seed=1)
    write_jpeg(images / "HAM10000_images_part_1" / "ISIC_0000002.jpg", size=(20, 16), seed=2)
    write_jpeg(images / "HAM10000_images_part_2" / "ISIC_0000003.jpg", size=(20, 16), seed=3)
    write_jpeg(images / "HAM10000_images_part_2" / "ISIC_0000004.jpg", size=(20, 16), seed=4)
    write_jpeg(images / "HAM10000_images_part_2" / "ISIC_0000005.jpg", size=(20, 16), seed=5)
    write_jpeg(images / "HAM10000_images_part_2" / "ISIC_0000006.jpg", size=(20, 16), seed=6)
    write_truncated_jpeg(images / "HAM10000_images_part_1" / "ISIC_0000007.jpg")
    write_mask(root / "masks" / "ISIC_0000001_segmentation.png", (20, 16), (5, 4, 15, 12))
    write_mask(root / "masks" / "ISIC_0000003_segmentation.png", (40, 32), (0, 16, 20, 32))  # other resolution
    csv = write_csv(root / "HAM10000_metadata.csv", HEADER + ",dataset", [
        "HAM_0000001,ISIC_0000001.jpg,mel,histo,50.0,male,back,vidir_modern",
        "HAM_0000001,ISIC_0000002.jpg,mel,histo,50.0,male,back,vidir_modern",
        "HAM_0000002,ISIC_0000003.jpg,nv,follow_up,35.0,female,trunk,rosendahl",
        ",,,,,,,",
        "HAM_0000003,ISIC_0000004.jpg,vasc,consensus,,unknown,face,vienna_dias",
        "HAM_0000004,ISIC_0000005.jpg,xyz,histo,60.0,male,scalp,vidir_molemax",
        "HAM_0000005,ISIC_0000006.jpg,akiec,histo,70.0,female,hand,vidir_modern",
        "HAM_0000005,ISIC_0000007.jpg,akiec,histo,70.0,female,hand,vidir_modern",
        "HAM_0000006,ISIC_0000008.jpg,df,histo,40.0,male,lower extremity,vidir_modern",
    ])
    return csv, images, root / "masks"


def test_small_newer_variant_with_masks(tmp_path):
    csv, images, masks = _small_ham(tmp_path / "src")
    out = tmp_path / "out"
    result = run_cli(["ham10000", "--metadata", csv, "--images", images, "--masks", masks, "--out", out,
                      "--resize", "stretch", "--val-fraction", "0.3", "--test-fraction", "0.3", *FAST])
    info, records = read_dataset(out)
    recs = by_source(records)

    assert sorted(recs) == [f"ISIC_000000{i}" for i in (1, 2, 3, 4, 6)]
    assert {k: CLASS_NAMES[r["label"]] for k, r in recs.items()} == {
        "ISIC_0000001": "mel", "ISIC_0000002": "mel", "ISIC_0000003": "nv", "ISIC_0000004": "vasc",
        "ISIC_0000006": "akiec"}
    assert recs["ISIC_0000001"]["patient_id"] == recs["ISIC_0000002"]["patient_id"] == "HAM_0000001"
    assert recs["ISIC_0000001"]["split"] == recs["ISIC_0000002"]["split"]
    assert_patient_disjoint(records)
    # Mask rows 4..11, columns 5..14 of 20x16 -> [4/16, 5/20, 12/16, 15/20]; the box takes the image's label.
    assert_boxes(recs["ISIC_0000001"], [[0.25, 0.25, 0.75, 0.75]], [CLASS_NAMES.index("mel")])
    assert_boxes(recs["ISIC_0000003"], [[0.5, 0.0, 1.0, 0.5]], [CLASS_NAMES.index("nv")])
    assert_boxes(recs["ISIC_0000002"], [])
    assert all(r["fitzpatrick_estimated"] == 1 and 1 <= r["fitzpatrick"] <= 6 for r in recs.values())
    assert "2 of 7 images have a lesion mask" in result.output

    skipped = skipped_reasons(info)
    truncated = str(images / "HAM10000_images_part_1" / "ISIC_0000007.jpg")
    missing = str(images / "ISIC_0000008.jpg")
    assert set(skipped) == {"HAM10000_metadata.csv line 5", "HAM10000_metadata.csv line 7 (ISIC_0000005)",
                            truncated, missing}
    assert skipped["HAM10000_metadata.csv line 5"] == "blank row"
    assert "unknown dx 'xyz'" in skipped["HAM10000_metadata.csv line 7 (ISIC_0000005)"]
    assert skipped[truncated].startswith("unreadable image")
    assert skipped[missing] == f"file not found: {missing}"


def test_images_given_as_both_part_folders(tmp_path):
    csv, images, _ = _small_ham(tmp_path / "src")
    out = tmp_path / "out"
    run_cli(["ham10000", "--metadata", csv, "--images", images / "HAM10000_images_part_1",
             "--images", images / "HAM10000_images_part_2", "--out", out, *FAST])
    info, records = read_dataset(out)
    assert len(all_records(records)) == 5 and info["extra"]["masks"] is False


def test_missing_dx_column_names_it(tmp_path):
    write_jpeg(tmp_path / "imgs" / "ISIC_0000001.jpg")
    csv = write_csv(tmp_path / "HAM10000_metadata.csv", "lesion_id,image_id,dx_type,age,sex,localization",
                    ["HAM_0000001,ISIC_0000001,histo,50,male,back"])
    result = run_cli(["ham10000", "--metadata", csv, "--images", tmp_path / "imgs", "--out", tmp_path / "out"],
                     ok=False)
    assert result.exit_code != 0
    assert "HAM10000_metadata.csv is missing columns ['dx']; expected lesion_id, image_id, dx, dx_type" in result.output


def test_missing_images_folder_names_it(tmp_path):
    csv = write_csv(tmp_path / "HAM10000_metadata.csv", HEADER, ["HAM_0000001,ISIC_0000001,mel,histo,50,male,back"])
    result = run_cli(["ham10000", "--metadata", csv, "--images", tmp_path / "nope", "--out", tmp_path / "out"],
                     ok=False)
    assert result.exit_code != 0
    assert "--images" in result.output and "nope" in result.output and "HAM10000_images_part_1" in result.output
