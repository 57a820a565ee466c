"""`swarm dashboard`: a web page per swarm, live over Server-Sent Events, and /metrics.

view.py reads (the same bounded frame `swarm watch` reads), feed.py shares one reader per
swarm among all browsers, control.py steers through the board's scripts, prometheus.py
exports counters, app.py wires them into a Starlette app; swarm/cli/dashboard.py runs it
under uvicorn.
"""
