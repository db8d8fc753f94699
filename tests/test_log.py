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
