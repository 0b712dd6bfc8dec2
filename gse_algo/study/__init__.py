"""Studies: declarative experiments over images x targets x attacks x parameter values (`gse-study`).

spec (the study file and its checks), sources (where images come from), plan (labels, targets, jobs, batches),
batching (the batch size from a memory bound), table (the study folder: study.json, rows.csv), execute (one
model copy turning batches into rows), runner (in-process, resumable), on_ray (the same batches on Ray actors),
report (summary tables and plots), cli (`gse-study run|report`).
"""


class StudyError(ValueError):
    """A study that cannot run as written, or a folder that is not a study's; one problem per line."""
