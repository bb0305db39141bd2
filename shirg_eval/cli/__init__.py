"""Every console command's ``main``, one module per command: argparse, then a call into the library.

The commands' work lives in the layers below (``tests/test_layout.py``); nothing imports this package but the
console scripts of ``pyproject.toml`` and ``python -m shirg_eval.cli.<command>``.
"""
