"""The search: objective, Optuna and Ray Tune engines, Pareto front, TensorBoard, retraining, CLI."""
