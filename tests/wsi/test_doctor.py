"""python3 -m source.doctor: every slide checked before a long extraction, one table, an exit code that says."""

from __future__ import annotations

from source.doctor import main
from tests.wsi.conftest import write_csv


def test_the_preflight_table_names_what_would_fail(slides_dir, tmp_path, capsys):
    rows = [
        {"slide_id": "good", "image_path": str(slides_dir / "he 0.5 é.tif")},
        {"slide_id": "missing", "image_path": str(tmp_path / "nowhere.svs")},
    ]
    csv = write_csv(tmp_path / "slides.csv", rows)
    assert main([f"wsi_csv={csv}", "region_size=512", f"output_dir={tmp_path / 'out'}", "device=cpu"]) == 1
    printed = capsys.readouterr().out
    good = next(line for line in printed.splitlines() if line.strip().startswith("good"))
    assert " ok " in good and "missing" in printed and "does not exist" in printed
    assert "1/2 slide(s) ready, 1 would fail" in printed and "precision auto ->" in printed
    only_good = write_csv(tmp_path / "good.csv", rows[:1])
    assert main([f"wsi_csv={only_good}", "region_size=512", f"output_dir={tmp_path}", "device=cpu"]) == 0
    assert "GB are free" in capsys.readouterr().out


def test_a_bad_command_line_is_exit_2(tmp_path, capsys):
    assert main(["wsi_csv=" + str(tmp_path / "none.csv")]) == 2
    assert "is not a file" in capsys.readouterr().err
    assert main(["tiling.spacng=0.5", f"wsi_csv={tmp_path}"]) == 2
    assert main([]) == 2 and "give the cohort" in capsys.readouterr().err
