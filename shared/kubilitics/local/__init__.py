"""The all-in-one local server (the embedded default way to run Kubilitics)."""
