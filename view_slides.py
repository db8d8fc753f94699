"""A zoomable viewer of slides with their attention, contributions and predictions: a static site that opens from
disk (slides/<slide_id>/index.html per slide, index.html for all), built from heatmap and contribution runs.

    python3 view_slides.py --config-name default heatmap_run=output/heatmaps/<run_id> \
        contribution_run=output/contributions/<run_id> predictions=output/classification/<run_id>/test_predictions.csv
    python3 view_slides.py --config-name default extraction_run=output/feature_extraction/<run_id> serve=true

Config: config/viewer/default.yaml (every key documented there). Needs `make viewer-assets` (npm) once.
Exit code: 0 done, 1 some slide failed (see slides.csv), 2 bad config or inputs.
"""

from pathlib import Path

from source.config.viewer import ViewerConfig
from source.entry import job_entry

CONFIG_DIR = Path(__file__).resolve().parent / "config"

if __name__ == "__main__":
    job_entry(
        CONFIG_DIR / "viewer",
        "default",
        "viewer_schema",
        ViewerConfig,
        "source.engines.viewer_job:run_viewer_job",
    )
