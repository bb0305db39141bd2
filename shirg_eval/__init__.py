"""shirg-eval: high-resolution visual-token selection (SHIRG) on LaViDa, as an lmms-eval plugin."""

__version__ = "0.1.0"
