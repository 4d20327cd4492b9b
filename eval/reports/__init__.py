"""reelm.eval.reports: readable HTML reports with their pictures beside them.

- ``report_page``: ``Report`` and ``Section``, one self-contained page per run
- ``reconstruct_report`` / ``generation_report``: the pages of the two evals
"""
