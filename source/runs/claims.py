"""A shared run's claims: ``<run>/claims/<slide_id>.claim``, one per slide a live job is processing
(:mod:`source.runs.shared`); exclusive jobs read them to refuse a folder shared jobs are working in."""

from __future__ import annotations

from pathlib import Path

from source.runs.owned import HEARTBEAT_S, STALE_AFTER_S, OwnedFile, job_identity

CLAIMS_DIR = "claims"


def live_claims(run_dir: Path, stale_after_s: float = STALE_AFTER_S) -> list[tuple[str, dict]]:
    """``(slide_id, holder)`` of every claim in ``run_dir/claims`` whose job is alive."""
    folder = Path(run_dir) / CLAIMS_DIR
    if not folder.is_dir():
        return []
    probe = job_identity()
    live = []
    for path in sorted(folder.glob("*.claim")):
        claim = OwnedFile(path, probe, stale_after_s, HEARTBEAT_S)
        holder = claim.holder()
        if claim.stale_reason(holder) is None:
            live.append((path.name[: -len(".claim")], holder))
    return live
