from tests.data_prep.conftest import (FAST, all_records, assert_patient_disjoint, by_source, read_dataset, run_cli,
                                      skipped_reasons, write_csv, write_jpeg)

HEADER = ("md5hash,fitzpatrick_scale,fitzpatrick_centaur,label,nine_partition_label,three_partition_label,qc,url,"
          "url_alphanum")
ROWS = [  # (md5hash, fitzpatrick_scale, label, nine, three, image written?)
    ("5e82a45bc5d78bd24ae9202d194423f8", 3, "drug induced pigmentary changes", "inflammatory", "non-neoplastic", True),
    ("fa2911a9b13b6f8af79cb700937cc14f", 1, "photodermatoses", "inflammatory", "non-neoplastic", True),
    ("d2bac3c9e4499032ca8e9b07c7d3bc40", -1, "dermatofibroma", "benign dermal", "benign", True),
    ("0a94359e7eaacd7178e06b2823777789", 6, "melanoma", "malignant melanoma", "malignant", True),
    ("1c3e9a6a2a0e5d3bd1b3a4c0b0a7c0a1", 4, "psoriasis", "inflammatory", "non-neoplastic", False),
]


def _fitz17k(root):
    rows = []
    for i, (md5, fitz, label, nine, three, exists) in enumerate(ROWS):
        if exists:
            write_jpeg(root / "images" / f"{md5}.jpg", size=(30, 20), seed=i)
        rows.append(f"{md5},{fitz},{fitz},{label},{nine},{three},,https://www.dermaamin.com/site/x.jpg,x")
    rows.insert(2, ",,,,,,,,")
    rows.append("9b1f1e0a0f1e2d3c4b5a69788796a5b4,2,2,,,,,http://x,x")  # no label
    rows.append(f"{ROWS[0][0]},3,3,{ROWS[0][2]},{ROWS[0][3]},{ROWS[0][4]},,http://x,x")  # listed twice
    return write_csv(root / "fitzpatrick17k.csv", HEADER, rows), root / "images"


def test_fitzpatrick17k_skin_types_and_labels(tmp_path):
    csv, images = _fitz17k(tmp_path / "src")
    out = tmp_path / "out"
    result = run_cli(["fitzpatrick17k", "--csv", csv, "--images", images, "--label-column", "three_partition_label",
                      "--out", out, *FAST])
    info, records = read_dataset(out)
    recs = by_source(records)

    assert info["class_names"] == ["benign", "malignant", "non-neoplastic"] and info["split_unit"] == "image"
    assert {k: r["label"] for k, r in recs.items()} == {ROWS[0][0]: 2, ROWS[1][0]: 2, ROWS[2][0]: 0, ROWS[3][0]: 1}
    assert [(recs[m]["fitzpatrick"], recs[m]["fitzpatrick_estimated"]) for m in (ROWS[0][0], ROWS[1][0], ROWS[3][0])] \
        == [(3, 0), (1, 0), (6, 0)]
    unknown = recs[ROWS[2][0]]  # fitzpatrick_scale -1: estimated by ITA and marked
    assert 1 <= unknown["fitzpatrick"] <= 6 and unknown["fitzpatrick_estimated"] == 1
    assert info["fitzpatrick_estimated"] == 1
    assert all(r["patient_id"] == r["source_id"] for r in recs.values())
    assert_patient_disjoint(records)
    assert "1 image(s) have fitzpatrick_scale -1" in result.output

    missing = str(images / f"{ROWS[4][0]}.jpg")
    assert skipped_reasons(info) == {
        "fitzpatrick17k.csv line 4": "blank row",
        "fitzpatrick17k.csv line 8 (9b1f1e0a0f1e2d3c4b5a69788796a5b4)": "no three_partition_label",
        f"fitzpatrick17k.csv line 9 ({ROWS[0][0]})": "md5hash listed twice",
        missing: f"file not found: {missing}",
    }


def test_fitzpatrick17k_default_label_column(tmp_path):
    csv, images = _fitz17k(tmp_path / "src")
    out = tmp_path / "out"
    run_cli(["fitzpatrick17k", "--csv", csv, "--images", images, "--out", out, *FAST])
    info, records = read_dataset(out)
    assert info["class_names"] == sorted(r[2] for r in ROWS) and info["extra"]["label_column"] == "label"
    assert len(all_records(records)) == 4


def test_fitzpatrick17k_missing_label_column_names_it(tmp_path):
    csv = write_csv(tmp_path / "fitzpatrick17k.csv", "md5hash,fitzpatrick_scale,label,qc,url,url_alphanum",
                    ["5e82a45bc5d78bd24ae9202d194423f8,3,psoriasis,,http://x,x"])
    (tmp_path / "images").mkdir()
    result = run_cli(["fitzpatrick17k", "--csv", csv, "--images", tmp_path / "images", "--label-column",
                      "nine_partition_label", "--out", tmp_path / "out"], ok=False)
    assert result.exit_code != 0
    assert "fitzpatrick17k.csv is missing columns ['nine_partition_label']" in result.output
