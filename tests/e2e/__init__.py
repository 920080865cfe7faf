"""End-to-end tests: broker, worker, ingester and a real Prometheus server together."""
