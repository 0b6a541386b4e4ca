"""The command groups of ``resnext-nas``, one module each; ``cli.py`` registers them.

A command declares its options, makes one library call and prints: file formats and algorithms
live in ``nas`` and ``resnext``. Torch is imported only inside the commands that train or build
models, and Optuna and plotly only where a study is read, so that ``budget``, ``show`` and
``presets`` answer at once.
"""
