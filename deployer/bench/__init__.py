"""``deployer bench``: load a deployed endpoint against its SLO and keep what was measured.

- :mod:`.results`: the load points, judged against the SLO, and the best one that meets it.
- :mod:`.report`: a result as llm-d BenchmarkReport v0.2 documents, one per load point.
- :mod:`.plot`: latency against throughput with the SLO line, as PNG and SVG.
- :mod:`.compare`: two runs side by side, per load point, with the ratio B/A.
"""
