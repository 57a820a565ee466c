"""`swarm eval`: run a suite of checkable purposes under several arms and seeds, and report.

`suite.py` loads a suite, `arms.py` parses an arm, `runner.py` runs one purpose under one
arm and seed on a blackboard, `results.py` keeps finished runs (and resumes), `report.py`
turns them into figures, a table, JSON and a chart.
"""
