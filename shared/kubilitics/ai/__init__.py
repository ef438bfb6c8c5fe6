"""The AI layer: rule-based analyzers, evidence, providers, redaction, safety policy, budget ledger."""
