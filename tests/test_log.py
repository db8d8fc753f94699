"""Console logging beside progress bars."""

import io
import logging
import re
import sys

from tqdm import tqdm

from source.log import setup_logging


def test_log_lines_never_land_inside_a_progress_bar(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    setup_logging()
    bar = tqdm(total=3, file=stream, desc="extract", mininterval=0)
    bar.update(1)
    logging.getLogger("hipt.test").info("slide s1: 3 regions")
    bar.update(1)
    bar.close()
    visible = [line.split("\r")[-1] for line in stream.getvalue().split("\n")]  # what a terminal shows per line
    assert any(re.fullmatch(r"\d\d:\d\d:\d\d INFO slide s1: 3 regions", line) for line in visible), visible
    setup_logging()  # back to the real stderr


def test_many_failures_of_one_kind_are_one_line(caplog):
    import logging

    from source.log import log_failures

    failures = [(f"s{i}", f"slide file '/data/s{i}.svs' does not exist: check image_path") for i in range(2000)]
    failures.append(("odd", "tiling 'odd.svs' failed (ValueError: 3 levels)"))
    with caplog.at_level(logging.ERROR):
        log_failures(logging.getLogger("t"), failures, "run/slides.csv")
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("2000 failed (s0, s1, s2, s3, s4 and 1995 more): slide file '/data/s0.svs' does not")
    assert "run/slides.csv" in lines[0] and lines[1].startswith("1 failed (odd)")
