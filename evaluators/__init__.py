"""How good and how fast a spec is: data, metrics, cost, latency, training, proxy evaluation."""
