"""The monthly loop: build, score, explain, monitor, retrain, month after month, and its summary.

How the loop is judged against the truth lives in `serving.loop.evaluation`.
"""
