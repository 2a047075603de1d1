"""The authors' code of each method, apart from the paper: recipe values with their file:line, quirk flags, quirk hooks.

`authors/<m>.py` subclasses the config of `<m>_darts.py` under the same name (common.config.with_authors swaps it
in on the command line): the method file reads like its paper, and `--recipe authors` and every quirk flag of
the authors' published scripts stay one flag away.
"""
