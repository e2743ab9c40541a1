"""See inside a model: training health, a diagnosis in sentences, and `bricklm inspect` (a feature).

probe.py       health over a short training of a copy (the numbers themselves: training/health.py)
diagnosis.py   those numbers turned into findings, with documented thresholds
inspection.py  weight and activation shapes, tables, PNG plots, and inspect_model()
"""
