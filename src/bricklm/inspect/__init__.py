"""See inside a model: training health, a diagnosis in sentences, and `bricklm inspect` (a feature).

health.py      the numbers: gradient norms, update ratios, the residual stream, attention
diagnosis.py   those numbers turned into findings, with documented thresholds
inspection.py  weight and activation shapes, tables, PNG plots, and inspect_model()
"""
