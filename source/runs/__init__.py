"""Run folders and who may write them: the folder, its saved config and resume checks (:mod:`~source.runs.folder`),
the files a job holds (:mod:`~source.runs.owned`: the exclusive :mod:`~source.runs.lock`, shared runs'
:mod:`~source.runs.claims`), shared runs' records (:mod:`~source.runs.shared`) and ending on a signal
(:mod:`~source.runs.termination`). Imports run one way: owned <- claims <- lock <- shared <- folder."""
