"""Many runs, one table: the blog's experiments as commands (a feature on top of the core).

plan.py      sweeps and ablations: what to train, training it (resumably), collecting results
stats.py     seeds pooled into mean ± std, when a difference is inside the seed spread, why a run is missing
tables.py    the blog's tables and the plots of a sweep or an ablation
devices.py   the processor table: the same model on every device present
report.py    reading finished runs: overfitting, samples by loss level, a markdown report
"""
