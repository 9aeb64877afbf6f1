"""Post-flight integrity: the data as before, and every object of the schema usable.

Each check returns the problems it found as sentences that name the object and say what to
do; an empty list means the check passed. Each module's docstring says what its checks prove:

- ``content``: every table of the baseline keeps its rows and their content.
- ``structure``: constraints and indexes valid, foreign keys holding, sequences ahead of their columns.
- ``objects``: the baseline's views, functions, triggers and extensions present, and each usable.
"""
