"""Batch scoring, the line policy, explanations and monitoring."""
