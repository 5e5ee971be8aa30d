"""What a person reads: the HTML page (`report.py`), block contributions (`explain.py`), the
shared matplotlib helpers (`plots.py`) and where a measurement was made (`environment.py`).

Comes after every stage: it may import any of them, and none of them imports it. Nothing is
imported here, so `plots` and `environment` stay light (no torch) for `glonet bench`.
"""
