"""The simulated lending world: raw tables in the contract of `features.contracts`, plus ground
truth beside them.

`features.world.simulate.simulate_world` is the entry point. Nothing else in `features` imports
this package: the feature path reads the raw tables, never the simulator.
"""
