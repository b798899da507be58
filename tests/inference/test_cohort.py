"""A cohort split across two torchrun workers on CPU (gloo), resumed after an interruption."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from monai_coco.inference import list_images
from monai_coco.inference.__main__ import main

from .test_whole_slide import ColourNet, _scene, _write_slide

ROOT = Path(__file__).resolve().parents[2]
NETWORK = '{"_target_": "torch.nn.Conv2d", "in_channels": 3, "out_channels": 2, "kernel_size": 1}'


@pytest.fixture
def cohort(tmp_path):
    folder = tmp_path / "slides"
    folder.mkdir()
    img, expected = _scene(128, 192)
    for i in range(4):  # the cancer block moves with i; slides differ
        _write_slide(folder / f"s{i}.tif", np.roll(img, 16 * i, axis=1), levels=1)
    torch.save({"model": ColourNet().conv.state_dict()}, tmp_path / "model.pt")
    args = ["--checkpoint", str(tmp_path / "model.pt"), "--network", NETWORK, "--roi", "32", "32"]
    args += ["--chunk-size", "64", "--device", "cpu", "--runtime", "torch", "--threads", "1"]
    return folder, tmp_path / "out", args


def _rows(out):
    with open(out / "cohort_summary.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_two_torchrun_workers_share_a_cohort_and_a_rerun_resumes(cohort, caplog):
    folder, out, args = cohort
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "monai_coco.inference", str(folder), str(out), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert "worker 0/2: 2 of its 2 slides to do" in log and "worker 1/2: 2 of its 2 slides to do" in log
    rows = _rows(out)
    assert [Path(r["image"]).name for r in rows] == ["s0.tif", "s1.tif", "s2.tif", "s3.tif"]
    assert all(int(r["tumour_pixels"]) > 0 and r["tumour_area_mm2"] for r in rows)
    assert all(int(r["windows_run"]) + int(r["windows_skipped"]) == 5 * 8 for r in rows)  # 128 x 192

    (out / "s2_summary.json").unlink()  # s2 interrupted: its summary (written last) is missing
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("s[013]_*")}
    with caplog.at_level("INFO", logger="monai_coco.inference"):
        assert main([str(folder), str(out), *args]) == 0
    assert "worker 0/1: 1 of its 4 slides to do" in caplog.text
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("s[013]_*")} == stamps  # complete slides untouched
    assert json.loads((out / "s2_summary.json").read_text())["image"].endswith("s2.tif")
    assert len(_rows(out)) == 4


def test_a_csv_list_names_slides_relative_to_itself_and_every_missing_one_before_any_work(tmp_path):
    (tmp_path / "a.tif").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.svs").write_bytes(b"")
    (tmp_path / "list.csv").write_text("patient,image\np1,a.tif\np2,sub/b.svs\n")
    assert list_images(tmp_path / "list.csv") == [tmp_path / "a.tif", tmp_path / "sub" / "b.svs"]
    # saved by Excel as "CSV UTF-8": a byte-order mark before the header, which stays the header
    (tmp_path / "excel.csv").write_bytes("image\r\na.tif\r\nsub/b.svs\r\n".encode("utf-8-sig"))
    assert list_images(tmp_path / "excel.csv") == [tmp_path / "a.tif", tmp_path / "sub" / "b.svs"]
    (tmp_path / "gaps.csv").write_text("image\na.tif\ngone.svs\nsub/lost.svs\n")
    expected = r"gaps.csv names 2 missing file\(s\): .*gone.svs, .*lost.svs"
    with pytest.raises(FileNotFoundError, match=expected):
        list_images(tmp_path / "gaps.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="empty.csv"):
        list_images(tmp_path / "empty.csv")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_images(tmp_path / "nowhere")


def test_a_cohort_with_an_unreadable_slide_is_refused_before_any_work_naming_it(cohort, capsys):
    """Every slide passes the input checks first (monai_coco.data.image_check): a damaged one stops the run
    in one line naming it, non-zero, before any slide's outputs are written."""
    folder, out, args = cohort
    (folder / "s9.tif").write_bytes(b"II*\x00 not a slide")
    with pytest.raises(SystemExit) as stop:
        main([str(folder), str(out), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2
    assert err[-1].startswith(f"error: {folder / 's9.tif'}: is not a readable TIFF file")
    assert not list(out.glob("*_summary.json")) if out.exists() else True


def test_a_second_run_on_an_output_folder_in_use_is_refused_in_one_line(cohort, capsys):
    folder, out, args = cohort
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from monai_coco.inference.whole_slide import output_lock; "
         f"lock = output_lock({str(out)!r}).acquire(); print('held', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        for source in (folder, folder / "s0.tif"):  # a cohort, and one slide, into the folder in use
            with pytest.raises(SystemExit) as stop:
                main([str(source), str(out), *args])
            err = capsys.readouterr().err.strip().splitlines()
            assert stop.value.code == 2 and len(err) == 1, err
            assert err[0].startswith(f"error: {out} is in use by an inference run (process ")
            assert err[0].endswith("wait for it to finish, or give this run another output folder.")
        assert not list(out.glob("s*"))  # nothing written
    finally:
        holder.kill()
        holder.wait()


def test_a_redo_in_which_a_slide_fails_exits_non_zero_and_keeps_its_earlier_outputs(tmp_path, capsys):
    """A slide whose level-0 tiles are damaged (it passes the up-front checks, which read its thumbnail
    from the reduced level) fails mid-cohort: the run goes on with the others, exits non-zero naming it, and
    the outputs an earlier run made of it are kept whole (an --overwrite redo is made aside)."""
    folder, out = tmp_path / "slides", tmp_path / "out"
    folder.mkdir()
    img, _ = _scene(256, 256)
    for name in ("a", "b"):
        _write_slide(folder / f"{name}.tif", img, levels=2)
    torch.save({"model": ColourNet().conv.state_dict()}, tmp_path / "model.pt")
    args = ["--checkpoint", str(tmp_path / "model.pt"), "--network", NETWORK, "--roi", "32", "32",
            "--level", "0", "--chunk-size", "64", "--device", "cpu", "--runtime", "torch", "--threads", "1"]
    assert main([str(folder), str(out), *args]) == 0
    before = {p.name: p.read_bytes() for p in out.glob("b_*")}
    with tifffile.TiffFile(folder / "b.tif") as tif:
        offset, count = tif.pages[0].dataoffsets[5], tif.pages[0].databytecounts[5]
    with open(folder / "b.tif", "r+b") as f:  # one level-0 tile's JPEG data overwritten
        f.seek(offset)
        f.write(b"\xff" * count)
    with pytest.raises(SystemExit) as stop:
        main([str(folder), str(out), *args, "--overwrite"])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2
    expected = f"error: 1 of 2 slides failed in this run or have no complete outputs in {out}: b.tif"
    assert err[-1].startswith(expected)
    assert {p.name: p.read_bytes() for p in out.glob("b_*")} == before
    assert not list(out.glob(".b*"))  # no staging folder left
