"""Search engines: ``optuna_engine`` (embedded, the default) and ``ray_engine`` (Ray Tune)."""
