"""Deciding lines: the batch scoring job, the line policy (and its TOML) and the champion models it loads."""
