"""Detections: what each action did (risky action classes) and suspicious sequences.

Rules are Sigma files (correlate/detect/rules/, plus user folders), parsed by pySigma and
compiled to DuckDB SQL over per-logsource views of the store's activity (views.py). Evaluation
is set-based SQL per run (run.py); sequences are Sigma correlation rules (sequences.py).
"""
