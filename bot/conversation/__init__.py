"""The conversation layer: NLU, policy, guardrails, rasa-sdk actions and the manager."""
