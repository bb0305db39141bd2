"""Leaderboards (``shirg-leaderboard``), bootstrap CIs, plots, reports and sweeps (``shirg-sweep``)."""
